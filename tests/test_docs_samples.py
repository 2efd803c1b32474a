"""The README and docs/ stay true: every Python sample runs, every relative link resolves.

Each fenced ```python block of README.md and docs/*.md runs as written in a fresh interpreter
(working directory a temporary folder, ``AURA_OTEL_JOBS_DIR`` pointing into it, no OTLP
endpoint or other OpenTelemetry switch from the developer's shell). A sample that cannot run on
its own says so right before its fence, with the reason:

    <!-- sample: not-runnable (needs a message queue) -->

Such a sample must still be valid Python. Everything unmarked must run, so a new sample cannot
rot without a test failing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest

from aura_otel import load_collection

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SAMPLE_TIMEOUT = 120  # seconds; a sample takes about one interpreter start-up

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(
    r"^\s*<!--\s*sample:\s*(?P<kind>[\w-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->\s*$"
)
#: A sample that opens a job (``job(...)``, ``aura_otel.job(...)``) must leave a valid v1 file.
_OPENS_A_JOB = re.compile(r"(?<![\w.])(?:aura_otel\.)?job\(")


@dataclass(frozen=True)
class Sample:
    document: Path
    line: int  # of the opening fence, 1-based
    code: str
    not_runnable: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def fenced_blocks(text: str) -> list[tuple[int, str, str, list[str]]]:
    """(line of the fence, info string, dedented body, lines before the fence) of every block."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        ]
        blocks.append((i + 1, m["info"].lower(), dedent("\n".join(body)) + "\n", lines[:i]))
        i = j + 1
    return blocks


def marker_before(preceding: list[str]) -> re.Match[str] | None:
    """The ``<!-- sample: ... -->`` comment on the last non-blank line before a fence."""
    for line in reversed(preceding):
        if line.strip():
            return _MARKER.match(line)
    return None


def python_samples() -> list[Sample]:
    samples = []
    for doc in DOCUMENTS:
        for line, info, code, preceding in fenced_blocks(doc.read_text(encoding="utf-8")):
            if info not in ("python", "py", "python3"):
                continue
            marker = marker_before(preceding)
            reason = None
            if marker is not None:
                assert marker["kind"] == "not-runnable", (
                    f"{doc.name}:{line}: unknown sample marker {marker['kind']!r}"
                )
                reason = (marker["reason"] or "").strip()
                assert reason, f"{doc.name}:{line}: say why the sample cannot run"
            samples.append(Sample(doc, line, code, reason))
    return samples


SAMPLES = python_samples()


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment minus every OpenTelemetry and aura-otel switch."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "AURA_OTEL_")) and k != "PYTHONPATH"
    }
    env["AURA_OTEL_JOBS_DIR"] = str(tmp_path / "jobs")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_the_documents_have_python_samples() -> None:
    assert len(SAMPLES) >= 10, [s.id for s in SAMPLES]
    assert any(s.not_runnable is None and _OPENS_A_JOB.search(s.code) for s in SAMPLES)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.not_runnable], ids=lambda s: s.id)
def test_a_sample_marked_not_runnable_is_still_valid_python(sample: Sample) -> None:
    compile(sample.code, sample.id, "exec")


@pytest.mark.parametrize("sample", [s for s in SAMPLES if not s.not_runnable], ids=lambda s: s.id)
def test_a_sample_runs_as_written(sample: Sample, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    script = tmp_path / "sample.py"
    script.write_text(sample.code, encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=work,
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=SAMPLE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{sample.id} did not finish in {SAMPLE_TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}"
        )
    assert done.returncode == 0, (
        f"{sample.id} failed (exit {done.returncode}); mark it "
        f"'<!-- sample: not-runnable (why) -->' only if it cannot run alone.\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    assert "Traceback" not in done.stderr, f"{sample.id} logged an exception:\n{done.stderr}"

    written = sorted((tmp_path / "jobs").glob("*/telemetry.json"))
    stray = sorted(work.rglob("telemetry.json"))
    assert not stray, f"{sample.id} wrote outside $AURA_OTEL_JOBS_DIR: {stray}"
    for path in written:  # every file a sample leaves is a valid, finished v1 collection
        collection = load_collection(path.read_bytes())
        assert collection.collection_ended_at is not None, path
        assert collection.summary is not None, path
    if _OPENS_A_JOB.search(sample.code):
        assert written, f"{sample.id} opens a job but left no telemetry.json"


# -- links ---------------------------------------------------------------------------------------
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)


def without_fences(text: str) -> str:
    """The text with every fenced block (fences included) blanked out, line numbers kept."""
    lines = text.splitlines()
    for line, _info, body, _before in fenced_blocks(text):
        n = body.count("\n")  # body lines; the block spans them plus its two fences
        lines[line - 1 : line + n + 1] = [""] * (n + 2)
    return "\n".join(lines)


def prose(text: str) -> str:
    """The text without fenced blocks and code spans (links there are not links)."""
    return _INLINE_CODE.sub("", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in without_fences(doc.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links() -> list[tuple[Path, str]]:
    found = []
    for doc in DOCUMENTS:
        for m in _LINK.finditer(prose(doc.read_text(encoding="utf-8"))):
            target = m["target"].strip("<>")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            found.append((doc, target))
    return found


def test_every_relative_link_points_at_an_existing_file_inside_the_repository() -> None:
    links = relative_links()
    assert links, "no relative links found: the link pattern is broken"
    broken = []
    for doc, target in links:
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.is_relative_to(ROOT):
            broken.append(f"{doc.name}: {target} leaves the repository")
        elif not dest.exists():
            broken.append(f"{doc.name}: {target} does not exist")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{doc.name}: {target}: no heading #{fragment} in {dest.name}")
    assert not broken, "\n".join(broken)


def test_nothing_in_the_repository_refers_to_the_old_spec_location() -> None:
    # built from parts, so this file does not match itself
    needles = ["../" + "shared", "shared/" + "spec", "AURA_OTEL_" + "SPEC_DIR"]
    tracked = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml", ROOT / "Dockerfile"]
    for folder in ("src", "tests", "docs", "benchmarks", ".ci", "collector-config"):
        tracked += [p for p in (ROOT / folder).rglob("*") if p.is_file()]
    hits = []
    for path in tracked:
        if path.suffix in (".png", ".pyc") or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        hits += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert not hits, hits
