"""Pricing one usage with one model entry: exact decimals, a line per quantity.

The rules (cached tokens are a subset of input tokens, an image is priced by size then
quality, quantities a model has no rate for are listed, not priced) are in docs/pricing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..fold import CACHED_TOKENS_METADATA
from .model import (
    _MILLION,
    _THOUSAND,
    WILDCARD,
    ModelPrice,
    PriceLine,
    Unpriced,
    normalize_size,
)


# -- pricing one usage --------------------------------------------------------------------------
def _decimal(value: Any) -> Decimal | None:
    """A non-negative finite quantity, taken at its shortest repr (what the span said)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        return None
    return number if number.is_finite() and number >= 0 else None


@dataclass(frozen=True, slots=True)
class _Usage:
    tokens_in: Decimal | None
    tokens_out: Decimal | None
    cached: Decimal | None
    characters: Decimal | None
    images: Decimal | None
    image_size: str | None
    image_quality: str | None
    seconds: Decimal | None

    @classmethod
    def of(cls, usage: Mapping[str, Any]) -> _Usage:
        size = usage.get("image_size")
        quality = usage.get("image_quality")
        return cls(
            tokens_in=_decimal(usage.get("tokens_in")),
            tokens_out=_decimal(usage.get("tokens_out")),
            cached=_decimal(usage.get(CACHED_TOKENS_METADATA)),
            characters=_decimal(usage.get("characters")),
            images=_decimal(usage.get("images")),
            image_size=normalize_size(size) if isinstance(size, str) and size.strip() else None,
            image_quality=quality.strip().lower()
            if isinstance(quality, str) and quality.strip()
            else None,
            seconds=_decimal(usage.get("duration_seconds")),
        )

    def kinds(self) -> list[str]:
        out = []
        if self.tokens_in is not None or self.tokens_out is not None or self.cached is not None:
            out.append("tokens")
        for name, label in (
            ("characters", "characters"),
            ("images", "images"),
            ("seconds", "seconds"),
        ):
            if getattr(self, name) is not None:
                out.append(label)
        return out


class _Calculation:
    """Prices every quantity of a usage that the entry has a rate for; quantities it has no
    rate for are noted (a TTS engine priced per character ignores the audio's duration)."""

    def __init__(self, entry: ModelPrice, usage: _Usage) -> None:
        self.entry = entry
        self.usage = usage
        self.notes: list[str] = []
        self.lines: list[PriceLine] = []

    def _line(self, label: str, quantity: Decimal, rate: Decimal, per: Decimal, unit: str) -> None:
        self.lines.append(PriceLine(label, quantity, rate, per, unit, quantity * rate / per))

    def run(self) -> list[PriceLine] | Unpriced:
        entry, usage = self.entry, self.usage
        if not usage.kinds():
            return Unpriced("the usage has no quantity to price")
        if entry.prices_tokens:
            self._tokens()
        if entry.per_1k_characters is not None and usage.characters is not None:
            self._line(
                "characters", usage.characters, entry.per_1k_characters, _THOUSAND, "1k characters"
            )
        if entry.per_image is not None and usage.images is not None:
            problem = self._images()
            if problem is not None:
                return Unpriced(problem)
        if entry.per_second is not None and usage.seconds is not None:
            self._line("output seconds", usage.seconds, entry.per_second, Decimal(1), "second")
        if not self.lines:
            return Unpriced(
                f"it prices {', '.join(entry.units())} but the usage has {', '.join(usage.kinds())}"
            )
        ignored = [k for k in usage.kinds() if k not in entry.units()]
        if ignored:
            self.notes.append(f"not priced by this entry: {', '.join(ignored)}")
        return self.lines

    def _tokens(self) -> None:
        entry, usage = self.entry, self.usage
        assert entry.input_per_1m is not None and entry.output_per_1m is not None
        tokens_in, cached = usage.tokens_in, usage.cached
        if cached is not None and cached > 0:
            if tokens_in is None:
                uncached = None
            elif cached > tokens_in:
                # Not a subset, so the source reported cache reads apart from input tokens
                # (Anthropic's API does): price both as reported rather than lose some.
                uncached = tokens_in
                self.notes.append("cached tokens exceed input tokens: taken as reported apart")
            else:
                uncached = tokens_in - cached  # cached tokens are a subset: never count twice
            cached_rate = entry.cached_input_per_1m
            if cached_rate is None:
                cached_rate = entry.input_per_1m
                self.notes.append(
                    "no cached-input price published: cached tokens at the input rate"
                )
            if uncached is not None:
                self._line(
                    "input tokens (uncached)", uncached, entry.input_per_1m, _MILLION, "1M tokens"
                )
            self._line("cached input tokens", cached, cached_rate, _MILLION, "1M tokens")
        elif tokens_in is not None:
            self._line("input tokens", tokens_in, entry.input_per_1m, _MILLION, "1M tokens")
        if usage.tokens_out is not None:
            self._line(
                "output tokens", usage.tokens_out, entry.output_per_1m, _MILLION, "1M tokens"
            )

    def _images(self) -> str | None:
        entry, usage = self.entry, self.usage
        assert usage.images is not None
        prices = entry.per_image
        if isinstance(prices, Decimal):
            self._line("images", usage.images, prices, Decimal(1), "image")
            return None
        assert isinstance(prices, dict)
        size = usage.image_size or entry.default_size
        if size is None:
            return f"image size unknown and no default size (priced sizes: {', '.join(prices)})"
        by_size = prices.get(size, prices.get(WILDCARD))
        if by_size is None:
            return f"no price for size {size} (priced sizes: {', '.join(prices)})"
        label = f"images {size}"
        if isinstance(by_size, dict):
            quality = usage.image_quality or entry.default_quality
            if quality is None:
                return f"image quality unknown and no default quality (qualities: {', '.join(by_size)})"
            rate = by_size.get(quality, by_size.get(WILDCARD))
            if rate is None:
                return f"no price for quality {quality} at size {size} (qualities: {', '.join(by_size)})"
            label += f" {quality}"
        else:
            rate = by_size
        if usage.image_size is None or (isinstance(by_size, dict) and usage.image_quality is None):
            self.notes.append(
                "image size/quality not given: the model's documented default was used"
            )
        self._line(label, usage.images, rate, Decimal(1), "image")
        return None
