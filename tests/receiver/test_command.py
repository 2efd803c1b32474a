"""``aura-otel collect`` as a user runs it: bad settings and busy ports are clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx

from .support import SRC, CollectProcess, demo_job_spans, encode


def collect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aura_otel.cli", "collect", *args],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_settings_exit_2_with_the_reason(tmp_path):
    cases = [
        (("--http", "off", "--grpc", "off"), "nothing to serve"),
        (("--http", "nonsense"), "--http must be HOST:PORT"),
        (("--quiet-period", "-1", "--http", "127.0.0.1:0", "--grpc", "off"), "quiet_period"),
        (("--workers", "0"), "--workers must be at least 1"),
        (("--receive-timeout", "0", "--http", "127.0.0.1:0", "--grpc", "off"), "receive_timeout"),
        (
            ("--max-decompressed-bytes", "3000000000", "--http", "127.0.0.1:0"),
            "grpcio's limit",
        ),
    ]
    for args, words in cases:
        result = collect("--jobs-dir", str(tmp_path), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
    assert not (tmp_path / "jobs").exists()


def test_a_jobs_dir_that_is_a_file_is_one_clear_error(tmp_path):
    not_a_folder = tmp_path / "jobs"
    not_a_folder.write_text("a file, not the jobs folder")
    for workers in ("1", "2"):
        result = collect(
            "--jobs-dir",
            str(not_a_folder),
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "off",
            "--workers",
            workers,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"aura-otel: error: the jobs folder {not_a_folder} is not a folder"
        ], workers
    assert not_a_folder.read_text() == "a file, not the jobs folder"


def test_a_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = collect(
            "--jobs-dir", str(tmp_path), "--http", f"127.0.0.1:{port}", "--grpc", "off"
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr and "in use" in result.stderr


def test_sigterm_writes_every_pending_file_and_exits_0(tmp_path):
    receiver = CollectProcess(tmp_path, "--write-interval", "3600")  # nothing written before
    try:
        response = httpx.post(
            receiver.http_url + "/v1/traces",
            content=encode(demo_job_spans("term-1")).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        assert receiver.stop() == 0
    assert (tmp_path / "term-1" / "telemetry.json").is_file()
    assert not list(tmp_path.glob(".aura-receiver-wal.*"))  # nothing left to repair


def test_the_serving_process_collects_cycles_less_often_and_skips_its_start_up():
    import gc

    from aura_otel.receiver.cli import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0  # start-up objects are out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
