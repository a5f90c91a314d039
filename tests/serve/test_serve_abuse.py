"""insid3-serve under abuse: its own OpenAPI schema fuzzed (schemathesis), a soak at 16-way
concurrency with malformed uploads mixed in, and a graceful shutdown with requests in flight.
Each request loop is bounded in count and time, and only ever talks to 127.0.0.1."""

import io
import signal
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from PIL import Image

from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.serve.launch import running_server

SERVER_ARGS = ["--backend", "onnxruntime", "--max-batch", "8", "--max-wait-ms", "5", "--max-queue", "256",
               "--max-upload-mb", "1", "--max-image-pixels", "1000000"]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def giant_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height gray pixels, with almost no data after it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    with running_server(["--bundle", str(tiny_bundle), *SERVER_ARGS], tmp_path_factory.mktemp("abuse") / "log") as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_no_request_the_schema_allows_is_a_server_error(api_schema):
    """Every operation, with requests drawn from its own schema (valid and not): never a 5xx.
    (schemathesis' pytest plugin does not load on pytest 9, so its strategies run through
    hypothesis directly.)"""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/references", "/v1/segment", "/healthz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(timeout=60)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            content_type = (response.headers.get("content-type") or [""])[0]  # schemathesis: lists of values
            if response.status_code >= 400 and content_type.startswith("application/json"):
                assert "detail" in response.json()

        check()


def _register(http: httpx.Client, scene) -> str:
    files = [("image", ("r.png", png(scene.image), "image/png")),
             ("mask", ("m.png", png(scene.mask.astype(np.uint8) * 255), "image/png"))]
    response = http.post("/v1/references", files=files)
    assert response.status_code == 201, response.text
    return response.json()["reference_id"]


def _malformed_requests(reference_id: str, target: bytes) -> list[tuple[dict, dict, int]]:
    """(data, files, expected status) for uploads a client gets wrong."""
    truncated = target[: len(target) // 3]
    giant_header = giant_png(30_000, 30_000)
    return [
        ({"reference_id": reference_id}, {"image": ("t.png", b"not an image at all", "image/png")}, 400),
        ({"reference_id": reference_id}, {"image": ("t.png", truncated, "image/png")}, 400),
        ({"reference_id": reference_id}, {"image": ("t.png", b"", "image/png")}, 400),
        ({"reference_id": "no-such-reference"}, {"image": ("t.png", target, "image/png")}, 404),
        ({}, {"image": ("t.png", target, "image/png")}, 422),
        ({"reference_id": reference_id}, {"image": ("t.png", giant_header, "image/png")}, 413),
        ({"reference_id": reference_id, "format": "gif"}, {"image": ("t.png", target, "image/png")}, 422),
    ]


def test_a_soak_with_malformed_uploads_keeps_masks_memory_and_status_codes(server):
    pairs = scene_pairs(3, size=(96, 128), seed=11)
    with httpx.Client(base_url=server.url, timeout=120) as http:
        references = [_register(http, reference) for reference, _ in pairs]
        targets = [png(np.ascontiguousarray(target.image)) for _, target in pairs]
        good = [(references[i % 3], targets[j]) for i in range(3) for j in range(3)]

        def segment(reference_id: str, target: bytes) -> httpx.Response:
            return http.post("/v1/segment", data={"reference_id": reference_id},
                             files={"image": ("t.png", target, "image/png")})

        expected = {}
        for reference_id, target in good * 2:  # sequential, twice: warm, then the yardstick
            response = segment(reference_id, target)
            assert response.status_code == 200, response.text
            expected[(reference_id, target)] = response.content
        before = rss_kib(server.process.pid)

        bad = _malformed_requests(references[0], targets[0])
        plan = [("good", good[k % len(good)]) if k % 10 < 7 else ("bad", bad[k % len(bad)]) for k in range(320)]

        def send(item):
            kind, payload = item
            if kind == "good":
                return kind, payload, segment(*payload)
            data, files, _ = payload
            return kind, payload, http.post("/v1/segment", data=data, files=files)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(send, plan))
        assert time.monotonic() - started < 300
        after = rss_kib(server.process.pid)

    statuses = [response.status_code for _, _, response in results]
    assert not [s for s in statuses if s >= 500], sorted(set(statuses))
    for kind, payload, response in results:
        if kind == "good":
            assert response.status_code == 200 and response.content == expected[payload]
        else:
            assert response.status_code == payload[2], (payload[0], response.status_code, response.text)
    assert after <= before * 1.25 + 64 * 1024, f"RSS grew from {before} KiB to {after} KiB over the soak"


def test_a_graceful_shutdown_finishes_requests_in_flight(tiny_bundle, tmp_path):
    reference, target = scene_pairs(1, size=(96, 128), seed=3)[0]
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--max-batch", "8", "--max-wait-ms", "1500"]
    with running_server(args, tmp_path / "log") as running:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            reference_id = _register(http, reference)
            responses = []

            def in_flight():
                responses.append(http.post("/v1/segment", data={"reference_id": reference_id},
                                           files={"image": ("t.png", png(target.image), "image/png")}))

            worker = threading.Thread(target=in_flight)
            worker.start()
            time.sleep(0.5)  # the request now waits for its batch to fill (1.5 s)
            running.process.send_signal(signal.SIGTERM)
            worker.join(timeout=60)
            # uvicorn re-raises the SIGTERM once it has shut down cleanly: the exit says "terminated".
            assert running.process.wait(timeout=60) in (0, -signal.SIGTERM), running.log_tail()
            assert "Application shutdown complete" in running.log_tail()
            with pytest.raises(httpx.TransportError):  # and nothing listens any more
                http.get("/healthz", timeout=5)
    assert len(responses) == 1 and responses[0].status_code == 200
    assert responses[0].headers["content-type"] == "image/png"


def test_a_16_bit_upload_is_segmented_as_its_8_bit_picture(server):
    reference, target = scene_pairs(1, size=(96, 128), seed=21)[0]
    gray = np.asarray(Image.fromarray(target.image).convert("L"))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        reference_id = _register(http, reference)
        masks = []
        for picture in (Image.fromarray(gray), Image.fromarray(gray.astype(np.uint16) * 257)):
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            response = http.post("/v1/segment", data={"reference_id": reference_id},
                                 files={"image": ("t.png", buffer.getvalue(), "image/png")})
            assert response.status_code == 200, response.text
            masks.append(np.asarray(Image.open(io.BytesIO(response.content))))
    np.testing.assert_array_equal(masks[0], masks[1])
