"""Backbone features by image content: the same picture recurs across episodes (as target and
as reference, several times in a 5-shot episode) and across folds, and is encoded once.

The key is a digest of the RGB pixels the model is given (after any crop), so two files with
the same pixels share features and a cropped object never collides with its whole image. The
cache belongs to one backbone (one bundle's model at one resolution): keys say nothing about
the model, so a Segmenter never shares its cache with another. Entries live in memory up to a
byte budget (least recently used first out) and, optionally, in a folder of .npy files that
outlives the process (a later run, another fold, a resumed run).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from insid3 import kernels


def content_key(rgb: np.ndarray) -> str:
    """32 hex digits naming the (H, W, 3) uint8 pixels and their shape."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(rgb.shape)).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


class FeatureCache:
    """key -> (N, C) float32 features in the backend's array module `xp`; thread safe."""

    def __init__(self, xp: Any = np, *, max_bytes: int = 2 << 30, folder: str | Path | None = None) -> None:
        self.xp = xp
        self.max_bytes = int(max_bytes)
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{key}.npy"

    def get(self, key: str) -> Any | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        if self.folder is not None and self._path(key).is_file():
            try:
                found = self.xp.asarray(np.load(self._path(key)))
            except (OSError, ValueError):  # a file torn by a crash: encode again
                found = None
            if found is not None:
                with self._lock:
                    self.disk_hits += 1
                self._remember(key, found)
                return found
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: str, features: Any) -> None:
        self._remember(key, features)
        if self.folder is not None and not self._path(key).is_file():
            temporary = self.folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(temporary, "wb") as handle:
                np.save(handle, kernels.to_numpy(features))
            os.replace(temporary, self._path(key))

    def _remember(self, key: str, features: Any) -> None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            self._entries[key] = features
            self._bytes += int(features.nbytes)
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= int(dropped.nbytes)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def stats(self) -> dict:
        return {"hits": self.hits, "disk_hits": self.disk_hits, "misses": self.misses,
                "entries": len(self._entries), "bytes": self._bytes}


def cache_folder(root: str | Path | None, fingerprint: Any) -> Path | None:
    """--feature-cache ROOT's folder for one backbone (an EncodingFingerprint): keys name pixels,
    not models, so each model and resolution keeps its own."""
    if root is None:
        return None
    return Path(root) / f"{fingerprint.model_sha256[:16]}-{fingerprint.resolution}"
