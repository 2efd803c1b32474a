"""The v1 models: golden files, field order, enum spelling, money, validation paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aura_otel.errors import CorruptTelemetryError, InvalidJobIdError
from aura_otel.schema import (
    COLLECTION_FIELDS,
    RECORD_FIELDS,
    Collection,
    Record,
    Summary,
    dumps,
    is_safe_job_id,
    json_schema,
    load_collection,
    record_dict,
    record_from,
    record_from_slots,
    sum_money,
    summarize,
    to_dict,
    to_http,
    validate_job_id,
    validation_errors,
)


def test_the_dict_builders_follow_the_models() -> None:
    """summarize and record_dict build plain dicts for speed; their keys, order and defaults
    are the models' own, so the two definitions cannot drift apart."""
    assert list(summarize([])) == list(Summary.model_fields)
    rec = record_dict(
        job_id="j",
        correlation_id="c",
        stage="tts",
        latency_ms=0,
        result_status="ok",
        started_at="2026-01-01T00:00:00.000000Z",
        ended_at="2026-01-01T00:00:00.000000Z",
    )
    defaults = {
        name: info.default
        for name, info in Record.model_fields.items()
        if not info.is_required() and info.default is not None
    }
    assert {name: rec[name] for name in defaults} == defaults
    assert list(rec) == [name for name in Record.model_fields if name in rec]


def test_reference_case_summary_is_exact(examples: Path) -> None:
    doc = orjson.loads((examples / "reference-job.json").read_bytes())
    summary = summarize(doc["records"])
    assert summary == doc["summary"]
    assert summary["total_cost"] == 0.09
    assert json.dumps(summary["total_cost"]) == "0.09"
    assert summary["cost_by_stage"] == {"script": 0.01, "tts": 0.03, "visuals": 0.05}
    assert summary["operations_by_provider"] == {"OpenAI": 1, "ElevenLabs": 1, "StableDiffusion": 1}


def test_reference_job_round_trips_byte_for_byte(examples: Path) -> None:
    raw = (examples / "reference-job.json").read_bytes()
    assert dumps(to_dict(load_collection(raw))) == raw


def test_pascal_case_in_lowercase_out(examples: Path) -> None:
    pascal = load_collection((examples / "reference-job.pascal.json").read_bytes())
    lower = (examples / "reference-job.json").read_bytes()
    assert dumps(to_dict(pascal)) == lower
    assert (
        summarize(orjson.loads((examples / "reference-job.pascal.json").read_bytes())["records"])[
            "failed_operations"
        ]
        == 1
    )


def test_pascal_output_switch_reproduces_old_writer(examples: Path) -> None:
    doc = to_dict(load_collection((examples / "reference-job.json").read_bytes()))
    assert dumps(doc, enum_case="pascal") == (examples / "reference-job.pascal.json").read_bytes()


def test_money_has_no_float_drift() -> None:
    assert sum_money([0.1, 0.2]) == 0.3
    assert json.dumps(sum_money([0.1, 0.2])) == "0.3"
    assert sum_money([0.01, 0.03, 0.05]) == 0.09
    assert sum_money([]) == 0.0
    assert sum_money([None, 0.1]) == 0.1
    # one amount is written as given; a negative zero is written as the decimal sum writes it
    assert sum_money(iter([0.30000000000000004])) == 0.30000000000000004
    assert str(sum_money([-0.0])) == "0.0" and str(sum_money([None, -0.0, None])) == "0.0"
    assert sum_money([7]) == 7.0 and isinstance(sum_money([7]), float)


def test_every_field_round_trips() -> None:
    rec = record_dict(
        job_id="job-1",
        correlation_id="corr",
        project_id="proj",
        stage="visuals",
        scene_index=3,
        model_id="sdxl",
        provider="Stability",
        selection_source="fallback",
        fallback_reason="primary refused",
        tokens_in=1,
        tokens_out=2,
        cache_hit=False,
        retries=4,
        latency_ms=1500,
        cost_estimate=0.05,
        currency="EUR",
        pricing_version="2026-11",
        result_status="warn",
        error_code="TIMEOUT",
        message="slow",
        started_at="2026-11-20T10:00:08.000001Z",
        ended_at="2026-11-20T10:00:09.500001Z",
        metadata={"nested": {"a": [1, 2, {"b": None}]}, "flag": True},
    )
    assert list(rec) == list(RECORD_FIELDS)  # every field present, in v1 order
    doc = {
        "version": "1.0",
        "job_id": "job-1",
        "correlation_id": "corr",
        "collection_started_at": "2026-11-20T10:00:00.000000Z",
        "collection_ended_at": "2026-11-20T10:00:12.000000Z",
        "records": [rec],
        "summary": summarize([rec]),
    }
    assert list(doc) == list(COLLECTION_FIELDS)
    again = to_dict(load_collection(dumps(doc)))
    assert again == doc
    assert again["records"][0]["metadata"]["nested"]["a"][2] == {"b": None}


