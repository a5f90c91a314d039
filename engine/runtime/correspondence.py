"""Semantic correspondence on the engine: match keypoints of a reference image in targets.

    seg = Segmenter.from_bundle("bundles/dinov3-vitb16-768")
    ref = seg.encode_image("cat1.jpg")                 # encoded once, reused for every target
    xy = seg.match(ref, [(120, 80), (64, 200)], "cat2.jpg")              # (2, 2) float32
    many = seg.match(ref, points, ["a.jpg", "b.jpg"], svd_components=20) # backbone batched

Per target (docs/correspondence.md): the unit patch features of both images, debiased with the
first s positional directions or not, each keypoint snapped to one reference patch, its cosine
map against the target, the Gaussian-weighted soft-argmax, and back to target pixels
(insid3.kernels.correspondence). Debiased features are taken in the DebiasFrame coordinates of
s (kernels.debias_frame), which carry the same dot products; a frame is built once per s from
the bundle's whole basis, so s is a per-call choice and needs no new export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from insid3 import kernels
from insid3.engine.runtime.encoder import ImageEncoder
from insid3.engine.runtime.images import ImageLike, PreparedImage
from insid3.engine.runtime.timing import StageClock
from insid3.errors import KeypointError, SettingsError
from insid3.format.bundle import ONNX_FILE, Bundle
from insid3.format.settings import Hyperparameters
from insid3.kernels.debias import DebiasFrame

MATCH_STAGES = ("preprocess", "backbone", "debias", "matching")


@dataclass(frozen=True)
class FeatureFingerprint:
    """What an image's original features depend on: the backbone (its sha256) and resolution."""

    model_sha256: str
    resolution: int

    @classmethod
    def of(cls, bundle: Bundle) -> "FeatureFingerprint":
        model = bundle.metadata.artifact("onnx")
        sha = model.sha256 if model else f"unrecorded:{bundle.folder / ONNX_FILE}"
        return cls(model_sha256=sha, resolution=bundle.metadata.resolution)

    def require_same(self, expected: "FeatureFingerprint") -> None:
        if self != expected:
            raise SettingsError(
                f"this image was encoded by another backbone or resolution (model {self.model_sha256[:12]}, "
                f"{self.resolution}px) than this Segmenter's (model {expected.model_sha256[:12]}, "
                f"{expected.resolution}px): encode it again with this Segmenter"
            )


@dataclass(frozen=True)
class EncodedImage:
    """One image's original unit patch features on the backend's device, and its own size.

    Independent of s and of debiasing, so one encoding serves every matching option."""

    features: Any  # (N, C) float32, row-major patches, L2-normalised (doc §2)
    original_size: tuple[int, int]  # (H, W)
    fingerprint: FeatureFingerprint
    name: str = ""

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)


@dataclass(frozen=True)
class MatchOptions:
    """debiased: remove the first s positional directions from both images' features first.
    svd_components: that s; None takes the Segmenter's own (unused when not debiased)."""

    debiased: bool = True
    svd_components: int | None = None


@dataclass(frozen=True)
class Correspondences:
    """The matches of K keypoints in one target."""

    points: np.ndarray  # (K, 2) float32 (x, y) in target pixels
    peak_similarity: np.ndarray  # (K,) float32: each cosine map's maximum, in [-1, 1]
    source_cells: np.ndarray  # (K, 2) int64 (u, v): the reference patch each keypoint was read at
    target_size: tuple[int, int]  # (H, W)


