"""`make bench` keeps working: each benchmark runs end to end on a tiny workload.

Only that they finish and print their figures is checked, never a figure's value (timing goals
live in the benchmarks, not in tests). What a benchmark asserts on its own, it asserts here
too: every job's file written, no span dropped, the receiver's files counted. The benchmarks
left out need minutes even when small (a black-holed endpoint's timeouts, 100,000-job
stores) and are run by `make bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "bench_receiver.py": (
        [
            "--spans",
            "1008",
            "--workers",
            "1",
            "--durability",
            "write",
            "--clients",
            "2",
            "--peer-spans",
            "0",
            "--open-jobs",
            "1008",
            "--flat-jobs",
            "90",
        ],
        [
            "spans/s into v1 files",
            "bare SDK spans",
            "a job's folder, journal and file by bare system calls",
            "memory over 90 finished jobs (files written)",
        ],
    ),
    "bench_pipeline.py": (["--jobs", "10", "--repeat", "1"], ["spans dropped           0"]),
    "bench_masking.py": (["--spans", "200", "--repeat", "1"], ["with masking"]),
    "bench_jobs_list.py": (["--jobs", "50"], ["files parsed by aura-otel in total"]),
    "bench_memory.py": (["--jobs", "200"], ["growth after warm-up"]),
    "bench_fold.py": ([], ["spans/s"]),
    "bench_pricing.py": ([], ["a first-time quote"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_a_benchmark_runs_to_the_end_and_prints_its_figures(script: str, tmp_path: Path) -> None:
    args, expected = CASES[script]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "TMPDIR": str(tmp_path),  # their jobs folders, deleted with the test's folder
    }
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        check=False,  # the output is shown when it fails
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for text in expected:
        assert text in done.stdout, (text, done.stdout[-2000:])
