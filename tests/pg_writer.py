"""A writer process for the concurrency test: merges its share of units one span at a time.

Run as ``python tests/pg_writer.py URL FILE``; FILE holds ``[[job_id, span_id, unit], ...]``.
It waits on stdin for a line before writing, so every writer starts together.
"""

from __future__ import annotations

import sys

import orjson

from aura_otel.stores import open_store


def main() -> None:
    url, path = sys.argv[1], sys.argv[2]
    with open(path, "rb") as fh:
        items = orjson.loads(fh.read())
    store = open_store(url)
    print("ready", flush=True)
    sys.stdin.readline()
    for job_id, span_id, unit in items:
        store.merge(job_id, {span_id: unit})
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
