"""configure() as an application uses it: each case runs in its own interpreter, since the
global TracerProvider can be set only once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run_app(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AURA_OTEL_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        check=False,
    )


PLAIN_API_JOB = """
    from opentelemetry import trace
    tracer = trace.get_tracer("legacy.app")
    with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": "plain-1"}):
        with tracer.start_as_current_span("aura.stage.script", attributes={
                "aura.stage": "script", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 5, "aura.cost.amount": 0.25}):
            pass
        with tracer.start_as_current_span("aura.stage.tts", attributes={"aura.stage": "tts"}):
            pass
    telemetry.force_flush()
"""


def test_plain_opentelemetry_api_under_configure_gives_a_correct_file(tmp_path: Path) -> None:
    result = run_app(
        "import aura_otel\ntelemetry = aura_otel.configure()\n" + textwrap.dedent(PLAIN_API_JOB),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(
        (tmp_path / "jobs" / "plain-1" / "telemetry.json").read_text()
    )  # ./jobs default
    assert [r["stage"] for r in doc["records"]] == ["script", "tts"]
    script = doc["records"][0]
    assert (script["provider"], script["tokens_in"], script["cost_estimate"]) == (
        "openai",
        10,
        0.25,
    )
    assert doc["summary"]["total_cost"] == 0.25
    assert len(doc["correlation_id"]) == 36  # generated: the root span carried none


def test_jobs_dir_comes_from_the_environment(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    result = run_app(
        "import aura_otel\ntelemetry = aura_otel.configure()\n" + textwrap.dedent(PLAIN_API_JOB),
        cwd=tmp_path,
        AURA_OTEL_JOBS_DIR=str(target),
    )
    assert result.returncode == 0, result.stderr
    assert (target / "plain-1" / "telemetry.json").is_file()
    assert not (tmp_path / "jobs").exists()


def test_otel_sdk_disabled_turns_everything_off(tmp_path: Path) -> None:
    result = run_app(
        """
        import aura_otel
        from opentelemetry import trace
        telemetry = aura_otel.configure()
        assert not telemetry.enabled
        with aura_otel.job("off-1"):
            with aura_otel.stage("brief"):
                pass
        telemetry.force_flush()
        telemetry.shutdown()
        print(type(trace.get_tracer_provider()).__name__)
    """,
        cwd=tmp_path,
        OTEL_SDK_DISABLED="true",
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "jobs").exists()


def test_an_installed_sdk_provider_is_extended_not_replaced(tmp_path: Path) -> None:
    result = run_app(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        mine = TracerProvider(resource=Resource.create({"service.name": "host-app"}))
        memory = InMemorySpanExporter()
        mine.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(mine)
        import aura_otel
        telemetry = aura_otel.configure()
        assert telemetry.tracer_provider is mine
        with aura_otel.job("ext-1"):
            with aura_otel.stage("plan"):
                pass
        telemetry.force_flush()
        print(sorted(s.name for s in memory.get_finished_spans()))
    """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "aura.stage.plan" in result.stdout  # the host's own exporter still gets the spans
    assert (tmp_path / "jobs" / "ext-1" / "telemetry.json").is_file()


