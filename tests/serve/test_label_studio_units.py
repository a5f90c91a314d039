"""The Label Studio pieces that need no Label Studio server: labelling configs, masks to results
and back through label-studio-sdk's own codec, the project book on disk, and the /label-studio
routes' answers to what they cannot serve (in process, FastAPI's TestClient)."""

import json

import numpy as np
import pytest

from insid3.engine.jobs.label_studio import (
    BRUSH,
    POLYGON,
    LabelStudioFormatError,
    annotation_masks,
    chosen_annotation,
    default_config,
    mask_results,
    parse_labeling_config,
)
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.serve.label_studio_projects import ProjectBook

pytest.importorskip("label_studio_sdk")
BRUSH_CONFIG = ('<View><Image name="img" value="$photo"/><BrushLabels name="tag" toName="img">'
                '<Label value="cat"/><Label value="dog"/></BrushLabels></View>')


def test_a_brush_config_names_its_labels_control_image_and_data_key():
    config = parse_labeling_config(BRUSH_CONFIG)
    assert (config.from_name, config.to_name, config.image_key, config.kind, config.labels) == \
        ("tag", "img", "photo", BRUSH, ("cat", "dog"))
    assert parse_labeling_config(config.example_xml()) == config
    polygon = parse_labeling_config(BRUSH_CONFIG.replace("BrushLabels", "PolygonLabels"))
    assert polygon.kind == POLYGON and polygon.digest != config.digest


@pytest.mark.parametrize("xml, words", [
    ('<View><Text name="t" value="$text"/></View>', "no <Image"),
    ('<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>',
     "no <BrushLabels> or <PolygonLabels>"),
    ('<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"></BrushLabels></View>', "no <Label"),
    ('<View><Image name="i" value="$image"/><Text name="t" value="$t"/><BrushLabels name="b" toName="t">'
     '<Label value="a"/></BrushLabels></View>', "points (toName) at an <Image>"),
    ("<View><Image", "not valid XML"),
])
def test_a_config_it_cannot_serve_says_what_is_missing(xml, words):
    with pytest.raises(LabelStudioFormatError, match=None) as refused:
        parse_labeling_config(xml)
    assert words in str(refused.value)


def test_a_brush_result_decodes_with_label_studios_decoder_to_the_mask():
    from label_studio_sdk.converter.brush import decode_rle

    mask = draw_scene(5, (70, 90), concept=0).mask
    (item,) = mask_results(mask, "cat", parse_labeling_config(BRUSH_CONFIG), score=0.5)
    assert (item["from_name"], item["to_name"], item["type"], item["score"]) == ("tag", "img", BRUSH, 0.5)
    assert (item["original_height"], item["original_width"]) == mask.shape
    alpha = decode_rle(item["value"]["rle"]).reshape(70, 90, 4)[:, :, 3]
    assert np.array_equal(alpha > 0, mask)
    assert np.array_equal(annotation_masks([item])["cat"], mask)
    assert mask_results(np.zeros((4, 4), bool), "cat", parse_labeling_config(BRUSH_CONFIG)) == []


def test_unsimplified_polygons_hold_exactly_the_masks_pixels():
    mask = draw_scene(9, (64, 80), concept=2).mask.copy()
    mask[2:6, 70:76] = True  # a second component
    config = default_config(["tri"], POLYGON)
    items = mask_results(mask, "tri", config, score=0.7, tolerance=0)
    assert len(items) == 2 and all(item["type"] == POLYGON for item in items)
    assert all(0 <= x <= 100 and 0 <= y <= 100 for item in items for x, y in item["value"]["points"])
    assert np.array_equal(annotation_masks(items, config)["tri"], mask)


def test_an_annotation_of_several_items_unites_a_labels_masks_and_ignores_other_controls():
    config = default_config(["a", "b"])
    left, right = np.zeros((10, 12), bool), np.zeros((10, 12), bool)
    left[:, :4], right[:, 8:] = True, True
    items = mask_results(left, "a", config) + mask_results(right, "a", config) + mask_results(right, "b", config)
    other = {**mask_results(left, "b", config)[0], "from_name": "another"}
    masks = annotation_masks(items + [other], config)
    assert np.array_equal(masks["a"], left | right) and np.array_equal(masks["b"], right)


