"""Pricing: the shipped table, matching, exact money, overrides, and pricing at fold time.

Every expected amount below is computed by hand from the table's published rates (the
comment next to it shows the arithmetic), never by calling the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from aura_otel import conventions as c
from aura_otel.errors import ConfigurationError, PricingError
from aura_otel.exporter import RunTelemetryExporter
from aura_otel.fold import UNPRICED_METADATA, UNPRICED_VALUE, Quote, assemble, fold_span
from aura_otel.pricing import (
    Estimate,
    PriceTable,
    Unpriced,
    count_unpriced,
    load_price_table,
    shipped_price_table,
    version_families,
)
from aura_otel.schema import load_collection, sum_money

SHIPPED = "2026.11.0"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_price_table(environ={})


def estimate(table: PriceTable, provider: str | None, model: str | None, **usage: Any) -> Estimate:
    result = table.price(provider, model, usage)
    assert isinstance(result, Estimate), result
    return result


def total(table: PriceTable, provider: str | None, model: str | None, **usage: Any) -> Decimal:
    return estimate(table, provider, model, **usage).total


# -- the shipped table ----------------------------------------------------------------------------
def test_shipped_table_has_version_as_of_and_sources(table: PriceTable) -> None:
    assert table.version == SHIPPED
    assert table.as_of == "2026-11-24"
    assert table.currency == "USD"
    for provider in table.providers.values():
        assert provider.source, f"{provider.name} has no source"


@pytest.mark.parametrize(
    ("provider", "model", "usage"),
    [
        ("openai", "gpt-4o", {"tokens_in": 1}),
        ("anthropic", "claude-sonnet-4-5", {"tokens_in": 1}),
        ("google", "gemini-2.5-pro", {"tokens_in": 1}),
        ("mistral", "mistral-large", {"tokens_in": 1}),
        ("openai", "tts-1", {"characters": 1}),
        ("elevenlabs", "eleven_multilingual_v2", {"characters": 1}),
        ("azure", "neural", {"characters": 1}),
        ("openai", "dall-e-3", {"images": 1}),
        ("stability", "sd3.5-large", {"images": 1}),
        ("aws.mediaconvert", "hd", {"duration_seconds": 1}),
        ("shotstack", "anything", {"duration_seconds": 1}),
    ],
)
def test_shipped_table_prices_the_main_providers_above_zero(
    table: PriceTable, provider: str, model: str, usage: dict[str, Any]
) -> None:
    assert total(table, provider, model, **usage) > 0


@pytest.mark.parametrize(
    ("provider", "usage"),
    [
        ("ollama", {"tokens_in": 5000, "tokens_out": 800}),
        ("llama.cpp", {"tokens_in": 10}),
        ("piper", {"characters": 4000}),
        ("ffmpeg", {"duration_seconds": 95.5}),
    ],
)
def test_local_engines_cost_zero_but_are_priced(
    table: PriceTable, provider: str, usage: dict[str, Any]
) -> None:
    result = estimate(table, provider, "whatever-model:7b", **usage)
    assert result.total == 0
    assert result.provider == "local"
    quote = table.quote(stage="script", provider=provider, model="x", usage=usage)
    assert quote == Quote(0.0, "USD", SHIPPED)  # a real price of zero, not "unpriced"


# -- every unit kind, by hand ----------------------------------------------------------------------
def test_tokens(table: PriceTable) -> None:
    # gpt-4o: 1000 x 2.50/1M + 500 x 10.00/1M = 0.0025 + 0.005
    assert total(table, "openai", "gpt-4o", tokens_in=1000, tokens_out=500) == Decimal("0.0075")


def test_cached_tokens_are_a_subset_priced_at_the_cached_rate(table: PriceTable) -> None:
    # 800 uncached x 2.50/1M + 200 cached x 1.25/1M + 500 x 10/1M = 0.002 + 0.00025 + 0.005
    result = estimate(
        table, "openai", "gpt-4o", tokens_in=1000, tokens_out=500, cached_input_tokens=200
    )
    assert result.total == Decimal("0.00725")
    assert [(line.label, line.quantity) for line in result.lines] == [
        ("input tokens (uncached)", 800),
        ("cached input tokens", 200),
        ("output tokens", 500),
    ]


def test_cached_tokens_without_a_cached_rate_cost_the_input_rate(table: PriceTable) -> None:
    # mistral-large publishes no cached price: 1000 x 2/1M + 100 x 6/1M, cache or not
    result = estimate(
        table, "mistral", "mistral-large", tokens_in=1000, tokens_out=100, cached_input_tokens=400
    )
    assert result.total == Decimal("0.0026")
    assert any("cached-input" in note for note in result.notes)


def test_cached_tokens_reported_apart_from_input_are_not_lost(table: PriceTable) -> None:
    # 100 cached > 10 input: cannot be a subset, so both are priced as reported:
    # 10 x 3/1M + 100 x 0.30/1M + 1 x 15/1M = 0.00003 + 0.00003 + 0.000015
    result = estimate(
        table, "anthropic", "claude-3-5-sonnet", tokens_in=10, tokens_out=1, cached_input_tokens=100
    )
    assert result.total == Decimal("0.000075")


def test_characters(table: PriceTable) -> None:
    assert total(table, "ElevenLabs", "eleven_multilingual_v2", characters=1234) == Decimal(
        "0.1234"
    )
    assert total(table, "openai", "tts-1-hd", characters=2500) == Decimal("0.075")  # 2.5 x 0.030
    # an Azure voice name matches the neural pattern: 1000 x 0.015/1k
    result = estimate(table, "azure", "en-US-JennyNeural", characters=1000)
    assert (result.model, result.total) == ("neural", Decimal("0.015"))
    assert result.match.startswith("pattern")


def test_characters_entry_ignores_the_audio_duration_and_says_so(table: PriceTable) -> None:
    result = estimate(
        table, "elevenlabs", "eleven_flash_v2_5", characters=2000, duration_seconds=61.5
    )
    assert result.total == Decimal("0.1")  # 2 x 0.05; seconds are not what this engine bills
    assert result.notes == ("not priced by this entry: seconds",)


def test_images_by_size_and_quality(table: PriceTable) -> None:
    assert total(
        table, "openai", "dall-e-3", images=3, image_size="1792x1024", image_quality="hd"
    ) == Decimal("0.36")  # 3 x 0.12
    assert total(
        table, "openai", "gpt-image-1", images=4, image_size="1024 X 1536", image_quality="Medium"
    ) == Decimal("0.252")  # 4 x 0.063
    assert total(table, "openai", "dall-e-2", images=5, image_size="512x512") == Decimal("0.09")
    assert total(table, "stability", "sd3.5-large", images=2) == Decimal("0.13")  # 2 x 0.065


def test_images_use_a_documented_default_only_where_the_api_has_one(table: PriceTable) -> None:
    # dall-e-3 defaults to 1024x1024 standard: 2 x 0.04
    result = estimate(table, "openai", "dall-e-3", images=2)
    assert result.total == Decimal("0.08")
    assert any("default" in note for note in result.notes)
    # gpt-image-1's default is "auto": unknown size or quality is unpriced, not guessed
    assert isinstance(table.price("openai", "gpt-image-1", {"images": 2}), Unpriced)
    no_quality = table.price("openai", "gpt-image-1", {"images": 2, "image_size": "1024x1024"})
    assert isinstance(no_quality, Unpriced) and "quality" in no_quality.reason
    bad_size = table.price("openai", "dall-e-3", {"images": 1, "image_size": "640x480"})
    assert isinstance(bad_size, Unpriced) and "640x480" in bad_size.reason


def test_seconds_of_output(table: PriceTable) -> None:
    assert total(
        table, "gcp.vertex_ai", "veo-3.0-fast-generate-001", duration_seconds=8
    ) == Decimal("1.2")  # 8 x 0.15
    # MediaConvert HD: $0.015 per minute = 0.00025/s; 90.5 s -> 0.022625
    assert total(table, "aws.mediaconvert", "hd", duration_seconds=90.5) == Decimal("0.022625")
    assert total(table, "openai", "gpt-4o-mini-tts", duration_seconds=60) == Decimal("0.015")


def test_totals_round_half_up_to_one_hundred_millionth(table: PriceTable) -> None:
    # gpt-5-nano cached input: 1 x 0.005/1M = 0.000000005 -> 0.00000001
    result = estimate(table, "openai", "gpt-5-nano", tokens_in=1, cached_input_tokens=1)
    assert result.lines[1].amount == Decimal("0.000000005")
    assert result.total == Decimal("0.00000001")
    assert repr(result.amount) == "1e-08"


def test_quote_amount_is_the_exact_decimal(table: PriceTable) -> None:
    # 3 x 0.1/1M (gpt-4.1-nano input) = 0.0000003; as a float it must read back exactly
    quote = table.quote(
        stage="script", provider="openai", model="gpt-4.1-nano", usage={"tokens_in": 3}
    )
    assert quote is not None
    assert Decimal(repr(quote.amount)) == Decimal("0.0000003")
    assert quote.version == SHIPPED and quote.currency == "USD"


def test_usage_without_any_quantity_the_entry_prices_is_unpriced(table: PriceTable) -> None:
    result = table.price("openai", "gpt-4o", {"characters": 500})
    assert isinstance(result, Unpriced)
    assert "tokens" in result.reason and "characters" in result.reason


# -- matching ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "model", "entry"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("OpenAI", "GPT-4o-2024-11-20", "gpt-4o"),
        ("openai", "openai/gpt-4o", "gpt-4o"),
        ("openai", "gpt-4-1106-preview", "gpt-4-turbo"),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gcp.vertex_ai", "claude-3-5-sonnet@20240620", None),  # Vertex hosts Claude: not in google
        ("anthropic", "claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("mistral_ai", "mistral-large-2411", "mistral-large"),
        ("mistral", "mistral-small-latest", "mistral-small"),
        ("gcp.gemini", "gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("google", "models/gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("google", "en-US-Wavenet-D", "wavenet"),
        ("openai", "gpt-4o-audio-preview-2024-12-17", None),  # a different model, not gpt-4o
    ],
)
def test_model_matching(table: PriceTable, provider: str, model: str, entry: str | None) -> None:
    found = table.find(provider, model)
    if entry is None:
        assert isinstance(found, str)
    else:
        assert not isinstance(found, str), found
        assert found[1].id == entry


def test_an_exact_dated_id_beats_its_family(table: PriceTable) -> None:
    # the first gpt-4o snapshot kept its launch price: 1000 x 5/1M + 1000 x 15/1M
    assert total(table, "openai", "gpt-4o-2024-05-13", tokens_in=1000, tokens_out=1000) == Decimal(
        "0.02"
    )


def test_version_families_strip_one_suffix_at_a_time() -> None:
    assert list(version_families("o1-preview-2024-09-12")) == ["o1-preview", "o1"]
    assert list(version_families("gpt-4o")) == []


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("OpenAI", "openai"),
        ("azure.ai.openai", "azure"),
        ("az.ai.openai", "azure"),
        ("gcp.gemini", "google"),
        ("Google", "google"),
        ("vertex_ai", "google"),
        ("ElevenLabs", "elevenlabs"),
        ("Eleven Labs", "elevenlabs"),
        ("mistral_ai", "mistral"),
        ("Stability AI", "stability"),
        ("FFmpeg", "local"),
    ],
)
def test_provider_names_ignore_case_and_map_aliases(
    table: PriceTable, name: str, canonical: str
) -> None:
    provider = table.provider(name)
    assert provider is not None and provider.name == canonical


def test_provider_is_inferred_only_when_one_provider_has_the_model(table: PriceTable) -> None:
    assert estimate(table, None, "claude-haiku-4-5", tokens_in=1_000_000).total == Decimal("1")
    ambiguous = table.price(None, "gpt-4o", {"tokens_in": 10})  # OpenAI and Azure both sell it
    assert isinstance(ambiguous, Unpriced) and "several providers" in ambiguous.reason


def test_a_provider_prefix_names_the_provider_when_the_span_names_none(table: PriceTable) -> None:
    """``openai/gpt-4o-2024-08-06`` (OpenRouter, LiteLLM ids) says whose model it is: OpenAI's,
    not "OpenAI's or Azure's"."""
    # 1000 x $2.50/1M + 500 x $10/1M = 0.0025 + 0.005
    result = estimate(table, None, "openai/gpt-4o-2024-08-06", tokens_in=1000, tokens_out=500)
    assert (result.provider, result.model, result.total) == ("openai", "gpt-4o", Decimal("0.0075"))
    result = estimate(table, None, "Azure/gpt-4o", tokens_in=1000)
    assert result.provider == "azure"
    # a prefix that is no provider's name changes nothing: still ambiguous
    unknown = table.price(None, "models/gpt-4o", {"tokens_in": 10})
    assert isinstance(unknown, Unpriced) and "several providers" in unknown.reason


def test_unknown_provider_or_model_is_unpriced_never_zero(table: PriceTable) -> None:
    for provider, model in (("acme-ai", "gpt-4o"), ("openai", "gpt-99-ultra"), ("openai", None)):
        assert (
            table.quote(
                stage="script",
                provider=provider,
                model=model,
                usage={"tokens_in": 100, "tokens_out": 10},
            )
            is None
        )
        result = table.price(provider, model, {"tokens_in": 100})
        assert isinstance(result, Unpriced) and result.reason


# -- override files ----------------------------------------------------------------------------------
def write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_override_merges_over_the_shipped_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.json",
        {
            "version": "acme-1",
            "providers": {
                "OpenAI": {"models": {"gpt-4o": {"input_per_1m": 2, "output_per_1m": 8}}},
                "acme": {
                    "aliases": ["acme.ai"],
                    "source": "our contract",
                    "models": {"acme-large": {"input_per_1m": 1, "output_per_1m": 3}},
                },
                "stability": {"aliases": ["StableDiffusion"]},
            },
        },
    )
    table = load_price_table(path)
    assert table.version == f"{SHIPPED}+acme-1"
    # the replaced entry lost its cached rate (replaced whole): 1000 x 2/1M + 1000 x 8/1M
    assert total(
        table,
        "openai",
        "gpt-4o-2024-08-06",
        tokens_in=1000,
        tokens_out=1000,
        cached_input_tokens=500,
    ) == Decimal("0.01")
    assert total(table, "Acme.AI", "acme-large", tokens_in=1000, tokens_out=1000) == Decimal(
        "0.004"
    )
    assert total(table, "StableDiffusion", "sd3.5-medium", images=2) == Decimal("0.07")
    # everything else is still the shipped price: 1000 x 0.15/1M
    assert total(table, "openai", "gpt-4o-mini", tokens_in=1000) == Decimal("0.00015")
    assert shipped_price_table().provider("acme") is None  # the shipped table is untouched


def test_override_can_take_over_an_alias(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.json",
        {
            "providers": {
                "openai": {
                    "models": {"gpt-4-1106-preview": {"input_per_1m": 1, "output_per_1m": 1}}
                }
            }
        },
    )
    table = load_price_table(path)
    assert estimate(table, "openai", "gpt-4-1106-preview", tokens_in=10**6).total == Decimal("1")
    assert estimate(table, "openai", "gpt-4-0125-preview", tokens_in=10**6).total == Decimal("10")


def test_override_without_version_is_versioned_by_its_content(tmp_path: Path) -> None:
    doc = {"providers": {"openai": {"models": {"tts-1": {"per_1k_characters": 0.02}}}}}
    first = load_price_table(write(tmp_path, "a.json", doc))
    again = load_price_table(write(tmp_path, "b.json", doc))
    doc["providers"]["openai"]["models"]["tts-1"]["per_1k_characters"] = 0.021
    changed = load_price_table(write(tmp_path, "c.json", doc))
    assert first.version.startswith(f"{SHIPPED}+override-")
    assert first.version == again.version != changed.version


def test_toml_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.toml",
        """
