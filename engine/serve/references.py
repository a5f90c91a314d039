"""The server's reference cache: encoded references on the backend's device, bounded and expiring.

Each entry is an `insid3.engine.runtime.reference.Reference` whose arrays live in the backend's array
module (cupy on a GPU), so a target's matching never copies reference features to the device.
Bounds: a count and a byte budget (`Reference.nbytes`); inserting past either evicts the least
recently used entries. Every entry expires `ttl_s` after registration (an absolute deadline,
reported to the client as `expires_at`); expired entries are dropped on the next access.

A service keeps its references in a `ReferenceBook`: `LocalReferences` (one process, the store
is the truth) or `SharedReferences` (Ray Serve replicas: a registry actor is the truth, each
replica's store a cache that re-encodes what it lacks).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from insid3.engine.runtime.correspondence import EncodedImage
from insid3.engine.runtime.reference import Reference
from insid3.engine.serve.errors import PayloadTooLargeError, UnknownReferenceError
from insid3.engine.serve.profiles import ProfiledReference, ReferenceProfile

Inputs = list[tuple[bytes, bytes]]  # a reference's uploads, (image bytes, mask bytes) per shot; b"" for no mask
# A segmentation reference (with its profile, if registered with one), or a match reference image.
Encoded = Reference | ProfiledReference | EncodedImage


@dataclass(frozen=True)
class CachedReference:
    reference_id: str
    reference: Encoded
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

    def put(self, reference_id: str, reference: Encoded, expires_at: float | None = None) -> CachedReference:
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



class ReferenceBook(Protocol):
    """Where a service keeps one kind of reference (segmentation or match), found by id."""

    async def add(self, encoded: Encoded, inputs: Inputs) -> CachedReference: ...

    async def find(self, reference_id: str) -> tuple[Encoded, str | None]:
        """The encoded reference and where it came from ("cached", "re-encoded"; None where there
        is only one place), or UnknownReferenceError."""
        ...

    async def delete(self, reference_id: str) -> bool: ...

    def stats(self) -> tuple[int, int]: ...


class LocalReferences:
    """One process's references: its store is the truth."""

    def __init__(self, store: ReferenceStore, kind: str) -> None:
        self.store, self.kind = store, kind  # kind names the reference in a 404 ("match reference")

    async def add(self, encoded: Encoded, inputs: Inputs) -> CachedReference:
        return self.store.put(new_reference_id(), encoded)

    async def find(self, reference_id: str) -> tuple[Encoded, str | None]:
        entry = self.store.get(reference_id)
        if entry is None:
            raise UnknownReferenceError(f"{self.kind} {reference_id!r} is unknown or expired")
        return entry.reference, None

    async def delete(self, reference_id: str) -> bool:
        return self.store.delete(reference_id)

    def stats(self) -> tuple[int, int]:
        return self.store.stats()


class SharedReferences:
    """References shared by Ray Serve replicas (ray_app.py), without importing Ray.

    `registry` is a ReferenceRegistry actor handle: reference_id -> ([ObjectRef of the inputs and
    the reference's profile, or None], expires_at). It is the truth on existence and expiry: a DELETE or an expiry anywhere is seen
    everywhere. This replica's store is a cache of encodings; a replica that lacks one fetches the
    inputs from the object store and encodes them once (concurrent requests share that encoding).
    """

    def __init__(self, store: ReferenceStore, kind: str, registry: Any,
                 encode: Callable[[Inputs, ReferenceProfile | None], Awaitable[Encoded]], on_re_encoded: Callable[[], None] = lambda: None,
                 ) -> None:
        self.store, self.kind, self.registry = store, kind, registry
        self._encode, self._on_re_encoded = encode, on_re_encoded
        self._encoding: dict[str, asyncio.Future] = {}

    async def add(self, encoded: Encoded, inputs: Inputs) -> CachedReference:
        entry = self.store.put(new_reference_id(), encoded)
        profile = encoded.profile if isinstance(encoded, ProfiledReference) else None  # re-encoded under it
        await self.registry.put.remote(entry.reference_id, (inputs, profile), entry.expires_at)
        return entry

    async def find(self, reference_id: str) -> tuple[Encoded, str | None]:
        found = await self.registry.get.remote(reference_id)
        if found is None:  # deleted or expired somewhere, or never registered
            self.store.delete(reference_id)
            raise UnknownReferenceError(f"{self.kind} {reference_id!r} is unknown or expired")
        entry = self.store.get(reference_id)
        if entry is not None:
            return entry.reference, "cached"
        pending = self._encoding.get(reference_id)
        if pending is None:
            (inputs,), expires_at = found
            pending = asyncio.ensure_future(self._re_encode(reference_id, inputs, expires_at))
            self._encoding[reference_id] = pending
            pending.add_done_callback(lambda _: self._encoding.pop(reference_id, None))
        return await asyncio.shield(pending), "re-encoded"

    async def delete(self, reference_id: str) -> bool:
        self.store.delete(reference_id)
        return await self.registry.delete.remote(reference_id)

    def stats(self) -> tuple[int, int]:
        return self.store.stats()

    async def _re_encode(self, reference_id: str, recipe: Awaitable[tuple[Inputs, ReferenceProfile | None]],
                         expires_at: float) -> Encoded:
        inputs, profile = await recipe
        encoded = await self._encode(inputs, profile)
        self.store.put(reference_id, encoded, expires_at)
        self._on_re_encoded()
        return encoded
