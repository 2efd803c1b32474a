"""Workers tell each other how busy they are, so that a busy one hands connections on.

``SO_REUSEPORT`` gives each new connection to a worker by a hash of its addresses, blind to
load: with a few senders (a collector, a handful of services) one worker can hold three of
four connections while the other idles. Turning connections over every few requests does not
cure it: it re-draws blindly, and a connection spends longest on the slowest worker, so the
busy one keeps more than its share. Instead each worker publishes its requests in flight in a
table its supervisor shares with all of them (8 bytes a worker, in memory that is not a file);
after a successful answer, a worker with more requests in flight than some other worker closes
that connection, and the sender's reconnect is drawn again. A worker no busier than the others
keeps its connections, so balanced senders are never made to reconnect.

Linux only (``memfd_create``); elsewhere workers turn connections over every few requests.
"""

from __future__ import annotations

import mmap
import os

_SLOT_BYTES = 8


class LoadTable:
    """Requests in flight per worker; this process writes one slot and reads the others."""

    def __init__(self, fd: int, slots: int, slot: int | None = None) -> None:
        """``slot`` is this worker's (reset to 0: a restarted worker starts idle); None for
        the supervisor, which only hands the table on."""
        if slot is not None and not 0 <= slot < slots:
            raise ValueError(f"worker slot {slot} is not among {slots}")
        self.fd = fd
        self.slots = slots
        self.slot = slot
        self._map = mmap.mmap(fd, slots * _SLOT_BYTES)
        #: One aligned 8-byte word a worker: each store and load is whole on every platform
        #: Python runs workers on, and a value read a moment late only delays one decision.
        self._counts = memoryview(self._map).cast("q")
        if slot is not None:
            self._counts[slot] = 0

    @classmethod
    def create(cls, slots: int) -> LoadTable | None:
        """A new table in anonymous shared memory (the supervisor's); None where the platform
        has no ``memfd_create`` or refuses it (a sandbox): workers then balance blindly,
        which is no reason not to start. Its descriptor is closed on exec: workers get it
        through ``pass_fds``, no other child does."""
        if not hasattr(os, "memfd_create"):
            return None
        try:
            fd = os.memfd_create("aura-otel-worker-loads")
        except OSError:
            return None
        try:
            os.ftruncate(fd, slots * _SLOT_BYTES)
            return cls(fd, slots)
        except (OSError, ValueError):
            os.close(fd)
            return None

    @classmethod
    def parse(cls, spec: str) -> LoadTable:
        """A worker's view of its supervisor's table, from ``FD:SLOT:SLOTS``."""
        try:
            fd, slot, slots = (int(part) for part in spec.split(":"))
        except ValueError:
            raise ValueError(f"not a load table FD:SLOT:SLOTS: {spec!r}") from None
        return cls(fd, slots, slot)

    def spec(self, slot: int) -> str:
        return f"{self.fd}:{slot}:{self.slots}"

    def publish(self, in_flight: int) -> None:
        if self.slot is not None:
            self._counts[self.slot] = in_flight

    def busier_than_another(self) -> bool:
        """This worker has more requests in flight than at least one other worker."""
        if self.slot is None:
            return False
        counts = self._counts
        mine = counts[self.slot]
        return any(counts[i] < mine for i in range(self.slots) if i != self.slot)

    def counts(self) -> list[int]:
        return list(self._counts)

    def close(self) -> None:
        """Unmap; the descriptor is the caller's (the supervisor's, or the inherited one)."""
        self._counts.release()
        self._map.close()
