"""insid3-serve end to end: a real server process on a loopback port, a real HTTP client (httpx)."""

import io
import signal
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.serve.launch import running_server

pycocotools_mask = pytest.importorskip("pycocotools.mask")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scenes():
    """Three (reference, target) pairs at 96 x 128: small, so requests are quick."""
    return scene_pairs(3, size=(96, 128), seed=5)


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--max-batch", "8", "--max-wait-ms", "200",
            "--max-upload-mb", "1", "--max-image-pixels", "1000000"]
    with running_server(args, log) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def register(http: httpx.Client, shots) -> httpx.Response:
    files = []
    for scene in shots:
        files += [("image", ("ref.png", png(scene.image), "image/png")),
                  ("mask", ("mask.png", png(scene.mask.astype(np.uint8) * 255), "image/png"))]
    return http.post("/v1/references", files=files)


def segment(http: httpx.Client, reference_id: str, image: bytes, fmt: str | None = None) -> httpx.Response:
    data = {"reference_id": reference_id} | ({"format": fmt} if fmt else {})
    return http.post("/v1/segment", data=data, files={"image": ("target.png", image, "image/png")})


@pytest.fixture(scope="module")
def reference_id(client, scenes):
    response = register(client, [scenes[0][0]])
    assert response.status_code == 201, response.text
    return response.json()["reference_id"]


def metric_samples(http: httpx.Client) -> dict:
    """{(name, frozenset(labels.items())): value} from /metrics."""
    response = http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def decode_png(response: httpx.Response) -> np.ndarray:
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "L"
    return np.asarray(image)


# ------------------------------------------------------------------ round trips
def test_register_returns_id_shots_and_expiry(client, scenes):
    response = register(client, [scenes[0][0], scenes[1][0]])
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["reference_id"]) >= 16 and body["shots"] == 2
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now().astimezone()


def test_png_mask_has_the_targets_size_and_is_0_or_255(client, reference_id, scenes):
    target = scenes[0][1].image[:80, :100]  # a size of its own, not the reference's
    response = segment(client, reference_id, png(np.ascontiguousarray(target)))
    assert response.status_code == 200, response.text
    mask = decode_png(response)
    assert mask.shape == (80, 100)
    assert set(np.unique(mask)) <= {0, 255}


def test_rle_decodes_to_the_png_mask(client, reference_id, scenes):
    image = png(scenes[1][1].image)
    as_png = decode_png(segment(client, reference_id, image, "png")) > 0
    response = segment(client, reference_id, image, "rle")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    rle = response.json()
    assert rle["size"] == [96, 128] and isinstance(rle["counts"], str)  # COCO's compressed string form
    decoded = pycocotools_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    np.testing.assert_array_equal(decoded, as_png)


def test_served_mask_equals_the_engine_on_the_same_inputs(client, tiny_bundle, scenes):
    from insid3.engine.runtime.segmenter import Segmenter

    reference, target = scenes[2]
    reference_id = register(client, [reference]).json()["reference_id"]
    served = decode_png(segment(client, reference_id, png(target.image))) > 0
    engine = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    engine.set_reference(reference.image, reference.mask)
    np.testing.assert_array_equal(served, engine.segment(target.image))


def test_timings_per_stage_in_headers(client, reference_id, scenes):
    response = segment(client, reference_id, png(scenes[0][1].image))
    stages = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    for stage in ("queue", "preprocess", "backbone", "debias", "matching", "upsample", "encode"):
        assert float(stages[stage]) >= 0.0
    assert float(response.headers["x-insid3-timing-backbone-ms"]) > 0.0
    assert int(response.headers["x-insid3-batch-size"]) >= 1


# ------------------------------------------------------------------ batching
def test_concurrent_targets_are_batched(client, reference_id, scenes):
    before = metric_samples(client)
    images = [png(pair[1].image) for pair in scenes]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: segment(client, reference_id, images[i % 3]), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert max(int(r.headers["x-insid3-batch-size"]) for r in responses) > 1
    after = metric_samples(client)
    count = after[("insid3_batch_size_count", frozenset())] - before.get(("insid3_batch_size_count", frozenset()), 0)
    total = after[("insid3_batch_size_sum", frozenset())] - before.get(("insid3_batch_size_sum", frozenset()), 0)
    assert total == 8 and count < 8  # 8 targets in fewer backbone calls
    assert ("insid3_batch_size_bucket", frozenset({("le", "1.0")})) in after


