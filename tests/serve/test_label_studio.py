"""`insid3 serve` as Label Studio's ML backend, against a real Label Studio (tests/support/label_studio.py).

A project with BrushLabels (ellipse, rectangle), six drawn scenes uploaded as tasks, our backend
registered (a real `insid3 serve` on loopback), annotations on two tasks submitted through the
API; then what a person sees: references built from exactly those annotations (the webhook),
predictions on every task equal to `insid3 segment --concept ...` with the same examples (read
back from Label Studio, decoded by its own RLE decoder), an update that changes model_version and
the predictions, a deletion that removes the shot, a restart that keeps the references; and the
other ways in and out: the pre-annotation file imported, a JSON export used as a concepts file,
an unservable labelling config refused in words Label Studio shows.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from insid3.engine.jobs.label_studio import mask_results, parse_labeling_config
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.serve.label_studio_projects import mask_png, sha256
from insid3.engine.serve.launch import ServerProcess, free_port, stop, wait_ready

LABELS = ("ellipse", "rectangle")
CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="label" toName="image">'
          '<Label value="ellipse"/><Label value="rectangle"/></BrushLabels></View>')
SIZE = (120, 160)  # (H, W) of the drawn scenes


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def brush(mask: np.ndarray, label: str) -> dict:
    from label_studio_sdk.converter.brush import mask2rle

    return {"from_name": "label", "to_name": "image", "type": "brushlabels", "original_width": mask.shape[1],
            "original_height": mask.shape[0],
            "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}}


def decoded(prediction_result: list[dict]) -> dict[str, np.ndarray]:
    """{label: bool mask} through Label Studio's own decoder."""
    from label_studio_sdk.converter.brush import decode_rle

    masks = {}
    for item in prediction_result:
        height, width = item["original_height"], item["original_width"]
        masks[item["value"]["brushlabels"][0]] = decode_rle(item["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 0
    return masks


def segment_cli(bundle: Path, out: Path, targets: list[Path], *args: str, env: dict | None = None,
                cwd: Path | None = None) -> Path:
    command = [sys.executable, "-m", "insid3.engine.cli.segment", "--bundle", str(bundle), "--backend", "onnxruntime",
               "--out", str(out), *args, *map(str, targets)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return out


def cli_masks(out: Path, target: Path, labels=LABELS) -> dict[str, np.ndarray]:
    return {label: np.asarray(Image.open(out / f"{target.stem}.{label}.png")) > 0 for label in labels}


# ------------------------------------------------------------------ the scenario's pieces
class Insid3Server:
    """`insid3 serve` on one fixed loopback port (Label Studio knows it by URL), restartable."""

    def __init__(self, bundle: Path, folder: Path) -> None:
        self.bundle, self.folder, self.port = bundle, folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: ServerProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.folder / f"serve-{self.starts}.log"
        env = {**os.environ, "INSID3_LABEL_STUDIO_DIR": str(self.folder / "references")}
        env.pop("LABEL_STUDIO_URL", None)
        env.pop("LABEL_STUDIO_API_KEY", None)  # what /setup says is what the backend must use
        command = [sys.executable, "-m", "insid3.engine.cli.serve", "--bundle", str(self.bundle), "--backend",
                   "onnxruntime", "--host", "127.0.0.1", "--port", str(self.port), "--max-batch", "8",
                   "--max-wait-ms", "200"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.process = ServerProcess(url=self.url, process=process, log_path=log_path)
        wait_ready(self.process, 120)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process.process)
            self.process = None

    def project(self, key: str) -> dict:
        response = httpx.get(f"{self.url}/label-studio/projects/{key}", timeout=10)
        return response.json() if response.status_code == 200 else {}


@pytest.fixture(scope="module")
def scenes():
    """Six drawn scenes: ellipses and rectangles in turn."""
    return [draw_scene(300 + index, SIZE, concept=index % 2) for index in range(6)]


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory, scenes):
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for index, scene in enumerate(scenes):
        (folder / f"scene{index}.png").write_bytes(png(scene.image))
        (folder / f"mask{index}.png").write_bytes(png(scene.mask.astype(np.uint8) * 255))
        paths.append(folder / f"scene{index}.png")
    return paths


@pytest.fixture(scope="module")
def client(label_studio):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token)


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    running = Insid3Server(tiny_bundle, tmp_path_factory.mktemp("insid3-serve"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def project(label_studio, client, server, scene_files, scenes):
    """The project: six tasks (uploaded), our backend registered, annotations on tasks 0 and 1
    (an ellipse and a rectangle) submitted and applied by the backend."""
    from support.label_studio import wait_for

    created = client.projects.create(title="insid3 backend", label_config=CONFIG)
    files = [(f"file{i}", (path.name, path.read_bytes(), "image/png")) for i, path in enumerate(scene_files)]
    response = httpx.post(f"{label_studio.url}/api/projects/{created.id}/import", files=files,
                          headers=label_studio.headers, timeout=60)
    assert response.status_code == 201, response.text
    tasks = sorted(client.tasks.list(project=created.id), key=lambda task: task.data["image"].rsplit("-", 1)[-1])
    assert [task.data["image"].rsplit("-", 1)[-1] for task in tasks] == [path.name for path in scene_files]
    backend = client.ml.create(project=created.id, url=f"{server.url}/label-studio", title="insid3",
                               is_interactive=False)
    key = f"{created.id}.{int(created.created_at.timestamp())}"
    annotations = [client.annotations.create(id=tasks[i].id, result=[brush(scenes[i].mask, LABELS[i])],
                                             was_cancelled=False) for i in (0, 1)]
    wait_for(lambda: sum(len(v) for v in server.project(key).get("labels", {}).values()) == 2
             and server.project(key)["pending"] == 0, what="the two annotations reach the backend")
    return {"id": created.id, "key": key, "tasks": tasks, "annotations": annotations, "backend": backend}


def retrieve_predictions(client, project: dict) -> dict[int, list]:
    """Label Studio's "Retrieve predictions" on every task (one /setup, one /predict of all of
    them), then each task's predictions as Label Studio stores them."""
    client.actions.create(id="retrieve_tasks_predictions", project=project["id"],
                          selected_items={"all": True, "excluded": []})
    return {task.id: client.predictions.list(task=task.id) for task in project["tasks"]}


def latest(predictions: list, version: str):
    found = [p for p in predictions if p.model_version == version]
    assert len(found) == 1, [p.model_version for p in predictions]
    return found[0]


# ------------------------------------------------------------------ the tests, in the order a person works
def test_the_webhook_builds_references_from_exactly_the_submitted_annotations(project, server, scenes, scene_files):
    described = server.project(project["key"])
    assert described["failures"] == [] and described["imported"] is True
    for index, label in enumerate(LABELS):
        (shot,) = described["labels"][label]
        assert shot["annotation"] == project["annotations"][index].id
        assert shot["task"] == project["tasks"][index].id
        assert shot["image_sha256"] == sha256(scene_files[index].read_bytes())  # the bytes uploaded, fetched back
        assert shot["mask_sha256"] == sha256(mask_png(scenes[index].mask))  # the annotation's mask, decoded


@pytest.fixture(scope="module")
def first_masks(tiny_bundle, scene_files, tmp_path_factory):
    """`insid3 segment --concept` with the two first scenes' masks as examples, on all six."""
    concepts = [f"--concept={label}={scene_files[i]}:{scene_files[i].with_name(f'mask{i}.png')}"
                for i, label in enumerate(LABELS)]
    return segment_cli(tiny_bundle, tmp_path_factory.mktemp("cli"), scene_files, *concepts)


def test_predictions_in_label_studio_equal_insid3_segment_with_the_same_examples(
        project, server, client, scene_files, first_masks):
    version = server.project(project["key"])["model_version"]
    stored = retrieve_predictions(client, project)
    out = first_masks
    for task, target in zip(project["tasks"], scene_files):
        prediction = latest(stored[task.id], version)
        masks = decoded(prediction.result)
        expected = cli_masks(out, target)
        for label in LABELS:
            assert np.array_equal(masks.get(label, np.zeros(SIZE, bool)), expected[label]), (target.name, label)
        scores = [item["score"] for item in prediction.result]
        assert all(0.0 <= score <= 1.0 for score in scores) and prediction.score == pytest.approx(min(scores))
    assert sum(len(decoded(latest(stored[t.id], version).result)) for t in project["tasks"]) >= 6  # masks, not blanks


def test_a_polygon_project_gets_the_same_masks_as_polygons(label_studio, client, server, scenes, scene_files,
                                                           first_masks):
    """PolygonLabels: annotations drawn as polygons (unsimplified: exactly the masks' pixels) give
    the same references, and each prediction is the polygons of `insid3 segment`'s mask."""
    from support.label_studio import wait_for

    polygon_config = CONFIG.replace("BrushLabels", "PolygonLabels")
    config = parse_labeling_config(polygon_config)
    created = client.projects.create(title="insid3 polygons", label_config=polygon_config)
    files = [(f"file{i}", (path.name, path.read_bytes(), "image/png")) for i, path in enumerate(scene_files)]
    assert httpx.post(f"{label_studio.url}/api/projects/{created.id}/import", files=files,
                      headers=label_studio.headers, timeout=60).status_code == 201
    tasks = sorted(client.tasks.list(project=created.id), key=lambda task: task.data["image"].rsplit("-", 1)[-1])
    client.ml.create(project=created.id, url=f"{server.url}/label-studio", title="insid3", is_interactive=False)
    key = f"{created.id}.{int(created.created_at.timestamp())}"
    for i in (0, 1):
        drawn = mask_results(scenes[i].mask, LABELS[i], config, tolerance=0)
        client.annotations.create(id=tasks[i].id, result=[{k: v for k, v in item.items() if k != "id"} for item in drawn],
                                  was_cancelled=False)
    state = wait_for(lambda: (lambda d: d if sum(map(len, d.get("labels", {}).values())) == 2 and d["pending"] == 0
                              else None)(server.project(key)), what="the polygon annotations reach the backend")
    assert [state["labels"][label][0]["mask_sha256"] for label in LABELS] == \
        [sha256(mask_png(scenes[i].mask)) for i in (0, 1)]
    stored = retrieve_predictions(client, {"id": created.id, "tasks": tasks})
    for task, target in zip(tasks, scene_files):
        prediction = latest(stored[task.id], state["model_version"])
        expected = cli_masks(first_masks, target)
        for label in LABELS:
            found = [item["value"]["points"] for item in prediction.result if item["value"]["polygonlabels"] == [label]]
            assert found == [item["value"]["points"] for item in mask_results(expected[label], label, config)], \
                (target.name, label)

def test_the_six_tasks_went_through_the_backbone_in_batches(project, server):
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    single = float(next(line.split()[-1] for line in metrics.splitlines()
                        if line.startswith('insid3_batch_size_bucket{le="1.0"}')))
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("insid3_batch_size_count")))
    assert count > single, metrics  # at least one backbone call took several tasks


def test_an_updated_annotation_changes_the_model_version_and_the_predictions(
        project, server, client, scenes, scene_files, tiny_bundle, tmp_path):
    from support.label_studio import wait_for

    before = server.project(project["key"])
    old = retrieve_predictions(client, project)
    new_mask = np.zeros(SIZE, bool)
    new_mask[10:60, 20:90] = True  # the ellipse annotation redrawn as a box somewhere else
    client.annotations.update(id=project["annotations"][0].id, result=[brush(new_mask, "ellipse")])
    after = wait_for(lambda: (lambda d: d if d.get("labels", {}).get("ellipse") and
                              d["labels"]["ellipse"][0]["mask_sha256"] == sha256(mask_png(new_mask)) and
                              d["pending"] == 0 else None)(server.project(project["key"])),
                     what="the updated annotation reaches the backend")
    assert after["model_version"] != before["model_version"]
    assert [s["annotation"] for s in after["labels"]["ellipse"]] == [project["annotations"][0].id]
    stored = retrieve_predictions(client, project)
    mask_file = tmp_path / "new-mask.png"
    mask_file.write_bytes(png(new_mask.astype(np.uint8) * 255))
    out = segment_cli(tiny_bundle, tmp_path / "cli", scene_files, f"--concept=ellipse={scene_files[0]}:{mask_file}",
                      f"--concept=rectangle={scene_files[1]}:{scene_files[1].with_name('mask1.png')}")
    changed = 0
    for task, target in zip(project["tasks"], scene_files):
        masks = decoded(latest(stored[task.id], after["model_version"]).result)
        expected = cli_masks(out, target)
        for label in LABELS:
            assert np.array_equal(masks.get(label, np.zeros(SIZE, bool)), expected[label]), (target.name, label)
        previous = decoded(latest(old[task.id], before["model_version"]).result)
        changed += not np.array_equal(previous.get("ellipse", np.zeros(SIZE, bool)),
                                      masks.get("ellipse", np.zeros(SIZE, bool)))
    assert changed >= 1


def test_a_deleted_annotation_removes_its_shot(project, server, client):
    from support.label_studio import wait_for

    before = server.project(project["key"])
    client.annotations.delete(id=project["annotations"][1].id)
    after = wait_for(lambda: (lambda d: d if d.get("labels", {}).get("rectangle") == [] and d["pending"] == 0
                              else None)(server.project(project["key"])),
                     what="the deletion reaches the backend")
    assert len(after["labels"]["ellipse"]) == 1 and after["model_version"] != before["model_version"]
    stored = retrieve_predictions(client, project)
    for task in project["tasks"]:
        labels = {item["value"]["brushlabels"][0] for item in latest(stored[task.id], after["model_version"]).result}
        assert labels <= {"ellipse"}


def test_a_restart_of_the_server_keeps_the_references(project, server, client):
    before = server.project(project["key"])
    counts = {task: len(found) for task, found in retrieve_predictions(client, project).items()}
    server.stop()
    server.start()
    assert server.project(project["key"]) == {**before, "pending": 0, "failures": []}
    # Label Studio asks /setup again: the same version, so no task is predicted twice.
    assert {task: len(found) for task, found in retrieve_predictions(client, project).items()} == counts


def test_the_pre_annotation_file_imports_into_label_studio_with_the_same_masks(
        label_studio, client, scene_files, tiny_bundle, tmp_path):
    photos = label_studio.documents / "photos"
    photos.mkdir(exist_ok=True)
    targets = []
    for path in scene_files[2:]:
        (photos / path.name).write_bytes(path.read_bytes())
        targets.append(Path("photos") / path.name)
    concepts = [f"--concept={label}={scene_files[i]}:{scene_files[i].with_name(f'mask{i}.png')}"
                for i, label in enumerate(LABELS)]
    # The targets as given, relative to Label Studio's document root (the job runs there).
    out = segment_cli(tiny_bundle, tmp_path / "tasks", targets, "--format", "label-studio",
                      "--label-studio-root", "/data/local-files/?d=", *concepts, cwd=label_studio.documents)
    masks_out = segment_cli(tiny_bundle, tmp_path / "masks", targets, *concepts, cwd=label_studio.documents)
    tasks_json = json.loads((out / "tasks.label-studio.json").read_text())
    created = client.projects.create(title="insid3 pre-annotations", label_config=CONFIG)
    # Label Studio serves a local file only to a project with a local storage holding its folder.
    client.import_storage.local.create(project=created.id, path=str(photos), use_blob_urls=True)
    client.projects.import_tasks(id=created.id, request=tasks_json)
    imported = sorted(client.tasks.list(project=created.id), key=lambda task: task.data["image"])
    assert [task.data["image"] for task in imported] == [f"/data/local-files/?d=photos/{p.name}" for p in scene_files[2:]]
    for task, target in zip(imported, sorted(targets)):
        image = httpx.get(label_studio.url + task.data["image"], headers=label_studio.headers, timeout=30)
        assert image.status_code == 200 and image.content == (photos / target.name).read_bytes()
        (prediction,) = client.predictions.list(task=task.id)
        assert prediction.model_version == "insid3"
        masks = decoded(prediction.result)
        expected = cli_masks(masks_out, target)
        for label in LABELS:
            assert np.array_equal(masks.get(label, np.zeros(SIZE, bool)), expected[label]), (target.name, label)


def test_a_label_studio_export_is_a_concepts_file(label_studio, project, server, client, tiny_bundle, scene_files,
                                                  tmp_path):
    """The reviewed annotations exported as JSON give `insid3 segment --concepts` the same
    references as the files they were drawn from (images fetched from Label Studio)."""
    response = httpx.get(f"{label_studio.url}/api/projects/{project['id']}/export?exportType=JSON",
                         headers=label_studio.headers, timeout=60)
    assert response.status_code == 200
    export = tmp_path / "export.json"
    export.write_bytes(response.content)
    by_task = {task.id: path for task, path in zip(project["tasks"], scene_files)}
    flags = []
    for task in response.json():
        if task["annotations"]:
            (annotation,) = task["annotations"]
            for label, mask in decoded(annotation["result"]).items():
                mask_file = tmp_path / f"task{task['id']}-{label}.png"
                mask_file.write_bytes(png(mask.astype(np.uint8) * 255))
                flags.append(f"--concept={label}={by_task[task['id']]}:{mask_file}")
    assert flags
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    from_export = segment_cli(tiny_bundle, tmp_path / "from-export", scene_files[2:], "--concepts", str(export), env=env)
    from_files = segment_cli(tiny_bundle, tmp_path / "from-files", scene_files[2:], *flags)
    labels = sorted({flag.split("=")[1] for flag in flags})
    for target in scene_files[2:]:
        assert cli_masks(from_export, target, labels).keys() == cli_masks(from_files, target, labels).keys()
        for label in labels:
            assert np.array_equal(cli_masks(from_export, target, labels)[label], cli_masks(from_files, target, labels)[label])

def test_annotations_made_before_the_backend_was_connected_are_read_at_setup(
        label_studio, client, server, scenes, scene_files):
    """They never come by webhook: /setup reads them from Label Studio's export, after answering;
    a changed labelling config drops the references and reads them again under the new one."""
    from support.label_studio import wait_for

    created = client.projects.create(title="insid3 earlier annotations", label_config=CONFIG)
    files = [("file0", (scene_files[3].name, scene_files[3].read_bytes(), "image/png"))]
    assert httpx.post(f"{label_studio.url}/api/projects/{created.id}/import", files=files,
                      headers=label_studio.headers, timeout=60).status_code == 201
    (task,) = client.tasks.list(project=created.id)
    annotation = client.annotations.create(id=task.id, result=[brush(scenes[3].mask, "rectangle")], was_cancelled=False)
    client.ml.create(project=created.id, url=f"{server.url}/label-studio", title="insid3", is_interactive=False)
    key = f"{created.id}.{int(created.created_at.timestamp())}"
    found = wait_for(lambda: (lambda d: d if d.get("imported") and d["pending"] == 0 else None)(server.project(key)),
                     what="the export is read")
    assert [(s["annotation"], s["mask_sha256"]) for s in found["labels"]["rectangle"]] == \
        [(annotation.id, sha256(mask_png(scenes[3].mask)))]
    assert found["labels"]["ellipse"] == []
    client.projects.update(id=created.id, label_config=CONFIG.replace('<Label value="rectangle"/>',
                                                                      '<Label value="rectangle"/><Label value="box"/>'))
    client.actions.create(id="retrieve_tasks_predictions", project=created.id,
                          selected_items={"all": True, "excluded": []})  # Label Studio calls /setup first
    again = wait_for(lambda: (lambda d: d if "box" in d.get("labels", {}) and d["imported"] and d["pending"] == 0
                              else None)(server.project(key)), what="the new config's references")
    assert again["labels"]["rectangle"] == found["labels"]["rectangle"] and again["labels"]["box"] == []
    assert again["model_version"] != found["model_version"]

def test_an_unservable_labelling_config_is_refused_in_words_label_studio_shows(client, server):
    from label_studio_sdk.core.api_error import ApiError

    created = client.projects.create(title="insid3 choices", label_config=(
        '<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
        '<Choice value="cat"/></Choices></View>'))
    with pytest.raises(ApiError) as refused:
        client.ml.create(project=created.id, url=f"{server.url}/label-studio", title="insid3", is_interactive=False)
    assert refused.value.status_code == 400
    assert "no-BrushLabels-or-PolygonLabels" in json.dumps(refused.value.body)
