"""Cost estimates from a versioned price table shipped as data (``data/prices.json``).

Peers either price nothing or price unknown models at $0; both make cost reports lie. Here a
usage is priced only when the table has an entry for its provider and model, every figure is
an exact decimal, each estimate names the table version that produced it, and anything the
table cannot price comes back as :class:`Unpriced` (with the reason) instead of zero.

The table is plain data so that a price change is a data change: users check a figure with
``aura-otel prices quote`` and correct it with an override file (``configure(prices_file=)``
or ``AURA_OTEL_PRICES_FILE``) merged over the shipped table, validated before the first span.
"""

from __future__ import annotations

from ..figures import count_unpriced, is_unpriced
from .files import load_price_table, read_override, shipped_price_table
from .model import (
    MONEY_QUANTUM,
    RATE_FIELDS,
    TABLE_FORMAT,
    TOKEN_RATES,
    VERSION_SUFFIX,
    WILDCARD,
    Estimate,
    ImagePrices,
    ModelPrice,
    PriceLine,
    PriceResult,
    ProviderPrices,
    Unpriced,
    normalize_model,
    normalize_provider,
    normalize_size,
    version_families,
)
from .table import PriceTable, describe_rates, format_decimal, format_money

__all__ = [
    "MONEY_QUANTUM",
    "RATE_FIELDS",
    "TABLE_FORMAT",
    "TOKEN_RATES",
    "VERSION_SUFFIX",
    "WILDCARD",
    "Estimate",
    "ImagePrices",
    "ModelPrice",
    "PriceLine",
    "PriceResult",
    "PriceTable",
    "ProviderPrices",
    "Unpriced",
    "count_unpriced",
    "describe_rates",
    "format_decimal",
    "format_money",
    "is_unpriced",
    "load_price_table",
    "normalize_model",
    "normalize_provider",
    "normalize_size",
    "read_override",
    "shipped_price_table",
    "version_families",
]