version = "team-toml"

[providers.elevenlabs.models.eleven_v3]
per_1k_characters = 0.12

[providers.openai.models."dall-e-3".per_image."1024x1024"]
standard = 0.03
""",
    )
    table = load_price_table(path)
    assert table.version == f"{SHIPPED}+team-toml"
    assert total(table, "elevenlabs", "eleven_v3", characters=1000) == Decimal("0.12")
    assert total(
        table, "openai", "dall-e-3", images=1, image_size="1024x1024", image_quality="standard"
    ) == Decimal("0.03")


def test_override_from_the_environment_and_path_beats_it(tmp_path: Path) -> None:
    env_file = write(tmp_path, "env.json", {"version": "from-env", "providers": {}})
    arg_file = write(tmp_path, "arg.json", {"version": "from-arg", "providers": {}})
    assert load_price_table(environ={c.ENV_PRICES_FILE: str(env_file)}).version.endswith("from-env")
    assert load_price_table(arg_file, environ={c.ENV_PRICES_FILE: str(env_file)}).version.endswith(
        "from-arg"
    )
    assert load_price_table(environ={c.ENV_PRICES_FILE: ""}).version == SHIPPED


def test_process_environment_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(c.ENV_PRICES_FILE, str(write(tmp_path, "e.json", {"version": "v9"})))
    assert load_price_table().version == f"{SHIPPED}+v9"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"providers": {"openai": {"models": {"gpt-4o": {"per_minute": 1}}}}},
            "providers.openai.models.gpt-4o.per_minute: unknown unit or field 'per_minute'",
        ),
        (
            {
                "providers": {
                    "openai": {"models": {"gpt-4o": {"input_per_1m": -1, "output_per_1m": 1}}}
                }
            },
            "providers.openai.models.gpt-4o.input_per_1m: negative price -1",
        ),
        (
            {"providers": {"openai": {"models": {"tts-1": {"per_1k_characters": "0.015"}}}}},
            "a price must be a number, got str",
        ),
        (
            {"providers": {"openai": {"models": {"gpt-x": {"input_per_1m": 1}}}}},
            "token prices need both input_per_1m and output_per_1m",
        ),
        (
            {"providers": {"openai": {"models": {"gpt-x": {"note": "free?"}}}}},
            "no price: give at least one of",
        ),
        (
            {"providers": {"openai": {"models": {"img": {"per_image": {"big": 1}}}}}},
            "size 'big' must look like 1024x1024",
        ),
        (
            {
                "providers": {
                    "openai": {"models": {"img": {"per_image": {"1x1": 1}, "default_size": "2x2"}}}
                }
            },
            "'2x2' is not one of the sizes in per_image",
        ),
        (
            {
                "providers": {
                    "openai": {"models": {"v": {"per_1k_characters": 1, "patterns": ["("]}}}
                }
            },
            "not a valid regular expression",
        ),
        ({"providers": {"openai": {"model": {}}}}, "unknown field 'model'"),
        ({"prices": {}}, "unknown field 'prices'"),
        ({"providers": {" ": {"models": {}}}}, "a provider name is empty"),
        ({"format": 2}, "unsupported format 2"),
        ({"as_of": "last tuesday"}, "is not a date"),
        ({"currency": "EUR"}, "currency 'EUR' differs from the shipped table's 'USD'"),
        (
            {"providers": {"acme": {"aliases": ["openai"], "models": {}}}},
            "provider name 'openai' is used by both",
        ),
        (
            {"providers": {"openai": {"models": {"x": {"per_second": 1, "aliases": ["gpt-4o"]}}}}},
            "model name 'gpt-4o' is used by both",
        ),
    ],
)
def test_override_errors_are_clear(tmp_path: Path, doc: Any, expected: str) -> None:
    path = write(tmp_path, "bad.json", doc)
    with pytest.raises(PricingError) as info:
        load_price_table(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("big.json", '{"providers": {"acme": {"models": {"v": {"per_second": 1e400}}}}}'),
        ("big.toml", "[providers.acme.models.v]\nper_second = 1e400\n"),
    ],
)
def test_a_price_beyond_any_amount_a_file_can_hold_is_refused(
    tmp_path: Path, name: str, text: str
) -> None:
    """1e400 is finite as a decimal, but no cost computed from it can be written."""
    with pytest.raises(PricingError, match="per_second: a price must be a finite number"):
        load_price_table(write(tmp_path, name, text))


def test_absurd_quantities_are_priced_or_unpriced_never_a_crash(
    table: PriceTable, tmp_path: Path
) -> None:
    """An amount of 1e20 dollars or more has more digits to the hundred-millionth than the
    default decimal context holds (28); one beyond 1.8e308 is beyond any float."""
    # 1e30 s x $0.05/s = 5e28
    assert total(table, "runway", "gen4_turbo", duration_seconds=1e30) == Decimal("5e28")
    huge = load_price_table(
        write(tmp_path, "p.json", {"providers": {"acme": {"models": {"v": {"per_second": 1e300}}}}})
    )
    result = huge.price("acme", "v", {"duration_seconds": 1e10})
    assert isinstance(result, Unpriced) and "too large" in result.reason


def test_every_problem_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.json",
        {
            "providers": {
                "openai": {
                    "models": {
                        "a": {"per_second": -2},
                        "b": {"per_hour": 1},
                        "c": {"per_image": "free"},
                    }
                }
            }
        },
    )
    with pytest.raises(PricingError) as info:
        load_price_table(path)
    message = str(info.value)
    assert "models.a.per_second: negative price" in message
    assert "models.b.per_hour: unknown unit" in message
    assert "models.c.per_image" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"providers": {"openai": }', "not valid JSON: Expecting value (line 1, column 26)"),
        ('{"version": "a", "version": "b"}', "duplicate key 'version'"),
        ("version = ", "not valid TOML"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: str, expected: str) -> None:
    name = "bad.toml" if "TOML" in expected else "bad.json"
    with pytest.raises(PricingError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_price_table(write(tmp_path, name, content))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match="does not exist"):
        load_price_table(tmp_path / "nope.json")
    with pytest.raises(PricingError, match="is a directory"):
        load_price_table(tmp_path)
    assert issubclass(PricingError, ConfigurationError)


# -- pricing at fold time ------------------------------------------------------------------------------
class SpanFactory:
    """Real SDK spans for one job, collected in memory."""

    def __init__(self, job_id: str = "job-1") -> None:
        self.job_id = job_id
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("test")

    def span(self, name: str, attributes: Mapping[str, Any]) -> Any:
        return self.tracer.start_as_current_span(
            name, attributes={c.JOB_ID: self.job_id, **attributes}
        )

    def stage(self, stage: str, **attributes: Any) -> Any:
        return self.span(f"{c.STAGE_SPAN_PREFIX}{stage}", {c.STAGE: stage, **attributes})

    def records(self, pricer: Any) -> list[dict[str, Any]]:
        return self.collection(pricer)["records"]

    def collection(self, pricer: Any) -> dict[str, Any]:
        units = {}
        for span in self.memory.get_finished_spans():
            folded = fold_span(span)
            assert folded is not None
            units[folded.span_id] = folded.unit
        return assemble(self.job_id, units, pricer=pricer)


def llm(
    model: str, tokens_in: int, tokens_out: int, *, provider: str = "openai", **extra: Any
) -> dict[str, Any]:
    return {
        c.GEN_AI_PROVIDER_NAME: provider,
        c.GEN_AI_RESPONSE_MODEL: model,
        c.GEN_AI_USAGE_INPUT_TOKENS: tokens_in,
        c.GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out,
        **extra,
    }


def one_record(spans: SpanFactory, pricer: Any) -> dict[str, Any]:
    records = spans.records(pricer)
    assert len(records) == 1
    return records[0]


def test_stage_usage_is_priced_with_the_table_version(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage(
        "script",
        **llm("gpt-4o-2024-08-06", 1000, 500, **{c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 200}),
    ):
        pass
    rec = one_record(spans, table)
    assert rec["cost_estimate"] == 0.00725
    assert rec["pricing_version"] == SHIPPED
    assert rec["metadata"] == {"cached_input_tokens": 200}
    assert rec["tokens_in"] == 1000  # cached tokens are not added to the input count


def test_explicit_cost_wins(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("script", **llm("gpt-4o", 1000, 500, **{c.COST_AMOUNT: 0.5})):
        pass
    with spans.stage(
        "tts",
        **{
            c.GEN_AI_PROVIDER_NAME: "elevenlabs",
            c.GEN_AI_REQUEST_MODEL: "eleven_v3",
            c.USAGE_CHARACTERS: 1000,
            c.COST_AMOUNT: 0,
        },
    ):
        pass
    explicit, zero = spans.records(table)
    assert explicit["cost_estimate"] == 0.5 and "pricing_version" not in explicit
    # Marked, so a consumer never re-prices it.
    assert explicit["metadata"] == {"pricing": "explicit"}
    assert zero["cost_estimate"] == 0
    # An explicit zero is a price, not "unpriced".
    assert zero["metadata"] == {"characters": 1000, "pricing": "explicit"}


def test_a_cache_hit_costs_nothing_and_reports_what_it_saved(table: PriceTable) -> None:
    """The studio's cache hit paid no provider: priced at zero, the table's price of its usage
    recorded as the saving, and the job's legacy report sums the savings."""
    from aura_otel import legacy

    spans = SpanFactory()
    with spans.stage("script", **llm("gpt-4o", 1000, 500, **{c.CACHE_HIT: True})):
        pass
    with spans.stage("plan", **llm("gpt-4o", 1000, 500)):
        pass
    with spans.stage(
        "tts", **{c.CACHE_HIT: True, c.GEN_AI_PROVIDER_NAME: "NewVoice", c.USAGE_CHARACTERS: 10}
    ):
        pass
    with spans.stage("brief", **{c.CACHE_HIT: True, c.COST_AMOUNT: 0.02}):
        pass
    hit, paid, unknown_hit, explicit_hit = spans.records(table)
    assert paid["cost_estimate"] > 0 and "pricing_version" in paid
    assert hit["cost_estimate"] == 0 and "pricing_version" not in hit
    assert hit["metadata"] == {"pricing": "cache_hit", "cost_saved": paid["cost_estimate"]}
    # No price known for what the cache saved: still free, no saving claimed, not "unpriced".
    assert unknown_hit["cost_estimate"] == 0
    assert unknown_hit["metadata"] == {"characters": 10, "pricing": "cache_hit"}
    # An explicit cost still wins over the cache rule.
    assert explicit_hit["cost_estimate"] == 0.02
    assert explicit_hit["metadata"] == {"pricing": "explicit"}
    doc = spans.collection(table)
    report = legacy.run_cost_report(doc)
    assert report["tokenStats"]["costSavedByCache"] == paid["cost_estimate"]
    assert report["totalCost"] == sum_money([paid["cost_estimate"], 0.02])