def test_absent_optional_fields_are_left_out_and_defaults_written() -> None:
    rec = record_dict(
        job_id="j",
        correlation_id="c",
        stage="tts",
        latency_ms=0,
        result_status="ok",
        started_at="2026-01-01T00:00:00.000000Z",
        ended_at="2026-01-01T00:00:00.000000Z",
        provider=None,
    )
    assert "provider" not in rec and "metadata" not in rec
    assert rec["version"] == "1.0" and rec["retries"] == 0 and rec["currency"] == "USD"


def test_http_shape_has_explicit_nulls(examples: Path) -> None:
    http = to_http(load_collection((examples / "reference-job.json").read_bytes()))
    assert http["records"][1]["tokens_in"] is None
    assert http["records"][1]["stage"] == "tts"
    assert set(http["records"][0]) == set(RECORD_FIELDS)


def test_timestamps_are_utc_with_z(examples: Path) -> None:
    raw = orjson.loads((examples / "reference-job.json").read_bytes())
    raw["collection_started_at"] = "2026-11-20T12:00:00+02:00"
    doc = to_dict(load_collection(orjson.dumps(raw)))
    assert doc["collection_started_at"] == "2026-11-20T10:00:00.000000Z"


@pytest.mark.parametrize(
    "bad",
    ["", " ", "a/b", "a\\b", "..", "a..b", ".", "a\x00b", "a\nb", "x" * 129, " lead", 42, None],
)
def test_unsafe_job_ids_rejected(bad: object) -> None:
    with pytest.raises(InvalidJobIdError):
        validate_job_id(bad)


@pytest.mark.parametrize(
    "good", ["job-abc123", "7d0c5f0e-3c4a-4e0e-9f4e-2b1d8a6c9e11", "x" * 128, "a.b"]
)
def test_safe_job_ids_accepted(good: str) -> None:
    assert validate_job_id(good) == good


#: One id per class the file system (or a reader of a folder listing) cannot take safely.
UNSAFE_UNICODE_IDS = {
    "C1 control (NEL)": "job\u0085x",
    "C1 control (CSI)": "job\u009bx",
    "zero-width space (Cf)": "job\u200bx",
    "right-to-left override (Cf)": "job\u202ex",
    "byte order mark (Cf)": "\ufeffjob",
    "soft hyphen (Cf)": "jo\u00adb",
    "line separator (Zl)": "job\u2028x",
    "paragraph separator (Zp)": "job\u2029x",
    "private use (Co)": "job\ue000x",
    "lone surrogate (Cs, os.fsdecode of a non-UTF-8 name)": os.fsdecode(b"job-\xff"),
    "128 characters, 384 UTF-8 bytes": "\u20ac" * 128,
    "86 characters, 258 UTF-8 bytes": "\u20ac" * 86,
    "no-break space around it": "\u00a0job",
}


@pytest.mark.parametrize("bad", list(UNSAFE_UNICODE_IDS.values()), ids=list(UNSAFE_UNICODE_IDS))
def test_ids_the_file_system_cannot_take_are_rejected_with_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidJobIdError) as info:
        validate_job_id(bad)
    assert str(info.value)  # the error says what is wrong
    assert not is_safe_job_id(bad)


@pytest.mark.parametrize(
    "good",
    [
        "\u20ac" * 85,
        "Vid\u00e9o-\u00e9t\u00e9",
        "\u30b8\u30e7\u30d6-1",
        "job 12",
        "\U0001f3ac-scene",
    ],
)
def test_non_ascii_ids_within_255_bytes_are_accepted(good: str, tmp_path: Path) -> None:
    assert validate_job_id(good) == good
    (tmp_path / good).mkdir()  # and the file system does take them


