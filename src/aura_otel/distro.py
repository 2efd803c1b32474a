"""Zero-code setup: aura-otel as an OpenTelemetry distro and configurator.

``opentelemetry-instrument python app.py`` loads a distro and a configurator through entry
points (groups ``opentelemetry_distro`` and ``opentelemetry_configurator``, both named
``aura_otel`` here), then every installed instrumentation. With aura-otel selected, an
existing service that never imports aura-otel gets the same pipeline as ``configure()``:
job-id stamping, masking, the v1 files and, when an OTLP endpoint is set, forwarding and
metrics. Instrumentations (HTTP clients, LLM SDKs) still activate as usual.

Selecting it: ``OTEL_PYTHON_DISTRO=aura_otel OTEL_PYTHON_CONFIGURATOR=aura_otel``. Selecting the
distro alone is enough (it selects its configurator unless one is named); with no other distro
or configurator installed, aura-otel's are used even without the variables.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

from .errors import AuraOtelError

logger = logging.getLogger("aura_otel")

ENTRY_POINT_NAME = "aura_otel"


class AuraOtelDistro(BaseDistro):
    """Runs first: makes sure aura-otel's configurator is the one that runs next."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", ENTRY_POINT_NAME)


class AuraOtelConfigurator(_BaseConfigurator):
    """Builds the pipeline from the environment, as ``aura_otel.configure()`` would.

    A bad setting is logged clearly and leaves the service running without aura-otel: an
    auto-instrumented service must never fail to start because of its telemetry.
    """

    def _configure(self, **kwargs: Any) -> None:
        from .pipeline import configure

        try:
            telemetry = configure()
        except AuraOtelError as exc:
            logger.error("aura-otel: auto-instrumentation is off: %s", exc)
            return
        logger.debug("aura-otel: auto-instrumentation writes v1 files to %s", telemetry.jobs_dir)
