"""Zero-code setup through the real ``opentelemetry-instrument`` command.

A small service that never imports aura-otel runs under ``opentelemetry-instrument`` with
aura-otel selected as distro and configurator. It makes a job and a stage through the plain
OpenTelemetry API and calls an HTTP server on 127.0.0.1 with urllib. The test then checks
that the v1 file was written with masking applied, that the urllib instrumentation still
activated (its client span reaches the OTLP receiver, stamped with the job id), and that
metrics were exported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

from aura_otel import conventions as c
from aura_otel.distro import ENTRY_POINT_NAME, AuraOtelConfigurator, AuraOtelDistro

from .otlp_receivers import http_receiver

#: The real ``opentelemetry-instrument`` command in subprocesses: a system test.
pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
GROUPS = {
    "opentelemetry_distro": AuraOtelDistro,
    "opentelemetry_configurator": AuraOtelConfigurator,
}

SECRET_KEY = "sk-proj-Zq8vN3kLm2Xp7Rt4Yw9Bc6Df"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdHVkaW8ifQ.c2lnbmF0dXJl"

APP = textwrap.dedent(
    f'''
    """An existing service: plain OpenTelemetry API and urllib, no aura-otel import."""
    import sys
    import urllib.request

    from opentelemetry import trace

    tracer = trace.get_tracer("legacy.studio")
    with tracer.start_as_current_span(
        "aura.job", attributes={{"aura.job.id": "job-auto-1", "aura.correlation.id": "corr-auto-1"}}
    ):
        with tracer.start_as_current_span(
            "aura.stage.script",
            attributes={{
                "aura.stage": "script",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 80,
                "aura.cost.amount": 0.25,
                "aura.meta.api_key": "{SECRET_KEY}",
                "aura.result.message": "called the model with {BEARER}",
            }},
        ):
            with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
                assert response.read() == b"ok"
    print("service done", flush=True)
    '''
)


def _declared_entry_points() -> dict[str, dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project.get("entry-points", {})


def test_pyproject_declares_the_distro_and_the_configurator() -> None:
    declared = _declared_entry_points()
    for group, cls in GROUPS.items():
        target = declared[group][ENTRY_POINT_NAME]
        assert target == f"{cls.__module__}:{cls.__name__}"
    assert issubclass(AuraOtelDistro, BaseDistro)
    assert issubclass(AuraOtelConfigurator, _BaseConfigurator)


def test_the_distro_selects_aura_otels_configurator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_CONFIGURATOR", raising=False)
    AuraOtelDistro().configure()
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == ENTRY_POINT_NAME
    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "someone_else")
    AuraOtelDistro().configure()
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "someone_else"  # an explicit choice wins


def _metadata_path(tmp_path: Path) -> list[str]:
    """Where the child finds aura-otel's entry points.

    An installed aura-otel (``pip install -e .``, as CI does) declares them already. In a
    checkout whose installed metadata predates them, the test writes the same metadata, read
    from pyproject.toml, into a directory that goes first on the child's path.
    """
    installed = {ep.name for ep in entry_points(group="opentelemetry_distro")}
    if ENTRY_POINT_NAME in installed:
        return []
    if os.environ.get("CI"):
        pytest.fail(
            "aura-otel is installed without its entry points; reinstall it (pip install -e .)"
        )
    site = tmp_path / "site"
    info = site / "aura_otel-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aura-otel\nVersion: 0.0.0\n")
    lines = []
    for group, items in _declared_entry_points().items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {target}" for name, target in items.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return [str(site)]


@pytest.fixture
def web_server() -> Iterator[str]:
    """The HTTP dependency the service calls (urllib is instrumented, so a client span)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/render/status"
    finally:
        server.shutdown()
        server.server_close()


def _instrument_command() -> str:
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            "opentelemetry-instrument is missing (it ships with opentelemetry-instrumentation)"
        )
    return found


def test_an_unmodified_service_gets_masking_v1_files_and_forwarding(
    tmp_path: Path, web_server: str
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.urllib")
    app = tmp_path / "service.py"
    app.write_text(APP)
    jobs_dir = tmp_path / "jobs"
    with http_receiver() as (endpoint, received):
        python_path = [*_metadata_path(tmp_path), str(SRC)]
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(python_path),
            "OTEL_PYTHON_DISTRO": ENTRY_POINT_NAME,
            "OTEL_PYTHON_CONFIGURATOR": ENTRY_POINT_NAME,
            "OTEL_SERVICE_NAME": "legacy-studio",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            c.ENV_JOBS_DIR: str(jobs_dir),
        }
        result = subprocess.run(
            [_instrument_command(), sys.executable, str(app), web_server],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "service done" in result.stdout
        # Spans and metrics are exported at exit; the receiver has them once the child is gone.
        assert received.wait_for(lambda r: len(r.spans) >= 3, timeout=10), received.span_names()
        assert received.wait_for(lambda r: c.METRIC_TOKEN_USAGE in r.metrics, timeout=10)

    # The v1 file, folded from spans the service made without knowing aura-otel.
    doc = json.loads((jobs_dir / "job-auto-1" / "telemetry.json").read_text())
    assert doc["correlation_id"] == "corr-auto-1"
    (record,) = doc["records"]
    assert (record["stage"], record["tokens_in"], record["tokens_out"]) == ("script", 120, 80)
    assert record["cost_estimate"] == 0.25
    text = json.dumps(doc)
    assert SECRET_KEY not in text and "c2lnbmF0dXJl" not in text  # masked before writing
    assert record["metadata"]["api_key"] == "[REDACTED]"

    # The urllib instrumentation activated, and its span carries the job id (stamping).
    client = [
        s for s in received.spans if s.scope.startswith("opentelemetry.instrumentation.urllib")
    ]
    assert client, f"no urllib client span among {received.span_names()}"
    assert client[0].attributes[c.JOB_ID] == "job-auto-1"
    assert client[0].resource["service.name"] == "legacy-studio"
    forwarded = {s.name: s for s in received.spans}
    assert {"aura.job", "aura.stage.script"} <= set(forwarded)
    for span in received.spans:  # masking holds on the OTLP path too
        assert SECRET_KEY not in json.dumps(span.attributes) + span.status_message
        assert "c2lnbmF0dXJl" not in json.dumps(span.attributes)
