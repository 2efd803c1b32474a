"""Configuration in one place: every variable read and checked together, every problem listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_otel import ConfigurationError, configure
from aura_otel import conventions as c
from aura_otel.settings import Settings

GOOD = {
    c.ENV_JOBS_DIR: "/srv/jobs",
    c.ENV_ENUM_CASE: "Pascal",
    c.ENV_PRICES_FILE: "/etc/prices.toml",
    c.ENV_JAEGER_URL: "http://jaeger:16686/",
    c.ENV_ACCESS_TOKEN: "s3cret",
    c.ENV_MAX_FILE_BYTES: "1024",
    c.ENV_ABANDONED_AFTER: "90.5",
    "OTEL_SERVICE_NAME": "studio",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_BSP_MAX_QUEUE_SIZE": "64",
}


def test_every_variable_is_read_into_one_frozen_object() -> None:
    settings = Settings.from_env(GOOD)
    assert (settings.jobs_dir, settings.enum_case, settings.prices_file) == (
        "/srv/jobs",
        "pascal",
        "/etc/prices.toml",
    )
    assert settings.jaeger_url == "http://jaeger:16686"
    assert (settings.access_token, settings.max_file_bytes, settings.abandoned_after) == (
        "s3cret",
        1024,
        90.5,
    )
    assert settings.service_name == "studio"
    assert settings.endpoint("traces") == "http://collector:4318"
    assert settings.endpoint("metrics") == "http://metrics:4318"
    assert settings.protocol("traces") == "http/protobuf"  # the signal's own variable wins
    assert settings.protocol("metrics") == "grpc"
    assert settings.metrics_off and settings.bsp_max_queue_size == 64
    assert settings.masking is not None
    with pytest.raises(AttributeError):
        settings.jobs_dir = "elsewhere"  # type: ignore[misc]


def test_defaults_without_any_variable() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.jobs_dir == "./jobs" and settings.abandoned_after == 3600
    assert settings.endpoint("traces") is None and not settings.sdk_disabled


def test_every_problem_is_listed_in_one_error() -> None:
    bad = {
        c.ENV_ENUM_CASE: "shouting",
        c.ENV_MAX_FILE_BYTES: "lots",
        c.ENV_ABANDONED_AFTER: "-1",
        c.ENV_JAEGER_URL: "jaeger:16686",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon",
        c.ENV_MASK_EXTRA_PATTERNS: '["(unclosed"]',
    }
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(bad)
    text = str(info.value)
    assert text.startswith("6 configuration problem(s):")
    for name in bad:
        assert name.replace("EXTRA_PATTERNS", "*") in text, name
    assert "enum case must be 'lower' or 'pascal'" in text
    assert "OTLP protocol must be" in text


def test_a_bad_queue_size_falls_back_as_the_sdk_does(caplog: pytest.LogCaptureFixture) -> None:
    assert Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "many"}).bsp_max_queue_size == 2048
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in caplog.text


def test_sdk_disabled_reads_nothing_else() -> None:
    settings = Settings.from_env({"OTEL_SDK_DISABLED": "true", c.ENV_ENUM_CASE: "shouting"})
    assert settings.sdk_disabled


def test_configure_reports_every_bad_variable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_otel_env: None
) -> None:
    monkeypatch.setenv(c.ENV_ENUM_CASE, "shouting")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ConfigurationError) as info:
        configure(tmp_path, set_global=False, propagate_threads=False)
    assert "2 configuration problem(s)" in str(info.value)


def test_sdk_variables_that_would_raise_deep_inside_are_listed_with_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_otel_env: None
) -> None:
    """The SDK's span limits and the gRPC exporter's timeout raise a bare ValueError from
    inside the SDK when they are not numbers; configure() names them with every other
    problem instead."""
    monkeypatch.setenv(c.ENV_ENUM_CASE, "shouting")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "long")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "-3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError) as info:
        configure(tmp_path, set_global=False, propagate_threads=False)
    text = str(info.value)
    assert text.startswith("4 configuration problem(s)")
    for name in ["OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT"]:
        assert name in text
    assert "OTEL_EXPORTER_OTLP_TIMEOUT='soon'" in text
    # 'unset' is the SDK's own word for no limit; http/protobuf reads a bad timeout leniently.
    env = {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "unset", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}
    assert Settings.from_env({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})


def test_an_endpoint_the_grpc_exporter_cannot_parse_is_a_configuration_error(
    tmp_path: Path, no_otel_env: None
) -> None:
    with pytest.raises(ConfigurationError, match=r"http://\[::1"):
        configure(
            tmp_path,
            otlp_endpoint="http://[::1",
            otlp_protocol="grpc",
            set_global=False,
            propagate_threads=False,
        )


def test_explicit_arguments_win_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_otel_env: None
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setenv(c.ENV_ENUM_CASE, "pascal")
    monkeypatch.setenv(c.ENV_JOBS_DIR, str(tmp_path / "from-env"))
    telemetry = configure(
        tmp_path / "given",
        enum_case="lower",
        tracer_provider=TracerProvider(),
        set_global=False,
        propagate_threads=False,
        pricing=False,
    )
    try:
        assert telemetry.jobs_dir == str(tmp_path / "given")
        assert telemetry.exporter is not None and telemetry.exporter.enum_case == "lower"
    finally:
        telemetry.shutdown()
    telemetry = configure(
        tracer_provider=TracerProvider(), set_global=False, propagate_threads=False, pricing=False
    )
    try:
        assert telemetry.jobs_dir == str(tmp_path / "from-env")
        assert telemetry.exporter is not None and telemetry.exporter.enum_case == "pascal"
    finally:
        telemetry.shutdown()


def test_a_mistyped_store_url_is_refused_without_its_password() -> None:
    """The refusal reaches the host (configure raises it), so the password stays out."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({c.ENV_STORE: "postgressql://aura:Xk3vQ9pL2m@db/aura?password=Zq8"})
    text = str(info.value)
    assert c.ENV_STORE in text and "postgressql://aura:***@db/aura?password=***" in text
    assert "Xk3vQ9pL2m" not in text and "Zq8" not in text


def test_settings_show_no_store_password_and_no_token() -> None:
    """A host may log its settings: the repr hides what a log line must not carry."""
    settings = Settings.from_env(
        {
            c.ENV_STORE: "postgresql://aura:Xk3vQ9pL2m@db/aura?sslpassword=Zq8",
            c.ENV_ACCESS_TOKEN: "tok-Wm4pQ7rT2x",
        }
    )
    assert settings.store is not None and "Xk3vQ9pL2m" in settings.store  # kept for use
    assert settings.access_token == "tok-Wm4pQ7rT2x"
    text = repr(settings)
    assert "Xk3vQ9pL2m" not in text and "Zq8" not in text and "Wm4pQ7rT2x" not in text
    assert "store='postgresql://aura:***@db/aura?sslpassword=***'" in text
    assert "access_token='***'" in text and "jobs_dir=" in text