def test_a_bad_request_among_good_ones_harms_nobody(client, reference_id, scenes):
    good = png(scenes[0][1].image)
    bodies = [good, b"definitely not an image", good, png(scenes[0][1].image)[:200], good]
    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(lambda body: segment(client, reference_id, body).status_code, bodies))
    assert statuses == [200, 400, 200, 400, 200]
    assert client.get("/readyz").status_code == 200


# ------------------------------------------------------------------ bad requests
def test_undecodable_image_is_400_naming_the_problem(client, reference_id):
    response = segment(client, reference_id, b"GIF89a but truncated")
    assert response.status_code == 400
    assert "image:" in response.json()["detail"]


def test_unknown_reference_is_404(client, scenes):
    response = segment(client, "0123456789abcdef", png(scenes[0][1].image))
    assert response.status_code == 404 and "unknown or expired" in response.json()["detail"]


def test_body_over_the_upload_limit_is_413(client, reference_id):
    response = segment(client, reference_id, bytes(1_200_000))
    assert response.status_code == 413 and "max_upload_bytes" in response.json()["detail"]


def test_image_over_the_pixel_limit_is_413(client, reference_id):
    huge = png(np.zeros((1100, 1000, 3), np.uint8))  # a few KB of PNG, 1.1 M pixels
    response = segment(client, reference_id, huge)
    assert response.status_code == 413 and "1100000 pixels exceeds the limit of 1000000" in response.json()["detail"]


@pytest.mark.parametrize(
    "data, files, missing",
    [({"reference_id": "x"}, None, "image"), ({}, {"image": ("t.png", b"x")}, "reference_id")],
)
def test_missing_segment_fields_are_422_naming_them(client, data, files, missing):
    response = client.post("/v1/segment", data=data, files=files)
    assert response.status_code == 422 and f"{missing}: Field required" in response.json()["detail"]


def test_unknown_format_is_422(client, reference_id, scenes):
    response = segment(client, reference_id, png(scenes[0][1].image), "jpeg")
    assert response.status_code == 422 and "format" in response.json()["detail"]


def test_reference_without_mask_is_422(client, scenes):
    response = client.post("/v1/references", files=[("image", ("r.png", png(scenes[0][0].image)))])
    assert response.status_code == 422 and "mask: Field required" in response.json()["detail"]


def test_mask_of_another_size_is_400(client, scenes):
    reference = scenes[0][0]
    files = [("image", ("r.png", png(reference.image))), ("mask", ("m.png", png(np.full((10, 10), 255, np.uint8))))]
    response = client.post("/v1/references", files=files)
    assert response.status_code == 400 and "mask[0] is 10x10 but image[0] is 128x96" in response.json()["detail"]


def test_empty_mask_is_400_like_a_mask_of_another_size(client, scenes):
    # It fits the schema; what it carries cannot be used (the error rule: engine/serve/app.py).
    reference = scenes[0][0]
    files = [("image", ("r.png", png(reference.image))), ("mask", ("m.png", png(np.zeros((96, 128), np.uint8))))]
    response = client.post("/v1/references", files=files)
    assert response.status_code == 400 and "mask[0] is empty" in response.json()["detail"]


def test_more_images_than_masks_is_400(client, scenes):
    image = png(scenes[0][0].image)
    files = [("image", ("a.png", image)), ("image", ("b.png", image)), ("mask", ("m.png", png(scenes[0][0].mask)))]
    response = client.post("/v1/references", files=files)
    assert response.status_code == 400 and "2 image field(s) but 1 mask" in response.json()["detail"]


