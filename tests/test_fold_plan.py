"""The per-key-set plan of the fold reads exactly what the per-attribute pass it replaced read.

``_reference_read`` is the previous implementation of ``fold._read``, kept verbatim: random
attribute sets (aliases of every slot in every order, valid and invalid values, metadata and
JSON metadata under clashing names, keys the fold ignores) must give equal slots and metadata
in the same order (metadata order is the order of the file's bytes).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import orjson

from aura_otel import fold
from aura_otel.fold import _JSON_META, _KEY_KINDS, _PLAIN_META, _SLOTS, _key_kind
from aura_otel.values import MAX_META_DEPTH, cap_depth


def _reference_read(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    found: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    meta: dict[str, Any] = {}
    slot_of = _SLOTS.get
    for key, value in attrs.items():
        spec = slot_of(key)
        if spec is None:
            kind, name = _KEY_KINDS.get(key) or _key_kind(key)
            if kind == _PLAIN_META:
                meta[name] = list(value) if isinstance(value, tuple) else value
            elif kind == _JSON_META and isinstance(value, str):
                try:
                    decoded = orjson.loads(value)
                except orjson.JSONDecodeError:
                    meta[name] = value
                    continue
                if value.count("[") + value.count("{") > MAX_META_DEPTH:
                    decoded = cap_depth(decoded)
                meta[name] = decoded
            continue
        name, rank, convert, aliased = spec
        if rank and ranks.get(name, rank) < rank:
            continue
        converted = convert(value)
        if converted is not None:
            found[name] = converted
            if aliased:
                ranks[name] = rank
    return found, meta


VALUES = [
    0,
    1,
    7,
    -3,
    2**63,
    2.0,
    2.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    0.0,
    -1.5,
    2**63 - 1,
    "Mixed Case",
    True,
    False,
    "",
    "Text",
    "OK",
    "12",
    ("a", "b"),
    (1, 2),
    '{"a": [1, {"b": 2}]}',
    "[" * 300 + "]" * 300,
    "not json {",
]
OTHER_KEYS = [
    "aura.meta.a",
    "aura.meta.b",
    "aura.meta_json.a",
    "aura.meta_json.c",
    "aura.meta.",
    "http.method",
    "unrelated",
    "aura.metadata",
    "aura.meta_jsonx",
]


def test_the_plan_reads_what_the_per_attribute_pass_read() -> None:
    rng = random.Random(15)
    keys = sorted(_SLOTS) + OTHER_KEYS
    for _ in range(3000):
        chosen = rng.sample(keys, rng.randint(0, 24))
        attrs = {key: rng.choice(VALUES) for key in chosen}
        for _ in range(2):  # the second time through, the plan comes from the cache
            found, meta = fold._read(attrs)
            ref_found, ref_meta = _reference_read(attrs)
            assert found == ref_found, attrs
            assert list(meta.items()) == list(ref_meta.items()), attrs
