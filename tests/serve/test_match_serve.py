"""POST /v1/match in the local server (in process, through FastAPI's TestClient), and the Ray
replicas' shared match references (references.SharedReferences) against a stand-in registry actor."""

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.serve.errors import UnknownReferenceError
from insid3.engine.serve.local import create_local_app
from insid3.engine.serve.matching import MAX_POINTS
from insid3.engine.serve.references import ReferenceStore, SharedReferences
from insid3.engine.serve.runner import EngineRunner
from insid3.engine.serve.settings import ServeSettings

testclient = pytest.importorskip("fastapi.testclient")
POINTS = [(5, 20), (7, 50), (95, 63), (40.5, 31.25)]
POINTS_TEXT = "5,20;7,50;95,63;40.5,31.25"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images():
    (reference, first), (_, second) = scene_pairs(2, size=(64, 96), seed=3)
    return reference, first, second


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    return Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")


@pytest.fixture(scope="module")
def client(tiny_bundle):
    settings = ServeSettings(max_batch=8, max_wait_ms=300, max_upload_bytes=1 << 20, max_image_pixels=1_000_000)
    app = create_local_app(Segmenter.from_bundle(tiny_bundle, backend="onnxruntime"), settings)
    with testclient.TestClient(app) as http:
        yield http


@pytest.fixture(scope="module")
def match_id(client, images):
    response = client.post("/v1/match/references", files={"image": ("r.png", png(images[0].image))})
    assert response.status_code == 201, response.text
    assert response.json()["size"] == [64, 96] and response.json()["expires_at"]
    return response.json()["reference_id"]


def match(client, target: bytes, **fields):
    files = {"image": ("t.png", target)}
    if "reference_image" in fields:
        files["reference_image"] = ("r.png", fields.pop("reference_image"))
    return client.post("/v1/match", data={"points": POINTS_TEXT, **fields}, files=files)


@pytest.mark.parametrize("options", [{}, {"debiased": "false"}, {"svd_components": "20"}])
def test_served_matches_equal_the_engine(client, segmenter, images, match_id, options):
    reference, target, _ = images
    response = match(client, png(target.image), reference_id=match_id, **options)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = segmenter.match(reference.image, POINTS, target.image, debiased=options.get("debiased") != "false",
                               svd_components=int(options.get("svd_components", 0)) or None)
    np.testing.assert_allclose(np.asarray(body["points"], np.float32), expected, atol=1e-4)
    assert len(body["peak_similarity"]) == len(POINTS) and body["size"] == [64, 96]
    assert body["debiased"] == (options.get("debiased") != "false")
    assert body["svd_components"] == (None if not body["debiased"] else
                                      int(options.get("svd_components", segmenter.hyperparameters.svd_components)))
    assert float(response.headers["x-insid3-timing-matching-ms"]) >= 0 and "backbone;dur=" in response.headers[
        "server-timing"]


def test_an_uploaded_reference_image_matches_like_a_registered_one(client, images, match_id):
    reference, target, _ = images
    registered = match(client, png(target.image), reference_id=match_id).json()
    uploaded = match(client, png(target.image), reference_image=png(reference.image))
    assert uploaded.status_code == 200, uploaded.text
    np.testing.assert_allclose(uploaded.json()["points"], registered["points"], atol=1e-5)


def test_match_and_segment_targets_share_backbone_batches(client, images, match_id):
    reference, target, other = images
    files = [("image", ("r.png", png(reference.image))), ("mask", ("m.png", png(reference.mask.astype(np.uint8) * 255)))]
    segment_id = client.post("/v1/references", files=files).json()["reference_id"]

    def send(index):
        image = png((target if index % 2 else other).image)
        if index % 3 == 0:
            return client.post("/v1/segment", data={"reference_id": segment_id}, files={"image": ("t.png", image)})
        return match(client, image, reference_id=match_id)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(send, range(6)))
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert max(int(r.headers["x-insid3-batch-size"]) for r in responses) > 1
    # A segmentation reference is not a match reference, nor the reverse.
    assert match(client, png(target.image), reference_id=segment_id).status_code == 404
    assert client.post("/v1/segment", data={"reference_id": match_id},
                       files={"image": ("t.png", png(target.image))}).status_code == 404