def check_points(points: Any, image_size: tuple[int, int], image: str = "the reference image") -> np.ndarray:
    """(K, 2) float32 (x, y) pixel coordinates, K >= 1, each finite and on the image (its right
    and bottom borders included); otherwise a KeypointError naming the first bad point."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise KeypointError(f"points must be a sequence of (x, y) number pairs, got {points!r:.80}") from None
    if array.size == 0:
        raise KeypointError("no points given: pass at least one (x, y)")
    if array.ndim != 2 or array.shape[1] != 2:
        raise KeypointError(f"points must be (x, y) pairs, got an array of shape {array.shape}")
    height, width = image_size
    for index, (x, y) in enumerate(array):
        if not (np.isfinite(x) and np.isfinite(y)):
            raise KeypointError(f"point {index} ({x:g}, {y:g}) is not a finite number")
        if not (0 <= x <= width and 0 <= y <= height):
            raise KeypointError(
                f"point {index} ({x:g}, {y:g}) lies outside {image} ({width}x{height}, WxH): "
                f"x must be in [0, {width}] and y in [0, {height}]"
            )
    return array.astype(np.float32)


def parse_points(text: str, source: str = "points") -> list[tuple[float, float]]:
    """Keypoints written as text: JSON ([[x, y], ...] or {"points": [[x, y], ...]}), or pairs
    "x,y" (or "x y") separated by ';' or newlines, '#' starting a comment. Values are checked
    against the image later (`check_points`); here only the syntax, naming the bad pair."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise KeypointError(f"{source}: not valid JSON ({exc})") from None
        data = data.get("points") if isinstance(data, dict) else data
        if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 for p in data):
            raise KeypointError(f'{source}: JSON must be [[x, y], ...] or {{"points": [[x, y], ...]}}')
        pairs = [(p[0], p[1]) for p in data]
    else:
        lines = (line.split("#", 1)[0] for line in stripped.splitlines())
        items = [item.strip() for line in lines for item in line.split(";") if item.strip()]
        pairs = []
        for index, item in enumerate(items):
            values = item.replace(",", " ").split()
            if len(values) != 2:
                raise KeypointError(f"{source}: point {index} {item!r} is not an 'x,y' pair")
            pairs.append((values[0], values[1]))
    bad = next((i for i, (x, y) in enumerate(pairs) if not (_is_number(x) and _is_number(y))), None)
    if bad is not None:
        raise KeypointError(f"{source}: point {bad} {pairs[bad]!r} is not a pair of numbers")
    return [(float(x), float(y)) for x, y in pairs]


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


