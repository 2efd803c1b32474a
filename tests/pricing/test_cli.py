"""``aura-otel prices``: registered on a real argparse parser, run with real files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aura_otel import conventions as c
from aura_otel.pricing_cli import register


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="aura-otel")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(c.ENV_PRICES_FILE, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def test_list_as_json_filtered_by_provider(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["prices", "--provider", "Eleven Labs", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["version"] == "2026.11.0" and doc["currency"] == "USD"
    assert list(doc["providers"]) == ["elevenlabs"]
    models = {m["model"]: m["rates"] for m in doc["providers"]["elevenlabs"]["models"]}
    assert models["eleven_multilingual_v2"] == {"per_1k_characters": 0.1}
    assert "elevenlabs.io" in doc["providers"]["elevenlabs"]["source"]


def test_list_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["prices"], capsys)
    assert code == 0
    assert "Price table 2026.11.0 (as of 2026-11-24, USD)" in out
    for text in (
        "gpt-4o-mini",
        "in 0.15 / cached 0.075 / out 0.60 per 1M tokens",
        "eleven_v3",
        "dall-e-3",
        "1024x1792: standard 0.08, hd 0.12 per image",
        "sd3.5-large",
        "per second of output",
    ):
        assert text in out, text


def test_list_unknown_provider(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["prices", "--provider", "acme"], capsys)
    assert code == 1 and out == ""
    assert "provider 'acme' is not in price table 2026.11.0" in err and "openai" in err


def test_quote_tokens_prints_amount_and_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "prices",
            "quote",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-2024-08-06",
            "--tokens-in",
            "1000",
            "--tokens-out",
            "500",
            "--cached",
            "200",
        ],
        capsys,
    )
    assert code == 0
    lines = out.splitlines()
    assert (
        lines[0]
        == "openai / gpt-4o  (matched by version suffix removed (gpt-4o-2024-08-06 -> gpt-4o))"
    )
    assert "800 x $2.50 per 1M tokens  = $0.002" in lines[1]
    assert "200 x $1.25 per 1M tokens  = $0.00025" in lines[2]
    assert "500 x $10.00 per 1M tokens  = $0.005" in lines[3]
    assert "$0.00725 USD" in lines[4] and "price table 2026.11.0" in lines[4]


def test_quote_images_as_json_with_provider_before_quote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        [
            "prices",
            "--provider",
            "openai",
            "quote",
            "--model",
            "dall-e-3",
            "--images",
            "3",
            "--size",
            "1792x1024",
            "--quality",
            "hd",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["amount"] == 0.36 and doc["pricing_version"] == "2026.11.0"
    assert doc["lines"] == [
        {
            "label": "images 1792x1024 hd",
            "quantity": 3,
            "rate": 0.12,
            "per": "image",
            "amount": 0.36,
        }
    ]


@pytest.mark.parametrize(
    ("argv", "amount"),
    [
        (
            ["--provider", "elevenlabs", "--model", "eleven_turbo_v2_5", "--characters", "3000"],
            0.15,
        ),
        (["--provider", "aws.mediaconvert", "--model", "uhd", "--seconds", "120"], 0.06),
        (["--provider", "ollama", "--model", "llama3.1:8b", "--tokens-in", "99999"], 0),
    ],
)
def test_quote_other_units(
    argv: list[str], amount: float, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["prices", "quote", *argv, "--json"], capsys)
    assert code == 0 and json.loads(out)["amount"] == amount


def test_quote_unknown_model_is_unpriced(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["prices", "quote", "--provider", "openai", "--model", "gpt-99", "--tokens-in", "5"], capsys
    )
    assert code == 1
    assert out.startswith("unpriced: model 'gpt-99' of provider 'openai' is not in price table")
    assert "$0" not in out.replace("never $0", "")


def test_quote_with_an_override_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "version": "mine",
                "providers": {
                    "acme": {"models": {"acme-1": {"input_per_1m": 4, "output_per_1m": 4}}}
                },
            }
        )
    )
    code, out, _ = run(
        [
            "prices",
            "quote",
            "--file",
            str(path),
            "--provider",
            "acme",
            "--model",
            "acme-1",
            "--tokens-in",
            "250000",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    doc = json.loads(out)
    assert (doc["amount"], doc["pricing_version"]) == (1.0, "2026.11.0+mine")


def test_list_reads_the_override_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    path.write_text('[providers.acme.models."acme-tts"]\nper_1k_characters = 0.5\n')
    monkeypatch.setenv(c.ENV_PRICES_FILE, str(path))
    code, out, _ = run(["prices", "--provider", "acme", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["files"][-1] == str(path)
    assert doc["providers"]["acme"]["models"] == [
        {"model": "acme-tts", "rates": {"per_1k_characters": 0.5}}
    ]


def test_bad_override_file_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"providers": {"openai": {"models": {"gpt-4o": {"per_token": 1}}}}}))
    code, out, err = run(["prices", "--file", str(path)], capsys)
    assert code == 2 and out == ""
    assert "unknown unit or field 'per_token'" in err and str(path) in err


def test_quote_needs_a_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["prices", "quote", "--provider", "openai", "--model", "gpt-4o"], capsys)
    assert code == 2 and "give a usage" in err


def test_negative_quantities_are_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(["prices", "quote", "--provider", "openai", "--tokens-in", "-5"], capsys)
    assert info.value.code == 2
    assert "-5 is negative" in capsys.readouterr().err


def _command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The ``aura-otel`` command of this checkout, run as a process (no override file)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    env.pop(c.ENV_PRICES_FILE, None)
    return subprocess.run(
        [sys.executable, "-m", "aura_otel.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_price_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Reading a FIFO nobody writes to would wait for good (a device such as /dev/zero would
    never end): `prices`, `collect` and configure() must answer at once instead."""
    fifo = tmp_path / "prices.json"
    os.mkfifo(fifo)
    for argv in (["prices", "--file", str(fifo)], ["prices", "--file", "/dev/zero"]):
        result = _command(argv)
        assert result.returncode == 2, result.stderr
        assert "is not a regular file" in result.stderr and argv[-1] in result.stderr


