"""docker-compose.yml runs the fold receiver behind the collector; checked with the real compose
binary (as tests/test_deploy_configs.py does for the rest of the stack) and the real CLI."""

from __future__ import annotations

from pathlib import Path

from aura_otel.cli import build_parser
from aura_otel.receiver import ReceiverConfig, create_receiver

from ..test_deploy_configs import CONFIG_DIR, TOKEN_ENV, _load_yaml, _resolved_compose


def test_compose_runs_the_fold_receiver_behind_the_collector(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    fold = services["fold-receiver"]
    assert fold["command"][:2] == ["aura-otel", "collect"]
    args = build_parser().parse_args(fold["command"][1:])  # the real CLI accepts it
    assert "ports" not in fold  # reachable from the compose network only
    assert fold["environment"]["AURA_OTEL_ACCESS_TOKEN"] == TOKEN_ENV["AURA_OTEL_ACCESS_TOKEN"]
    jobs_dir = fold["environment"]["AURA_OTEL_JOBS_DIR"]
    fold_volume = next(v for v in fold["volumes"] if v["target"] == jobs_dir)
    server = services["aura-otel"]
    server_volume = next(
        v for v in server["volumes"] if v["target"] == server["environment"]["AURA_OTEL_JOBS_DIR"]
    )
    assert fold_volume["source"] == server_volume["source"]  # the server shows what it writes
    assert "fold-receiver" in services["otel-collector"]["depends_on"]

    # Listening on every interface is allowed because the token is set (the real bind guard).
    receiver = create_receiver(
        ReceiverConfig(
            jobs_dir=str(tmp_path / "jobs"),
            http=args.http,
            grpc=args.grpc,
            access_token=fold["environment"]["AURA_OTEL_ACCESS_TOKEN"],
        )
    )
    receiver.ingestor.masking.shutdown()

    # The collector routes every trace to it over gRPC, with the token, before redaction.
    collector = _load_yaml(CONFIG_DIR / "otel-collector.yaml")
    exporter = collector["exporters"]["otlp/fold"]
    host, port = exporter["endpoint"].rsplit(":", 1)
    assert host == "fold-receiver" and int(port) == int(args.grpc.rsplit(":", 1)[1])
    assert exporter["headers"]["authorization"] == "Bearer ${env:AURA_OTEL_ACCESS_TOKEN}"
    assert services["otel-collector"]["environment"]["AURA_OTEL_ACCESS_TOKEN"]
    assert exporter["retry_on_failure"]["enabled"] and exporter["sending_queue"]["enabled"]
    pipeline = collector["service"]["pipelines"]["traces/fold"]
    assert pipeline["exporters"] == ["otlp/fold"] and "redaction" not in pipeline["processors"]


def test_scale_out_front_tier_authenticates_to_fold_receivers() -> None:
    config = _load_yaml(CONFIG_DIR / "scale-out.yaml")
    otlp = config["exporters"]["loadbalancing"]["protocol"]["otlp"]
    assert otlp["headers"]["authorization"] == "Bearer ${env:AURA_OTEL_ACCESS_TOKEN}"
