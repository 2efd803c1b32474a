"""A fleet of v1 job files with known figures, for the fleet view and the benchmark.

Jobs are built with the schema's own ``record_dict``/``collection_dict``/``summarize`` and
written as real ``telemetry.json`` files; their figures are drawn from a seeded generator so a
test can recompute every expected number from the returned list.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aura_otel.schema import collection_dict, dumps, format_timestamp_ns, record_dict, summarize

DAY_NS = 86_400 * 10**9
#: 2026-11-01T00:00:00Z
EPOCH_NS = 1_793_491_200 * 10**9

PLAN = [  # stage, provider, model, typical seconds, typical cost
    ("script", "openai", "gpt-4o", 8.0, 0.02),
    ("tts", "elevenlabs", "eleven_v2", 5.0, 0.03),
    ("visuals", "openai", "gpt-image-1", 12.0, 0.04),
    ("render", "ffmpeg", "", 60.0, None),
]


@dataclass
class Spec:
    job_id: str
    project: str
    start_ns: int
    scale: float = 1.0  # every latency and cost multiplied
    fail_provider: str = ""  # this provider's operation fails
    cache_hit_stage: str = ""
    stage_scale: dict[str, float] | None = None


def build(spec: Spec) -> dict[str, Any]:
    records = []
    t = spec.start_ns
    for stage, provider, model, seconds, cost in PLAN:
        factor = spec.scale * (spec.stage_scale or {}).get(stage, 1.0)
        latency_ms = int(seconds * 1000 * factor)
        failed = provider == spec.fail_provider
        fields: dict[str, Any] = {}
        if stage == spec.cache_hit_stage and cost is not None:
            fields.update(
                cache_hit=True,
                cost_estimate=0.0,
                metadata={"pricing": "cache_hit", "cost_saved": round(cost * factor, 6)},
            )
        elif cost is not None:
            fields["cost_estimate"] = round(cost * factor, 6)
        records.append(
            record_dict(
                job_id=spec.job_id,
                correlation_id=f"corr-{spec.job_id}",
                project_id=spec.project,
                stage=stage,
                provider=provider,
                model_id=model or None,
                latency_ms=latency_ms,
                result_status="error" if failed else "ok",
                error_code="TIMEOUT" if failed else None,
                retries=1 if failed else 0,
                started_at=format_timestamp_ns(t),
                ended_at=format_timestamp_ns(t + latency_ms * 10**6),
                **fields,
            )
        )
        t += latency_ms * 10**6
    return collection_dict(
        job_id=spec.job_id,
        correlation_id=f"corr-{spec.job_id}",
        collection_started_at=format_timestamp_ns(spec.start_ns),
        collection_ended_at=format_timestamp_ns(t),
        records=records,
        summary=summarize(records),
    )


def write(root: Path, spec: Spec) -> dict[str, Any]:
    doc = build(spec)
    folder = root / spec.job_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "telemetry.json").write_bytes(dumps(doc))
    return doc


def steady_fleet(
    root: Path,
    *,
    days: int = 20,
    per_day: int = 5,
    seed: int = 7,
    projects: tuple[str, ...] = ("alpha", "beta"),
) -> list[Spec]:
    """Ordinary jobs: ±10% around the plan, one job in ~25 with a failed tts call."""
    rng = random.Random(seed)
    specs = []
    for day in range(days):
        for n in range(per_day):
            spec = Spec(
                job_id=f"job-d{day:02d}-{n:02d}",
                project=projects[n % len(projects)],
                start_ns=EPOCH_NS + day * DAY_NS + (n + 1) * 3600 * 10**9,
                scale=rng.uniform(0.9, 1.1),
                fail_provider="elevenlabs" if rng.random() < 0.04 else "",
                cache_hit_stage="script" if n % 4 == 0 else "",
            )
            write(root, spec)
            specs.append(spec)
    return specs


def write_spike(root: Path, **stage_scale: float) -> dict[str, Any]:
    """``job-spike``: an alpha job late on the fleet's last day whose named stages cost
    (and take) that many times the plan, the anomaly the fleet views must flag."""
    return write(
        root,
        Spec(
            "job-spike",
            "alpha",
            EPOCH_NS + 19 * DAY_NS + 23 * 3600 * 10**9,
            stage_scale=dict(stage_scale),
        ),
    )


def write_many(root: Path, count: int, *, seed: int = 1) -> None:
    """``count`` jobs over 365 days, written fast (the benchmark's fleet)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        spec = Spec(
            job_id=f"job-{n:07d}",
            project=f"p{n % 20}",
            start_ns=EPOCH_NS - 365 * DAY_NS + int(n / count * 365 * DAY_NS),
            scale=rng.uniform(0.8, 1.2),
            fail_provider="elevenlabs" if rng.random() < 0.03 else "",
            cache_hit_stage="script" if n % 5 == 0 else "",
        )
        folder = os.path.join(root, spec.job_id)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "telemetry.json"), "wb") as fh:
            fh.write(dumps(build(spec)))
