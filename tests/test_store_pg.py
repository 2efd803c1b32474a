"""The PostgreSQL store: migrations, the same documents as the folder, merging, concurrency."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from opentelemetry import trace

from aura_otel.demo import run_pipeline
from aura_otel.errors import ConfigurationError, InvalidJobIdError, TelemetryNotFoundError
from aura_otel.fold import assemble
from aura_otel.schema import Stage, dumps
from aura_otel.stores import LocalStore, open_store, redact_url
from aura_otel.stores.postgres import PostgresStore, migrations

from .conftest import make_pipeline

ROOT = Path(__file__).resolve().parents[1]
JOBS = [("job-ok", None), ("job-tts-failed", Stage.TTS), ("job-render-failed", Stage.RENDER)]


def demo_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """Real demo jobs folded in-process into a jobs folder (their journals hold the units)."""
    pipeline = make_pipeline(tmp_path / "jobs")
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", pipeline.provider)
    for job_id, fail_at in JOBS:
        try:
            run_pipeline(job_id, speed=0.0, fail_at=fail_at)
        except Exception:
            assert fail_at is not None
    pipeline.flush()
    pipeline.provider.shutdown()
    return LocalStore(tmp_path / "jobs")


def test_migrations_are_numbered_and_applied_once(pg_url):
    shipped = migrations()
    assert [v for v, _, _ in shipped] == list(range(1, len(shipped) + 1))
    with PostgresStore(pg_url) as store:
        assert sorted(store.applied()) == [v for v, _, _ in shipped]
        assert store.upgrade() == []  # nothing pending: nothing applied twice


def test_a_changed_or_newer_schema_is_refused(pg_url):
    import psycopg

    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE aura_otel.schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(ConfigurationError, match="differs from the packaged one"):
        PostgresStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE aura_otel.schema_migrations SET checksum = %s WHERE version = 1",
            (__import__("hashlib").sha256(migrations()[0][2].encode()).hexdigest(),),
        )
        conn.execute(
            "INSERT INTO aura_otel.schema_migrations (version, name, checksum) "
            "VALUES (999, '0999_future.sql', 'x')"
        )
    with pytest.raises(ConfigurationError, match="newer than this aura-otel"):
        PostgresStore(pg_url)


def test_db_upgrade_command(pg_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "aura_otel.cli", "db", "upgrade", "--store", pg_url]
    check = subprocess.run(
        [*cmd, "--check"], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert check.returncode == 2 and "db upgrade" in check.stderr  # an empty database is behind
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (
        "schema at version 4 (0001_jobs_and_units.sql, 0002_job_id_search.sql, "
        "0003_job_summaries.sql, 0004_summaries_in_dollars.sql)" in done.stdout
    )
    check = subprocess.run(
        [*cmd, "--check"], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert check.returncode == 0, check.stderr


def test_unreachable_database_is_a_clear_error(pg_cluster):
    url = f"postgresql://postgres:secret@127.0.0.1:{pg_cluster.port}/no_such_database"
    with pytest.raises(ConfigurationError, match="cannot reach PostgreSQL") as err:
        PostgresStore(url, timeout=5)
    assert "secret" not in str(err.value)  # the password never reaches a message


def test_a_password_in_the_query_string_never_reaches_a_message(pg_cluster):
    url = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/no_such_database?password=S3cretPassw0rd"
    with pytest.raises(ConfigurationError, match="cannot reach PostgreSQL") as err:
        PostgresStore(url, timeout=5)
    assert "S3cretPassw0rd" not in str(err.value)
    assert "password=***" in str(err.value)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "aura_otel.cli", "collect", "--store", url),
            *("--store-timeout", "5", "--http", "127.0.0.1:0", "--grpc", "off"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 2, result.stderr
    assert "cannot reach PostgreSQL" in result.stderr
    assert "S3cretPassw0rd" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pw@db/jobs", "postgresql://app:***@db/jobs"),
        (
            "postgresql://app@db/jobs?sslmode=require&PassWord=pw",
            "postgresql://app@db/jobs?sslmode=require&PassWord=***",
        ),
        (
            "postgresql://db/jobs?sslpassword=pw&application_name=x",
            "postgresql://db/jobs?sslpassword=***&application_name=x",
        ),
        ("postgresql://db/jobs", "postgresql://db/jobs"),
        # libpq takes every character up to the '@' as the user and password: '#', '?' and
        # '[' (common in generated passwords) too, where a URL parser would stop.
        ("postgresql://app:se#cr?et@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("postgresql://app:s[cr]et@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app@db/jobs?password=se#cret", "postgresql://app@db/jobs?password=***"),
        ("postgresql://app:pw@[::1]:5432,h2/jobs", "postgresql://app:***@[::1]:5432,h2/jobs"),
        # A base64 password ('/' and '+') not percent-encoded: libpq then refuses the URL, and
        # the error line that quotes it must not show the password either.
        ("postgresql://app:Ab3/xY9+kQ@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        (
            "postgresql://app:a/b@c@db/jobs?sslmode=require",
            "postgresql://app:***@db/jobs?sslmode=require",
        ),
        ("postgresql://db:5432/jobs?user=me@corp", "postgresql://db:5432/jobs?user=me@corp"),
    ],
)
def test_store_urls_are_shown_without_passwords(url, shown):
    assert redact_url(url) == shown


def test_a_password_libpq_reads_to_the_at_sign_never_reaches_a_message(pg_cluster):
    import psycopg

    url = f"postgresql://postgres:Xk3#vQ9?pL@127.0.0.1:{pg_cluster.port}/no_such_database"
    assert psycopg.conninfo.conninfo_to_dict(url)["password"] == "Xk3#vQ9?pL"
    with pytest.raises(ConfigurationError, match="cannot reach PostgreSQL") as err:
        PostgresStore(url, timeout=5)
    for piece in ("Xk3", "vQ9", "pL"):
        assert piece not in str(err.value)


def test_bad_store_urls_are_refused():
    with pytest.raises(ConfigurationError, match="unsupported store URL scheme"):
        open_store("mysql://db/jobs")


def test_same_bytes_as_the_folder_store(tmp_path, monkeypatch, pg_url):
    local = demo_jobs(tmp_path, monkeypatch)
    with PostgresStore(pg_url) as store:
        for job_id, _ in JOBS:
            store.merge(job_id, local.read_journal(job_id))
            assert store.read_bytes(job_id) == local.read_bytes(job_id)
            assert store.read(job_id) == local.read(job_id)


def test_late_and_repeated_spans_merge_into_one_document(tmp_path, monkeypatch, pg_url):
    local = demo_jobs(tmp_path, monkeypatch)
    units = local.read_journal("job-tts-failed")
    items = list(units.items())
    with PostgresStore(pg_url) as store:
        # Arrival in three requests, the root last, the middle one delivered twice.
        thirds = [
            dict(items[: len(items) // 3]),
            dict(items[len(items) // 3 : 2 * len(items) // 3]),
            dict(items[2 * len(items) // 3 :]),
        ]
        for part in (thirds[0], thirds[1], thirds[1], thirds[2]):
            store.merge("job-tts-failed", part)
        assert store.read_units("job-tts-failed") == units
        assert store.read_bytes("job-tts-failed") == local.read_bytes("job-tts-failed")
        # A later unit for a span already stored changes nothing: the first one stays.
        span_id, unit = items[0]
        store.merge("job-tts-failed", {span_id: {**unit, "s": unit["s"] + 1}})
        assert store.read_units("job-tts-failed")[span_id] == unit


def test_reads_validate_ids_and_report_missing_jobs(pg_url):
    with PostgresStore(pg_url) as store:
        with pytest.raises(InvalidJobIdError):
            store.read_bytes("../etc")
        with pytest.raises(InvalidJobIdError):
            store.merge("a/b", {})
        with pytest.raises(TelemetryNotFoundError):
            store.read_bytes("nobody-ran-this")
        assert store.read_units("nobody-ran-this") == {}


def test_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path, monkeypatch, pg_url):
    """Four processes write the same jobs at once, one span per transaction, with overlaps."""
    local = demo_jobs(tmp_path, monkeypatch)
    everything = [
        (job_id, span_id, unit)
        for job_id, _ in JOBS
        for span_id, unit in local.read_journal(job_id).items()
    ]
    rng = random.Random(14)
    shares: list[list] = [[] for _ in range(4)]
    for item in everything:
        for writer in rng.sample(range(4), rng.choice([1, 2, 4])):  # some spans by several
            shares[writer].append(item)
    PostgresStore(pg_url).close()  # migrated once, before the writers race
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    procs = []
    for n, share in enumerate(shares):
        rng.shuffle(share)
        path = tmp_path / f"share-{n}.json"
        path.write_bytes(orjson.dumps(share))
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "pg_writer.py"), pg_url, str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    for proc in procs:  # readiness: each has connected and is waiting for the go
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done"
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT job_id, count(*) FROM aura_otel.units GROUP BY job_id"
        ).fetchall()
    assert dict(rows) == {job_id: len(local.read_journal(job_id)) for job_id, _ in JOBS}
    with PostgresStore(pg_url) as store:
        for job_id, _ in JOBS:
            stored = store.read_units(job_id)
            assert stored == local.read_journal(job_id)  # every unit, each once, unchanged
            # The document reflects every unit: no writer assembled from a stale view.
            assert store.read_bytes(job_id) == dumps(assemble(job_id, stored))
            assert (
                orjson.loads(store.read_bytes(job_id))["records"]
                == orjson.loads(local.read_bytes(job_id))["records"]
            )


def test_the_folder_store_works_without_the_driver(tmp_path):
    """psycopg is an optional extra: without it the folder store, server and receiver import
    and run, and asking for PostgreSQL says which extra to install."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['psycopg_pool'] = None\n"
        "from aura_otel.stores import open_store\n"
        "from aura_otel.server import create_app\n"
        "from aura_otel.receiver import create_receiver\n"
        "from aura_otel.errors import ConfigurationError\n"
        f"store = open_store({str(tmp_path)!r})\n"
        "store.merge('job-1', {'a': {'k': 'root', 's': 1, 'e': 2}})\n"
        "assert store.read('job-1').job_id == 'job-1'\n"
        f"create_app({str(tmp_path)!r})\n"
        "try:\n"
        "    open_store('postgresql://u@127.0.0.1/db')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'aura-otel[postgres]'" in done.stdout