def test_the_reviewed_annotation_is_the_ground_truth_else_the_latest_uncancelled():
    task = {"annotations": [{"id": 3}, {"id": 7, "was_cancelled": True}, {"id": 5}]}
    assert chosen_annotation(task)["id"] == 5
    task["annotations"].append({"id": 1, "ground_truth": True})
    assert chosen_annotation(task)["id"] == 1
    assert chosen_annotation({"annotations": [{"id": 2, "was_cancelled": True}]}) is None


def test_the_project_book_persists_bounds_and_forgets_on_a_new_config(tmp_path):
    config = default_config(["a", "b"])
    book = ProjectBook(tmp_path, max_shots=2)
    book.configure("4.1700000000", config)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    for annotation in (10, 11, 12):
        book.put_annotation("4.1700000000", annotation, task=annotation, image=b"image-%d" % annotation,
                            masks={"a": mask, "b": np.zeros((8, 8), bool), "unknown": mask})
    state = book.get("4.1700000000")
    assert [s.annotation for s in state.shots_of("a")] == [11, 12]  # the two latest, in annotation order
    assert state.shots_of("b") == ()  # an empty mask gives no shot; a label outside the config neither
    reopened = ProjectBook(tmp_path, max_shots=2).get("4.1700000000")  # a restart
    assert reopened == state and reopened.digest() == state.digest()
    book.remove_annotations("4.1700000000", {12})
    assert [s.annotation for s in book.get("4.1700000000").shots_of("a")] == [11]
    assert book.configure("4.1700000000", default_config(["a", "b", "c"])).shots == ()


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory):
    import os

    from fastapi.testclient import TestClient

    from insid3.engine import Segmenter
    from insid3.engine.serve.local import create_local_app
    from insid3.engine.serve.settings import ServeSettings

    os.environ["INSID3_LABEL_STUDIO_DIR"] = str(tmp_path_factory.mktemp("label-studio-references"))
    app = create_local_app(Segmenter.from_bundle(tiny_bundle, backend="onnxruntime"), ServeSettings(max_batch=2))
    with TestClient(app) as http:
        yield http
    del os.environ["INSID3_LABEL_STUDIO_DIR"]


def test_health_says_up_once_the_engine_is_loaded(client):
    answer = client.get("/label-studio/health")
    assert answer.status_code == 200 and answer.json()["status"] == "UP"


def test_an_unservable_config_at_setup_is_a_400_whose_url_says_why(client):
    schema = '<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>'
    answer = client.post("/label-studio/setup", json={"project": "7.1700000000", "schema": schema})
    assert answer.status_code == 400
    assert "no-BrushLabels-or-PolygonLabels" in str(answer.url)  # what Label Studio's error message quotes
    assert "no BrushLabels or PolygonLabels" in answer.json()["error"]


def test_setup_answers_a_version_and_predict_without_annotations_one_empty_result_per_task(client):
    answer = client.post("/label-studio/setup", json={"project": "8.1700000000", "schema": BRUSH_CONFIG,
                                                      "hostname": "http://127.0.0.1:9", "access_token": "t"})
    assert answer.status_code == 200, answer.text
    version = answer.json()["model_version"]
    assert version.startswith("insid3-0shots-")
    tasks = [{"id": 1, "data": {"photo": "/data/upload/1/a.png"}}, {"id": 2, "data": {"photo": "/data/upload/1/b.png"}}]
    predicted = client.post("/label-studio/predict", json={"project": "8.1700000000", "tasks": tasks,
                                                           "label_config": BRUSH_CONFIG})
    assert predicted.json() == {"results": [{"result": [], "score": 0.0, "model_version": version}] * 2}


@pytest.mark.parametrize("payload, status", [
    ({"action": "PROJECT_CREATED", "project": {"id": 1}}, 200),  # not an annotation event: ignored
    ({"action": "ANNOTATION_CREATED", "project": {"id": 1}}, 400),  # no created_at: not Label Studio's project
    ({"action": "ANNOTATION_CREATED", "project": {"id": 9, "created_at": "2026-01-01T00:00:00Z",
                                                  "label_config": "<View/>"}}, 400),
    ({"project": {}}, 422),
])
def test_webhook_events_it_cannot_use_are_answered_without_a_5xx(client, payload, status):
    answer = client.post("/label-studio/webhook", json=payload)
    assert answer.status_code == status, answer.text
    if status >= 400:
        assert json.loads(answer.text)["detail"]