@pytest.mark.parametrize("pricing", [True, False])
def test_a_cache_hit_keeps_what_its_calls_reported_they_cost(
    table: PriceTable, pricing: bool
) -> None:
    """An explicit cost always wins: a call under a cache-hit stage that reported $0.10 was
    paid for (the record said $0 and counted it as saved). The saving is the rest."""
    spans = SpanFactory()
    with spans.stage("script", **{c.GEN_AI_PROVIDER_NAME: "openai", c.CACHE_HIT: True}):
        with spans.span("chat 1", llm("gpt-4o", 1000, 0, **{"gen_ai.usage.cost": 0.1})):
            pass
        with spans.span("chat 2", llm("gpt-4o", 1000, 0)):
            pass  # 1000 x 2.5/1M = 0.0025, what the cache saved
    rec = one_record(spans, table if pricing else None)
    assert rec["cost_estimate"] == 0.1 and "pricing_version" not in rec
    expected = {"pricing": "explicit", "cost_saved": 0.0025} if pricing else {"pricing": "explicit"}
    assert rec["metadata"] == expected


def test_a_cache_hit_is_free_with_pricing_off() -> None:
    spans = SpanFactory()
    with spans.stage("script", **llm("gpt-4o", 1000, 500, **{c.CACHE_HIT: True})):
        pass
    rec = one_record(spans, None)
    assert rec["cost_estimate"] == 0 and rec["metadata"] == {"pricing": "cache_hit"}


