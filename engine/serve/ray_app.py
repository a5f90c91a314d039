"""The same HTTP app on Ray Serve: one replica per GPU, batching through `@serve.batch`.

Run it with the CLI (starts or joins a Ray cluster, then blocks):

    insid3 serve --bundle /srv/bundles/dinov3-vits16-768 --ray [--num-replicas N]
                 [--min-replicas A --max-replicas B] [--address auto]

or with Ray's own tools, through the application builder `build_app` (args are ServeSettings
fields, `bundle`, and the fields of settings.RayOptions; the bundle path must exist on every node):

    serve run insid3.engine.serve.ray_app:build_app bundle=/srv/bundles/dinov3-vits16-768 max_batch=8

    # serve deploy config.yaml
    applications:
    - name: insid3
      route_prefix: /
      import_path: insid3.engine.serve.ray_app:build_app
      args: {bundle: /srv/bundles/dinov3-vits16-768, max_batch: 8, max_wait_ms: 10,
             min_replicas: 1, max_replicas: 4}

Replicas: `Insid3Replica` asks for `num_gpus=1` when the cluster has GPUs (and defaults to one
replica per GPU), else `num_cpus=replica_cpus`. Each replica loads its own Segmenter and serves
the full HTTP API (`app.create_app(self.service)`, late-bound through `__serve_build_asgi_app__`):
the replica is its Service's Execution (service.py).
Batching is Ray Serve's `@serve.batch(max_batch_size, batch_wait_timeout_s)` (set from
`max_batch`, `max_wait_ms`); backpressure is the deployment's `max_queued_requests` (=
`max_queue`), which Ray's proxy answers with 503 + Retry-After. Autoscaling bounds
(`min_replicas`, `max_replicas`) turn on Ray's autoscaler. /metrics is per replica.

References across replicas:
- Registering encodes the reference on the replica that got the request and caches it there
  (device-resident, LRU/TTL as in the local server). The *inputs* (each shot's image and mask
  bytes) go to `ReferenceRegistry`, a small named, detached actor (namespace "insid3"), which
  `ray.put`s them into Ray's object store and keeps the ObjectRef, keyed by reference_id, with
  the expiry time, and the reference's profile (profiles.py) if it was registered with one: a
  replica re-encodes it under that profile's debias frame. The registry owns those objects, so they outlive the replica that registered
  them (a replica scaled down takes nothing with it).
- Every /v1/segment asks the registry for its reference_id first: the registry is the truth on
  existence (a DELETE or an expiry anywhere is seen everywhere). A replica whose cache lacks the
  reference fetches the inputs from the object store and re-encodes them once (concurrent
  requests share that encoding), then caches it until the same expiry. The response header
  `X-Insid3-Reference-Source` says `cached` or `re-encoded`; `X-Insid3-Replica` names the replica.
- `POST /v1/match` (the same app's handler) batches its targets through the same `@serve.batch`;
  its reference images are shared the same way, through a registry actor of their own
  (MATCH_REGISTRY_NAME). Both kinds are `references.SharedReferences`.
"""

from __future__ import annotations

import io
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import ray
from PIL import Image
from ray import serve

from insid3.engine.runtime.correspondence import EncodedImage
from insid3.engine.runtime.reference import Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.engine.serve.app import create_app
from insid3.engine.serve.metrics import ServeMetrics
from insid3.engine.serve.profiles import ProfiledReference, ReferenceProfile
from insid3.engine.serve.references import Inputs, ReferenceStore, SharedReferences
from insid3.engine.serve.runner import EngineRunner, QueueItem
from insid3.engine.serve.service import Service
from insid3.engine.serve.settings import RayOptions, ServeSettings
from insid3.errors import SettingsError

REGISTRY_NAME = "insid3-reference-registry"
MATCH_REGISTRY_NAME = "insid3-match-reference-registry"  # /v1/match's references never mix with these
NAMESPACE = "insid3"
DEPLOYMENT_NAME = "Insid3Replica"


@ray.remote(num_cpus=0)
class ReferenceRegistry:
    """reference_id -> ([ObjectRef of ([(image bytes, mask bytes), ...], profile or None)], expires_at),
    owner of the objects."""

    def __init__(self, max_references: int) -> None:
        self._max = max_references
        self._entries: dict[str, tuple[list[ray.ObjectRef], float]] = {}  # insertion order = age

    def put(self, reference_id: str, shots: tuple[list[tuple[bytes, bytes]], Any], expires_at: float) -> None:
        self._purge()
        while len(self._entries) >= self._max:  # the oldest registration goes first
            self._entries.pop(next(iter(self._entries)))
        # Wrapped in a list so that Ray hands the ObjectRef itself to callers, not its value.
        self._entries[reference_id] = ([ray.put(shots)], expires_at)

    def get(self, reference_id: str) -> tuple[list[ray.ObjectRef], float] | None:
        self._purge()
        return self._entries.get(reference_id)

    def delete(self, reference_id: str) -> bool:
        self._purge()
        return self._entries.pop(reference_id, None) is not None

    def _purge(self) -> None:
        now = time.time()
        for reference_id in [k for k, (_, expires_at) in self._entries.items() if expires_at <= now]:
            del self._entries[reference_id]


