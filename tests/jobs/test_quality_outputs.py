"""quality.csv beside every format (read back with Python's csv module and pandas), --min-score
emptying exactly the masks below S, the flags' thresholds, resuming after a torn write, and COCO
annotations that carry the score (read by pycocotools' COCO.loadRes and scored by COCOeval)."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from support.scenes import api_results, save_examples

from insid3.engine.cli.segment import main
from insid3.engine.jobs.outputs.coco import COCO_FILE
from insid3.engine.jobs.outputs.files import target_key
from insid3.engine.jobs.outputs.quality import COLUMNS, FLAG_COLUMNS, QUALITY_FILE, quality_of_row
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.quality import QualityThresholds

EXAMPLES = (("ellipse", 20, 0), ("rectangle", 21, 1), ("triangle", 22, 2))
TARGETS = 5


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    save_examples(root, EXAMPLES)
    (root / "targets").mkdir()
    for seed in range(TARGETS):
        scene = draw_scene(60 + seed, (100 + 8 * seed, 140), concept=seed % 3)
        Image.fromarray(scene.image).save(root / "targets" / f"t{seed}.png")
        np.save(root / f"truth{seed}.npy", scene.mask)
    return root


@pytest.fixture(scope="module")
def expected(segmenter, workspace):
    return api_results(segmenter, workspace, EXAMPLES)


def run(bundle, root, out, *extra):
    concepts = [f"--concept={name}={root / f'ex{i}.png'}:{root / f'ex{i}_mask.png'}"
                for i, (name, _, _) in enumerate(EXAMPLES)]
    argv = ["--bundle", str(bundle), "--backend", "onnxruntime", "--batch-size", "2", "--no-progress", *concepts,
            *extra, "--out", str(out), str(root / "targets")]
    try:
        return main(argv)
    except SystemExit as exc:  # a usage error from argparse
        return exc.code


def rows_of(out):
    with open(out / QUALITY_FILE, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_quality_csv_holds_every_targets_record_and_flags(tiny_bundle, workspace, expected, tmp_path):
    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out) == 0
    rows = rows_of(out)
    assert len(rows) == TARGETS * len(EXAMPLES)
    rules = QualityThresholds()
    for row in rows:
        stem = row["target"].rsplit("/", 1)[-1].split(".")[0]
        assert row["target"] == target_key(workspace / "targets" / f"{stem}.png", out)
        quality = expected[stem][row["concept"]].quality
        assert quality_of_row(row) == quality  # every number exactly as the API computed it
        raised = rules.flags(quality)
        assert [row[c] for c in FLAG_COLUMNS] == ["1" if f.replace("_", "-") in raised else "0" for f in FLAG_COLUMNS]
        assert row["absent"] == "0"
    assert [(r["target"][-6:], r["concept"]) for r in rows] == [
        (f"t{i}.png", name) for i in range(TARGETS) for name, _, _ in EXAMPLES]
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(out / QUALITY_FILE)
    assert list(table.columns) == list(COLUMNS) and len(table) == len(rows)


def test_min_score_empties_exactly_the_masks_below_it(tiny_bundle, workspace, expected, tmp_path):
    scores = sorted({concept.quality.score for result in expected.values() for concept in result})
    threshold = scores[len(scores) // 2]  # about half the masks go
    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out, "--min-score", repr(threshold)) == 0
    emptied = kept = 0
    for stem, result in expected.items():
        for concept in result:
            written = np.asarray(Image.open(out / f"{stem}.{concept.name}.png")) > 0
            if concept.quality.score < threshold:
                assert not written.any()
                emptied += concept.mask.any()
            else:
                np.testing.assert_array_equal(written, concept.mask)
                kept += 1
    assert emptied >= 2 and kept >= 2
    for row in rows_of(out):
        assert row["absent"] == ("1" if float(row["score"]) < threshold else "0")
    manifest = json.loads((out / "insid3-job.json").read_text())
    assert f"min-score={threshold!r}" in json.dumps(manifest)
    assert run(tiny_bundle, workspace, out, "--min-score", "0.99") == 2  # another S: another job
    assert run(tiny_bundle, workspace, tmp_path / "bad", "--min-score", "1.5") == 2


def test_flag_thresholds_are_options_and_a_rerun_recomputes_the_flags(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out, "--flag-low-score", "1.01", "--flag-tiny", "0", "--flag-huge", "0",
               "--flag-fragmented", "1") == 0
    rows = rows_of(out)
    assert all(r["low_score"] == "1" for r in rows)
    assert all(r["huge"] == ("1" if float(r["area_fraction"]) > 0 else "0") for r in rows)
    assert all(r["fragmented"] == ("1" if int(r["components"]) > 1 else "0") for r in rows)
    assert run(tiny_bundle, workspace, out) == 0  # the same job (flags change no mask): nothing redone
    assert "0 segmented, 5 already done" in capsys.readouterr().err
    rules = QualityThresholds()
    for row in rows_of(out):
        assert (row["low_score"] == "1") == (float(row["score"]) < rules.low_score)
    assert run(tiny_bundle, workspace, tmp_path / "bad", "--flag-tiny", "0.5", "--flag-huge", "0.1") == 2


def test_a_torn_or_missing_row_redoes_its_target_only(tiny_bundle, workspace, tmp_path, capsys):
    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out) == 0
    whole = (out / QUALITY_FILE).read_bytes()
    lines = whole.split(b"\n")
    # t1's concepts lose their last row; t4's last row is torn mid-line, as a crash would leave it.
    kept = [line for line in lines[:-1] if not (b"t1.png" in line and b"triangle" in line)]
    torn = b"\n".join(kept) + b"\n"
    (out / QUALITY_FILE).write_bytes(torn[: len(torn) - 12])
    capsys.readouterr()
    assert run(tiny_bundle, workspace, out) == 0
    assert "2 segmented, 3 already done" in capsys.readouterr().err
    rows = rows_of(out)
    assert len(rows) == TARGETS * len(EXAMPLES)
    again = sorted(rows, key=lambda r: (r["target"], r["concept"]))
    before = sorted(csv.DictReader(whole.decode().splitlines()), key=lambda r: (r["target"], r["concept"]))
    assert again == before


def test_coco_annotations_carry_the_score_and_cocoeval_reads_them(tiny_bundle, workspace, expected, tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from insid3.engine.runtime.rle import encode_rle

    out = tmp_path / "o"
    assert run(tiny_bundle, workspace, out, "--format", "coco", "--instances") == 0
    ours = COCO(str(out / COCO_FILE))
    for image in ours.loadImgs(ours.getImgIds()):
        stem = image["file_name"].rsplit("/", 1)[-1].split(".")[0]
        for annotation in ours.loadAnns(ours.getAnnIds(imgIds=image["id"])):
            name = ours.cats[annotation["category_id"]]["name"]
            assert annotation["score"] == expected[stem][name].quality.score
    # Ground truth: each target's drawn object, under the category of its concept.
    truth = {"images": ours.dataset["images"], "categories": ours.dataset["categories"], "annotations": []}
    for image in ours.dataset["images"]:
        index = int(image["file_name"].rsplit("/", 1)[-1][1])
        mask = np.load(workspace / f"truth{index}.npy")
        truth["annotations"].append({"id": index + 1, "image_id": image["id"], "category_id": index % 3 + 1,
                                     "segmentation": encode_rle(mask), "area": int(mask.sum()), "iscrowd": 0,
                                     "bbox": [0, 0, mask.shape[1], mask.shape[0]]})
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    ground = COCO(str(tmp_path / "truth.json"))
    found = ground.loadRes([{k: v for k, v in a.items() if k != "id"} for a in ours.dataset["annotations"]])
    assert sorted(a["score"] for a in found.dataset["annotations"]) == sorted(
        a["score"] for a in ours.dataset["annotations"])
    evaluation = COCOeval(ground, found, "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert 0.0 <= evaluation.stats[0] <= 1.0 and evaluation.stats[8] >= 0.0  # AP and AR were computed
