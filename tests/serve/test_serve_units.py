"""insid3-serve's parts without a server: reference cache, batcher, uploads, settings, Ray options."""

import asyncio
import io
import socket
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.reference import EncodingFingerprint, Reference
from insid3.engine.serve.batching import DynamicBatcher
from insid3.engine.serve.errors import BadRequestError, PayloadTooLargeError, QueueFullError
from insid3.engine.serve.references import ReferenceStore
from insid3.engine.serve.runner import SegmentResult, TargetItem
from insid3.engine.serve.settings import Listen, ServeSettings
from insid3.engine.serve.uploads import decode_upload
from insid3.errors import SettingsError


def make_reference(shots: int = 1, patches: int = 16, width: int = 8) -> Reference:
    return Reference(
        debiased=np.zeros((shots, patches, width), np.float32),
        patch_masks=np.zeros((shots, patches), bool),
        prototype=np.zeros(width, np.float32),
        fingerprint=EncodingFingerprint("model", "basis", resolution=64, svd_components=2),
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ reference cache
def test_store_evicts_least_recently_used_by_count():
    store = ReferenceStore(max_count=2, max_bytes=1 << 30, ttl_s=60)
    for name in "ab":
        store.put(name, make_reference())
    assert store.get("a") is not None  # "a" is now the most recently used
    store.put("c", make_reference())
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    assert store.evicted == 1


def test_store_evicts_by_bytes_and_tracks_them():
    one = make_reference()
    store = ReferenceStore(max_count=100, max_bytes=2 * one.nbytes, ttl_s=60)
    for name in "abc":
        store.put(name, make_reference())
    assert store.stats() == (2, 2 * one.nbytes)
    assert store.get("a") is None


def test_store_refuses_a_reference_larger_than_its_budget():
    store = ReferenceStore(max_count=10, max_bytes=100, ttl_s=60)
    with pytest.raises(PayloadTooLargeError, match="more than the cache's 100"):
        store.put("big", make_reference(shots=4))


def test_store_expires_entries_after_the_ttl():
    clock = FakeClock()
    store = ReferenceStore(max_count=10, max_bytes=1 << 30, ttl_s=5, clock=clock)
    entry = store.put("a", make_reference(shots=2))
    assert entry.shots == 2 and entry.expires_at == clock.now + 5
    assert entry.expires_at_utc.endswith("+00:00")
    clock.now += 4.9
    assert store.get("a") is not None
    clock.now += 0.2
    assert store.get("a") is None and store.stats() == (0, 0)


def test_store_delete():
    store = ReferenceStore(max_count=10, max_bytes=1 << 30, ttl_s=60)
    store.put("a", make_reference())
    assert store.delete("a") and not store.delete("a") and store.get("a") is None


# ------------------------------------------------------------------ dynamic batcher
def item(tag: int) -> TargetItem:
    pixels = np.full((3, 2, 2), tag, np.float32)
    return TargetItem(PreparedImage(pixels, (2, 2), name=str(tag)), make_reference(), time.perf_counter())


def result_for(target: TargetItem, size: int) -> SegmentResult:
    return SegmentResult(np.zeros((2, 2), bool), {"tag": float(target.prepared.name)}, size)


class RecordingEngine:
    """Stands in for EngineRunner.run_batch: records batch sizes; fails items tagged 13."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay_s = delay_s

    async def __call__(self, items):
        self.batches.append(len(items))
        await asyncio.sleep(self.delay_s)
        return [
            ValueError(f"item {t.prepared.name} failed") if t.prepared.name == "13" else result_for(t, len(items))
            for t in items
        ]


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_targets_share_one_batch():
    async def scenario():
        engine = RecordingEngine()
        observed = []
        batcher = DynamicBatcher(engine, max_batch=8, max_wait_s=0.5, max_queue=64, on_batch=observed.append)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(item(i)) for i in range(8)))
        await batcher.stop()
        return engine.batches, observed, results

    batches, observed, results = run(scenario())
    assert batches == [8] and observed == [8]  # full batch: dispatched without waiting out 0.5 s
    assert [r.timings_ms["tag"] for r in results] == list(range(8))  # each caller gets its own result


def test_batches_never_exceed_max_batch():
    async def scenario():
        engine = RecordingEngine()
        batcher = DynamicBatcher(engine, max_batch=3, max_wait_s=0.05, max_queue=64)
        batcher.start()
        await asyncio.gather(*(batcher.submit(item(i)) for i in range(7)))
        await batcher.stop()
        return engine.batches

    batches = run(scenario())
    assert sum(batches) == 7 and max(batches) == 3


def test_a_lone_target_waits_at_most_max_wait():
    async def scenario():
        batcher = DynamicBatcher(RecordingEngine(), max_batch=8, max_wait_s=0.1, max_queue=64)
        batcher.start()
        started = time.perf_counter()
        await batcher.submit(item(1))
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert 0.09 <= run(scenario()) < 0.5


def test_one_failing_item_fails_alone():
    async def scenario():
        batcher = DynamicBatcher(RecordingEngine(), max_batch=4, max_wait_s=0.2, max_queue=64)
        batcher.start()
        outcomes = await asyncio.gather(*(batcher.submit(item(i)) for i in (12, 13, 14)), return_exceptions=True)
        await batcher.stop()
        return outcomes

    ok, failed, ok_too = run(scenario())
    assert isinstance(failed, ValueError) and "item 13" in str(failed)
    assert ok.batch_size == ok_too.batch_size == 3


def test_a_crashing_engine_fails_its_batch_and_the_loop_goes_on():
    calls = []

    async def engine(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return [result_for(t, len(items)) for t in items]

    async def scenario():
        batcher = DynamicBatcher(engine, max_batch=2, max_wait_s=0.01, max_queue=64)
        batcher.start()
        first = await asyncio.gather(batcher.submit(item(1)), return_exceptions=True)
        second = await batcher.submit(item(2))
        await batcher.stop()
        return first[0], second

    first, second = run(scenario())
    assert isinstance(first, RuntimeError) and second.timings_ms["tag"] == 2.0


def test_a_full_queue_refuses_with_a_retry_after():
    async def scenario():
        batcher = DynamicBatcher(RecordingEngine(), max_batch=8, max_wait_s=0.3, max_queue=2)
        batcher.start()
        admitted = [asyncio.ensure_future(batcher.submit(item(i))) for i in range(2)]
        await asyncio.sleep(0.01)
        assert batcher.depth == 2
        with pytest.raises(QueueFullError) as refused:
            await batcher.submit(item(3))
        done = await asyncio.gather(*admitted)
        await batcher.stop()
        return refused.value, done

    refused, done = run(scenario())
    assert refused.retry_after_s >= 1 and "queue is full" in str(refused)
    assert len(done) == 2


# ------------------------------------------------------------------ uploads
def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_upload_reads_an_image():
    assert decode_upload(png_bytes(5, 4), "image", 100).size == (5, 4)


def test_decode_upload_refuses_too_many_pixels_before_decoding():
    with pytest.raises(PayloadTooLargeError, match=r"image: 11x10 = 110 pixels exceeds the limit of 100"):
        decode_upload(png_bytes(11, 10), "image", 100)


def announced_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height gray pixels, with almost no data after it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_an_image_pil_will_not_open_is_refused_with_the_servers_own_limit():
    ceiling = 2 * Image.MAX_IMAGE_PIXELS  # PIL's own refusal, 178956970 pixels with its default
    with pytest.raises(PayloadTooLargeError) as refused:
        decode_upload(announced_png(30_000, 30_000), "image[0]", 1_000_000)
    assert str(refused.value) == (f"image[0]: the image has more than {ceiling} pixels, which exceeds the limit of "
                                  "1000000")
    assert "could be decompression bomb" not in str(refused.value)


def test_the_pixel_limit_is_at_most_what_pil_opens():
    ceiling = 2 * Image.MAX_IMAGE_PIXELS
    assert ServeSettings(max_image_pixels=ceiling).validated().max_image_pixels == ceiling
    with pytest.raises(SettingsError, match=f"max_image_pixels={ceiling + 1} is over {ceiling}, the most pixels PIL"):
        ServeSettings(max_image_pixels=ceiling + 1).validated()


@pytest.mark.parametrize(
    "data, message",
    [(b"", "the upload is empty"), (b"hello, not an image", "cannot decode"), (png_bytes(64, 64)[:60], "corrupt")],
)
def test_decode_upload_names_the_problem(data, message):
    with pytest.raises(BadRequestError, match=message):
        decode_upload(data, "mask[0]", 10_000)


# ------------------------------------------------------------------ settings
def test_settings_from_strings_and_validation():
    settings = ServeSettings.from_json({"max_batch": "4", "max_wait_ms": "2.5", "backend": "onnxruntime"})
    assert settings.max_batch == 4 and settings.max_wait_s == 0.0025 and settings.backend == "onnxruntime"
    tuned = ServeSettings.from_json({"svd_components": "20", "tau": "0.5", "merge_threshold": "None"})
    assert (tuned.svd_components, tuned.tau, tuned.merge_threshold) == (20, 0.5, None)
    assert ServeSettings.from_json(tuned.to_json()) == tuned
    with pytest.raises(SettingsError, match="bad serve setting"):
        ServeSettings.from_json({"max_batch": "many"})
    with pytest.raises(SettingsError, match="max_queue=0 must be >= 1"):
        ServeSettings(max_queue=0).validated()
    with pytest.raises(SettingsError, match="unknown serve setting"):
        ServeSettings.from_json({"max_batchsize": 3})


def test_the_address_a_server_announces():
    assert Listen("127.0.0.1", 8000).announcement() == (
        "serving the web page at http://127.0.0.1:8000/ and the API at http://127.0.0.1:8000/v1/ "
        "(its OpenAPI page: http://127.0.0.1:8000/docs); Ctrl-C stops")
    assert Listen("::1", 9000).url == "http://[::1]:9000"
    assert Listen("0.0.0.0", 80).url == f"http://{socket.gethostname()}:80"  # every interface: the machine's name


def test_ray_options_ask_for_one_gpu_per_replica_when_there_are_gpus():
    ray_app = pytest.importorskip("insid3.engine.serve.ray_app")
    settings = ServeSettings(max_batch=8, max_queue=10)
    on_gpus = ray_app.RayOptions().deployment_options(settings, cluster_gpus=4)
    assert on_gpus["ray_actor_options"] == {"num_gpus": 1} and on_gpus["num_replicas"] == 4
    assert on_gpus["max_queued_requests"] == 10 and on_gpus["max_ongoing_requests"] >= 8
    assert on_gpus["backpressure_config"]["retry_after_s"] >= 1
    on_cpu = ray_app.RayOptions(replica_cpus=0.5).deployment_options(settings, cluster_gpus=0)
    assert on_cpu["ray_actor_options"] == {"num_cpus": 0.5} and on_cpu["num_replicas"] == 1
    scaled = ray_app.RayOptions(min_replicas=1, max_replicas=3).deployment_options(settings, cluster_gpus=0)
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"]["min_replicas"] == 1 and scaled["autoscaling_config"]["max_replicas"] == 3
    with pytest.raises(SettingsError, match="min=3 max=1"):
        ray_app.RayOptions(min_replicas=3, max_replicas=1).deployment_options(settings, cluster_gpus=0)


def test_ray_builder_arguments():
    ray_app = pytest.importorskip("insid3.engine.serve.ray_app")
    bundle, settings, options = ray_app._split_args(
        {"bundle": "b", "max_batch": "2", "num_replicas": "3", "replica_cpus": "0.25"}
    )
    assert bundle.endswith("/b") and settings.max_batch == 2
    assert options == ray_app.RayOptions(num_replicas=3, replica_cpus=0.25)
    with pytest.raises(SettingsError, match="bundle="):
        ray_app._split_args({"max_batch": "2"})


def test_ray_application_builder_for_serve_run(tmp_path):
    ray_app = pytest.importorskip("insid3.engine.serve.ray_app")
    from ray import serve

    application = ray_app.build_app({"bundle": str(tmp_path), "max_batch": "2", "min_replicas": "1", "max_replicas": "2"})
    assert isinstance(application, serve.Application)


# ------------------------------------------------------------------ the app factory
def test_the_app_factory_mounts_every_router_of_the_routes_package(tiny_bundle):
    import importlib
    import pkgutil
    import re

    from insid3.engine.runtime.segmenter import Segmenter
    from insid3.engine.serve import routes
    from insid3.engine.serve.local import create_local_app

    app = create_local_app(Segmenter.from_bundle(tiny_bundle, backend="onnxruntime"), ServeSettings())
    modules = [importlib.import_module(f"{routes.__name__}.{info.name}") for info in pkgutil.iter_modules(routes.__path__)]
    assert {module.__name__.rsplit(".", 1)[1] for module in modules} >= {"health", "references", "segment", "match",
                                                                        "web"}
    for module in modules:
        for route in module.router.routes:  # url_path_for raises NoMatchFound for a route the app lacks
            path = app.url_path_for(route.name, **{name: "x" for name in route.param_convertors})
            assert path == re.sub(r"\{[^}]+\}", "x", route.path), module.__name__


# ------------------------------------------------------------------ the Service and its Execution
class FakeExecution:
    """An Execution (service.py) whose batches answer at once; references from a dict of stores."""

    def __init__(self, references, headers):
        self.references = self.match_references = references
        self.headers, self.label = headers, None
        self.submitted = []

    async def start(self):
        pass

    async def stop(self):
        pass

    async def submit(self, item):
        self.submitted.append(item)
        return SegmentResult(np.ones((2, 2), bool), {"queue": 0.0}, 1)

    def queue_depth(self):
        return len(self.submitted)


def test_the_service_names_where_a_reference_came_from_only_where_there_are_several_places():
    from insid3.engine.serve.metrics import ServeMetrics
    from insid3.engine.serve.references import LocalReferences, SharedReferences
    from insid3.engine.serve.service import Service

    class Registry:  # ray_app.ReferenceRegistry's interface, every entry present
        class _Call:
            def __init__(self, function):
                self.remote = function

        def __init__(self):
            async def found(reference_id):
                return ([None], time.time() + 60)

            self.get = self._Call(found)

    reference = make_reference()
    local_store, shared_store = ReferenceStore(4, 1 << 20, 60), ReferenceStore(4, 1 << 20, 60)
    local_store.put("r", reference)
    shared_store.put("r", reference)
    local = LocalReferences(local_store, "reference")
    shared = SharedReferences(shared_store, "reference", Registry(), encode=None)
    prepared = PreparedImage(np.zeros((1, 3, 2, 2), np.float32), (2, 2))

    async def scenario(references, headers):
        service = Service(runner=None, settings=ServeSettings(), metrics=ServeMetrics(),
                          execution=FakeExecution(references, headers))
        return await service.segment("r", prepared)

    assert run(scenario(local, {})).headers == {}
    assert run(scenario(shared, {"X-Insid3-Replica": "one"})).headers == {
        "X-Insid3-Replica": "one", "X-Insid3-Reference-Source": "cached"}
