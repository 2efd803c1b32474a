"""The Python service of the two-language test: the studio's job runner.

Runs a job with aura-otel configured to send its (masked) spans over OTLP to the receiver, and
hands the tts and visuals stages to the Node.js media service over HTTP, with the W3C trace
context and the job's ids in the request headers (``aura_otel.inject_context``).

    python python_service.py JOB_ID NODE_URL      (OTLP settings from OTEL_EXPORTER_OTLP_*)
"""

from __future__ import annotations

import json
import sys
import urllib.request

import aura_otel
from aura_otel import Stage, job, stage


def main(job_id: str, node_url: str) -> int:
    telemetry = aura_otel.configure(service_name="job-runner", metrics=False)
    with job(job_id, project_id="proj-two-languages"):
        with stage(Stage.BRIEF, provider="local") as s:
            s.set_cost(0.0)
        with stage(Stage.SCRIPT, provider="openai", model="gpt-4o") as s:
            s.record_usage(tokens_in=1850, tokens_out=1200)
        # The media service runs tts and visuals: one HTTP call, the context in its headers.
        body = json.dumps(
            {
                "stages": [
                    {
                        "stage": "tts",
                        "provider": "elevenlabs",
                        "model": "eleven_multilingual_v2",
                        "characters": 1200,
                        "output_seconds": 58.4,
                        "metadata": {"voice_name": "Rachel"},
                    },
                    {
                        "stage": "visuals",
                        "provider": "openai",
                        "model": "gpt-image-1",
                        "scene_index": 0,
                        "images": 1,
                        "image_size": "1024x1024",
                        "image_quality": "medium",
                    },
                    {
                        "stage": "visuals",
                        "provider": "stability",
                        "model": "stable-image-core",
                        "scene_index": 1,
                        "images": 1,
                        "warn": "scene 2 used the fallback image model",
                    },
                ]
            }
        ).encode()
        headers = aura_otel.inject_context({"Content-Type": "application/json"})
        request = urllib.request.Request(
            f"{node_url}/stages", data=body, headers=dict(headers), method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["ok"], answer
        with stage(Stage.RENDER, provider="ffmpeg", model="libx264") as s:
            s.record_usage(output_seconds=58.4)
    telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
