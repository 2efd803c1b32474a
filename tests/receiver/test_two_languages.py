"""Two real services in two languages, one job, one v1 file.

A Python job runner (aura-otel in-process, OTLP to the receiver) runs brief, script and render;
it calls a Node.js media service (the official OpenTelemetry JavaScript SDK, OTLP/HTTP protobuf
to the receiver) over HTTP for tts and visuals, with W3C ``traceparent`` and ``baggage``. Both
send to the same token-protected receiver, in their own processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aura_otel.schema import validation_errors
from aura_otel.store import JobStore

from .support import SRC, running_receiver, telemetry

NODE_DIR = Path(__file__).resolve().parent / "node_service"
TOKEN = "two-languages-token-0123456789"


def _node_ready() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm are not installed (CI installs Debian's nodejs and npm)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    if not (NODE_DIR / "node_modules" / "@opentelemetry" / "sdk-trace-node").is_dir():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{result.stderr[-4000:]}")
    return node


@pytest.mark.slow
def test_a_job_across_python_and_node_is_one_file(tmp_path):
    node = _node_ready()
    with running_receiver(tmp_path / "jobs", access_token=TOKEN) as receiver:
        otlp_env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url("http") + "/v1/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {TOKEN}",
        }
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        media = subprocess.Popen(
            [node, str(NODE_DIR / "service.js")],
            cwd=NODE_DIR,
            env={**base_env, **otlp_env, "OTEL_SERVICE_NAME": "media-service"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert media.stdout is not None
            port = json.loads(media.stdout.readline())["port"]  # blocks until it listens
            runner = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("python_service.py")),
                    "xlang-1",
                    f"http://127.0.0.1:{port}",
                ],
                env={
                    **base_env,
                    **otlp_env,
                    "PYTHONPATH": str(SRC),
                    "AURA_OTEL_JOBS_DIR": str(tmp_path / "runner-local"),
                },
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert runner.returncode == 0, runner.stderr
        finally:
            media.terminate()
            media.wait(60)
        receiver.flush()
        counts = receiver.counters()

    doc = telemetry(tmp_path / "jobs", "xlang-1")
    assert validation_errors((tmp_path / "jobs" / "xlang-1" / "telemetry.json").read_bytes()) == []
    records = doc["records"]
    stages = [r["stage"] for r in records]
    # Python's stages are ordered by the clock; Node's three ran within the same millisecond or
    # so, and records with equal times are ordered by span id: compare them as a set.
    assert stages[:2] == ["brief", "script"] and stages[-1] == "render"
    assert sorted(stages[2:5]) == ["tts", "visuals", "visuals"]
    assert doc["collection_ended_at"] is not None
    assert doc["summary"]["total_operations"] == 6
    # The job's ids travelled to Node in the baggage: one correlation id, one project.
    assert {r["correlation_id"] for r in records} == {doc["correlation_id"]}
    assert {r["project_id"] for r in records} == {"proj-two-languages"}
    tts = next(r for r in records if r["stage"] == "tts")
    assert (tts["provider"], tts["model_id"]) == ("elevenlabs", "eleven_multilingual_v2")
    assert tts["metadata"]["voice_name"] == "Rachel" and tts["cost_estimate"] > 0
    scenes = {r["scene_index"]: r for r in records if r["stage"] == "visuals"}
    assert scenes[0]["result_status"] == "ok" and scenes[0]["provider"] == "openai"
    assert scenes[1]["result_status"] == "warn" and scenes[1]["provider"] == "stability"
    # One trace: Node's stage spans hang under the Python job's root span.
    units = JobStore(tmp_path / "jobs").read_journal("xlang-1")
    root_id = next(sid for sid, u in units.items() if u["k"] == "root")
    assert [u.get("p") for u in units.values() if u["k"] == "stage"].count(root_id) == 6
    # Finished as soon as the root arrived with nothing missing below it: no quiet period.
    assert counts["jobs_finalized"] == 1 and counts["jobs_finalized_quiet"] == 0