def test_configure_twice_keeps_one_pipeline_so_no_span_goes_out_twice(tmp_path: Path) -> None:
    """The zero-code configurator and the app's own configure() (or a module imported twice)
    both configure: the second call must not add a second pipeline to the same provider, which
    would send every span to the backend twice and fold it twice."""
    root = repr(str(Path(__file__).resolve().parent.parent))
    result = run_app(
        f"ROOT = {root}\n"
        + textwrap.dedent(
            """
        import sys
        sys.path.insert(0, ROOT)
        from tests.otlp_receivers import http_receiver
        import aura_otel
        with http_receiver() as (url, received):
            first = aura_otel.configure(otlp_endpoint=url, metrics=False)
            second = aura_otel.configure(otlp_endpoint=url, metrics=False)
            assert second is first
            with aura_otel.job("twice-1"):
                with aura_otel.stage("plan"):
                    pass
            first.shutdown()
            print(sorted(s.name for s in received.spans), first.stats()["spans_received"])
            third = aura_otel.configure(otlp_endpoint=url, metrics=False)  # after shutdown: anew
            assert third is not first
            third.shutdown()
    """
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "['aura.job', 'aura.stage.plan'] 2"
    assert "configure() was already called" in result.stderr


def test_sampler_and_resource_variables_keep_their_meaning(tmp_path: Path) -> None:
    off = run_app(
        "import aura_otel\ntelemetry = aura_otel.configure()\n" + textwrap.dedent(PLAIN_API_JOB),
        cwd=tmp_path,
        OTEL_TRACES_SAMPLER="always_off",
    )
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "jobs" / "plain-1").exists()

    named = run_app(
        """
        import aura_otel
        telemetry = aura_otel.configure(service_name="from-argument")
        print(dict(telemetry.tracer_provider.resource.attributes))
    """,
        cwd=tmp_path,
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=staging",
    )
    assert named.returncode == 0, named.stderr
    assert "'service.name': 'from-argument'" in named.stdout
    assert "'deployment.environment': 'staging'" in named.stdout
    overridden = run_app(
        """
        import aura_otel
        telemetry = aura_otel.configure(service_name="from-argument")
        print(dict(telemetry.tracer_provider.resource.attributes))
    """,
        cwd=tmp_path,
        OTEL_SERVICE_NAME="render-service",
    )
    assert overridden.returncode == 0, overridden.stderr
    assert "'service.name': 'render-service'" in overridden.stdout  # the deployment's variable wins


def test_the_demo_takes_its_service_name_from_the_standard_variable(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AURA_OTEL_"))}
    env["OTEL_SERVICE_NAME"] = "studio"
    code = (
        "import aura_otel.demo as d, opentelemetry.trace as t; d.run_demo('jobs', job_id='svc', speed=0);"
        "print('service=' + t.get_tracer_provider().resource.attributes['service.name'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "service=studio" in out.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AURA_OTEL_ENUM_CASE": "shouting"}, "enum case must be 'lower' or 'pascal'"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            },
            "OTLP protocol must be",
        ),
        ({"AURA_OTEL_MASK_EXTRA_PATTERNS": '["(unclosed"]'}, ""),
        ({"AURA_OTEL_PRICES_FILE": "/nonexistent/prices.json"}, "prices.json"),
    ],
)
def test_bad_settings_fail_at_configure_with_a_clear_error(
    tmp_path: Path, env: dict, expected: str
) -> None:
    result = run_app(
        """
        import aura_otel
        try:
            aura_otel.configure()
        except aura_otel.ConfigurationError as exc:
            print("ConfigurationError:", exc)
        else:
            print("no error")
    """,
        cwd=tmp_path,
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigurationError:"), result.stdout
    assert expected in result.stdout


def test_pascal_case_switch_writes_the_old_spelling(tmp_path: Path) -> None:
    result = run_app(
        "import aura_otel\ntelemetry = aura_otel.configure()\n" + textwrap.dedent(PLAIN_API_JOB),
        cwd=tmp_path,
        AURA_OTEL_ENUM_CASE="pascal",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "jobs" / "plain-1" / "telemetry.json").read_text())
    assert [(r["stage"], r["result_status"]) for r in doc["records"]] == [
        ("Script", "Ok"),
        ("Tts", "Ok"),
    ]
    assert doc["summary"]["cost_by_stage"] == {"script": 0.25, "tts": 0.0}


def test_a_burst_of_spans_is_all_folded_never_dropped(tmp_path: Path) -> None:
    """Under a burst nothing vanishes: the v1 files have no queue of their own to overflow (the
    masking worker folds what it masks; when it falls behind, the caller masks and folds)."""
    from opentelemetry.sdk.trace import TracerProvider

    import aura_otel

    telemetry = aura_otel.configure(
        tmp_path / "jobs",
        tracer_provider=TracerProvider(),
        set_global=False,
        propagate_threads=False,
    )
    tracer = telemetry.tracer_provider.get_tracer("flood")
    created = 0
    for j in range(40):
        with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": f"flood-{j}"}):
            for _ in range(20):
                with tracer.start_as_current_span(
                    "aura.stage.render", attributes={"aura.stage": "render"}
                ):
                    created += 1
            created += 1
    telemetry.force_flush()
    stats = telemetry.stats()
    telemetry.shutdown()
    assert stats["spans_dropped_queue_full"] == 0
    assert stats["spans_folded"] + stats["spans_dropped_queue_full"] == created
