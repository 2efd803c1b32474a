"""End to end against a real trace backend: Arize Phoenix, over OTLP/HTTP and OTLP/gRPC.

Phoenix runs as its own process from its own virtualenv (it is never imported here), bound to
127.0.0.1. The demo job runs through the real ``aura-otel demo`` command with only the standard
``OTEL_EXPORTER_OTLP_*`` variables pointing at Phoenix, and a second job seeds secrets into
metadata, messages and an exception. The spans are read back through Phoenix's REST API
(``GET /v1/projects/{project}/spans``): every stage span of the demo is there with its GenAI
attributes and the job id, they agree with the v1 file, and no seeded secret reached Phoenix.

Where Phoenix's python is looked for: ``$AURA_OTEL_PHOENIX_PYTHON``, else
``<repo>/.venv-phoenix/bin/python`` (what CI creates).
Locally the test is skipped when none exists; with ``CI`` set it fails instead.

Phoenix binds its gRPC receiver to every interface (``[::]``) whatever ``PHOENIX_HOST`` says;
the launcher below rewrites that one bind to 127.0.0.1 before Phoenix starts, and the fixture
checks in ``/proc/net`` that nothing Phoenix listens on is reachable from outside.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aura_otel import conventions as c
from aura_otel.exporter import job_trace_ids
from aura_otel.store import JobStore

pytestmark = [pytest.mark.phoenix, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STARTUP_TIMEOUT = 180.0
INGEST_TIMEOUT = 60.0
DEMO_STAGES = ("brief", "plan", "script", "ssml", "tts", "visuals", "render", "post")

#: Run by Phoenix's own python: keep its gRPC receiver on loopback, then start Phoenix.
LAUNCHER = textwrap.dedent(
    """
    import sys
    from grpc.aio import _server

    def _loopback(original):
        def bind(self, address, *args):
            port = address.rpartition(":")[2]
            return original(self, f"127.0.0.1:{port}", *args)
        return bind

    _server.Server.add_insecure_port = _loopback(_server.Server.add_insecure_port)
    _server.Server.add_secure_port = _loopback(_server.Server.add_secure_port)

    from phoenix.server.main import main
    sys.argv = ["phoenix", "serve"]
    sys.exit(main())
    """
)


def phoenix_python() -> Path | None:
    candidates = [
        os.environ.get("AURA_OTEL_PHOENIX_PYTHON"),
        str(ROOT / ".venv-phoenix" / "bin" / "python"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> list[str]:
    """Addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            assert len(address) == width
            found.append(str(ipaddress.ip_address(packed)))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@dataclass
