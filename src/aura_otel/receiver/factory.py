"""Build a :class:`.service.FoldReceiver` from a :class:`.config.ReceiverConfig`.

Everything that can be wrong with the settings (addresses, token rule, masking rules, price
file, enum case, forwarding endpoint) fails here, before anything listens or writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import ConfigurationError
from ..exporter import resolve_enum_case
from ..forwarding import ForwardingSpanProcessor
from ..masking import MaskingRules
from ..pricing import load_price_table
from ..server.security import check_bind
from ..settings import otlp_exporter
from ..store import JobStore, check_jobs_folder
from ..stores import is_postgres_url, open_store
from .config import ReceiverConfig
from .ingest import Ingestor, make_masking
from .jobs import JobBook
from .service import FoldReceiver
from .shared import StoreBook
from .stats import ReceiverStats


def create_receiver(
    config: ReceiverConfig | None = None, *, clock: Callable[[], float] = time.monotonic
) -> FoldReceiver:
    """A receiver ready to :meth:`~FoldReceiver.start`. ``clock`` drives the quiet period and
    idle timeout (monotonic seconds), so they can be stepped deterministically."""
    config = config if config is not None else ReceiverConfig()
    config.check()
    for host, _ in config.addresses().values():
        check_bind(host, config.access_token)
    rules = config.masking if config.masking is not None else MaskingRules.from_env()
    pricer = load_price_table(config.prices_file) if config.pricing else None
    forward = None
    if config.forward_endpoint:
        exporter = otlp_exporter("traces", config.forward_endpoint, config.forward_protocol)
        if exporter is None:
            raise ConfigurationError(f"cannot forward to {config.forward_endpoint!r}")
        forward = ForwardingSpanProcessor(
            exporter, name="receiver-forward", label="receiver OTLP forwarding"
        )
    enum_case = resolve_enum_case(config.enum_case)
    stats = ReceiverStats()
    book: JobBook | StoreBook
    if is_postgres_url(config.store):
        # Opened after every other check: it connects and applies pending migrations.
        store = open_store(
            config.store,
            sync=config.durability == "fsync",
            timeout=config.store_timeout,
            statement_timeout=config.store_timeout,
        )
        book = StoreBook(store, stats, enum_case=enum_case, pricer=pricer)
    else:
        folder = config.jobs_dir
        if config.store:
            folder = open_store(config.store).root  # type: ignore[attr-defined]
        check_jobs_folder(folder)
        book = JobBook(
            JobStore(folder),
            stats,
            enum_case=enum_case,
            pricer=pricer,
            quiet_period=config.quiet_period,
            idle_timeout=config.idle_timeout,
            write_interval=config.write_interval,
            max_open_jobs=config.max_open_jobs,
            sync=config.durability == "fsync",
            clock=clock,
        )
    masking, collect = make_masking(rules)
    ingestor = Ingestor(book, stats, masking, collect, forward)
    return FoldReceiver(config, book=book, stats=stats, ingestor=ingestor, forward=forward)
