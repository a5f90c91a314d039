"""The server's reference cache: encoded references on the backend's device, bounded and expiring.

Each entry is an `insid3.engine.runtime.reference.Reference` whose arrays live in the backend's array
module (cupy on a GPU), so a target's matching never copies reference features to the device.
Bounds: a count and a byte budget (`Reference.nbytes`); inserting past either evicts the least
recently used entries. Every entry expires `ttl_s` after registration (an absolute deadline,
reported to the client as `expires_at`); expired entries are dropped on the next access.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from insid3.engine.runtime.reference import Reference
from insid3.engine.serve.errors import PayloadTooLargeError


@dataclass(frozen=True)
class CachedReference:
    reference_id: str
    reference: Reference
    expires_at: float  # seconds on the store's clock
    expires_at_utc: str  # ISO 8601, for clients

    @property
    def shots(self) -> int:
        return self.reference.shots

    @property
    def nbytes(self) -> int:
        return self.reference.nbytes


def new_reference_id() -> str:
    return uuid.uuid4().hex


class ReferenceStore:
    """LRU + TTL map reference_id -> CachedReference; safe to call from any thread."""

    def __init__(
        self,
        max_count: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_count, self.max_bytes, self.ttl_s = max_count, max_bytes, ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, CachedReference] = OrderedDict()  # oldest use first
        self._bytes = 0
        self._lock = threading.Lock()
        self.evicted = 0

    def deadline(self) -> float:
        """The expiry time of a reference registered now."""
        return self._clock() + self.ttl_s

    def put(self, reference_id: str, reference: Reference, expires_at: float | None = None) -> CachedReference:
        """Insert (or replace) an entry, evicting least-recently-used ones to stay in bounds."""
        if reference.nbytes > self.max_bytes:
            raise PayloadTooLargeError(
                f"the reference's features need {reference.nbytes} bytes, more than the cache's "
                f"{self.max_bytes} (max_reference_bytes): use fewer shots"
            )
        expires_at = self.deadline() if expires_at is None else expires_at
        entry = CachedReference(
            reference_id=reference_id,
            reference=reference,
            expires_at=expires_at,
            expires_at_utc=datetime.fromtimestamp(expires_at, timezone.utc).isoformat(timespec="seconds"),
        )
        with self._lock:
            self._purge_expired()
            self._remove(reference_id)
            while self._entries and (
                len(self._entries) >= self.max_count or self._bytes + entry.nbytes > self.max_bytes
            ):
                self._remove(next(iter(self._entries)))
                self.evicted += 1
            self._entries[reference_id] = entry
            self._bytes += entry.nbytes
        return entry

    def get(self, reference_id: str) -> CachedReference | None:
        """The live entry (now the most recently used), or None if unknown or expired."""
        with self._lock:
            self._purge_expired()
            entry = self._entries.get(reference_id)
            if entry is not None:
                self._entries.move_to_end(reference_id)
            return entry

    def delete(self, reference_id: str) -> bool:
        with self._lock:
            self._purge_expired()
            return self._remove(reference_id)

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) after dropping expired ones."""
        with self._lock:
            self._purge_expired()
            return len(self._entries), self._bytes

    def _remove(self, reference_id: str) -> bool:
        entry = self._entries.pop(reference_id, None)
        if entry is None:
            return False
        self._bytes -= entry.nbytes
        return True

    def _purge_expired(self) -> None:
        now = self._clock()
        for reference_id in [k for k, e in self._entries.items() if e.expires_at <= now]:
            self._remove(reference_id)