class Phoenix:
    http_port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span of a project, through the REST API (following pagination)."""
        spans: list[dict[str, Any]] = []
        cursor = None
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                response = client.get(f"/v1/projects/{project}/spans", params=params)
                if response.status_code == 404:
                    return []  # the project appears with its first span
                response.raise_for_status()
                body = response.json()
                spans.extend(body["data"])
                cursor = body.get("next_cursor")
                if not cursor:
                    return spans

    def wait_for_spans(self, project: str, expected: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + INGEST_TIMEOUT
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            spans = self.spans(project)
            if len(spans) >= expected:
                return spans
            time.sleep(0.5)
        pytest.fail(f"Phoenix holds {len(spans)} spans for {project}, expected {expected}")


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    python = phoenix_python()
    if python is None:
        reason = (
            "Arize Phoenix not found: set AURA_OTEL_PHOENIX_PYTHON to a python with arize-phoenix, "
            "or create .venv-phoenix (python -m venv .venv-phoenix && "
            ".venv-phoenix/bin/pip install arize-phoenix); CI always runs this test"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("phoenix")
    http_port, grpc_port = _free_port(), _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(http_port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = workdir / "phoenix.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-c", LAUNCHER],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Phoenix(http_port, grpc_port, process, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"Phoenix exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(
                    f"{server.base_url}/healthz", timeout=2
                ).status_code == 200 and _listening(grpc_port):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Phoenix did not start in {STARTUP_TIMEOUT:g}s:\n{log.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        for port in (http_port, grpc_port):
            addresses = _listening(port)
            assert addresses and all(_is_loopback(a) for a in addresses), (
                f"Phoenix listens beyond loopback on port {port}: {addresses}"
            )
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


# -- the seeded job --------------------------------------------------------------------------------
def seeded_secrets() -> list[tuple[str, tuple[str, ...]]]:
    """(text, needles): the masking corpus when present, else a small built-in one."""
    try:
        from .masking.corpus import (
            secrets as corpus,  # the masking module's seeded corpus
        )
    except ImportError:
        corpus = None
    if corpus is not None:
        return [(s.text, tuple(s.needles)) for s in corpus()]
    openai = "sk-proj-" + "Q7vW2xK9pL4mN8rT1yU6zB3cD5fG0hJ"
    return [
        (f"OpenAI call failed with key {openai}", (openai,)),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhdXJhIn0.c2VjcmV0c2ln",
            ("c2VjcmV0c2ln",),
        ),
        ("aws access key AKIAQ3EGRBKLMNXZ7Y2W rejected", ("AKIAQ3EGRBKLMNXZ7Y2W",)),
        ("db at postgres://studio:Tr0ub4dor-9x@db.internal/app", ("Tr0ub4dor-9x",)),
        (
            "hmac 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ("9f86d081884c7d659a2feaa0c55ad015",),
        ),
        ("send it to jane.doe@example.com", ("jane.doe@example.com",)),
        ("api_key=hunter2hunter2hunter2", ("hunter2hunter2hunter2",)),
    ]


SEEDED_JOB = textwrap.dedent(
    """
    import json
    import sys

    import aura_otel
    from aura_otel import Stage, job, stage

    job_id, secrets_file = sys.argv[1], sys.argv[2]
    secrets = json.loads(open(secrets_file, encoding="utf-8").read())
    telemetry = aura_otel.configure(service_name="aura-e2e-seeded")
    with job(job_id, metadata={"brief": secrets[0]}):
        for index, text in enumerate(secrets):
            with stage(Stage.SCRIPT, provider="openai", model="gpt-4o", scene_index=index,
                       metadata={"note": text, "nested": {"deeper": [text]}}) as s:
                s.record_usage(tokens_in=10, tokens_out=5)
                s.warn("provider said: " + text)
        try:
            with stage(Stage.RENDER, provider="ffmpeg"):
                raise RuntimeError("render failed: " + secrets[-1])
        except RuntimeError:
            pass
    telemetry.shutdown()
    """
)


def _client_env(tmp_path: Path, phoenix: Phoenix, protocol: str, project: str) -> dict[str, str]:
    endpoint = (
        phoenix.base_url if protocol == "http/protobuf" else f"http://127.0.0.1:{phoenix.grpc_port}"
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]),
        c.ENV_JOBS_DIR: str(tmp_path / "jobs"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        # Phoenix files spans under the project its resource attribute names.
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        # Phoenix has no OTLP metrics endpoint: traces only (metrics have their own tests).
        "OTEL_METRICS_EXPORTER": "none",
    }


def _run(args: list[str], env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_demo_and_seeded_jobs_reach_phoenix_complete_and_masked(
    tmp_path: Path, phoenix: Phoenix, protocol: str
) -> None:
    project = "aura-e2e-" + ("http" if protocol == "http/protobuf" else "grpc")
    env = _client_env(tmp_path, phoenix, protocol, project)
    demo_job, seeded_job = f"demo-{project}", f"seeded-{project}"
    cli = "import sys; from aura_otel.cli import main; sys.exit(main(sys.argv[1:]))"
    _run(["-c", cli, "demo", "--job-id", demo_job, "--speed", "0.2"], env, tmp_path)

    secrets = seeded_secrets()
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps([text for text, _ in secrets]))
    script = tmp_path / "seeded_job.py"
    script.write_text(SEEDED_JOB)
    _run([str(script), seeded_job, str(secrets_file)], env, tmp_path)

    store = JobStore(tmp_path / "jobs")
    demo_doc = json.loads(store.telemetry_path(demo_job).read_text())
    seeded_doc = json.loads(store.telemetry_path(seeded_job).read_text())
    # one span per record plus the job span, for each job
    expected = len(demo_doc["records"]) + 1 + len(seeded_doc["records"]) + 1
    spans = phoenix.wait_for_spans(project, expected)

    # -- the demo job: every stage span, with its GenAI attributes and the job id ---------------
    demo = [s for s in spans if s["attributes"].get(c.JOB_ID) == demo_job]
    names = sorted(s["name"] for s in demo)
    assert names.count(c.JOB_SPAN_NAME) == 1
    assert {n.removeprefix(c.STAGE_SPAN_PREFIX) for n in names if n != c.JOB_SPAN_NAME} == set(
        DEMO_STAGES
    )
    assert len(demo) == len(demo_doc["records"]) + 1
    root = next(s for s in demo if s["name"] == c.JOB_SPAN_NAME)
    assert root["attributes"][c.CORRELATION_ID] == demo_doc["correlation_id"]
    assert {s["context"]["trace_id"] for s in demo} == set(job_trace_ids(store, demo_job))
    by_stage = {
        (s["attributes"][c.STAGE], s["attributes"].get(c.SCENE_INDEX)): s["attributes"]
        for s in demo
        if s["name"] != c.JOB_SPAN_NAME
    }
    for record in demo_doc["records"]:
        attrs = by_stage[(record["stage"], record.get("scene_index"))]
        assert attrs[c.JOB_ID] == demo_job
        if "provider" in record:
            assert attrs[c.GEN_AI_PROVIDER_NAME] == record["provider"]
        if "model_id" in record:
            assert record["model_id"] in (
                attrs.get(c.GEN_AI_RESPONSE_MODEL),
                attrs.get(c.GEN_AI_REQUEST_MODEL),
            )
        if "tokens_in" in record:
            assert attrs[c.GEN_AI_USAGE_INPUT_TOKENS] == record["tokens_in"]
            assert attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS] == record["tokens_out"]
    script = by_stage[("script", None)]
    assert (script[c.GEN_AI_PROVIDER_NAME], script[c.GEN_AI_REQUEST_MODEL]) == ("openai", "gpt-4o")
    assert script[c.GEN_AI_USAGE_INPUT_TOKENS] == 1850

    # -- the seeded job: no secret reached Phoenix (nor the v1 file) ------------------------------
    seeded = [s for s in spans if s["attributes"].get(c.JOB_ID) == seeded_job]
    assert len(seeded) == len(seeded_doc["records"]) + 1
    assert any(s["status_code"] == "ERROR" for s in seeded)  # the failed render made it too
    phoenix_text = json.dumps(seeded)
    file_text = store.telemetry_path(seeded_job).read_text()
    leaked = [n for _, needles in secrets for n in needles if n in phoenix_text or n in file_text]
    assert not leaked, (
        f"{len(leaked)} seeded secrets reached Phoenix or the file, e.g. {leaked[:3]}"
    )
    assert "[REDACTED]" in phoenix_text
