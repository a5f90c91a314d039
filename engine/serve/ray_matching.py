"""Match references across Ray Serve replicas, the way ray_app shares segmentation references.

A replica registers a match reference in its own cache and hands the image bytes to a named
registry actor of its own (ray_app.ReferenceRegistry under MATCH_REGISTRY_NAME, so the two
kinds of reference never mix). Every /v1/match asks that registry first: it is the truth on
existence and expiry; a replica that lacks the encoding fetches the bytes from the object store
and encodes them once (concurrent requests share that encoding).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from PIL import Image

from insid3.engine.runtime.correspondence import EncodedImage
from insid3.engine.serve.errors import UnknownReferenceError
from insid3.engine.serve.matching import Matching, Submit
from insid3.engine.serve.references import CachedReference, new_reference_id
from insid3.engine.serve.runner import EngineRunner
from insid3.engine.serve.settings import ServeSettings

MATCH_REGISTRY_NAME = "insid3-match-reference-registry"


class RayMatching(Matching):
    def __init__(self, runner: EngineRunner, settings: ServeSettings, submit: Submit, registry: Any) -> None:
        super().__init__(runner, settings, submit)
        self.registry = registry  # a ReferenceRegistry actor handle: id -> ([ObjectRef of bytes], expires_at)
        self._encoding: dict[str, asyncio.Future] = {}

    async def register(self, image: Image.Image, image_bytes: bytes) -> CachedReference:
        entry = self.store.put(new_reference_id(), await self.encode(image))
        await self.registry.put.remote(entry.reference_id, [(image_bytes, b"")], entry.expires_at)
        return entry

    async def resolve(self, reference_id: str) -> EncodedImage:
        found = await self.registry.get.remote(reference_id)
        if found is None:  # deleted or expired somewhere, or never registered
            self.store.delete(reference_id)
            raise UnknownReferenceError(f"match reference {reference_id!r} is unknown or expired")
        entry = self.store.get(reference_id)
        if entry is not None:
            return entry.reference
        pending = self._encoding.get(reference_id)
        if pending is None:
            (inputs,), expires_at = found
            pending = asyncio.ensure_future(self._re_encode(reference_id, inputs, expires_at))
            self._encoding[reference_id] = pending
            pending.add_done_callback(lambda _: self._encoding.pop(reference_id, None))
        return await asyncio.shield(pending)

    async def delete(self, reference_id: str) -> bool:
        self.store.delete(reference_id)
        return await self.registry.delete.remote(reference_id)

    async def _re_encode(self, reference_id: str, inputs: Any, expires_at: float) -> EncodedImage:
        ((image_bytes, _),) = await inputs
        encoded = await self.encode(Image.open(io.BytesIO(image_bytes)))
        self.store.put(reference_id, encoded, expires_at)
        return encoded