def test_a_project_never_set_up_is_a_404(client):
    assert client.get("/label-studio/projects/123.456").status_code == 404


def test_pre_annotation_tasks_hold_each_concepts_mask_as_brush_or_exact_polygons(tiny_bundle):
    from insid3.engine import Segmenter
    from insid3.engine.jobs.outputs.label_studio import task_record

    seg = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    example = draw_scene(40, (90, 120), concept=0)
    result = seg.segment_concepts(draw_scene(41, (90, 120), concept=0).image,
                                  {"ellipse": seg.encode_reference([(example.image, example.mask)])})
    mask = result["ellipse"].mask
    assert mask.any()
    for segmentation, kind in (("rle", BRUSH), ("polygon", POLYGON)):
        task = task_record("/data/local-files/?d=photos/a.png", result, segmentation, tolerance=0)
        assert task["data"] == {"image": "/data/local-files/?d=photos/a.png"}
        (prediction,) = task["predictions"]
        assert {item["type"] for item in prediction["result"]} == {kind}
        assert prediction["score"] == min(item["score"] for item in prediction["result"])
        assert np.array_equal(annotation_masks(prediction["result"], default_config(["ellipse"], kind))["ellipse"], mask)


def test_a_tasks_image_is_the_root_then_the_targets_path_as_given(tmp_path, monkeypatch):
    from pathlib import Path

    from insid3.engine.jobs.outputs.label_studio import image_reference

    monkeypatch.chdir(tmp_path)
    assert image_reference(Path("photos/a.png"), "/data/local-files/?d=") == "/data/local-files/?d=photos/a.png"
    assert image_reference(tmp_path / "photos" / "b.png", "https://bucket.example/") == "https://bucket.example/photos/b.png"
    assert image_reference(Path("/elsewhere/c.png"), "s3://bucket/") == "s3://bucket/c.png"
    assert image_reference("s3://bucket/d.png", "/data/local-files/?d=") == "s3://bucket/d.png"  # a URI target


def test_an_export_with_local_files_is_a_concepts_file_of_each_tasks_reviewed_masks(tmp_path, monkeypatch):
    from PIL import Image

    from insid3.engine.jobs.concept_specs import ConceptSpecError, read_concepts_file

    documents = tmp_path / "documents"
    (documents / "photos").mkdir(parents=True)
    scenes = [draw_scene(70 + i, (48, 64), concept=i % 2) for i in range(2)]
    for index, scene in enumerate(scenes):
        Image.fromarray(scene.image).save(documents / "photos" / f"s{index}.png")
    config = default_config(["ellipse", "rectangle"], POLYGON)
    drawn = [mask_results(scene.mask, label, config, tolerance=0) for scene, label in zip(scenes, ["ellipse", "rectangle"])]
    export = [
        {"id": 1, "data": {"image": "/data/local-files/?d=photos/s0.png"},
         "annotations": [{"id": 10, "result": mask_results(~scenes[0].mask, "ellipse", config, tolerance=0)},
                         {"id": 11, "result": drawn[0], "ground_truth": True}]},
        {"id": 2, "data": {"image": "/data/local-files/?d=photos/s1.png"},
         "annotations": [{"id": 12, "result": drawn[1]}, {"id": 13, "result": [], "was_cancelled": True}]},
        {"id": 3, "data": {"image": "/data/local-files/?d=photos/none.png"}, "annotations": []},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(documents))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    specs = read_concepts_file(path)
    assert [spec.name for spec in specs] == ["ellipse", "rectangle"]
    for spec, scene, index in zip(specs, scenes, (0, 1)):
        ((image, mask),) = spec.shots
        assert image == documents / "photos" / f"s{index}.png"
        assert np.array_equal(np.asarray(Image.open(mask)) > 0, scene.mask)  # the ground truth's, not annotation 10's
    path.write_text(json.dumps([{**export[0], "annotations": [{"id": 1, "result": [
        {**drawn[0][0], "value": {**drawn[0][0]["value"], "polygonlabels": ["no/slash"]}}]}]}]))
    with pytest.raises(ConceptSpecError, match="concept name 'no/slash'"):
        read_concepts_file(path)
    path.write_text(json.dumps([export[2]]))
    with pytest.raises(LabelStudioFormatError, match="holds no brush or polygon annotation"):
        read_concepts_file(path)