def reference_registry(name: str, max_references: int):
    """The cluster's registry actor of that name, created by whoever asks first."""
    return ReferenceRegistry.options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(max_references)


def _decode_shots(shots: Inputs) -> list[tuple[Image.Image, Image.Image]]:
    return [(Image.open(io.BytesIO(image)), Image.open(io.BytesIO(mask))) for image, mask in shots]


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class Insid3Replica:
    """One replica: a Segmenter on this replica's device, the HTTP app (app.py) around a Service
    whose Execution (service.py) is this replica: @serve.batch, references shared by registries."""

    def __init__(self, bundle: str, settings: dict) -> None:
        s = ServeSettings.from_json(settings)
        metrics = ServeMetrics()
        self.runner = EngineRunner(Segmenter.from_bundle(bundle, **s.engine_options()))
        replica_id = serve.get_replica_context().replica_id.unique_id
        self.label = f"Ray Serve replica {replica_id}"
        self.headers = {"X-Insid3-Replica": replica_id}

        async def encode_shots(inputs: Inputs, profile: ReferenceProfile | None) -> Reference | ProfiledReference:
            return await self.runner.call(self.runner.encode_reference, _decode_shots(inputs), profile)

        async def encode_image(inputs: Inputs, profile: None) -> EncodedImage:
            ((image_bytes, _),) = inputs
            return await self.runner.call(self.runner.segmenter.encode_image, Image.open(io.BytesIO(image_bytes)))

        def store() -> ReferenceStore:
            return ReferenceStore(s.max_references, s.max_reference_bytes, s.reference_ttl_s)

        self.references = SharedReferences(
            store(), "reference", reference_registry(REGISTRY_NAME, s.max_references), encode_shots,
            on_re_encoded=metrics.reference_encodes.labels("replica_miss").inc,
        )
        self.match_references = SharedReferences(  # POST /v1/match's references: a registry of their own
            store(), "match reference", reference_registry(MATCH_REGISTRY_NAME, s.max_references), encode_image,
        )
        self._batch_sizes = metrics.batch_size
        self._segment_batch.set_max_batch_size(s.max_batch)
        self._segment_batch.set_batch_wait_timeout_s(s.max_wait_s)
        self.service = Service(self.runner, s, metrics, self)

    def __serve_build_asgi_app__(self):
        return create_app(self.service)

    # ------------------------------------------------------------------ Execution
    async def start(self) -> None:
        pass  # the engine loaded with the replica; @serve.batch needs no task of ours

    async def stop(self) -> None:
        pass

    async def submit(self, item: QueueItem) -> Any:
        return await self._segment_batch(item)

    def queue_depth(self) -> int:
        return 0  # Ray Serve queues requests before they reach the replica

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _segment_batch(self, items: list[QueueItem]) -> list[Any]:
        self._batch_sizes.observe(len(items))
        return await self.runner.call(self.runner.run_batch, items)


def _split_args(args: dict) -> tuple[str, ServeSettings, RayOptions]:
    args = dict(args)
    if "bundle" not in args:
        raise SettingsError("build_app needs bundle=<bundle folder>")
    bundle = str(Path(args.pop("bundle")).resolve())
    ray_fields = {f.name for f in fields(RayOptions)}
    ray_args = {name: args.pop(name) for name in list(args) if name in ray_fields}
    try:
        options = RayOptions(**{
            name: (float(value) if name == "replica_cpus" else int(value)) for name, value in ray_args.items()
        })
    except ValueError as exc:
        raise SettingsError(f"bad replica option: {exc}") from None
    return bundle, ServeSettings.from_json(args), options


def build_app(args: dict) -> serve.Application:
    """Application builder for `serve run` / config files (arguments arrive as strings)."""
    bundle, settings, options = _split_args(args)
    return build_application(bundle, settings, options)


def build_application(bundle: str, settings: ServeSettings, options: RayOptions) -> serve.Application:
    """The deployment of `bundle` (a path every node can read) with one replica per GPU unless told."""
    gpus = ray.cluster_resources().get("GPU", 0.0) if ray.is_initialized() else 0.0
    deployment = Insid3Replica.options(**options.deployment_options(settings, gpus))
    return deployment.bind(bundle, settings.to_json())
