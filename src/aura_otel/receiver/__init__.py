"""The fold service: OTLP in from any service in any language, one v1 file per job.

``aura-otel collect`` runs it; :func:`create_receiver` builds it in-process. Received spans go
through the same masking and the same fold as in-process spans, and are acknowledged only once
they are in their job's journal on disk. See docs/receiver.md.
"""

from .config import ReceiverConfig
from .factory import create_receiver
from .service import FoldReceiver

__all__ = ["FoldReceiver", "ReceiverConfig", "create_receiver"]
