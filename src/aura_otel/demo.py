"""``aura-otel demo``: a simulated video job through all eight stages.

No network and no models: the stages sleep for a few tens of milliseconds and report the
usage a real job would. It is also the example to copy — a real pipeline looks the same with
the sleeps replaced by calls to providers.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aura_otel
from aura_otel import ResultStatus, Stage, job, stage


class DemoFailure(RuntimeError):
    """The failure ``--fail-at`` injects."""

    error_code = "GENERATION_ERROR"


@dataclass(frozen=True)
class DemoResult:
    job_id: str
    path: Path
    failed: bool


def _work(seconds: float) -> None:
    time.sleep(seconds)


def _maybe_fail(current: Stage, fail_at: Stage | None) -> None:
    if current is fail_at:
        raise DemoFailure(f"simulated failure in the {current.value} stage (--fail-at)")


def run_pipeline(job_id: str, *, fail_at: Stage | None = None, speed: float = 1.0) -> None:
    """The studio's pipeline, instrumented with aura-otel's helpers."""
    rng = random.Random(job_id)
    pause = lambda base: _work(base * speed * rng.uniform(0.8, 1.2))  # noqa: E731

    with job(job_id, project_id="proj-demo", metadata={"template": "explainer"}):
        with stage(
            Stage.BRIEF,
            provider="local",
            metadata={"topic": "How solar panels work", "audience": "teens", "goal": "explain"},
        ) as s:
            pause(0.02)
            s.set_cost(0.0)  # local work: an explicit zero, not an unknown price
            _maybe_fail(Stage.BRIEF, fail_at)

        with stage(Stage.PLAN, provider="openai", model="gpt-4o-mini") as s:
            pause(0.01)
            s.set_cache_hit()  # the plan for this brief was cached: no tokens, no cost
            s.set_cost(0.0)
            s.set_metadata(scene_count=3, target_duration_seconds=60)
            _maybe_fail(Stage.PLAN, fail_at)

        with stage(Stage.SCRIPT, provider="openai", model="gpt-4o") as s:
            pause(0.04)
            s.add_retry()  # the first attempt hit a rate limit
            pause(0.06)
            _maybe_fail(Stage.SCRIPT, fail_at)
            s.set_response_model("gpt-4o-2024-08-06")
            s.record_usage(tokens_in=1850, tokens_out=1200, cached_input_tokens=512)
            s.set_metadata(script_length=1200, rag_enabled=True, used_fallback=False)
            s.set_result(ResultStatus.OK, "Script generated: 1200 characters")

        with stage(Stage.SSML, provider="local", metadata={"voice_tags": 14}) as s:
            pause(0.01)
            s.set_cost(0.0)
            _maybe_fail(Stage.SSML, fail_at)

        with stage(Stage.TTS, provider="elevenlabs", model="eleven_multilingual_v2") as s:
            pause(0.12)
            _maybe_fail(Stage.TTS, fail_at)
            s.record_usage(characters=1200, output_seconds=58.4)
            s.set_metadata(total_characters=1200, scene_count=3, voice_name="Rachel")

        for scene in range(3):
            fallback = scene == 2
            with stage(
                Stage.VISUALS,
                provider="stability" if fallback else "openai",
                model="stable-image-core" if fallback else "gpt-image-1",
                scene_index=scene,
                selection_source="fallback" if fallback else "default",
                fallback_reason="primary model refused the prompt" if fallback else None,
            ) as s:
                pause(0.05)
                _maybe_fail(Stage.VISUALS, fail_at)
                s.record_usage(images=1, image_size="1024x1024", image_quality="medium")
                if fallback:
                    s.warn("Scene 3 used the fallback image model")

        with stage(Stage.RENDER, provider="ffmpeg", model="libx264") as s:
            pause(0.15)
            _maybe_fail(Stage.RENDER, fail_at)
            s.record_usage(output_seconds=58.4)
            s.set_metadata(
                output_path=f"renders/{job_id}.mp4",
                resolution="1920x1080",
                fps=30,
                codec="h264",
                file_size_bytes=48_213_004,
            )

        with stage(
            Stage.POST, provider="local", metadata={"final_output": f"renders/{job_id}-final.mp4"}
        ) as s:
            pause(0.02)
            s.set_cost(0.0)
            _maybe_fail(Stage.POST, fail_at)


def run_demo(
    jobs_dir: str | Path | None = None,
    *,
    job_id: str | None = None,
    fail_at: Stage | None = None,
    speed: float = 1.0,
    enum_case: str | None = None,
) -> DemoResult:
    """Configure aura-otel, run the simulated job, flush, and say where the file is."""
    telemetry = aura_otel.configure(jobs_dir, service_name="aura-demo", enum_case=enum_case)
    job_id = job_id or f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    failed = False
    try:
        run_pipeline(job_id, fail_at=fail_at, speed=speed)
    except DemoFailure:
        failed = True
    finally:
        telemetry.force_flush()
    assert telemetry.exporter is not None
    return DemoResult(job_id, telemetry.exporter.store.telemetry_path(job_id), failed)
