"""`insid3-segment --ray`: targets through a Ray Data pipeline, written by the local command's writers.

    from_items(index, location, name)            the driver's list, done targets already left out
      -> map_batches(read_and_prepare)           CPU tasks: the file's bytes, decoded, resized, normalised
      -> map_batches(SegmentWorker, ActorPool)   one actor per GPU or N CPU actors: backbone + steps 4-9
      -> iter_rows() on the driver               in input order -> Writer.write (engine/jobs/outputs/)

References are encoded once, by a task on one worker's resources (its backend is the pool's),
and live in the object store; each actor fetches them once when it starts. A result travels
as a pickled ConceptsResult with its masks packed to bits. An input that cannot be read or
decoded comes back as an error row, listed by the command as the local run lists it; a dying
actor is restarted and its batch retried (cluster.FAULT_TOLERANCE), and the driver writes each
input once. The pipeline streams: Ray Data's backpressure bounds what is in flight.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from insid3 import kernels
from insid3.engine.jobs.concept_specs import ConceptSpec
from insid3.engine.jobs.ray_data import cluster
from insid3.engine.jobs.ray_data.cluster import ClusterSettings, SegmenterSpec, WorkerInfo
from insid3.engine.jobs.ray_data.inputs import RemoteTarget, Target, read_input
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.images import (
    PreparedImage,
    decode_file_bytes,
    load_rgb,
    prepare_image,
    prepare_reference_mask,
)
from insid3.engine.runtime.reference import Reference
from insid3.errors import InputImageError, Insid3Error
from insid3.format.bundle import Bundle

Shots = list[tuple[str, bytes, str, bytes]]  # (image name, its bytes, mask name, its bytes) per shot
READING_CPUS = 1.0  # a reading task's CPUs: the pool must leave them free (cluster.plan_actors)


# ---------------------------------------------------------------- results and references in transit
def pack_result(result: ConceptsResult) -> bytes:
    """A result for the trip to the driver: the masks as bits (8x smaller), the rest as it is."""
    concepts = tuple(replace(concept, mask=np.packbits(concept.mask, axis=None)) for concept in result.concepts)
    return pickle.dumps(replace(result, concepts=concepts), protocol=5)


def unpack_result(data: bytes) -> ConceptsResult:
    packed = pickle.loads(data)
    height, width = packed.original_size
    concepts = tuple(
        replace(concept, mask=np.unpackbits(concept.mask, count=height * width).reshape(height, width).astype(bool))
        for concept in packed.concepts
    )
    return replace(packed, concepts=concepts)


def on_device(reference: Reference, xp: Any) -> Reference:
    """The same reference with its arrays in `xp`: numpy for the object store, cupy on a GPU actor."""
    move = kernels.to_numpy if xp is np else xp.asarray
    return replace(reference, debiased=move(reference.debiased), patch_masks=move(reference.patch_masks),
                   prototype=move(reference.prototype))


def encode_references(spec: SegmenterSpec, concepts: list[tuple[str, Shots]]) -> tuple[WorkerInfo, dict[str, Reference]]:
    """Every concept's Reference, shot by shot as the local command encodes them, on the host."""
    segmenter = spec.build()
    references = {}
    for name, shots in concepts:
        encoded = tuple(
            shot for image_name, image, mask_name, mask in shots
            for shot in segmenter.encode_shots([(decode_file_bytes(image, image_name),
                                                 decode_file_bytes(mask, mask_name, "mask"))])
        )
        references[name] = on_device(Reference.from_shots(encoded, segmenter.fingerprint), np)
    return WorkerInfo.of(segmenter), references


def shots_to_send(concepts: Sequence[ConceptSpec], resolution: int) -> list[tuple[str, Shots]]:
    """The references' file bytes for the workers, checked here first so that a bad mask is the
    local command's one line naming its file."""
    sent = []
    for spec in concepts:
        shots = []
        for image, mask in spec.shots:
            height, width = load_rgb(image).size[::-1]
            prepare_reference_mask(mask, (height, width), resolution)
            shots.append((str(image), Path(image).read_bytes(), str(mask), Path(mask).read_bytes()))
        sent.append((spec.name, shots))
    return sent


# ---------------------------------------------------------------- the pipeline's stages
def read_and_prepare(batch: dict[str, np.ndarray], *, resolution: int, mean: tuple[float, ...],
                     std: tuple[float, ...]) -> dict[str, np.ndarray]:
    """CPU task: each input's bytes, decoded and pre-processed (doc §1); an error row where not."""
    rows = len(batch["index"])
    pixels = np.zeros((rows, 3, resolution, resolution), dtype=np.float32)  # (B, 3, R, R)
    sizes = np.zeros((rows, 2), dtype=np.int64)  # (B, [H, W])
    errors = np.full(rows, "", dtype=object)
    for i, (location, name) in enumerate(zip(batch["location"], batch["name"])):
        try:
            prepared = prepare_image(decode_file_bytes(read_input(location, name), name), resolution, mean, std)
        except InputImageError as exc:
            errors[i] = str(exc)
            continue
        pixels[i], sizes[i] = prepared.pixels, prepared.original_size
    return {"index": batch["index"], "pixels": pixels, "size": sizes, "error": errors}


