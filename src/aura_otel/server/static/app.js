// aura-otel pages: everything is readable without this script; it only adds instant table
// sorting (the header links sort on the server without it) and self-refresh of running jobs.
(function () {
  "use strict";

  function sortValue(cell) {
    var raw = cell ? cell.getAttribute("data-sort") : "";
    if (raw === null || raw === "") return null;
    var number = Number(raw);
    return isNaN(number) ? raw : number;
  }

  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b));
  }

  function sortTable(table, column, direction) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row) {
      var cell = row.querySelector('td[data-column="' + column + '"]');
      return { row: row, value: sortValue(cell), position: Number(row.getAttribute("data-position")) };
    });
    var present = keyed.filter(function (k) { return k.value !== null; });
    var missing = keyed.filter(function (k) { return k.value === null; });
    present.sort(function (x, y) {
      var order = compare(x.value, y.value);
      return (direction === "desc" ? -order : order) || x.position - y.position;
    });
    missing.sort(function (x, y) { return x.position - y.position; });
    present.concat(missing).forEach(function (k) { body.appendChild(k.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var active = th.getAttribute("data-column") === column;
      th.setAttribute("aria-sort", active ? (direction === "desc" ? "descending" : "ascending") : "none");
      var link = th.querySelector("a.sort-link");
      if (link) {
        var next = active && direction === "asc" ? "desc" : "asc";
        link.setAttribute("href", "?sort=" + th.getAttribute("data-column") + "&dir=" + next + "#stages");
      }
    });
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "?sort=" + column + "&dir=" + direction + "#stages");
    }
  }

  function enableSorting(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var link = th.querySelector("a.sort-link");
      if (!link) return;
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var current = th.getAttribute("aria-sort");
        sortTable(table, th.getAttribute("data-column"), current === "ascending" ? "desc" : "asc");
      });
    });
  }

  function enableRefresh() {
    var seconds = Number(document.body.getAttribute("data-refresh-seconds"));
    if (!seconds) return;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), enableSorting);
    enableRefresh();
  });
})();