def test_in_process_exporter_writes_the_same_document_to_postgresql(tmp_path, monkeypatch, pg_url):
    """One provider, the same spans to two exporters: the folder's and PostgreSQL's."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from aura_otel import JobContextProcessor, RunTelemetryExporter
    from aura_otel.masking import MaskingSpanProcessor

    folder = RunTelemetryExporter(tmp_path / "folder")
    shared = RunTelemetryExporter(tmp_path / "unused", store=pg_url)
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    for exporter in (folder, shared):
        provider.add_span_processor(
            MaskingSpanProcessor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
        )
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    for job_id, fail_at in JOBS:
        try:
            run_pipeline(job_id, speed=0.0, fail_at=fail_at)
        except Exception:
            assert fail_at is not None
    provider.force_flush()
    provider.shutdown()
    assert not (tmp_path / "unused").exists()
    local = LocalStore(tmp_path / "folder")
    with PostgresStore(pg_url) as store:
        for job_id, _ in JOBS:
            assert store.read_bytes(job_id) == local.read_bytes(job_id)


def test_configure_takes_the_store_from_the_environment(tmp_path, monkeypatch, pg_url):
    from aura_otel import configure

    monkeypatch.setenv("AURA_OTEL_STORE", pg_url)
    telemetry = configure(tracer_provider=None, set_global=False, metrics=False)
    try:
        assert telemetry.exporter is not None
        assert isinstance(telemetry.exporter.shared, PostgresStore)
    finally:
        telemetry.shutdown()


def test_a_bad_store_variable_is_a_configuration_error(monkeypatch):
    from aura_otel.settings import Settings

    monkeypatch.setenv("AURA_OTEL_STORE", "redis://cache/0")
    with pytest.raises(ConfigurationError, match="AURA_OTEL_STORE"):
        Settings.from_env(masking=False)


def test_import_a_folder_then_show_it_from_the_command_line(tmp_path, monkeypatch, pg_url):
    local = demo_jobs(tmp_path, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-m", "aura_otel.cli"]
    done = subprocess.run(
        [*cli, "db", "import", "--jobs-dir", str(local.root), "--store", pg_url],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "3 job(s) from their spans, 0 as documents only, 0 skipped" in done.stdout
    with PostgresStore(pg_url) as store:
        for job_id, _ in JOBS:
            assert store.read_bytes(job_id) == local.read_bytes(job_id)
    shown = subprocess.run(
        [*cli, "show", "job-tts-failed", "--store", pg_url],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "job-tts-failed" in shown.stdout
    missing = subprocess.run(
        [*cli, "show", "no-such-job", "--store", pg_url],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "no telemetry for job 'no-such-job'" in missing.stderr


def test_a_role_without_ddl_rights_uses_a_migrated_database(pg_url):
    """Migrations need DDL rights once; afterwards a role that may only read and write rows
    starts without issuing any DDL."""
    import uuid

    import psycopg

    PostgresStore(pg_url).close()
    role = f"rw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA aura_otel TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA aura_otel TO {role}")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    url = pg_url.replace("postgres@", f"{role}@", 1)
    with PostgresStore(url) as store:
        store.merge("job-1", {"a": {"k": "root", "s": 1, "e": 2}})
        assert store.read("job-1").job_id == "job-1"


def test_without_postgresql_the_tests_skip_but_ci_fails(monkeypatch):
    """Where PostgreSQL is missing the store tests skip, naming why; CI must run them, so
    there the same absence fails."""
    from . import pg_support

    monkeypatch.setattr(pg_support, "find_bindir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        pg_support.need_postgres()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the PostgreSQL tests"):
        pg_support.need_postgres()


def test_a_value_json_cannot_hold_is_stored_in_a_representable_form(pg_url):
    """As the folder's journal does: an integer past 64 bits is written representably, and the
    document is built from what was stored, so both agree."""
    unit = {"k": "root", "s": 1, "e": 2, "corr": "c", "proj": 2**70}
    with PostgresStore(pg_url) as store:
        first = store.merge("job-big", {"root": unit})
        assert first == store.read_units("job-big")
        assert first["root"]["proj"] != 2**70
        assert store.read_bytes("job-big") == dumps(assemble("job-big", first))


def test_a_nul_character_in_a_summarised_name_loses_nothing(tmp_path, monkeypatch, pg_url):
    """PostgreSQL's text refuses NUL characters; a span may carry them (a provider or project
    name), as the folder accepts. Neither that job nor the others written with it are lost,
    both stores agree byte for byte, and the fleet view reads the job back."""
    from datetime import timedelta

    local = demo_jobs(tmp_path, monkeypatch)
    odd = {
        span_id: {**unit, "proj": "proj\x00demo"}
        | (
            {"r": {**unit["r"], "project_id": "proj\x00demo", "provider": "open\x00ai"}}
            if unit["k"] == "stage"
            else {}
        )
        for span_id, unit in local.read_journal("job-ok").items()
    }
    folder = LocalStore(tmp_path / "folder")
    folder.merge("job-ok", odd)
    with PostgresStore(pg_url) as store:
        store.merge_many({"job-ok": odd, "job-tts-failed": local.read_journal("job-tts-failed")})
        assert store.read_bytes("job-ok") == folder.read_bytes("job-ok")
        assert store.read_bytes("job-tts-failed") == local.read_bytes("job-tts-failed")
        source = store.job_source()
        (summary,) = [s for s in source.iter_summaries() if s.job_id == "job-ok"]
        assert summary.project == "proj\x00demo"
        assert any(op.provider == "open\x00ai" for op in summary.ops)
        start = datetime.fromtimestamp(summary.started, UTC)
        assert "job-ok" in {
            s.job_id for s in source.history(start, start + timedelta(microseconds=1))
        }
        assert [s.job_id for s in source.project_summaries("proj\x00demo")] == ["job-ok"]


def test_import_keeps_what_a_damaged_journal_lost_and_goes_on(tmp_path, monkeypatch, pg_url):
    """A journal the folder's writers cope with (a line lost, a unit the fold cannot take)
    costs neither that job's records nor the jobs imported after it: each job in PostgreSQL
    shows what the folder shows."""
    from aura_otel.store import JOURNAL_FILE, journal_line
    from aura_otel.stores.transfer import import_folder

    local = demo_jobs(tmp_path, monkeypatch)
    lost = local.read_journal("job-ok")
    half = dict(list(lost.items())[: len(lost) // 2])
    rest = dict(list(lost.items())[len(lost) // 2 :])
    # A line of job-ok's journal damaged (half its units gone); its file still shows them.
    (local.root / "job-ok" / JOURNAL_FILE).write_bytes(
        journal_line(half)[:-10] + b"\n" + journal_line(rest)
    )
    # A unit no fold makes, appended to job-tts-failed's journal.
    with open(local.root / "job-tts-failed" / JOURNAL_FILE, "ab") as fh:
        fh.write(journal_line({"0123456789abcdef": {"k": "stage", "s": "later", "e": 2}}))
    with PostgresStore(pg_url) as store:
        counts = import_folder(local, store)
        for job_id, _ in JOBS:
            assert store.read_bytes(job_id) == local.read_bytes(job_id), job_id
    assert counts.merged + counts.documents == len(JOBS)
    assert counts.skipped == 0


def test_a_search_no_job_id_can_hold_finds_nothing(tmp_path, pg_url):
    """A NUL character (``?q=%00``) cannot be in a job id, and PostgreSQL's text refuses it:
    the list is empty, as on the folder, not a failed request."""
    from aura_otel.stores import JobFilter

    unit = {"k": "root", "s": 1, "e": 2}
    folder = LocalStore(tmp_path / "jobs")
    folder.merge("job-1", {"a": unit})
    with PostgresStore(pg_url) as store:
        store.merge("job-1", {"a": unit})
        for search in ("job\x00", "\x00"):
            filters = JobFilter(search=search)
            assert store.lister().page(filters=filters).total == 0
            assert folder.lister().page(filters=filters).total == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_uses_the_parents_database_sessions(pg_url):
    """A prefork worker gets connections of its own: a socket shared by two processes mixes
    their messages. The parent's sessions stay usable after the child wrote and exited."""
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    try:

        def session() -> int:
            with store.connection() as conn:
                return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

        parent = session()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its session, store a job, leave as prefork workers do
            code = 1
            try:
                os.close(read)
                os.write(write, str(session()).encode())
                store.merge("forked-child", {"a" * 16: {"k": "root", "s": 1, "e": 2}})
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        child = int(os.read(read, 64) or b"0")
        os.close(read)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child not in (0, parent)
        assert session() == parent  # the parent's own session lives on
        assert store.read_bytes("forked-child")
    finally:
        store.close()