class SegmentWorker:
    """An actor of the pool: one Segmenter, the references fetched once from the object store."""

    def __init__(self, spec: SegmenterSpec, references: list) -> None:
        import ray

        self.segmenter = spec.build()
        # `references` is [ObjectRef]: in a list, so Ray hands the ref over rather than its value.
        self.references = {name: on_device(reference, self.segmenter.xp)
                           for name, reference in ray.get(references[0]).items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = np.asarray(batch["error"], dtype=object).copy()
        results = np.full(len(errors), b"", dtype=object)
        keep = [i for i, error in enumerate(errors) if not error]
        if keep:
            prepared = [PreparedImage(pixels=batch["pixels"][i], original_size=(int(batch["size"][i][0]),
                                                                                int(batch["size"][i][1])))
                        for i in keep]
            features = self.segmenter.encode(prepared)  # (B, N, C): one backbone batch
            for j, i in enumerate(keep):
                try:
                    result = self.segmenter.decode_concepts(features[j], prepared[j].original_size, self.references,
                                                            pixels=prepared[j].pixels)
                except Insid3Error as exc:  # this input's own failure: reported, the rest go on
                    errors[i] = str(exc)
                    continue
                results[i] = pack_result(result)
        return {"index": batch["index"], "error": errors, "result": results}


# ---------------------------------------------------------------- the driver
def segment_on_ray(settings: ClusterSettings, segmenter: SegmenterSpec, bundle: Bundle,
                   concepts: Sequence[ConceptSpec], todo: Sequence[Target], failures: list[tuple[Target, str]], *,
                   batch_size: int, say: Callable[[str], None]) -> Iterator[tuple[Target, ConceptsResult]]:
    """(target, result) in `todo`'s order; inputs that failed go to `failures`. The cluster is
    joined, the pool fitted to it (or waited for), the references encoded and the pipeline built
    before this returns (errors here are one line); closing the iterator stops the pipeline and
    a Ray instance started for it. `segmenter`: what every worker builds (its bundle path must
    exist on every node; num_threads is the pool's); `say` gets the lines a user reads."""
    if not todo:
        return iter(())
    job = _job(settings, segmenter, bundle, concepts, todo, failures, batch_size, say)
    next(job)  # the set-up, up to the generator's first yield
    return job


def _job(settings: ClusterSettings, segmenter: SegmenterSpec, bundle: Bundle, concepts: Sequence[ConceptSpec],
         todo: Sequence[Target], failures: list[tuple[Target, str]], batch_size: int,
         say: Callable[[str], None]) -> Iterator[Any]:
    import ray

    meta = bundle.metadata
    sent = shots_to_send(concepts, meta.resolution)
    with cluster.connected(settings) as fixed:
        cluster.quiet_ray_data()
        plan = cluster.plan_actors(settings, fixed=fixed, reading_cpus=READING_CPUS, say=say)
        spec = replace(segmenter, bundle=cluster.absolute(segmenter.bundle), num_threads=plan.threads())
        info_ref, references_ref = cluster.on_worker_resources(encode_references, plan, returns=2).remote(spec, sent)
        info: WorkerInfo = cluster.remote_get(info_ref)
        say(f"Ray, {plan.describe()}: {info.describe}")
        rows = [{"index": i, "location": target.uri if isinstance(target, RemoteTarget) else cluster.absolute(target),
                 "name": str(target)} for i, target in enumerate(todo)]
        dataset = cluster.streaming_dataset_options(ray.data.from_items(rows)).map_batches(
            read_and_prepare, batch_size=batch_size, num_cpus=READING_CPUS,
            fn_kwargs={"resolution": meta.resolution, "mean": tuple(meta.mean), "std": tuple(meta.std)},
        )
        with warnings.catch_warnings():  # cluster.actor_pool_fault_tolerance: deprecated, still honoured
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = dataset.map_batches(
                SegmentWorker, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=plan.workers),
                fn_constructor_kwargs={"spec": spec, "references": [references_ref]}, **plan.remote_args(),
                **cluster.actor_pool_fault_tolerance(),
            )
        yield None
        try:  # closing the rows' iterator shuts the pipeline down, on Ctrl-C too
            with closing(iter(dataset.iter_rows())) as results:
                yield from _written_once(results, todo, failures)
        except ray.exceptions.RayError as exc:
            raise cluster.job_error(exc) from None


def _written_once(rows: Iterator[dict], todo: Sequence[Target],
                  failures: list[tuple[Target, str]]) -> Iterator[tuple[Target, ConceptsResult]]:
    """Each row's target and result, in order and once; failed rows to `failures`."""
    last = -1
    for row in rows:
        index = int(row["index"])
        if index <= last:  # order is preserved: an index seen again would be a duplicate
            continue
        last = index
        if row["error"]:
            failures.append((todo[index], str(row["error"])))
        else:
            yield todo[index], unpack_result(row["result"])