@pytest.mark.parametrize("fields, status, detail", [
    ({"points": "5,20;200,3"}, 400, "point 1 (200, 3) lies outside the reference image (96x64, WxH)"),
    ({"points": "5,20;x,3"}, 400, "points: point 1 ('x', '3') is not a pair of numbers"),
    ({"points": ";".join(["1,1"] * (MAX_POINTS + 1))}, 413, f"exceed the limit of {MAX_POINTS}"),
    ({"svd_components": "128"}, 400, "svd_components=128 must be in [0, 128)"),
    ({"svd_components": "-1"}, 422, "svd_components"),
    ({"reference_id": "nope"}, 404, "match reference 'nope' is unknown or expired"),
])
def test_bad_requests_get_one_line_and_the_segment_status_codes(client, images, match_id, fields, status, detail):
    fields = {"reference_id": match_id, **fields}
    response = client.post("/v1/match", data={"points": POINTS_TEXT, **fields},
                           files={"image": ("t.png", png(images[1].image))})
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_reference_fields_are_exactly_one_and_images_must_decode(client, images, match_id):
    target = png(images[1].image)
    assert match(client, target).status_code == 400  # neither
    both = match(client, target, reference_id=match_id, reference_image=png(images[0].image))
    assert both.status_code == 400 and "exactly one" in both.json()["detail"]
    assert match(client, b"not an image", reference_id=match_id).status_code == 400
    missing = client.post("/v1/match", data={"reference_id": match_id}, files={"image": ("t.png", target)})
    assert missing.status_code == 422 and "points" in missing.json()["detail"]
    huge = np.zeros((1100, 1000, 3), np.uint8)  # over max_image_pixels, under the body limit as PNG
    assert match(client, png(huge), reference_id=match_id).status_code == 413


def test_a_deleted_match_reference_is_404(client, images):
    reference_id = client.post("/v1/match/references", files={"image": ("r.png", png(images[0].image))}).json()[
        "reference_id"]
    assert client.delete(f"/v1/match/references/{reference_id}").status_code == 204
    assert client.delete(f"/v1/match/references/{reference_id}").status_code == 404
    assert match(client, png(images[1].image), reference_id=reference_id).status_code == 404


# ------------------------------------------------------------------ Ray replicas (no Ray needed)
class _Remote:
    def __init__(self, function):
        self.function = function

    async def remote(self, *args):
        return self.function(*args)


class FakeRegistry:
    """ray_app.ReferenceRegistry's interface; object refs are awaitables of the stored value."""

    def __init__(self):
        self.entries = {}
        self.put = _Remote(lambda key, value, expires: self.entries.__setitem__(key, ([self._ref(value)], expires)))
        self.get = _Remote(lambda key: self.entries.get(key))
        self.delete = _Remote(lambda key: self.entries.pop(key, None) is not None)

    @staticmethod
    def _ref(value):
        future = asyncio.get_running_loop().create_future()
        future.set_result(value)
        return future


def test_ray_replicas_share_match_references_through_the_registry(segmenter, images):
    reference = Image.fromarray(images[0].image)
    runner = EngineRunner(segmenter)

    async def encode(inputs, profile):  # the way ray_app re-encodes a match reference (never profiled)
        ((image_bytes, _),) = inputs
        return await runner.call(segmenter.encode_image, Image.open(io.BytesIO(image_bytes)))

    def replica(registry, settings):
        store = ReferenceStore(settings.max_references, settings.max_reference_bytes, settings.reference_ttl_s)
        return SharedReferences(store, "match reference", registry, encode)

    async def scenario():
        registry, settings = FakeRegistry(), ServeSettings()
        first, second = (replica(registry, settings) for _ in range(2))
        entry = await first.add(await runner.call(segmenter.encode_image, reference), [(png(images[0].image), b"")])
        here, _ = await first.find(entry.reference_id)
        (there, source), (again, _) = await asyncio.gather(second.find(entry.reference_id),
                                                           second.find(entry.reference_id))
        assert source == "re-encoded"
        assert there is again and second.store.get(entry.reference_id).reference is there  # encoded once
        np.testing.assert_array_equal(np.asarray(there.features), np.asarray(here.features))
        assert there.original_size == (64, 96)
        assert await second.delete(entry.reference_id)
        with pytest.raises(UnknownReferenceError):
            await first.find(entry.reference_id)  # a delete anywhere is seen everywhere

    asyncio.run(scenario())
