// aura-otel pages: everything is readable without this script; it only adds instant table
// sorting (the header links sort on the server without it), self-refresh of running jobs, and
// the operation drill-down in a side panel (without it, each operation's link opens its page).
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

  // The drill-down: an operation's own page, shown in a side panel without leaving the run.
  var lastTrigger = null;

  function closePanel(panel) {
    panel.hidden = true;
    panel.innerHTML = "";
    if (lastTrigger) lastTrigger.focus();
  }

  function openOperation(link) {
    var panel = document.getElementById("op-panel");
    var template = document.getElementById("op-template-" + link.getAttribute("data-op"));
    if (!panel || !template) return false;
    lastTrigger = link.getAttribute("aria-hidden") === "true"
      ? document.querySelector('.timeline-label[data-op="' + link.getAttribute("data-op") + '"]') : link;
    panel.innerHTML = "";
    var close = document.createElement("button");
    close.type = "button";
    close.className = "button op-close";
    close.textContent = "Close";
    close.addEventListener("click", function () { closePanel(panel); });
    panel.appendChild(close);
    panel.appendChild(document.importNode(template.content, true));
    // Inside the panel, the previous/next links move the panel instead of leaving the page.
    Array.prototype.forEach.call(panel.querySelectorAll(".op-nav a[rel]"), function (a) {
      var target = Number(link.getAttribute("data-op")) + (a.getAttribute("rel") === "next" ? 1 : -1);
      a.classList.add("op-link");
      a.setAttribute("data-op", String(target));
    });
    panel.hidden = false;
    var heading = panel.querySelector("#op-heading");
    if (heading) heading.focus();
    return true;
  }

  function enableDrillDown() {
    document.addEventListener("click", function (event) {
      var link = event.target.closest ? event.target.closest("a.op-link") : null;
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      if (openOperation(link)) event.preventDefault();
    });
    document.addEventListener("keydown", function (event) {
      var panel = document.getElementById("op-panel");
      if (event.key === "Escape" && panel && !panel.hidden) closePanel(panel);
    });
  }

  function enableRefresh() {
    var seconds = Number(document.body.getAttribute("data-refresh-seconds"));
    if (!seconds) return;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), enableSorting);
    enableDrillDown();
    enableRefresh();
  });
})();
