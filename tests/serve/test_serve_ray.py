"""insid3-serve --ray: the same API on Ray Serve, two CPU replicas on a local Ray instance.

Slow-ish (a local Ray cluster starts, < 60 s); deselect with `-m "not ray"`.
"""

import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.serve.launch import running_server
from insid3.format.bundle import load_bundle
from insid3.format.profile import BundleIdentity, Profile
from insid3.format.settings import Hyperparameters

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.ray
PROFILE_SETTINGS = Hyperparameters(svd_components=8, tau=0.9, merge_threshold=0.45)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def segment(http: httpx.Client, reference_id: str, image: bytes) -> httpx.Response:
    return http.post("/v1/segment", data={"reference_id": reference_id}, files={"image": ("t.png", image)})


def test_ray_replicas_share_references_and_batch(tiny_bundle, tmp_path):
    (reference, target), = scene_pairs(1, size=(96, 128), seed=7)
    args = ["--bundle", str(tiny_bundle), "--ray", "--num-replicas", "2", "--replica-cpus", "0.5",
            "--max-batch", "4", "--max-wait-ms", "100"]
    with running_server(args, tmp_path / "ray.log", ready_timeout_s=50) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        files = [("image", ("r.png", png(reference.image))), ("mask", ("m.png", png(reference.mask)))]
        registered = http.post("/v1/references", files=files)
        assert registered.status_code == 201, registered.text
        reference_id = registered.json()["reference_id"]
        image = png(target.image)

        # Sequential requests land on both replicas (Ray routes among idle ones at random): the
        # replica that did not register re-encodes the reference from the object store, once.
        sources: dict[str, list[str]] = {}
        masks = []
        for _ in range(30):
            response = segment(http, reference_id, image)
            assert response.status_code == 200, response.text
            sources.setdefault(response.headers["x-insid3-replica"], []).append(
                response.headers["x-insid3-reference-source"]
            )
            masks.append(np.asarray(Image.open(io.BytesIO(response.content))))
            if len(sources) == 2 and sum(len(v) for v in sources.values()) >= 4:
                break
        assert len(sources) == 2, server.log_tail()
        re_encoded = [replica for replica, seen in sources.items() if "re-encoded" in seen]
        assert len(re_encoded) == 1 and sources[re_encoded[0]].count("re-encoded") == 1
        assert all(seen[0] == "cached" for replica, seen in sources.items() if replica not in re_encoded)
        assert all(np.array_equal(mask, masks[0]) for mask in masks)  # same reference on both replicas

        # Concurrent targets are batched by @serve.batch.
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: segment(http, reference_id, image), range(8)))
        assert [r.status_code for r in responses] == [200] * 8
        assert max(int(r.headers["x-insid3-batch-size"]) for r in responses) > 1

        # A reference registered with a calibration profile is re-encoded under that profile by the
        # replica that lacks it: every replica answers the engine's mask with the profile's settings.
        profile = Profile(hyperparameters=PROFILE_SETTINGS, bundle=BundleIdentity.of(load_bundle(tiny_bundle)))
        registered = http.post("/v1/references", files=files, data={"profile": json.dumps(profile.to_json())})
        assert registered.status_code == 201, registered.text
        profiled_id = registered.json()["reference_id"]
        engine = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", **PROFILE_SETTINGS.to_json())
        expected = engine.segment(target.image, engine.encode_reference([(reference.image, reference.mask)]))
        assert not np.array_equal(expected, masks[0] > 0)  # the profile's settings make another mask
        seen: dict[str, list[str]] = {}
        for _ in range(30):
            response = segment(http, profiled_id, image)
            assert response.status_code == 200, response.text
            seen.setdefault(response.headers["x-insid3-replica"], []).append(
                response.headers["x-insid3-reference-source"])
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))) > 0, expected)
            if len(seen) == 2:
                break
        assert len(seen) == 2 and sum(s.count("re-encoded") for s in seen.values()) == 1, seen

        # Errors are the same app's; a DELETE on one replica is seen by all.
        assert segment(http, reference_id, b"not an image").status_code == 400
        assert http.delete(f"/v1/references/{reference_id}").status_code == 204
        assert {segment(http, reference_id, image).status_code for _ in range(6)} == {404}