def test_unknown_model_is_marked_unpriced_and_has_no_cost(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage(
        "visuals",
        **{c.GEN_AI_PROVIDER_NAME: "StableDiffusion", c.USAGE_IMAGES: 2, c.META_PREFIX + "seed": 7},
    ):
        pass
    rec = one_record(spans, table)
    assert "cost_estimate" not in rec and "pricing_version" not in rec
    assert rec["metadata"] == {"seed": 7, "images": 2, UNPRICED_METADATA: UNPRICED_VALUE}


def test_without_a_pricer_only_complete_explicit_costs_count() -> None:
    spans = SpanFactory()
    with spans.stage("script", **llm("gpt-4o", 10, 10)):
        pass
    with spans.stage("plan"):
        with spans.span("a", llm("gpt-4o", 1, 1, **{c.COST_AMOUNT: 0.1})):
            pass
        with spans.span("b", llm("gpt-4o", 1, 1)):
            pass
    with spans.stage("ssml"):
        with spans.span("c", llm("gpt-4o", 1, 1, **{c.COST_AMOUNT: 0.25})):
            pass
    script, plan, ssml = spans.records(None)
    # pricing off (configure(pricing=False)): nothing estimated, nothing marked, no partial sums
    assert "cost_estimate" not in script and "metadata" not in script
    assert "cost_estimate" not in plan and "metadata" not in plan
    assert ssml["cost_estimate"] == 0.25


def test_a_stage_without_usage_is_neither_priced_nor_unpriced(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("brief", **{c.META_PREFIX + "topic": "owls"}):
        pass
    rec = one_record(spans, table)
    assert "cost_estimate" not in rec and rec["metadata"] == {"topic": "owls"}


def test_genai_children_with_different_models_are_priced_each(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("plan"):
        with spans.span("chat gpt-4o-mini", llm("gpt-4o-mini", 2000, 1000)):
            pass
        with spans.span(
            "chat claude", llm("claude-haiku-4-5-20251001", 1000, 200, provider="anthropic")
        ):
            pass
    rec = one_record(spans, table)
    # 2000 x 0.15/1M + 1000 x 0.60/1M = 0.0009 ; 1000 x 1/1M + 200 x 5/1M = 0.002
    assert rec["cost_estimate"] == 0.0029
    assert rec["pricing_version"] == SHIPPED
    assert (rec["tokens_in"], rec["tokens_out"]) == (3000, 1200)


def test_children_explicit_and_estimated_costs_add_up(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("script", **{c.GEN_AI_PROVIDER_NAME: "openai"}):
        with spans.span("chat 1", llm("gpt-4o", 1000, 0, **{"gen_ai.usage.cost": 0.1})):
            pass
        with spans.span(
            "chat 2", {c.GEN_AI_RESPONSE_MODEL: "gpt-4o", c.GEN_AI_USAGE_INPUT_TOKENS: 1000}
        ):
            pass  # no provider on the child: the stage's is used; 1000 x 2.5/1M
    rec = one_record(spans, table)
    assert rec["cost_estimate"] == 0.1025
    assert rec["pricing_version"] == SHIPPED


def test_one_unpriced_child_makes_the_stage_unpriced_not_cheaper(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("script"):
        with spans.span("chat 1", llm("gpt-4o", 1000, 0, **{"gen_ai.usage.cost": 0.1})):
            pass
        with spans.span("chat 2", llm("mystery-model", 1000, 10, provider="acme")):
            pass
    rec = one_record(spans, table)
    assert "cost_estimate" not in rec
    assert rec["metadata"][UNPRICED_METADATA] == UNPRICED_VALUE


def test_stage_with_its_own_usage_is_priced_once(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("script", **llm("gpt-4o-mini", 10_000, 1000)):
        with spans.span("chat", llm("gpt-4o-mini", 10_000, 1000)):
            pass
    rec = one_record(spans, table)
    # the stage's own figures win, children are not added: 10000 x 0.15/1M + 1000 x 0.6/1M
    assert rec["cost_estimate"] == 0.0021
    assert rec["tokens_in"] == 10_000


def test_stage_usage_with_fully_costed_children_takes_the_explicit_costs(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("script", **{c.GEN_AI_USAGE_INPUT_TOKENS: 3000}):
        with spans.span("a", llm("gpt-4o", 1000, 0, **{c.COST_AMOUNT: 0.1})):
            pass
        with spans.span("b", llm("gpt-4o", 2000, 0, **{c.COST_AMOUNT: 0.2})):
            pass
    rec = one_record(spans, table)
    assert rec["cost_estimate"] == 0.3 and "pricing_version" not in rec


def test_stage_usage_cannot_be_split_across_children_models(table: PriceTable) -> None:
    spans = SpanFactory()
    with spans.stage("script", **{c.GEN_AI_USAGE_INPUT_TOKENS: 3000}):
        with spans.span("a", llm("gpt-4o", 1000, 0)):
            pass
        with spans.span("b", llm("gpt-4o-mini", 2000, 0)):
            pass
    rec = one_record(spans, table)
    assert "cost_estimate" not in rec and rec["metadata"][UNPRICED_METADATA] == UNPRICED_VALUE


def test_a_failing_pricer_costs_a_price_not_the_file() -> None:
    class Broken:
        def quote(self, **_: Any) -> Quote | None:
            raise RuntimeError("boom sk-1234567890abcdef1234567890abcdef")

    spans = SpanFactory()
    with spans.stage("script", **llm("gpt-4o", 1, 1)):
        pass
    rec = one_record(spans, Broken())
    assert rec["metadata"] == {UNPRICED_METADATA: UNPRICED_VALUE, "pricing_error": "RuntimeError"}


# -- end to end: spans -> exporter -> v1 file ------------------------------------------------------------
@pytest.fixture
def exporter_run(
    tmp_path: Path, table: PriceTable
) -> Iterator[tuple[SpanFactory, RunTelemetryExporter]]:
    spans = SpanFactory("e2e-job")
    exporter = RunTelemetryExporter(tmp_path, pricer=table, write_interval=0)
    spans.provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield spans, exporter
    spans.provider.shutdown()


def test_summary_totals_with_priced_explicit_and_unpriced_records(
    tmp_path: Path, exporter_run: tuple[SpanFactory, RunTelemetryExporter]
) -> None:
    spans, exporter = exporter_run
    with spans.span(c.JOB_SPAN_NAME, {c.CORRELATION_ID: "corr-1"}):
        with spans.stage("plan"):  # two calls, two models: 0.0009 + 0.002
            with spans.span("chat a", llm("gpt-4o-mini", 2000, 1000)):
                pass
            with spans.span("chat b", llm("claude-haiku-4-5", 1000, 200, provider="Anthropic")):
                pass
        with spans.stage(
            "script",
            **llm("gpt-4o-2024-08-06", 1000, 500, **{c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 200}),
        ):
            pass  # 0.00725
        with spans.stage(
            "tts",
            **{
                c.GEN_AI_PROVIDER_NAME: "ElevenLabs",
                c.USAGE_CHARACTERS: 1500,
                c.COST_AMOUNT: 0.03,
                c.GEN_AI_REQUEST_MODEL: "eleven_v3",
            },
        ):
            pass  # explicit 0.03 (the table would say 0.15)
        with spans.stage(
            "visuals", **{c.GEN_AI_PROVIDER_NAME: "StableDiffusion", c.USAGE_IMAGES: 4}
        ):
            pass  # unknown provider: unpriced
        with spans.stage(
            "render", **{c.GEN_AI_PROVIDER_NAME: "ffmpeg", c.USAGE_OUTPUT_SECONDS: 42.5}
        ):
            pass  # local: 0
    exporter.force_flush()
    collection = load_collection((tmp_path / "e2e-job" / "telemetry.json").read_bytes())
    records = {r.stage.value: r for r in collection.records}
    assert records["plan"].cost_estimate == 0.0029
    assert records["script"].cost_estimate == 0.00725
    assert records["tts"].cost_estimate == 0.03 and records["tts"].pricing_version is None
    assert records["visuals"].cost_estimate is None
    assert records["render"].cost_estimate == 0 and records["render"].pricing_version == SHIPPED
    assert {s: r.pricing_version for s, r in records.items()} == {
        "plan": SHIPPED,
        "script": SHIPPED,
        "tts": None,
        "visuals": None,
        "render": SHIPPED,
    }
    summary = collection.summary
    assert summary is not None
    # 0.0029 + 0.00725 + 0.03 + 0 (visuals unknown, not 0 - it just adds nothing)
    assert summary.total_cost == 0.04015
    assert summary.cost_by_stage == {
        "plan": 0.0029,
        "script": 0.00725,
        "tts": 0.03,
        "visuals": 0,
        "render": 0,
    }
    assert (summary.total_tokens_in, summary.total_tokens_out) == (4000, 1700)
    doc = json.loads((tmp_path / "e2e-job" / "telemetry.json").read_bytes())
    assert count_unpriced(doc["records"]) == 1
    assert doc["records"][3]["metadata"][UNPRICED_METADATA] == UNPRICED_VALUE


def test_failed_stage_with_usage_is_still_priced(
    tmp_path: Path, exporter_run: tuple[SpanFactory, RunTelemetryExporter]
) -> None:
    spans, exporter = exporter_run
    with spans.span(c.JOB_SPAN_NAME, {}):
        with spans.stage("script", **llm("gpt-4.1", 500, 0)) as span:
            span.set_status(Status(StatusCode.ERROR, "model refused"))
    exporter.force_flush()
    doc = json.loads((tmp_path / "e2e-job" / "telemetry.json").read_bytes())
    rec = doc["records"][0]
    assert rec["result_status"] == "error"
    assert rec["cost_estimate"] == 0.001  # 500 x 2/1M: failed calls are billed too


# -- the documentation's examples are real ------------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "pricing.md"


def _blocks(language: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return [part.split("```", 1)[0] for part in text.split(f"```{language}\n")[1:]]


def test_the_documented_override_examples_load(tmp_path: Path) -> None:
    json_file = write(tmp_path, "doc.json", _blocks("json")[0])
    toml_file = write(tmp_path, "doc.toml", _blocks("toml")[0])
    from_json, from_toml = load_price_table(json_file), load_price_table(toml_file)
    assert from_json.version == from_toml.version == f"{SHIPPED}+acme-2026-12"
    for table in (from_json, from_toml):
        # 1000 uncached x 2/1M + 1000 cached x 1/1M + 1000 x 8/1M
        assert total(
            table, "openai", "gpt-4o", tokens_in=2000, cached_input_tokens=1000, tokens_out=1000
        ) == Decimal("0.011")
        assert total(table, "StableDiffusion", "stable-image-core", images=1) == Decimal("0.03")
    assert total(from_json, "acme", "renderer-v2", duration_seconds=100) == Decimal("0.2")
    assert total(from_json, "acme", "acme-img", images=2, image_size="512x512") == Decimal("0.1")
    assert total(from_json, "acme", "other", characters=1000) == Decimal("0.02")


def test_the_documented_quote_matches_the_command(table: PriceTable) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert "$0.00725 USD" in text
    assert total(
        table,
        "openai",
        "gpt-4o-2024-08-06",
        tokens_in=1000,
        tokens_out=500,
        cached_input_tokens=200,
    ) == Decimal("0.00725")


def test_quotes_are_memoised_but_unhashable_usage_still_prices(table: PriceTable) -> None:
    usage = {"tokens_in": 4000, "tokens_out": 0}
    first = table.quote(stage="plan", provider="openai", model="gpt-4o", usage=usage)
    assert first is table.quote(stage="plan", provider="openai", model="gpt-4o", usage=dict(usage))
    odd = table.quote(
        stage="plan", provider="openai", model="gpt-4o", usage={**usage, "labels": ["a", "b"]}
    )  # a custom caller's extra key
    assert odd == first == Quote(0.01, "USD", SHIPPED)  # 4000 x 2.5/1M


# -- through configure() and the job/stage helpers -------------------------------------------------------
def test_configure_prices_with_the_override_and_refuses_a_bad_file(tmp_path: Path) -> None:
    from aura_otel import configure, job, stage

    bad = write(
        tmp_path,
        "bad.json",
        {"providers": {"openai": {"models": {"gpt-4o": {"input_per_1m": -2, "output_per_1m": 1}}}}},
    )
    with pytest.raises(PricingError, match="negative price -2"):
        configure(
            tmp_path / "jobs",
            prices_file=bad,
            tracer_provider=TracerProvider(),
            set_global=False,
            propagate_threads=False,
        )
    assert not (tmp_path / "jobs").exists()  # refused before anything was set up

    good = write(
        tmp_path,
        "ours.toml",
        '[providers.acme.models."acme-large"]\ninput_per_1m = 3\noutput_per_1m = 9\n',
    )
    provider = TracerProvider()
    telemetry = configure(
        tmp_path / "jobs",
        prices_file=good,
        tracer_provider=provider,
        set_global=False,
        propagate_threads=False,
        write_interval=0,
    )
    try:
        with job("configured", tracer_provider=provider):
            with stage("script", provider="acme", model="acme-large") as handle:
                handle.record_usage(tokens_in=1000, tokens_out=100)
            with stage("tts", provider="acme", model="acme-voice") as handle:
                handle.record_usage(characters=300)
            with stage("visuals", provider="openai", model="dall-e-3") as handle:
                handle.record_usage(images=2)
                handle.set_cost(0.05)
        telemetry.force_flush()
        doc = json.loads((tmp_path / "jobs" / "configured" / "telemetry.json").read_bytes())
    finally:
        telemetry.shutdown()
    script, tts, visuals = doc["records"]
    version = script["pricing_version"]
    assert version.startswith(f"{SHIPPED}+override-")
    assert script["cost_estimate"] == 0.0039  # 1000 x 3/1M + 100 x 9/1M
    assert "cost_estimate" not in tts and tts["metadata"][UNPRICED_METADATA] == UNPRICED_VALUE
    assert visuals["cost_estimate"] == 0.05 and "pricing_version" not in visuals  # explicit wins
    assert doc["summary"]["total_cost"] == 0.0539
