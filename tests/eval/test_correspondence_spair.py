"""SPair-71k: the loader, the per-pair PCK averaged over all pairs, and `insid3-eval --dataset
spair` end to end, on the smallest SPair layout (three pairs, planted predictions)."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from insid3 import kernels
from insid3.engine import Segmenter
from insid3.engine.cli.evaluate import main
from insid3.engine.runtime.correspondence import Correspondences, Matcher
from insid3.evaluation.datasets.base import DatasetError
from insid3.evaluation.datasets.spair import SpairDataset
from insid3.evaluation.pck import ALPHAS, PckMeter, pair_pck, per_class_table, read_per_class_table

IMAGES = {"cat/2000_000001": (96, 64), "cat/2000_000002": (60, 90), "dog/2000_000003": (64, 64),
          "dog/2000_000004": (100, 50)}  # name: (W, H)
PAIRS = [  # name, category, src_kps, trg_kps, trg_bndbox
    ("000001-2000_000001-2000_000002:cat", "cat", [[5, 20], [7, 50], [95, 63]], [[15, 30], [40, 80], [50, 10]],
     [5, 10, 55, 90]),
    ("000002-2000_000002-2000_000001:cat", "cat", [[15, 30], [40, 80]], [[5, 20], [7, 50]], [10, 5, 70, 45]),
    ("000003-2000_000003-2000_000004:dog", "dog", [[32, 32]], [[50, 25]], [20, 10, 80, 40]),
]
PLANTED = [[[18, 34], [40, 68], [20, 50]], [[40, 40], [60, 10]], [[50, 25]]]  # distances 5, 12, 50 | 40.3, 66.4 | 0
EXPECTED = (33.33, 44.44, 55.56, 55.56)


def write_spair(root: Path) -> Path:
    base = root / "SPair-71k"
    rng = np.random.default_rng(0)
    for name, (width, height) in IMAGES.items():
        path = base / "JPEGImages" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # lossless PNG bytes under a .jpg name: PIL reads the content
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())
    annotations = base / "PairAnnotation" / "test"
    annotations.mkdir(parents=True)
    for index, (name, category, source, target, box) in enumerate(PAIRS):
        source_name, target_name = name.split("-")[1], name.split("-")[2].split(":")[0]
        (annotations / f"{name}.json").write_text(json.dumps({
            "pair_id": index + 1, "src_imname": f"{source_name}.jpg", "trg_imname": f"{target_name}.jpg",
            "src_imsize": [*IMAGES[f"{category}/{source_name}"], 3], "src_bndbox": [0, 0, 10, 10],
            "category": category, "src_kps": source, "trg_kps": target, "trg_bndbox": box,
            "kps_ids": [str(i) for i in range(len(source))], "mirror": 0, "viewpoint_variation": 1,
        }))
    (base / "Layout" / "large").mkdir(parents=True)
    (base / "Layout" / "large" / "test.txt").write_text("\n".join(name for name, *_ in PAIRS) + "\n\n")
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_spair(tmp_path_factory.mktemp("spair-root"))


def test_the_loader_reads_pairs_in_list_order(data_root):
    dataset = SpairDataset(data_root)
    assert [pair.name for pair in dataset.pairs] == [name for name, *_ in PAIRS] and len(dataset) == 3
    first = dataset.pairs[0]
    assert first.source_path == data_root / "SPair-71k/JPEGImages/cat/2000_000001.jpg"
    assert first.target_path == data_root / "SPair-71k/JPEGImages/cat/2000_000002.jpg"
    assert first.source_points.dtype == np.float32 and first.points == 3 and first.class_id == 7
    assert [float(p.threshold) for p in dataset.pairs] == [80.0, 60.0, 60.0]
    assert dataset.load(first.source_path).shape == (64, 96, 3)
    # Snapping at a 48 x 48 grid: a half-to-even tie, separate x / y ratios, the clamp.
    cells = kernels.snap_points(first.source_points, dataset.load(first.source_path).shape[:2], (48, 48))
    assert cells.tolist() == [[2, 15], [4, 38], [47, 47]]


def test_the_folder_comes_from_the_json_category(tmp_path):
    root = write_spair(tmp_path)
    annotation = root / "SPair-71k/PairAnnotation/test" / f"{PAIRS[2][0]}.json"
    data = json.loads(annotation.read_text())
    data["category"] = "cat"  # the name still ends in ':dog'
    annotation.write_text(json.dumps(data))
    assert SpairDataset(root).pairs[2].source_path.parent.name == "cat"
    data["category"] = "unicorn"
    annotation.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="category 'unicorn' is none of the 20 PASCAL VOC classes"):
        SpairDataset(root)


def test_planted_predictions_give_the_per_pair_mean_over_all_pairs(tmp_path):
    meter = PckMeter()
    per_pair = []
    for (_, category, _, truth, box), predicted in zip(PAIRS, PLANTED):
        threshold = np.float32(max(box[2] - box[0], box[3] - box[1]))
        scores = pair_pck(np.asarray(predicted, np.float32), np.asarray(truth, np.float32), threshold, len(truth))
        per_pair.append([scores[a] for a in ALPHAS])
        meter.add(category, scores)
    np.testing.assert_allclose(per_pair, [[0, 1 / 3, 2 / 3, 2 / 3], [0, 0, 0, 0], [1, 1, 1, 1]], atol=1e-7)
    means = meter.means()
    assert [round(100 * means["all"][a], 2) for a in ALPHAS] == list(EXPECTED)
    # What the wrong averaging modes would report: per category, and per point.
    assert [round(100 * (means["cat"][a] + means["dog"][a]) / 2, 2) for a in ALPHAS] == [50.0, 58.33, 66.67, 66.67]
    per_point = [pair_pck(np.asarray([p], np.float32), np.asarray([t], np.float32), max(b[2] - b[0], b[3] - b[1]), 1)
                 for (_, _, _, truth, b), predicted in zip(PAIRS, PLANTED) for p, t in zip(predicted, truth)]
    assert [round(100 * float(np.mean([s[a] for s in per_point])), 2) for a in ALPHAS] == [16.67, 33.33, 50.0, 50.0]
    table = tmp_path / "per_class_score.txt"
    table.write_text(per_class_table(means))
    read = read_per_class_table(table)
    assert [round(100 * read["cat"][a], 2) for a in ALPHAS] == [0.0, 16.67, 33.33, 33.33]
    assert [round(100 * read["dog"][a], 2) for a in ALPHAS] == [100.0] * 4
    assert list(read) == ["cat", "dog", "all"] and table.read_text().splitlines()[-1].startswith("-----")


def test_the_bound_is_inclusive_in_float32():
    truth = np.array([[0.0, 0.0]], np.float32)
    assert pair_pck(np.array([[12.0, 0.0]], np.float32), truth, np.float32(80), 1)[0.15] == 1.0  # 12 <= 0.15 * 80
    assert pair_pck(np.array([[12.001, 0.0]], np.float32), truth, np.float32(80), 1)[0.15] == 0.0


def test_insid3_eval_spair_reports_the_planted_pck(tiny_bundle, data_root, tmp_path, monkeypatch, capsys):
    """The whole command with the matcher's answers replaced by the planted predictions."""
    planted = iter(PLANTED)

    def answer(self, reference, points, features, size, options, clock=None):
        found = np.asarray(next(planted), np.float32)
        return Correspondences(found, np.zeros(len(found), np.float32), np.zeros((len(found), 2), np.int64), size)

    monkeypatch.setattr(Matcher, "correspond", answer)
    code = main(["--dataset", "spair", "--bundle", str(tiny_bundle), "--data-root", str(data_root),
                 "--backend", "onnxruntime", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "PCK@0.05 = 33.33, PCK@0.10 = 44.44, PCK@0.15 = 55.56, PCK@0.20 = 55.56"
    s = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime").hyperparameters.svd_components
    report = json.loads((tmp_path / f"spair-debiased-s{s}.json").read_text())
    assert report["pairs"] == 3 and [round(v, 2) for v in report["pck"].values()] == list(EXPECTED)
    assert round(report["per_category"]["cat"]["0.1"], 2) == 16.67
    assert read_per_class_table(tmp_path / f"spair-debiased-s{s}.per_class_score.txt")["dog"][0.2] == 1.0


def test_insid3_eval_spair_scores_the_engines_matches(tiny_bundle, data_root, tmp_path, capsys):
    code = main(["--dataset", "spair", "--bundle", str(tiny_bundle), "--data-root", str(data_root), "--original",
                 "--backend", "onnxruntime", "--out", str(tmp_path), "--batch-size", "3"])
    assert code == 0
    report = json.loads((tmp_path / "spair-original.json").read_text())
    segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")
    dataset = SpairDataset(data_root)
    meter = PckMeter()
    for pair in dataset.pairs:
        found = segmenter.match(dataset.load(pair.source_path), pair.source_points, dataset.load(pair.target_path),
                                debiased=False)
        meter.add(pair.category, pair_pck(found, pair.target_points, pair.threshold, pair.points))
    assert report["pck"] == pytest.approx({f"{a}": 100 * v for a, v in meter.means()["all"].items()}, abs=1e-9)
    assert not report["debiased"] and report["svd_components"] is None


def test_bad_runs_are_one_line_and_exit_2(tiny_bundle, data_root, tmp_path, capsys):
    base = ["--dataset", "spair", "--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--out", str(tmp_path)]
    assert main([*base, "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "SPair-71k folder" in capsys.readouterr().err
    assert main([*base, "--data-root", str(data_root), "--svd-components", "128"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("insid3-eval: error: svd_components=128")


def test_insid3_eval_hands_spair_to_the_keypoint_cli(capsys):
    from insid3.engine.cli import evaluate as cli

    assert cli.main(["--dataset", "spair", "--help"]) == 0  # the runner: --help is exit 0, not SystemExit
    text = " ".join(capsys.readouterr().out.split())
    # one help for every dataset: the keypoint flags in their group; None defaults are not printed (issue 21.6)
    assert "--original" in text and "(default: the bundle's" in text and "(default: 8)" in text
    assert "(default: None)" not in text
