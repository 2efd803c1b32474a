"""The error hierarchy: one base class, so a host can catch everything aura-otel raises."""

from __future__ import annotations


class AuraOtelError(Exception):
    """Base of every error aura-otel raises on purpose."""


class ConfigurationError(AuraOtelError, ValueError):
    """Bad settings, found at start-up rather than at the first span."""


class PricingError(ConfigurationError):
    """A price table or override file that cannot be trusted (bad unit, negative price, ...).

    Raised at start-up by :func:`aura_otel.pricing.load_price_table`, never while folding:
    a wrong price silently applied to every run is worse than a refusal to start.
    """


class InvalidJobIdError(AuraOtelError, ValueError):
    """A job id that is not a safe single path segment; nothing is written for it."""


class TelemetryNotFoundError(AuraOtelError, LookupError):
    """No telemetry file exists for the job."""


class CorruptTelemetryError(AuraOtelError):
    """A telemetry file exists but is not valid v1 (partial, hand-edited, wrong types)."""


class TelemetryTooLargeError(CorruptTelemetryError):
    """A telemetry file larger than the reader's limit: refused before it is read or parsed.

    Parsing costs several times a file's size in memory; a reader serving many jobs must not
    let one planted or runaway file take it down.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class UnsafeFileError(AuraOtelError, OSError):
    """A job's folder or file is a symbolic link or not a regular file.

    Links planted in the jobs folder could lead a writer outside it, and a FIFO or device
    would block a reader forever; aura-otel neither follows nor opens them.
    """


class JobValidationError(AuraOtelError):
    """Raise this (or a subclass) from a job to record it as ``VALIDATION_ERROR``.

    The legacy pipeline told input-validation failures apart from generation failures; a host
    marks the former by raising this, or by calling ``JobHandle.fail_validation``.
    """


class StoreUnavailableError(AuraOtelError, OSError):
    """The shared store cannot be reached or answered too slowly; nothing was stored.

    An OSError without an errno, so the receiver answers it as retryable (HTTP 503, gRPC
    UNAVAILABLE) and never acknowledges the spans; the web server answers 503. Both recover
    without a restart once the database answers again.
    """


class BudgetExceeded(AuraOtelError):
    """A stage's estimated cost would cross a hard budget threshold; the stage did not start.

    ``scope`` is ``job``, ``project`` or ``month``; ``provider`` is set when the threshold was
    a provider's; ``limit``, ``spent`` and ``estimated`` are amounts in the budget's currency.
    """

    error_code = "BUDGET_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        subject: str,
        provider: str | None,
        limit: float,
        spent: float,
        estimated: float,
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.subject = subject
        self.provider = provider
        self.limit = limit
        self.spent = spent
        self.estimated = estimated