def test_validation_lists_every_problem_with_its_path(examples: Path) -> None:
    raw = orjson.loads((examples / "reference-job.json").read_bytes())
    raw["records"][0]["latency_ms"] = -5
    raw["records"][1]["stage"] = "editing"
    raw["records"][2]["cost_estimate"] = "0.05"
    raw["records"][2]["tokens_in"] = 1.5
    raw["summary"]["total_cost"] = float("nan")
    del raw["correlation_id"]
    raw["records"][0]["surprise"] = 1
    problems = dict(
        validation_errors(
            orjson.dumps(raw, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"null", b"NaN")
        )
    )
    assert "$.correlation_id" in problems
    assert "$.records[0].latency_ms" in problems
    assert "$.records[1].stage" in problems
    assert "$.records[2].cost_estimate" in problems
    assert "$.records[2].tokens_in" in problems
    assert "$.records[0].surprise" in problems
    assert "$.summary.total_cost" in problems


def test_corrupt_documents_raise_a_clear_error() -> None:
    for data in (b"", b"{", b"[]", b'{"version": "1.0"}', b"\xff\xfe"):
        with pytest.raises(CorruptTelemetryError):
            load_collection(data)
    assert validation_errors(b"{") != []


def test_huge_numbers_are_rejected(examples: Path) -> None:
    raw = orjson.loads((examples / "reference-job.json").read_bytes())
    text = orjson.dumps(raw).replace(b'"latency_ms":2500', b'"latency_ms":' + b"9" * 40)
    assert "$.records[0].latency_ms" in dict(validation_errors(text))


def test_json_schema_is_generated_from_the_models() -> None:
    schema = json_schema()
    assert schema["title"] == "RunTelemetry v1"
    assert schema["required"] == ["job_id", "correlation_id", "collection_started_at", "records"]
    record = schema["$defs"]["Record"]
    assert list(record["properties"]) == list(RECORD_FIELDS)
    assert "stage" in record["required"]


@given(st.lists(st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False), max_size=50))
def test_sum_money_equals_exact_decimal_sum(values: list) -> None:
    floats = [float(v) for v in values]
    assert sum_money(floats) == float(sum(values, start=type(values[0])(0) if values else 0))


_FIELD_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans())


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(RECORD_FIELDS), st.text(max_size=8)), _FIELD_VALUES, max_size=30
    )
)
def test_unrolled_record_pick_equals_the_slot_loop(fields: dict) -> None:
    # Same fields, same order, same defaults: the files cannot tell the two apart.
    unrolled, reference = record_from(fields), record_from_slots(fields)
    assert list(unrolled.items()) == list(reference.items())


def test_collection_model_rejects_unknown_fields(examples: Path) -> None:
    raw = orjson.loads((examples / "reference-job.json").read_bytes())
    raw["extra"] = True
    with pytest.raises(CorruptTelemetryError):
        load_collection(orjson.dumps(raw))
    assert isinstance(load_collection((examples / "reference-job.json").read_bytes()), Collection)


def test_metadata_is_the_last_record_field() -> None:
    # fold._marked sets metadata on a copy of an ordered record and relies on this.
    assert RECORD_FIELDS[-1] == "metadata"


def test_costs_in_another_currency_are_not_added_to_the_dollar_totals() -> None:
    """0.1 EUR + 0.2 USD is not 0.3 USD: the summary (in USD) adds dollars only."""
    base = {"job_id": "j", "correlation_id": "c", "latency_ms": 1, "result_status": "ok"}
    recs = [
        {**base, "stage": "script", "cost_estimate": 0.1, "currency": "EUR"},
        {**base, "stage": "script", "cost_estimate": 0.2, "currency": "USD"},
        {**base, "stage": "tts", "cost_estimate": 0.05, "currency": "usd"},
        {**base, "stage": "render", "cost_estimate": 7.0, "currency": "GBP"},
    ]
    summary = summarize(recs)
    assert summary["currency"] == "USD"
    assert summary["total_cost"] == 0.25
    assert summary["cost_by_stage"] == {"script": 0.2, "tts": 0.05, "render": 0.0}


def test_years_before_1000_keep_four_digits(examples: Path) -> None:
    """strftime's %Y gives ``999`` on Linux: a valid file came back from to_dict invalid."""
    doc = json.loads((examples / "reference-job.json").read_text())
    doc["collection_started_at"] = "0999-01-01T00:00:00.000000Z"
    doc["records"][0]["started_at"] = "0001-02-03T04:05:06.000007Z"
    collection = load_collection(json.dumps(doc))
    again = to_dict(collection)
    assert again["collection_started_at"] == "0999-01-01T00:00:00.000000Z"
    assert again["records"][0]["started_at"] == "0001-02-03T04:05:06.000007Z"
    assert validation_errors(dumps(again)) == []
    http = to_http(collection)
    assert http["collection_started_at"] == "0999-01-01T00:00:00Z"
    assert http["records"][0]["started_at"] == "0001-02-03T04:05:06.000007Z"
