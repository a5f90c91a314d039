"""`Segmenter`: the user-facing API. References are encoded once; targets stream through.

    seg = Segmenter.from_bundle("bundles/dinov3-vits16-768")
    seg.set_reference(image, mask)
    mask = seg.segment(target)          # bool (H, W) at the target's own size

Per target: preprocess -> backbone -> debias -> matching -> clustering -> aggregation ->
upsample (algorithm doc §1-§9), each stage timed in `last_timings` (ms). "matching" is the
forward step; the backward votes run in "aggregation", after the clustering, and only for the
patches whose votes can change the mask (kernels.pruned_aggregate).

One path: every mask comes from `decode_concepts` (engine/runtime/concepts.py), several concepts
on one target; `segment`, `segment_batch` and `decode` are that path with one entry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from insid3 import kernels
from insid3.engine.runtime import decoding
from insid3.engine.runtime.backends import load_backend
from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.engine.runtime.concepts import ConceptsResult, decode_concepts
from insid3.engine.runtime.correspondence import EncodedImage, Matcher, MatchOptions
from insid3.engine.runtime.decoding import ConceptDecoder, EncodedTarget
from insid3.engine.runtime.encoder import ImageEncoder
from insid3.engine.runtime.images import ImageLike, PreparedImage, prepare_reference_mask
from insid3.engine.runtime.reference import EncodingFingerprint, Reference, ReferenceShot
from insid3.engine.runtime.refinement import Refiner
from insid3.engine.runtime.timing import STAGES, StageClock
from insid3.errors import NoReferenceError, SettingsError
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.refinement import RefineSettings
from insid3.format.settings import Hyperparameters

log = logging.getLogger("insid3.engine")

# The name of the one entry that a single reference is on the concepts path.
ONE = "reference"


class Segmenter:
    def __init__(
        self, bundle: Bundle, backend: Backend, hyperparameters: Hyperparameters, *, refine: RefineSettings | None = None
    ) -> None:
        meta = bundle.metadata
        basis = bundle.positional_basis()
        self.hyperparameters = hyperparameters.validated(meta.embed_dim)
        if hyperparameters.svd_components > basis.shape[1]:
            raise SettingsError(
                f"svd_components={hyperparameters.svd_components} exceeds the {basis.shape[1]} basis "
                f"vectors of this bundle (min(C, N) at {meta.resolution}px)"
            )
        self.bundle = bundle
        self.backend = backend
        self.xp = backend.xp
        # How §9's mask is finished: bilinear (default) or the dense CRF (engine/runtime/refinement.py).
        self.refine = RefineSettings.of(refine)
        refiner = Refiner(resolution=meta.resolution, settings=self.refine, mean=tuple(meta.mean), std=tuple(meta.std))
        self._decoder = ConceptDecoder(merge_threshold=self.hyperparameters.merge_threshold,
                                       patch_grid=meta.patch_grid, refiner=refiner)
        self._encoder = ImageEncoder(bundle, backend)
        # Debiased features live in span(B)^perp, B = the first s basis vectors: every dot product
        # of doc §4-§8 is computed in its C - s orthonormal coordinates (kernels.DebiasFrame),
        # built once here on the backend's device.
        positional = self.xp.asarray(np.ascontiguousarray(basis[:, : self.hyperparameters.svd_components]))
        self._frame = kernels.debias_frame(positional, self.hyperparameters.svd_components)
        # What every Reference this Segmenter encodes depends on, checked wherever one is used.
        self.fingerprint = EncodingFingerprint.of(bundle, self.hyperparameters.svd_components)
        self._shots: list[ReferenceShot] = []
        self._reference: Reference | None = None
        self.last_timings: dict[str, float] = {}

    @property
    def images_encoded(self) -> dict[str, int]:
        """How many images went through the backbone for references and for targets (matching
        included): the proof that references are encoded once, however many targets follow."""
        return self._encoder.images_encoded

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        backend: str = "auto",
        svd_components: int | None = None,
        tau: float | None = None,
        merge_threshold: float | None = None,
        *,
        precision: str = "fp32",
        num_threads: int | None = None,
        refine: str | RefineSettings = "bilinear",
    ) -> "Segmenter":
        """Load a bundle and a backend; None hyperparameters take the bundle's defaults. refine:
        "bilinear" (the authors' default) or "crf" (their dense-CRF refinement, docs/crf.md)."""
        bundle = load_bundle(path)
        defaults = bundle.metadata.defaults
        hyperparameters = Hyperparameters(
            svd_components=defaults.svd_components if svd_components is None else int(svd_components),
            tau=defaults.tau if tau is None else float(tau),
            merge_threshold=defaults.merge_threshold if merge_threshold is None else float(merge_threshold),
        )
        hyperparameters.validated(bundle.metadata.embed_dim)  # fail before loading a backend
        refine = RefineSettings.of(refine)
        options = BackendOptions(precision=precision, num_threads=num_threads)
        return cls(bundle, load_backend(bundle, backend, options), hyperparameters, refine=refine)

    # ------------------------------------------------------------------ references
    def encode_shots(self, shots: Sequence[tuple[ImageLike, ImageLike]]) -> tuple[ReferenceShot, ...]:
        """Encode (image, mask) pairs into reference shots (one backbone batch)."""
        meta = self.bundle.metadata
        prepared, masks = [], []
        for image, mask in shots:
            item = self.prepare(image)
            masks.append(prepare_reference_mask(mask, item.original_size, meta.resolution))
            prepared.append(item)
        return self.shots_from_features(self.encode(prepared, role="reference"), masks)

    def shots_from_features(self, features: Any, masks: Sequence[np.ndarray]) -> tuple[ReferenceShot, ...]:
        """Reference shots from backbone features (S, N, C) already computed (e.g. cached by an
        evaluation) and their R x R bool masks (`prepare_reference_mask`)."""
        debiased = kernels.debiased_coordinates(features, self._frame)
        grid = self.bundle.metadata.patch_grid
        return tuple(
            ReferenceShot(
                debiased=debiased[i],
                patch_mask=self.xp.asarray(kernels.downsample_mask(mask, grid)).reshape(-1),
            )
            for i, mask in enumerate(masks)
        )

    def encode_reference(self, shots: Sequence[tuple[ImageLike, ImageLike]]) -> Reference:
        """A standalone Reference (used by the server); does not touch this Segmenter's own."""
        return Reference.from_shots(self.encode_shots(shots), self.fingerprint)

    def set_reference(self, image: ImageLike, mask: ImageLike) -> None:
        """Replace the references with this one shot."""
        shots = self.encode_shots([(image, mask)])
        self._shots = list(shots)
        self._reference = Reference.from_shots(tuple(self._shots), self.fingerprint)

    def add_reference(self, image: ImageLike, mask: ImageLike) -> None:
        """One more shot: backward matching becomes a majority vote over the shots (doc §6)."""
        self._shots.extend(self.encode_shots([(image, mask)]))
        self._reference = Reference.from_shots(tuple(self._shots), self.fingerprint)

    def clear_references(self) -> None:
        self._shots, self._reference = [], None

    @property
    def reference(self) -> Reference | None:
        return self._reference

    def _require(self, reference: Reference | None) -> Reference:
        reference = reference if reference is not None else self._reference
        if reference is None:
            raise NoReferenceError("segment() needs a reference first: call set_reference(image, mask)")
        reference.fingerprint.require_same(self.fingerprint)
        return reference

    # ------------------------------------------------------------------ targets
    def prepare(self, image: ImageLike) -> PreparedImage:
        """Doc §1 at the bundle's resolution."""
        return self._encoder.prepare(image)

    def encode(self, prepared: Sequence[PreparedImage], role: str = "target") -> Any:
        """Backbone features (B, N, C) in the backend's array module, in chunks of its max batch."""
        return self._encoder.encode(prepared, role)

    def encode_target(self, features: Any, clock: StageClock, pixels: Any = None) -> EncodedTarget:
        """The target's half of steps 4-9 for its (N, C) features: debiased now, clustered on the
        first concept that needs it (engine/runtime/decoding.py). pixels: its PreparedImage.pixels, which
        the CRF refinement reads."""
        return decoding.encode_target(features, self._frame, self.hyperparameters.tau, clock, pixels)

    def decode(
        self,
        features: Any,
        original_size: tuple[int, int],
        reference: Reference | None = None,
        clock: StageClock | None = None,
        pixels: Any = None,
    ) -> np.ndarray:
        """Steps 4-9 for one target's (N, C) features: the bool (H, W) mask of one reference (the
        Segmenter's own by default); `decode_concepts` with one entry."""
        one = {ONE: self._require(reference)}
        return self.decode_concepts(features, original_size, one, clock, pixels)[ONE].mask

    def decode_concepts(
        self,
        features: Any,
        original_size: tuple[int, int],
        concepts: Mapping[str, Reference],
        clock: StageClock | None = None,
        pixels: Any = None,
    ) -> ConceptsResult:
        """Steps 4-9 for several concepts on one target's features: the target side once
        (engine/runtime/concepts.py); each mask equals that concept's alone. pixels: the target's
        PreparedImage.pixels (required with refine="crf")."""
        concepts = self._require_concepts(concepts)
        clock = clock or StageClock(self.backend.synchronize)
        return decode_concepts(self._decoder, self.encode_target(features, clock, pixels), original_size, concepts,
                               clock)

    def _require_concepts(self, concepts: Mapping[str, Reference]) -> dict[str, Reference]:
        named = dict(concepts)
        if not named:
            raise NoReferenceError("segment_concepts() needs at least one concept: a name and its Reference")
        for name, reference in named.items():
            if not isinstance(name, str) or not name:
                raise SettingsError(f"concept names must be non-empty strings, got {name!r}")
            if not isinstance(reference, Reference):
                raise SettingsError(f"concept {name!r}: expected a Reference (Segmenter.encode_reference), got "
                                    f"{type(reference).__name__}")
            reference.fingerprint.require_same(self.fingerprint)
        return named

    def segment(self, target: ImageLike, reference: Reference | None = None) -> np.ndarray:
        """The bool (H, W) mask of the reference's concept in `target`, at the target's own size
        (`segment_concepts` with one entry; its quality record: segment_concepts)."""
        return self.segment_concepts(target, {ONE: self._require(reference)})[ONE].mask

    def segment_concepts(self, target: ImageLike, concepts: Mapping[str, Reference]) -> ConceptsResult:
        """Every concept's mask and quality record in `target` (a mapping name -> Reference, each
        possibly multi-shot) from one backbone pass and one clustering; concept i is label i of
        `label_map()`."""
        concepts = self._require_concepts(concepts)
        clock = StageClock(self.backend.synchronize)
        with clock.stage("preprocess"):
            prepared = self.prepare(target)
        with clock.stage("backbone"):
            features = self.encode([prepared])
        result = self.decode_concepts(features[0], prepared.original_size, concepts, clock, pixels=prepared.pixels)
        self.last_timings = {stage: clock.ms.get(stage, 0.0) for stage in STAGES}
        return result

    def segment_batch(
        self, targets: Sequence[ImageLike], batch_size: int = 8, reference: Reference | None = None
    ) -> list[np.ndarray]:
        """Masks of one reference for many targets: the backbone runs in batches, decoding
        overlaps inference (`segment_concepts_stream` with one entry)."""
        one = {ONE: self._require(reference)}
        prepared = (self.prepare(target) for target in targets)
        return [result[ONE].mask for _, result in self.segment_concepts_stream(prepared, one, batch_size)]

    def segment_concepts_stream(
        self, prepared: Iterable[PreparedImage], concepts: Mapping[str, Reference], batch_size: int = 8
    ) -> Iterator[tuple[PreparedImage, ConceptsResult]]:
        """Yield (image, ConceptsResult) in input order; batch k+1 is encoded while batch k decodes.

        `prepared` is consumed lazily, batch by batch, on one worker thread, so a folder of any
        size streams in bounded memory. `last_timings` holds per-target means over the stream.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        concepts = self._require_concepts(concepts)
        for count, (item, features, totals) in enumerate(self._encoded_stream(prepared, batch_size), start=1):
            result = self.decode_concepts(features, item.original_size, concepts, totals, pixels=item.pixels)
            self.last_timings = {s: totals.ms.get(s, 0.0) / count for s in STAGES}
            yield item, result

    def _encoded_stream(
        self, prepared: Iterable[PreparedImage], batch_size: int
    ) -> Iterator[tuple[PreparedImage, Any, StageClock]]:
        """(image, its (N, C) features, the stream's stage totals) in input order; batch k+1 goes
        through the backbone on a worker thread while the caller decodes batch k."""
        source = iter(prepared)
        totals = StageClock(self.backend.synchronize)

        def next_batch() -> tuple[list[PreparedImage], Any]:
            clock = StageClock(self.backend.synchronize)
            with clock.stage("preprocess"):
                batch = list(islice(source, batch_size))
            if not batch:
                return batch, None
            with clock.stage("backbone"):
                features = self.encode(batch)
            for stage, ms in clock.ms.items():
                totals.add(stage, ms)
            return batch, features

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="insid3-backbone") as pool:
            pending = pool.submit(next_batch)
            while True:
                batch, features = pending.result()
                if not batch:
                    break
                pending = pool.submit(next_batch)
                for i, item in enumerate(batch):
                    yield item, features[i], totals

    # ------------------------------------------------------------------ correspondence
    @cached_property
    def matcher(self) -> Matcher:
        """Keypoint matching on this backend (engine/runtime/correspondence.py), built on first use."""
        return Matcher(self._encoder, self._frame)

    def encode_image(self, image: ImageLike) -> EncodedImage:
        """An image encoded once for `match`: reuse it as the reference of many calls."""
        return self.matcher.reference(image)

    def match(
        self,
        reference_image: ImageLike | EncodedImage,
        points: Sequence[tuple[float, float]],
        target: ImageLike | Sequence[ImageLike],
        *,
        debiased: bool = True,
        svd_components: int | None = None,
        batch_size: int = 8,
    ) -> np.ndarray | list[np.ndarray]:
        """(K, 2) float32 (x, y) target pixels matching `points` (x, y) of the reference image;
        a list of them when `target` is a list or tuple (the backbone batched). s defaults to
        this Segmenter's; any s below C works without a new export."""
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        options = MatchOptions(debiased=debiased, svd_components=svd_components)
        found = [c.points for c in self.matcher.match(reference_image, points, targets, options, batch_size)]
        return found if isinstance(target, (list, tuple)) else found[0]

    def close(self) -> None:
        """Let go of the backend's model, sessions and device buffers; inference afterwards is an
        error. A second call does nothing (Backend.close)."""
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        b = self.backend
        return (
            f"{self.bundle.metadata.arch} @ {self.bundle.metadata.resolution}px on {b.name} "
            f"({b.device}, {b.precision}); {self.hyperparameters}; refine {self.refine.describe()}"
        )