def _aura_otel_has_prices() -> bool:
    try:
        from aura_otel import cli
    except ImportError:
        return False
    source = Path(cli.__file__).read_text(encoding="utf-8")
    return "register_prices" in source


@pytest.mark.skipif(
    not _aura_otel_has_prices(), reason="the aura-otel command does not register prices yet"
)
def test_the_installed_command(tmp_path: Path) -> None:
    result = _command(
        [
            "prices",
            "quote",
            "--provider",
            "anthropic",
            "--model",
            "claude-sonnet-4-5-20250929",
            "--tokens-in",
            "2000",
            "--tokens-out",
            "1000",
            "--json",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["amount"] == 0.021  # 2000 x 3/1M + 1000 x 15/1M


def test_quote_of_an_absurd_quantity_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    # 1e30 s x $0.05/s = 5e28: more digits to the cent than a default decimal context holds
    code, out, _ = run(
        ["prices", "quote", "--provider", "runway", "--model", "gen4_turbo", "--seconds", "1e30"],
        capsys,
    )
    assert code == 0
    assert "$50000000000000000000000000000.00 USD" in out


def test_a_secret_pasted_into_a_price_file_is_not_quoted_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The problems quote the file's values; a key pasted into a price field stays masked on
    stderr and in the error configure() raises into the host."""
    from aura_otel.errors import PricingError
    from aura_otel.pricing import load_price_table

    token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    bad = tmp_path / "prices.json"
    bad.write_text(
        '{"version": "x", "providers": {"openai": {"models": {"gpt-x": '
        f'{{"input_per_1m": "{token}", "output_per_1m": 1}}}}}}}}}}'
    )
    code, _, err = run(["prices", "--file", str(bad)], capsys)
    assert code == 2 and "a price must be a number" in err and token not in err
    with pytest.raises(PricingError) as info:
        load_price_table(bad)
    assert "input_per_1m" in str(info.value) and token not in str(info.value)
