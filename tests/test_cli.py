"""The aura-otel command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson

from aura_otel.schema import validation_errors

CLI = [sys.executable, "-m", "aura_otel.cli"]


def run(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        check=False,
    )


def test_demo_writes_a_valid_file_and_prints_the_view(tmp_path: Path) -> None:
    result = run("demo", "--jobs-dir", str(tmp_path), "--job-id", "demo-1", "--speed", "0.2")
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "demo-1" / "telemetry.json").read_bytes()
    assert validation_errors(data) == []
    doc = orjson.loads(data)
    stages = [r["stage"] for r in doc["records"]]
    assert set(stages) == {"brief", "plan", "script", "ssml", "tts", "visuals", "render", "post"}
    assert doc["summary"]["cache_hits"] == 1 and doc["summary"]["total_retries"] == 1
    assert [r["result_status"] for r in doc["records"]].count("warn") == 1
    for label in (
        "Total Operations",
        "Success Rate",
        "Total Cost",
        "Total Latency",
        "Total Tokens",
        "Cache Hits",
        "Cost by Stage",
        str(tmp_path / "demo-1" / "telemetry.json"),
        "aura-otel serve --jobs-dir",
    ):
        assert label in result.stdout


def test_demo_fail_at_records_the_failed_stage(tmp_path: Path) -> None:
    result = run(
        "demo",
        "--jobs-dir",
        str(tmp_path),
        "--job-id",
        "demo-f",
        "--fail-at",
        "tts",
        "--speed",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    doc = orjson.loads((tmp_path / "demo-f" / "telemetry.json").read_bytes())
    assert doc["records"][-1]["stage"] == "tts"
    assert doc["records"][-1]["result_status"] == "error"
    assert doc["summary"]["failed_operations"] == 1
    assert "failed" in result.stdout


def test_demo_uses_jobs_dir_from_the_environment(tmp_path: Path) -> None:
    result = run(
        "demo",
        "--job-id",
        "env-job",
        "--speed",
        "0.1",
        env={"AURA_OTEL_JOBS_DIR": str(tmp_path / "from-env")},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env" / "env-job" / "telemetry.json").is_file()


def test_schema_command_prints_json_schema() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "RunTelemetry v1" and "Record" in schema["$defs"]


def test_validate_reports_every_violation_with_its_path(tmp_path: Path, examples: Path) -> None:
    good = run("validate", str(examples / "reference-job.pascal.json"))
    assert good.returncode == 0 and "valid" in good.stdout
    doc = orjson.loads((examples / "reference-job.json").read_bytes())
    doc["records"][1]["latency_ms"] = "slow"
    doc["records"][2]["result_status"] = "exploded"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(doc))
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert "$.records[1].latency_ms" in result.stdout
    assert "$.records[2].result_status" in result.stdout
    assert "2 problem(s)" in result.stdout
    missing = run("validate", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_validate_never_waits_on_a_fifo_and_goes_on_with_the_next_file(
    tmp_path: Path, examples: Path
) -> None:
    fifo = tmp_path / "telemetry.json"
    os.mkfifo(fifo)  # nobody ever writes to it: reading it would wait for good
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (33 << 20))
    result = run("validate", str(fifo), str(big), str(examples / "reference-job.json"))
    assert result.returncode == 2
    assert f"{fifo}: cannot read" in result.stderr and "not a regular file" in result.stderr
    assert f"{big}: cannot read" in result.stderr
    assert "reference-job.json: valid" in result.stdout


def test_show_prints_a_job_and_unknown_job_is_a_clear_error(tmp_path: Path, examples: Path) -> None:
    (tmp_path / "job-abc123").mkdir()
    (tmp_path / "job-abc123" / "telemetry.json").write_bytes(
        (examples / "reference-job.json").read_bytes()
    )
    shown = run("show", "job-abc123", "--jobs-dir", str(tmp_path))
    assert shown.returncode == 0 and "66.7%" in shown.stdout and "$0.0900" in shown.stdout
    missing = run("show", "ghost", "--jobs-dir", str(tmp_path))
    assert missing.returncode == 2 and "no telemetry for job 'ghost'" in missing.stderr
    unsafe = run("show", "../etc", "--jobs-dir", str(tmp_path))
    assert unsafe.returncode == 2 and "not a safe" in unsafe.stderr


def test_bad_demo_speed_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    for speed in ("-1", "nan", "inf", "1e308"):
        result = run("demo", "--jobs-dir", str(tmp_path), "--speed", speed)
        assert result.returncode == 2, (speed, result.stderr)
        assert "--speed" in result.stderr and "Traceback" not in result.stderr, speed
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_serve_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    for port in ("70000", "-1"):
        result = run("serve", "--jobs-dir", str(tmp_path), "--port", port)
        assert result.returncode == 2, (port, result.stderr)
        assert "--port" in result.stderr and "Traceback" not in result.stderr, port


def test_a_jobs_dir_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "jobs"
    not_a_folder.write_text("a file, not the jobs folder")
    for args in (
        ("demo", "--speed", "0", "--job-id", "d-1"),
        ("show", "d-1"),
        ("serve", "--port", "0"),
    ):
        result = run(*args, "--jobs-dir", str(not_a_folder))
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines == [f"aura-otel: error: the jobs folder {not_a_folder} is not a folder"], args
    assert not_a_folder.read_text() == "a file, not the jobs folder"


def test_schema_output_to_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "schema.json"
    result = run("schema", "-o", str(target))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"aura-otel: error: cannot write {target}: No such file or directory"
    ]


def test_demo_prints_a_serve_command_that_works_as_printed(tmp_path: Path) -> None:
    """A jobs folder with a space or brackets in its name is shown quoted and unaltered."""
    import shlex

    jobs = tmp_path / "my jobs [v2]"
    result = run("demo", "--jobs-dir", str(jobs), "--job-id", "d-q", "--speed", "0")
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "aura-otel serve" in ln)
    words = shlex.split(line)
    assert words[:3] == ["aura-otel", "serve", "--jobs-dir"] and Path(words[3]) == jobs
    assert f"Telemetry file: {jobs / 'd-q' / 'telemetry.json'}" in result.stdout