def giant_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height gray pixels, with almost no data after it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_an_image_pil_will_not_open_is_413_quoting_the_servers_own_limit(client, reference_id):
    response = segment(client, reference_id, giant_png(30_000, 30_000))  # 900 M pixels, over PIL's ceiling
    detail = response.json()["detail"]
    assert response.status_code == 413 and detail.endswith("exceeds the limit of 1000000"), detail
    assert "decompression bomb" not in detail


# One rule for client errors (engine/serve/app.py, docs/serve.md): 422 when the request does not fit
# the API's schema (a field missing, of the wrong type or outside its declared values), 400 when it
# fits but what it carries cannot be used.
def client_errors(reference_id: str, scenes) -> list[tuple[str, str, dict, list, int, str]]:
    reference, target = scenes[0]
    image, mask = png(reference.image), png(reference.mask.astype(np.uint8) * 255)
    blank, small = png(np.zeros((96, 128), np.uint8)), png(np.full((10, 10), 255, np.uint8))
    target_file = [("image", ("t.png", png(target.image)))]
    return [
        ("schema", "/v1/references", {}, [("image", ("r.png", image))], 422, "mask: Field required"),
        ("schema", "/v1/segment", {}, target_file, 422, "reference_id: Field required"),
        ("schema", "/v1/segment", {"reference_id": reference_id, "format": "tiff"}, target_file, 422, "format: Input"),
        ("schema", "/v1/segment", {"reference_id": reference_id, "min_area": "-1"}, target_file, 422, "min_area"),
        ("schema", "/v1/match", {"reference_id": "x"}, target_file, 422, "points: Field required"),
        ("content", "/v1/references", {}, [("image", ("r.png", image)), ("mask", ("m.png", blank))], 400,
         "mask[0] is empty"),
        ("content", "/v1/references", {}, [("image", ("r.png", image)), ("mask", ("m.png", small))], 400,
         "mask[0] is 10x10 but image[0] is 128x96"),
        ("content", "/v1/references", {}, [("image", ("r.png", image)), ("image", ("r.png", image)),
                                           ("mask", ("m.png", mask))], 400, "2 image field(s) but 1 mask"),
        ("content", "/v1/segment", {"reference_id": reference_id}, [("image", ("t.png", b"not an image"))], 400,
         "image: cannot decode"),
        ("content", "/v1/segment", {"reference_id": [reference_id, reference_id], "format": "png"}, target_file, 400,
         "format png returns one mask"),
        ("content", "/v1/match", {"points": "1,1"}, target_file, 400, "give exactly one of reference_id"),
    ]


def test_client_errors_follow_one_rule_422_schema_400_content(client, reference_id, scenes):
    schema = client.get("/openapi.json").json()
    for kind, path, data, files, status, detail in client_errors(reference_id, scenes):
        assert path in schema["paths"]
        response = client.post(path, data=data, files=files)
        assert (response.status_code, kind) == (status, kind), (path, data, response.text)
        assert detail in response.json()["detail"], response.text


def test_a_path_that_is_no_route_is_a_json_404_never_a_redirect(client):
    for method, path in [("DELETE", "/v1/references/"), ("GET", "/healthz/"), ("POST", "/v1/segment/"),
                         ("GET", "/v2/segment")]:
        response = client.request(method, path)
        assert response.status_code == 404 and response.headers["content-type"] == "application/json", response
        assert response.json() == {"detail": f"{method} {path}: no such route (the API's routes are listed at /docs)"}


def test_a_route_asked_with_another_method_is_a_json_405_naming_the_methods_it_takes(client):
    response = client.put("/v1/references")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == {"detail": "PUT /v1/references: the route does not take PUT (it takes POST)"}


def test_the_server_says_where_it_serves_and_its_openapi_page(server, client):
    lines = server.log_path.read_text().splitlines()
    url = server.url
    assert (f"insid3-serve: serving the web page at {url}/ and the API at {url}/v1/ (its OpenAPI page: {url}/docs); "
            "Ctrl-C stops") in lines
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    assert client.get("/").status_code == 200  # the page it names


