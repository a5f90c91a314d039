"""POST /v1/segment with several reference_ids (in process, through FastAPI's TestClient): a label
PNG read back by Pillow, COCO instances loaded by pycocotools, batched with single-concept
targets, and the request errors."""

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.serve.concepts import MAX_CONCEPTS
from insid3.engine.serve.local import create_local_app
from insid3.engine.serve.settings import ServeSettings

testclient = pytest.importorskip("fastapi.testclient")
NAMES = ("ellipse", "rectangle", "triangle")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def examples():
    return [draw_scene(20 + concept, (96, 128), concept=concept) for concept in range(3)]


@pytest.fixture(scope="module")
def targets():
    return [draw_scene(60 + seed, (90, 120), concept=seed % 3).image for seed in range(3)]


@pytest.fixture(scope="module")
def expected(tiny_bundle, examples, targets):
    seg = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    references = {name: seg.encode_reference([(scene.image, scene.mask)]) for name, scene in zip(NAMES, examples)}
    return [seg.segment_concepts(target, references) for target in targets]


@pytest.fixture(scope="module")
def client(tiny_bundle):
    settings = ServeSettings(max_batch=8, max_wait_ms=60, max_upload_bytes=1 << 20, max_image_pixels=1_000_000)
    app = create_local_app(Segmenter.from_bundle(tiny_bundle, backend="onnxruntime"), settings)
    with testclient.TestClient(app) as http:
        yield http


@pytest.fixture(scope="module")
def reference_ids(client, examples):
    ids = []
    for scene in examples:
        files = [("image", ("r.png", png(scene.image))), ("mask", ("m.png", png(scene.mask.astype(np.uint8) * 255)))]
        response = client.post("/v1/references", files=files)
        assert response.status_code == 201, response.text
        ids.append(response.json()["reference_id"])
    return ids


def segment(client, target, ids, names=NAMES, **fields):
    data = {"reference_id": list(ids), **({"name": list(names)} if names else {})}
    data |= {key: str(value) for key, value in fields.items()}
    return client.post("/v1/segment", data=data, files={"image": ("target.png", png(target))})


def test_label_png_equals_the_engines_label_map(client, reference_ids, targets, expected):
    for target, result in zip(targets, expected):
        response = segment(client, target, reference_ids, format="label-png")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert json.loads(response.headers["X-Insid3-Labels"]) == list(NAMES)
        assert "aggregation" in response.headers["Server-Timing"]
        image = Image.open(io.BytesIO(response.content))
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), result.label_map())


@pytest.mark.parametrize("instances", [False, True])
def test_coco_loads_in_pycocotools(client, reference_ids, targets, expected, instances):
    from pycocotools.coco import COCO

    for target, result in zip(targets, expected):
        response = segment(client, target, reference_ids, format="coco", instances=str(instances).lower())
        assert response.status_code == 200, response.text
        coco = COCO()
        coco.dataset = response.json()
        coco.createIndex()
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(NAMES)
        (image,) = coco.loadImgs(coco.getImgIds())
        assert image["file_name"] == "target.png" and (image["height"], image["width"]) == target.shape[:2]
        wanted = [(i.label, i.mask) for i in result.instances()] if instances else \
            [(c.label, c.mask) for c in result if c.mask.any()]
        annotations = coco.loadAnns(coco.getAnnIds())
        assert [a["category_id"] for a in annotations] == [label for label, _ in wanted]
        for annotation, (_, mask) in zip(annotations, wanted):
            np.testing.assert_array_equal(coco.annToMask(annotation) > 0, mask)


def test_one_reference_as_coco_and_names_default_to_the_ids(client, reference_ids, targets, expected):
    response = segment(client, targets[0], reference_ids[:1], names=None, format="coco")
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["categories"]] == reference_ids[:1]


def test_multi_concept_targets_share_batches_with_single_ones(client, reference_ids, targets):
    def send(k):
        if k % 2:
            return segment(client, targets[k % 3], reference_ids, format="label-png")
        return client.post("/v1/segment", data={"reference_id": reference_ids[0]},
                           files={"image": ("t.png", png(targets[k % 3]))})

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(send, range(6)))
    assert all(r.status_code == 200 for r in responses)
    assert max(int(r.headers["X-Insid3-Batch-Size"]) for r in responses) > 1


@pytest.mark.parametrize("ids, names, fields, status, detail", [
    (2, NAMES[:2], {"format": "png"}, 400, "format png returns one mask: use label-png or coco"),
    (3, NAMES[:2], {"format": "coco"}, 400, "2 name field(s) for 3 reference_id(s)"),
    (2, ("a", "a"), {"format": "coco"}, 400, "names must differ"),
    (2, ("a", ""), {"format": "coco"}, 422, "name"),
    (2, NAMES[:2], {"format": "coco", "min_area": -1}, 422, "min_area"),
    (2, NAMES[:2], {"format": "tiff"}, 422, "format"),
])
def test_bad_requests_are_one_line(client, reference_ids, targets, ids, names, fields, status, detail):
    response = segment(client, targets[0], reference_ids[:ids], names=names, **fields)
    assert response.status_code == status and detail in response.json()["detail"]


def test_more_references_than_the_limit_are_400(client, reference_ids, targets):
    ids = [reference_ids[0]] * (MAX_CONCEPTS + 1)
    response = segment(client, targets[0], ids, names=[f"c{i}" for i in range(len(ids))], format="coco")
    assert response.status_code == 400
    assert response.json()["detail"] == f"{MAX_CONCEPTS + 1} reference_ids exceed the limit of {MAX_CONCEPTS}"


def test_an_unknown_reference_among_several_is_404(client, reference_ids, targets):
    response = segment(client, targets[0], [reference_ids[0], "no-such-id"], names=NAMES[:2], format="coco")
    assert response.status_code == 404 and "no-such-id" in response.json()["detail"]


def test_a_crf_server_answers_several_concepts_with_the_engines_crf_label_map(tiny_bundle, examples, targets):
    # The multi-concept queue item hands the target's pixels to the CRF as the single one does
    # (it did not: every label-png/coco request of `insid3 serve --refine crf` was a 400).
    settings = ServeSettings(refine="crf", max_wait_ms=0, max_upload_bytes=1 << 20, max_image_pixels=1_000_000)
    engine = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", refine=settings.refine_settings)
    references = {name: engine.encode_reference([(scene.image, scene.mask)]) for name, scene in zip(NAMES, examples)}
    expected = engine.segment_concepts(targets[0], references)
    app = create_local_app(Segmenter.from_bundle(tiny_bundle, **settings.engine_options()), settings)
    with testclient.TestClient(app) as http:
        ids = []
        for scene in examples:
            files = [("image", ("r.png", png(scene.image))), ("mask", ("m.png", png(scene.mask.astype(np.uint8) * 255)))]
            ids.append(http.post("/v1/references", files=files).json()["reference_id"])
        response = segment(http, targets[0], ids, format="label-png")
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected.label_map())