class Matcher:
    """Keypoint matching with an image encoder (a bundle and its backend) and a debias frame, whose
    s is the default (a Segmenter's `matcher` shares its own); frames for other s cached."""

    def __init__(self, encoder: ImageEncoder, frame: DebiasFrame) -> None:
        self.encoder = encoder
        self.bundle = encoder.bundle
        self.backend = encoder.backend
        self.xp = encoder.backend.xp
        self.grid = self.bundle.metadata.patch_grid
        self.fingerprint = FeatureFingerprint.of(self.bundle)
        self.svd_components = frame.svd_components
        self._frames: dict[int, DebiasFrame] = {frame.svd_components: frame}
        self.last_timings: dict[str, float] = {}

    # ------------------------------------------------------------------ encoding
    def encode(self, images: Sequence[ImageLike | PreparedImage], role: str = "target") -> list[EncodedImage]:
        """Original features of each image, in one backbone call per backend batch."""
        prepared = [image if isinstance(image, PreparedImage) else self.encoder.prepare(image) for image in images]
        features = self.encoder.encode(prepared, role=role)
        return [
            EncodedImage(features=features[i], original_size=item.original_size, fingerprint=self.fingerprint,
                         name=item.name)
            for i, item in enumerate(prepared)
        ]

    def reference(self, image: ImageLike | EncodedImage) -> EncodedImage:
        """`image` itself when already encoded (by this backbone), else its encoding."""
        if isinstance(image, EncodedImage):
            image.fingerprint.require_same(self.fingerprint)
            return image
        return self.encode([image], role="reference")[0]

    def components(self, options: MatchOptions) -> int | None:
        """The s `options` match with (None: not debiased); SettingsError when this bundle has
        no such s. Pure: callable from any thread."""
        if not options.debiased:
            return None
        s = self.svd_components if options.svd_components is None else options.svd_components
        if s not in self._frames:
            meta = self.bundle.metadata
            Hyperparameters(svd_components=s).validated(meta.embed_dim)
            available = min(meta.embed_dim, meta.num_patches)  # the basis columns the bundle holds
            if s > available:
                raise SettingsError(f"svd_components={s} exceeds the {available} basis vectors of this bundle")
        return s

    def frame(self, svd_components: int) -> DebiasFrame:
        """The debias frame of the first s basis vectors (checked by `components`), built once."""
        if svd_components not in self._frames:
            basis = self.bundle.positional_basis()
            kept = self.xp.asarray(np.ascontiguousarray(basis[:, :svd_components]))
            self._frames[svd_components] = kernels.debias_frame(kept, svd_components)
        return self._frames[svd_components]

    # ------------------------------------------------------------------ matching
    def correspond(
        self,
        reference: EncodedImage,
        points: np.ndarray,
        target_features: Any,
        target_size: tuple[int, int],
        options: MatchOptions = MatchOptions(),
        clock: StageClock | None = None,
    ) -> Correspondences:
        """Match checked (K, 2) float32 `points` of `reference` in one target's (N, C) features."""
        reference.fingerprint.require_same(self.fingerprint)
        clock = clock or StageClock(self.backend.synchronize)
        xp = self.xp
        with clock.stage("matching"):
            cells = kernels.snap_points(xp.asarray(points), reference.original_size, self.grid)  # (K, 2)
            descriptors = kernels.source_descriptors(reference.features, cells, self.grid)  # (K, C)
        with clock.stage("debias"):
            target = target_features
            s = self.components(options)
            if s is not None:  # per vector: the K descriptors and the target's N patches suffice
                frame = self.frame(s)
                descriptors = kernels.debiased_coordinates(descriptors, frame)
                target = kernels.debiased_coordinates(target, frame)
        with clock.stage("matching"):
            similarity = kernels.keypoint_similarity(descriptors, target, self.grid)  # (K, h, w)
            matches, peak = kernels.gaussian_soft_argmax(similarity)
            pixels = kernels.patch_to_pixels(matches, target_size, self.grid)
            result = Correspondences(
                points=kernels.to_numpy(pixels), peak_similarity=kernels.to_numpy(peak),
                source_cells=kernels.to_numpy(cells), target_size=tuple(target_size),
            )
        return result

    def match_stream(
        self,
        reference: ImageLike | EncodedImage,
        points: Any,
        targets: Iterable[PreparedImage],
        options: MatchOptions = MatchOptions(),
        batch_size: int = 8,
    ) -> Iterator[tuple[PreparedImage, Correspondences]]:
        """(target, matches) in input order; targets go through the backbone `batch_size` at a
        time. `last_timings` holds per-target means (ms) of MATCH_STAGES over the stream."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = self.reference(reference)
        checked = check_points(points, encoded.original_size)
        self.components(options)  # a bad s fails before any target
        totals, count, source = StageClock(self.backend.synchronize), 0, iter(targets)
        while True:
            with totals.stage("preprocess"):
                batch = list(islice(source, batch_size))
            if not batch:
                return
            with totals.stage("backbone"):
                features = self.encoder.encode(batch)
            for index, item in enumerate(batch):
                result = self.correspond(encoded, checked, features[index], item.original_size, options, totals)
                count += 1
                self.last_timings = {stage: totals.ms.get(stage, 0.0) / count for stage in MATCH_STAGES}
                yield item, result

    def match(
        self,
        reference: ImageLike | EncodedImage,
        points: Any,
        targets: Sequence[ImageLike],
        options: MatchOptions = MatchOptions(),
        batch_size: int = 8,
    ) -> list[Correspondences]:
        """Correspondences per target, in order."""
        encoded = self.reference(reference)
        check_points(points, encoded.original_size)  # before any target is read
        prepared = (self.encoder.prepare(target) for target in targets)
        return [result for _, result in self.match_stream(encoded, points, prepared, options, batch_size)]