def test_the_access_log_is_off_by_default_and_on_with_access_log(server, client, tiny_bundle, tmp_path):
    client.get("/healthz")
    assert '"GET /healthz HTTP/1.1" 200' not in server.log_path.read_text()
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--access-log"]
    with running_server(args, tmp_path / "server.log") as logged, httpx.Client(base_url=logged.url) as http:
        assert http.get("/healthz").status_code == 200
        assert http.delete("/v1/references/0123").status_code == 404
        time.sleep(0.2)
        log = logged.log_path.read_text()
    assert '"GET /healthz HTTP/1.1" 200' in log and '"DELETE /v1/references/0123 HTTP/1.1" 404' in log
    assert '"GET /readyz HTTP/1.1" 200' in log  # the launcher's readiness polls: every request is a line


# ------------------------------------------------------------------ lifecycle and probes
def test_delete_then_segment_is_404(client, scenes):
    reference_id = register(client, [scenes[1][0]]).json()["reference_id"]
    assert client.delete(f"/v1/references/{reference_id}").status_code == 204
    assert segment(client, reference_id, png(scenes[1][1].image)).status_code == 404
    assert client.delete(f"/v1/references/{reference_id}").status_code == 404


def test_probes_and_metrics(client, reference_id, scenes):
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "on onnxruntime" in ready.json()["engine"]
    segment(client, reference_id, png(scenes[0][1].image))
    segment(client, "no-such-reference", png(scenes[0][1].image))
    samples = metric_samples(client)
    ok = ("insid3_requests_total", frozenset({("route", "/v1/segment"), ("method", "POST"), ("status", "200")}))
    missing = ("insid3_requests_total", frozenset({("route", "/v1/segment"), ("method", "POST"), ("status", "404")}))
    assert samples[ok] >= 1 and samples[missing] >= 1
    latency = ("insid3_request_duration_seconds_count", ok[1])
    assert samples[latency] == samples[ok]
    assert samples[("insid3_stage_duration_seconds_count", frozenset({("stage", "backbone")}))] >= 1
    assert samples[("insid3_stage_duration_seconds_count", frozenset({("stage", "queue")}))] >= 1
    assert ("insid3_queue_depth", frozenset()) in samples
    assert samples[("insid3_references", frozenset())] >= 1


# ------------------------------------------------------------------ servers of their own
def test_full_queue_is_503_with_retry_after(tiny_bundle, scenes, tmp_path):
    # A batch waits 1.5 s to fill and two targets fill the queue: the third and fourth are refused.
    args = ["--bundle", str(tiny_bundle), "--max-batch", "8", "--max-wait-ms", "1500", "--max-queue", "2"]
    with running_server(args, tmp_path / "server.log") as server, httpx.Client(base_url=server.url, timeout=60) as http:
        reference_id = register(http, [scenes[0][0]]).json()["reference_id"]
        image = png(scenes[0][1].image)
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: segment(http, reference_id, image), range(4)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 503, 503], [r.text for r in responses]
        refused = [r for r in responses if r.status_code == 503]
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert "queue is full" in refused[0].json()["detail"]


def test_reference_expires_after_its_ttl(tiny_bundle, scenes, tmp_path):
    args = ["--bundle", str(tiny_bundle), "--reference-ttl", "1", "--max-wait-ms", "0"]
    with running_server(args, tmp_path / "server.log") as server, httpx.Client(base_url=server.url, timeout=60) as http:
        reference_id = register(http, [scenes[0][0]]).json()["reference_id"]
        image = png(scenes[0][1].image)
        assert segment(http, reference_id, image).status_code == 200
        time.sleep(1.2)
        response = segment(http, reference_id, image)
        assert response.status_code == 404 and "expired" in response.json()["detail"]


def test_ctrl_c_stops_the_server_with_exit_130_in_one_line(tiny_bundle, tmp_path):
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime"]
    with running_server(args, tmp_path / "server.log") as server:
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=60) == 130, server.log_tail()
        lines = server.log_path.read_text().splitlines()
    assert lines[-1] == "insid3-serve: interrupted" and "Traceback" not in "\n".join(lines)


def test_bad_bundle_path_is_one_line_and_nonzero_exit(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "insid3.engine.cli.serve", "--bundle", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [f"insid3-serve: error: bundle folder {tmp_path / 'nowhere'} does not exist"]
