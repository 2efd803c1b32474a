"""The price table: finding a provider's model (names, aliases, version families) and
quoting a usage with it; plus how a table's rates are described to people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from .._util import BoundedCache
from ..errors import PricingError
from ..fold import Quote
from .model import (
    _CACHE_LIMIT,
    MONEY_QUANTUM,
    Estimate,
    ModelPrice,
    PriceResult,
    ProviderPrices,
    Unpriced,
    _check_model_names,
    _replace_model,
    normalize_provider,
)
from .usage import _Calculation, _Usage

if TYPE_CHECKING:
    from .files import _ParsedTable


class PriceTable:
    """A validated, immutable price table; also the :class:`aura_otel.fold.Pricer` of a run."""

    def __init__(
        self,
        *,
        version: str,
        as_of: str,
        currency: str,
        providers: Mapping[str, ProviderPrices],
        note: str | None = None,
        origins: tuple[str, ...] = (),
    ) -> None:
        self.version = version
        self.as_of = as_of
        self.currency = currency
        self.note = note
        self.origins = origins
        self.providers: dict[str, ProviderPrices] = dict(providers)
        self._by_name: dict[str, ProviderPrices] = {}
        for provider in self.providers.values():
            for name in (provider.name, *provider.aliases):
                key = normalize_provider(name)
                other = self._by_name.get(key)
                if other is not None and other is not provider:
                    raise PricingError(
                        f"provider name {name!r} is used by both {other.name!r} and {provider.name!r}"
                    )
                self._by_name[key] = provider
        # Keys come from spans (model strings): bounded, so memory is too.
        self._cache: BoundedCache[
            tuple[str | None, str | None], tuple[ProviderPrices, ModelPrice, str] | str
        ] = BoundedCache(_CACHE_LIMIT)
        self._quotes: BoundedCache[Any, Quote | None] = BoundedCache(_CACHE_LIMIT)

    def __repr__(self) -> str:
        return f"PriceTable(version={self.version!r}, providers={len(self.providers)})"

    # -- lookup ---------------------------------------------------------------------------------
    def provider(self, name: str) -> ProviderPrices | None:
        return self._by_name.get(normalize_provider(name))

    def find(
        self, provider: str | None, model: str | None
    ) -> tuple[ProviderPrices, ModelPrice, str] | str:
        """The entry for a provider/model and how it matched, or the reason there is none."""
        key = (provider, model)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache.put(key, self._find(provider, model))
        return cached

    def _find(
        self, provider: str | None, model: str | None
    ) -> tuple[ProviderPrices, ModelPrice, str] | str:
        if provider is None or not provider.strip():
            if model is None or not model.strip():
                return "no provider and no model"
            hits = [(p, *found) for p in self.providers.values() if (found := p.find_named(model))]
            if len(hits) > 1 and "/" in model:
                # ``openai/gpt-4o`` (OpenRouter, LiteLLM): the prefix names whose model it is.
                named = self.provider(model.split("/", 1)[0])
                hits = [hit for hit in hits if hit[0] is named] or hits
            if len(hits) == 1:
                inferred, entry, how = hits[0]
                return inferred, entry, f"{how}; provider inferred from the model"
            if not hits:
                return f"no provider, and no provider in the table has model {model!r}"
            names = ", ".join(p.name for p, _, _ in hits)
            return f"no provider, and model {model!r} is in several providers ({names})"
        named = self.provider(provider)
        if named is None:
            return f"provider {provider!r} is not in price table {self.version}"
        match = named.find(model)
        if match is None:
            if model is None or not model.strip():
                return f"no model, and provider {named.name!r} has no price for any model (*)"
            return (
                f"model {model!r} of provider {named.name!r} is not in price table {self.version}"
            )
        return named, *match

    # -- pricing --------------------------------------------------------------------------------
    def price(
        self, provider: str | None, model: str | None, usage: Mapping[str, Any]
    ) -> PriceResult:
        """Price a usage: ``tokens_in``, ``tokens_out``, ``cached_input_tokens``,
        ``characters``, ``images``, ``image_size``, ``image_quality``, ``duration_seconds``."""
        found = self.find(provider, model)
        if isinstance(found, str):
            return Unpriced(found)
        prov, entry, how = found
        calc = _Calculation(entry, _Usage.of(usage))
        result = calc.run()
        if isinstance(result, Unpriced):
            return Unpriced(f"{prov.name}/{entry.id}: {result.reason}")
        total = sum((line.amount for line in result), Decimal(0))
        # To the hundred-millionth, an amount of 1e20 or more has more digits than the default
        # context's 28: give it the digits it needs (absurd usage, or an override's rates).
        with localcontext() as ctx:
            ctx.prec = max(ctx.prec, total.adjusted() + 10)
            total = total.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)
        if not math.isfinite(float(total)):
            return Unpriced(
                f"{prov.name}/{entry.id}: the amount {total:.3E} is too large to be a cost"
            )
        return Estimate(
            provider=prov.name,
            model=entry.id,
            match=how,
            lines=tuple(result),
            total=total,
            currency=self.currency,
            version=self.version,
            notes=tuple(calc.notes),
        )

    def quote(
        self, *, stage: str, provider: str | None, model: str | None, usage: Mapping[str, Any]
    ) -> Quote | None:
        """The :class:`aura_otel.fold.Pricer` entry point: None means unpriced.

        Memoised: a running job's file is reassembled on every write, so the same records are
        quoted again and again; a table never changes, so neither do its quotes.
        """
        try:
            key: Any = (provider, model, tuple(sorted(usage.items())))
            hash(key)
        except TypeError:  # an unhashable value from a custom caller: just price it
            key = None
        if key is not None and key in self._quotes:
            return self._quotes[key]
        result = self.price(provider, model, usage)
        quote = (
            None
            if isinstance(result, Unpriced)
            else Quote(amount=result.amount, currency=result.currency, version=result.version)
        )
        if key is not None:
            self._quotes.put(key, quote)
        return quote

    # -- building -------------------------------------------------------------------------------
    def merged(self, override: _ParsedTable, origin: str, digest: str) -> PriceTable:
        """This table with ``override`` laid over it: a model entry replaces the shipped one of
        the same id whole (no stale rate survives), provider aliases are added, new providers
        and models are added. The version becomes ``<shipped>+<override version or digest>``."""
        if override.currency is not None and override.currency != self.currency:
            raise PricingError(
                f"{origin}: currency {override.currency!r} differs from the shipped table's "
                f"{self.currency!r}; one table prices in one currency"
            )
        providers = dict(self.providers)
        for raw in override.providers:
            base = self.provider(raw.name)  # by any of its names: "OpenAI", "gcp.gemini"
            if base is None:
                providers[raw.name] = ProviderPrices(
                    name=raw.name,
                    models=dict(raw.models),
                    aliases=raw.aliases,
                    source=raw.source or f"override file {origin}",
                    note=raw.note,
                )
                continue
            models = dict(base.models)
            for model_id, entry in raw.models.items():
                _replace_model(models, model_id, entry)
            aliases = tuple(dict.fromkeys((*base.aliases, *raw.aliases)))
            providers[base.name] = ProviderPrices(
                name=base.name,
                models=models,
                aliases=aliases,
                source=raw.source or base.source,
                note=raw.note or base.note,
            )
        try:
            for prov in providers.values():
                _check_model_names(prov.name, prov.models.values())
            return PriceTable(
                version=f"{self.version}+{override.version or digest}",
                as_of=override.as_of or self.as_of,
                currency=self.currency,
                providers=providers,
                note=self.note,
                origins=(*self.origins, origin),
            )
        except PricingError as exc:
            raise PricingError(f"{origin}: {exc}") from None

    def rows(self, provider: str | None = None) -> list[tuple[ProviderPrices, ModelPrice]]:
        """Entries to list, optionally for one provider (any of its names); [] if unknown."""
        if provider is not None:
            prov = self.provider(provider)
            provs = [prov] if prov is not None else []
        else:
            provs = sorted(self.providers.values(), key=lambda p: p.name)
        return [(p, m) for p in provs for m in p.models.values()]


# -- views --------------------------------------------------------------------------------------
def format_decimal(value: Decimal) -> str:
    """Plain notation, no trailing zeros: 0.00025, 2.5, 10."""
    return format(value.normalize(), "f")


def format_money(value: Decimal) -> str:
    """At least two decimals, never fewer digits than the exact value: 2.50, 0.00025, 10.00."""
    with localcontext() as ctx:  # to the cent, a huge amount needs more than 28 digits
        ctx.prec = max(ctx.prec, value.adjusted() + 4)
        cents = value.quantize(Decimal("0.01"))
    if value == cents:
        return format(cents, "f")
    return format_decimal(value)


def describe_rates(entry: ModelPrice) -> list[str]:
    """Human lines for an entry's rates, for listings."""
    out = []
    if entry.prices_tokens:
        assert entry.input_per_1m is not None and entry.output_per_1m is not None
        cached = (
            format_money(entry.cached_input_per_1m)
            if entry.cached_input_per_1m is not None
            else "= input"
        )
        out.append(
            f"in {format_money(entry.input_per_1m)} / cached {cached} / "
            f"out {format_money(entry.output_per_1m)} per 1M tokens"
        )
    if entry.per_1k_characters is not None:
        out.append(f"{format_money(entry.per_1k_characters)} per 1k characters")
    if isinstance(entry.per_image, Decimal):
        out.append(f"{format_money(entry.per_image)} per image")
    elif isinstance(entry.per_image, dict):
        for size, by_size in entry.per_image.items():
            if isinstance(by_size, dict):
                qualities = ", ".join(f"{q} {format_money(r)}" for q, r in by_size.items())
                out.append(f"{size}: {qualities} per image")
            else:
                out.append(f"{size}: {format_money(by_size)} per image")
    if entry.per_second is not None:
        out.append(f"{format_money(entry.per_second)} per second of output")
    return out
