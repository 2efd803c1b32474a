"""The ``aura-otel`` command: demo, schema, validate, show, serve, collect, prices."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import conventions as c
from ._util import number_argument
from .errors import AuraOtelError, ConfigurationError
from .masking.logs import mask_line
from .pricing_cli import register as register_prices
from .schema import STAGES, Stage, json_schema, validation_errors
from .settings import Settings

#: Far beyond any useful slow motion (the demo's longest pause, 0.15 s, becomes hours) and
#: far below what ``time.sleep`` refuses.
_MAX_SPEED = 100_000.0


#: A latency scale for ``demo --speed``: what ``time.sleep`` takes (finite, not negative).
_speed = number_argument(
    float, "a number", 0.0, _MAX_SPEED, f"is not a number from 0 to {_MAX_SPEED:g}"
)
_port = number_argument(int, "a port number", 0, 65535, "is not a port number (0-65535)")


def _cmd_demo(args: argparse.Namespace) -> int:
    import shlex
    from urllib.parse import quote

    from rich.markup import escape

    from .demo import run_demo
    from .schema import load_collection, to_dict
    from .store import check_jobs_folder
    from .terminal import make_console, render

    check_jobs_folder(args.jobs_dir or Settings.from_env(masking=False).jobs_dir)
    console = make_console()
    fail_at = Stage(args.fail_at) if args.fail_at else None
    result = run_demo(
        args.jobs_dir,
        job_id=args.job_id,
        fail_at=fail_at,
        speed=args.speed,
        enum_case=args.enum_case,
    )
    doc = to_dict(load_collection(result.path.read_bytes()))
    render(doc, console)
    if result.failed:
        console.print(
            f"[red]The job failed at the {fail_at.value if fail_at else '?'} stage, "
            "as --fail-at asked: the file records it.[/red]"
        )
    # Paths are shown as they are (not read as Rich markup) and the command quoted for a shell,
    # so that it runs as printed whatever the folder's name.
    jobs_dir = shlex.quote(str(result.path.parent.parent))
    console.print(f"\nTelemetry file: [bold]{escape(str(result.path))}[/bold]")
    console.print(
        "View it in the browser:\n"
        f"  aura-otel serve --jobs-dir {escape(jobs_dir)}\n"
        f"  then open http://127.0.0.1:8765/jobs/{escape(quote(result.job_id))}/telemetry",
        soft_wrap=True,
    )
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2)
    if args.output:
        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        print(text)
    return 0


def _read_document(name: str) -> bytes:
    from .settings import DEFAULT_MAX_FILE_BYTES
    from .store import read_named_file

    return read_named_file(name, DEFAULT_MAX_FILE_BYTES)


def _cmd_validate(args: argparse.Namespace) -> int:
    worst = 0
    for name in args.files:
        try:
            data = _read_document(name)
        except (OSError, AuraOtelError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"{name}: cannot read: {reason}", file=sys.stderr)
            worst = 2
            continue
        problems = validation_errors(data)
        if not problems:
            print(f"{name}: valid RunTelemetry v1")
            continue
        worst = max(worst, 1)
        print(f"{name}: {len(problems)} problem(s)")
        for path, message in problems:
            print(f"  {path}: {message}")
    return worst


def _cmd_show(args: argparse.Namespace) -> int:
    from .schema import to_dict
    from .store import JobStore, check_jobs_folder
    from .terminal import render

    settings = Settings.from_env(masking=False)
    target = args.store or (None if args.jobs_dir else settings.store)
    if target:
        from .stores import open_store

        with open_store(target, migrate=False) if _is_pg(target) else open_store(target) as store:
            render(to_dict(store.read(args.job_id)), abandoned_after=settings.abandoned_after)
        return 0
    jobs_dir = args.jobs_dir or settings.jobs_dir
    check_jobs_folder(jobs_dir)
    render(
        to_dict(JobStore(jobs_dir).read(args.job_id)),
        abandoned_after=settings.abandoned_after,
    )
    return 0


def _is_pg(target: str) -> bool:
    from .stores import is_postgres_url

    return is_postgres_url(target)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import run
    from .store import check_jobs_folder

    settings = Settings.from_env(masking=False)
    target = args.store or args.jobs_dir or settings.store or settings.jobs_dir
    if not (args.store or (settings.store and not args.jobs_dir)):  # the jobs folder
        check_jobs_folder(target)
    run(
        jobs_dir=target,
        host=args.host,
        port=args.port,
        jaeger_url=args.jaeger_url or settings.jaeger_url,
        trace_url=args.trace_url or settings.trace_url,
        access_token=args.access_token or settings.access_token,
        max_file_bytes=(
            args.max_file_bytes if args.max_file_bytes is not None else settings.max_file_bytes
        ),
        abandoned_after=(
            args.abandoned_after if args.abandoned_after is not None else settings.abandoned_after
        ),
    )
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .stores import is_postgres_url, redact_url

    settings = Settings.from_env(masking=False)
    url = str(args.store or settings.store or "")
    if not is_postgres_url(url):
        print(
            f"aura-otel: error: db upgrade needs a postgresql:// URL (--store or "
            f"${c.ENV_STORE}); the jobs folder has no schema",
            file=sys.stderr,
        )
        return 2
    from .stores.postgres import PostgresStore

    store = PostgresStore(url, migrate=not args.check, min_size=1, max_size=1)
    with store:
        if args.check:
            print(f"{redact_url(url)}: schema at version {len(store.applied())}, current")
            return 0
        applied = store.applied()
    print(
        f"{redact_url(url)}: schema at version {len(applied)} "
        f"({', '.join(name for _, (name, _c) in sorted(applied.items()))})"
    )
    return 0


def _cmd_db_import(args: argparse.Namespace) -> int:
    from .store import JobStore
    from .stores import is_postgres_url
    from .stores.postgres import PostgresStore
    from .stores.transfer import describe, import_folder

    settings = Settings.from_env(masking=False)
    url = str(args.store or settings.store or "")
    if not is_postgres_url(url):
        print(
            f"aura-otel: error: db import needs a postgresql:// URL (--store or ${c.ENV_STORE})",
            file=sys.stderr,
        )
        return 2
    folder = args.jobs_dir or settings.jobs_dir
    with PostgresStore(url, min_size=1, max_size=1) as store:
        counts = import_folder(JobStore(folder), store)
    print(describe(counts, folder))
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from .receiver.cli import run_collect

    return run_collect(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aura-otel",
        description="OpenTelemetry telemetry for the video pipeline, with RunTelemetry v1 files.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a simulated video job end to end and show it")
    demo.add_argument(
        "--jobs-dir", help=f"where job folders go (default ${c.ENV_JOBS_DIR} or ./jobs)"
    )
    demo.add_argument("--job-id", help="job id to use (default: demo-<time>-<random>)")
    demo.add_argument(
        "--fail-at",
        choices=STAGES,
        metavar="STAGE",
        help=f"make this stage raise, to see a failed job ({', '.join(STAGES)})",
    )
    demo.add_argument(
        "--speed", type=_speed, default=1.0, help="scale the simulated latencies (0: no pauses)"
    )
    demo.add_argument("--enum-case", choices=("lower", "pascal"), help="enum spelling in the file")
    demo.set_defaults(func=_cmd_demo)

    schema = sub.add_parser("schema", help="print the JSON Schema of RunTelemetry v1")
    schema.add_argument("-o", "--output", help="write to this file instead of stdout")
    schema.set_defaults(func=_cmd_schema)

    validate = sub.add_parser(
        "validate", help="check telemetry files against v1; lists every problem"
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=_cmd_validate)

    show = sub.add_parser("show", help="print a job's Run Details in the terminal")
    show.add_argument("job_id", metavar="JOB_ID")
    show.add_argument("--jobs-dir", help=f"default ${c.ENV_JOBS_DIR} or ./jobs")
    show.add_argument("--store", metavar="URL", help=f"postgresql://... (${c.ENV_STORE})")
    show.set_defaults(func=_cmd_show)

    serve = sub.add_parser("serve", help="serve the HTTP API and the Run Details pages")
    serve.add_argument("--jobs-dir", help=f"default ${c.ENV_JOBS_DIR} or ./jobs")
    serve.add_argument(
        "--store",
        metavar="URL",
        help=f"postgresql://user@host/db: read the shared store (${c.ENV_STORE}; "
        "docs/stores.md) [the jobs folder]",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="bind address (non-loopback needs --access-token)"
    )
    serve.add_argument("--port", type=_port, default=8765)
    serve.add_argument(
        "--jaeger-url", help=f"Jaeger UI base URL for trace links (${c.ENV_JAEGER_URL})"
    )
    serve.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        help="trace link of any backend, e.g. 'http://jaeger:16686/trace/{trace_id}' "
        f"(${c.ENV_TRACE_URL}; wins over --jaeger-url)",
    )
    serve.add_argument("--access-token", help=f"required on every request (${c.ENV_ACCESS_TOKEN})")
    serve.add_argument(
        "--max-file-bytes",
        type=int,
        metavar="N",
        help=f"largest telemetry.json to parse (${c.ENV_MAX_FILE_BYTES}, default 32 MiB)",
    )
    serve.add_argument(
        "--abandoned-after",
        type=float,
        metavar="SECONDS",
        help=f"quiet time before a job without an end is shown abandoned "
        f"(${c.ENV_ABANDONED_AFTER}, default 3600)",
    )
    serve.set_defaults(func=_cmd_serve)

    db = sub.add_parser("db", help="manage the PostgreSQL store's schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser(
        "upgrade",
        help="apply pending schema migrations (collect and serve also do it when they start)",
    )
    upgrade.add_argument("--store", metavar="URL", help=f"postgresql://... (${c.ENV_STORE})")
    upgrade.add_argument(
        "--check", action="store_true", help="apply nothing; fail unless the schema is current"
    )
    upgrade.set_defaults(func=_cmd_db_upgrade)
    importer = db_sub.add_parser(
        "import",
        help="copy a jobs folder into the PostgreSQL store "
        "(its spans where journals exist, else its files)",
    )
    importer.add_argument("--jobs-dir", help=f"default ${c.ENV_JOBS_DIR} or ./jobs")
    importer.add_argument("--store", metavar="URL", help=f"postgresql://... (${c.ENV_STORE})")
    importer.set_defaults(func=_cmd_db_import)

    from .receiver.cli import add_collect_parser

    add_collect_parser(sub, _cmd_collect)

    register_prices(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AuraOtelError as exc:
        print(f"aura-otel: error: {mask_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the command needed: one line, no traceback
        print(f"aura-otel: error: {mask_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
