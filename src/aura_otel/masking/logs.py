"""Masking aura-otel's own log records, including loggers created after import.

A logger's filters do not apply to records of its child loggers, and loggers such as
``aura_otel.server`` are created long after this package is imported; so besides the filter on
the ``aura_otel`` logger, a log-record factory (chained to whatever factory was installed
before) masks every record whose logger is ``aura_otel`` or one of its descendants, whenever
that logger was created.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from .. import conventions as c

if TYPE_CHECKING:
    from .masker import Masker

_MASKED = "_aura_otel_masked"


class MaskingLogFilter(logging.Filter):
    """Masks log records (message, arguments, traceback, stack) before any handler formats
    them. Never drops a record and never raises. Without a masker, the built-in rules are
    compiled at the first record, not at import."""

    def __init__(self, masker: Masker | None = None) -> None:
        super().__init__()
        self._masker = masker

    @property
    def masker(self) -> Masker:
        if self._masker is None:
            from .masker import Masker
            from .settings import MaskingRules

            self._masker = Masker(MaskingRules())
        return self._masker

    @masker.setter
    def masker(self, masker: Masker) -> None:
        self._masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MASKED, None) is self:
            return True
        masker = self.masker
        try:
            record.msg = masker.mask_text(record.getMessage())
            record.args = None
            if record.exc_info:
                formatter = logging.Formatter()
                text = record.exc_text or formatter.formatException(record.exc_info)
                record.exc_text = masker.mask_text(text)
                record.exc_info = None  # other handlers must not re-render the raw exception
            elif record.exc_text:
                record.exc_text = masker.mask_text(record.exc_text)
            if record.stack_info:
                record.stack_info = masker.mask_text(record.stack_info)
        except Exception:
            masker.stats.add("log_records_failed")
            record.msg = "aura-otel: a log record could not be masked and was replaced"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        setattr(record, _MASKED, self)
        return True


def mask_line(text: str) -> str:
    """``text`` masked as a log record would be: for what a command prints itself (its error
    line on stderr) and a receiver's refusals, built from values a sender or a user gave.

    With the rules of the masking processor that took over the logs, else those of the
    environment (``AURA_OTEL_MASK_*``; the built-in ones if it cannot be read)."""
    return current_masker().mask_text(text)


def current_masker() -> Masker:
    """The masker of the processor that took over the logs, else one with the rules of the
    environment (``AURA_OTEL_MASK_*``; the built-in ones if it cannot be read)."""
    installed = _by_prefix.get("aura_otel")
    if installed is not None and installed._masker is not None:
        return installed.masker
    global _fallback
    key = tuple(os.environ.get(name) for name in _MASK_VARIABLES)
    if _fallback is not None and _fallback[0] == key:
        return _fallback[1]  # every job's start asks (its baggage): rules are read once
    from .masker import Masker
    from .settings import MaskingRules

    try:
        rules = MaskingRules.from_env()
    except Exception:  # a bad variable is reported elsewhere; this text is still masked
        rules = MaskingRules()
    masker = Masker(rules)  # compiled once per rules, then shared
    _fallback = (key, masker)
    return masker


_MASK_VARIABLES = (
    c.ENV_MASK_EXTRA_PATTERNS,
    c.ENV_MASK_EXTRA_KEYS,
    c.ENV_MASK_ALLOW_KEYS,
    c.ENV_MASK_PII,
    c.ENV_MASK_MAX_VALUE_LENGTH,
)
#: The environment's masking variables and the masker made from them, while they hold.
_fallback: tuple[tuple[str | None, ...], Masker] | None = None


_factory_lock = threading.Lock()
#: Logger name -> the filter for it and its descendants (read by the record factory).
_by_prefix: dict[str, MaskingLogFilter] = {}
_factory_installed = False


def _install_factory() -> None:
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        name = record.name
        best = ""
        for prefix in tuple(_by_prefix):
            if len(prefix) > len(best) and (name == prefix or name.startswith(prefix + ".")):
                best = prefix
        if best:
            _by_prefix[best].filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def install_log_filter(
    masker: Masker | None = None, logger_name: str = "aura_otel"
) -> MaskingLogFilter:
    """Mask the records of ``logger_name`` and of every logger below it, existing or created
    later (or replace the masking already there, e.g. with a processor's rules).

    The filter goes on the logger itself (it is visible there) and a chained log-record
    factory applies it to the descendants' records, which the logger's own filters never see.
    """
    new = MaskingLogFilter(masker)
    with _factory_lock:
        target = logging.getLogger(logger_name)
        for old in [f for f in target.filters if isinstance(f, MaskingLogFilter)]:
            target.removeFilter(old)
        target.addFilter(new)
        # Filters attached to existing children by earlier versions are replaced too.
        for name in list(logging.Logger.manager.loggerDict):
            if name.startswith(logger_name + "."):
                child = logging.getLogger(name)
                for old in [f for f in child.filters if isinstance(f, MaskingLogFilter)]:
                    child.removeFilter(old)
        _by_prefix[logger_name] = new
        _install_factory()
    return new
