"""insid3 calibrate on drawn scenes with known truth and negatives (the tiny random-init bundle):
episodes reproducible by seed, every setting's figures equal to insid3-eval's runner scoring that
setting alone, the argmax recommended, the reports and profile written, resume after Ctrl-C,
COCO examples read with pycocotools, the score threshold, one-line errors."""

from __future__ import annotations

import json
import math
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from insid3.engine.cli import calibrate as calibrate_cli
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.calibration.episodes import CalibrationBenchmark, is_negative
from insid3.evaluation.calibration.examples import ExamplesError, ExampleSource, read_examples
from insid3.evaluation.calibration.log import LOG_FILE, SweptEpisode
from insid3.evaluation.calibration.results import propose_min_score
from insid3.evaluation.calibration.run import calibrate
from insid3.evaluation.calibration.settings import CalibrationSettings
from insid3.evaluation.calibration.sweep import Outcome, Setting, SweepGrid, SweepScorer
from insid3.evaluation.episode import Episode, Item
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import Counts, IoUMeter
from insid3.evaluation.runner import EpisodeRunner
from insid3.evaluation.sampling import episode_rng
from insid3.format.bundle import load_bundle
from insid3.format.profile import read_profile
from insid3.format.settings import Hyperparameters

SIZE = (96, 128)
SMALL_GRID = {"svd_components": (31, 62), "tau": (0.6, 0.7), "merge_threshold": (0.2, 0.3)}


def save_scene(folder: Path, name: str, seed: int, concept: int, with_mask: bool = True):
    scene = draw_scene(seed, SIZE, concept=concept)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene.image).save(folder / f"{name}.png")
    if with_mask:
        Image.fromarray(scene.mask.astype(np.uint8) * 255).save(folder / f"{name}.mask.png")
    return scene


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Two concepts of four scenes each (a folder per concept and a concepts file naming both),
    and a folder of two negatives (scenes of a third concept)."""
    root = tmp_path_factory.mktemp("calibrate-examples")
    scenes = {}
    for concept, name in enumerate(("ellipse", "box")):
        for i in range(4):
            scenes[(name, i)] = save_scene(root / name, f"{name}{i}", 100 * concept + i, concept)
    for i in range(2):
        save_scene(root / "negatives", f"n{i}", 900 + i, 2, with_mask=False)
    concepts = {name: [{"image": f"{name}/{name}{i}.png", "mask": f"{name}/{name}{i}.mask.png"} for i in range(4)]
                for name in ("ellipse", "box")}
    (root / "concepts.yaml").write_text(yaml.safe_dump(concepts))
    return root


def settings(bundle, source, out, **changes) -> CalibrationSettings:
    base = dict(bundle=Path(bundle), source=source, out=Path(out), backend="onnxruntime", progress=False,
                bootstrap=200, **SMALL_GRID)
    base.update(changes)
    return CalibrationSettings(**base)


def concepts_source(examples) -> ExampleSource:
    return ExampleSource("concepts", examples / "concepts.yaml")


@pytest.fixture(scope="module")
def calibrated(tiny_bundle, examples, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated")
    result = calibrate(settings(tiny_bundle, concepts_source(examples), out, negatives=(examples / "negatives",)))
    return result, out


def test_episodes_are_reproducible_by_seed_and_cover_every_example(examples):
    example_set = read_examples(concepts_source(examples), (examples / "negatives",))
    benchmark = CalibrationBenchmark(example_set, shots=2, negatives_per_concept=10)
    first = list(benchmark.episodes(episode_rng(3)))
    assert first == list(benchmark.episodes(episode_rng(3)))
    assert first != list(benchmark.episodes(episode_rng(4)))
    # 8 positives; each concept's negatives: the other concept's 4 images and the 2 of the folder.
    assert len(first) == len(benchmark) == 8 + 2 * 6
    balanced = CalibrationBenchmark(example_set, shots=2)  # by default as many negatives as labelled images
    drawn = list(balanced.episodes(episode_rng(3)))
    assert len(drawn) == len(balanced) == 8 + 2 * 4 and sum(map(is_negative, drawn)) == 8
    positives = [e for e in first if not is_negative(e)]
    assert sorted((e.class_id, e.target.image) for e in positives) == sorted(
        (c, str(p.image)) for c, concept in enumerate(example_set.concepts) for p in concept.positives)
    for episode in first:
        own = {str(p.image) for p in example_set.concept(episode.class_id).positives}
        assert len(episode.references) == 2
        assert all(r.image in own and r.image != episode.target.image for r in episode.references)
        loaded = benchmark.load(episode.target, episode.class_id)
        assert loaded.mask.any() != is_negative(episode)


def test_every_settings_figures_equal_insid3_evals_runner_scoring_it_alone(calibrated, tiny_bundle, examples):
    result, _ = calibrated
    benchmark = CalibrationBenchmark(read_examples(concepts_source(examples), (examples / "negatives",)), shots=1)
    episodes = list(benchmark.episodes(episode_rng(0)))
    assert [r.episode for r in result.records] == episodes
    assert len(result.results) == 8
    for index, setting_result in enumerate(result.results):
        s = setting_result.setting
        segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", svd_components=s.svd_components,
                                          tau=s.tau, merge_threshold=s.merge_threshold)
        runner = EpisodeRunner(segmenter, benchmark, FeatureCache(segmenter.xp))
        meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
        for record, alone in zip(result.records, runner.run(episodes), strict=True):
            assert record.outcomes[index].counts == alone.counts
            meter.update(alone.counts, alone.episode.class_id)
        assert setting_result.miou == meter.miou()
        assert setting_result.fb_iou == meter.fb_iou() or (math.isnan(meter.fb_iou()) and math.isnan(setting_result.fb_iou))
        assert list(setting_result.per_concept.values()) == [row["iou"] for row in meter.per_class()]
        for column, fb_iou in enumerate(setting_result.per_concept_fb_iou.values()):
            assert fb_iou == pytest.approx(float(np.mean(meter.iou()[:, column]) * 100))


def test_the_recommendation_is_the_argmax_and_the_outputs_say_so(calibrated, tiny_bundle):
    result, out = calibrated
    best = max(r.miou for r in result.results)
    assert result.recommended.miou == best
    defaults = load_bundle(tiny_bundle).metadata.defaults
    assert result.default.setting == Setting(defaults.svd_components, defaults.tau, defaults.merge_threshold)
    assert result.gain.miou == pytest.approx(best - result.default.miou)
    assert result.gain.low <= result.gain.high
    report = json.loads((out / "calibration.json").read_text())
    assert [row["miou"] for row in report["settings"]] == [r.miou for r in result.results]
    assert report["recommended"]["miou"] == best and len(report["episodes"]) == len(result.records)
    assert all("references" in e for e in report["episodes"])
    assert [e["negative"] for e in report["episodes"]] == [is_negative(r.episode) for r in result.records]
    assert report["negatives_run"] == sum(e["negative"] for e in report["episodes"]) > 0
    assert "Recommended" in (out / "calibration.md").read_text()
    profile = read_profile(out / "profile.json")
    assert profile.hyperparameters == result.recommended.setting.hyperparameters
    profile.require_bundle(load_bundle(tiny_bundle))
    assert profile.calibration["episodes"] == len(result.records) and profile.calibration["seed"] == 0
    pytest.importorskip("matplotlib")
    with Image.open(out / "calibration-heatmap.png") as heatmap:
        assert heatmap.size[0] > 100


def test_a_default_grid_has_125_settings_around_the_bundles_defaults():
    defaults = Hyperparameters(svd_components=188, tau=0.6, merge_threshold=0.2)
    grid = SweepGrid.around(defaults, embed_dim=384, basis_vectors=384)
    assert len(grid) == 125 and len(grid.settings()) == 125
    assert grid.svd_components == (94, 141, 188, 235, 282)
    assert grid.tau == (0.5, 0.55, 0.6, 0.65, 0.7) and grid.merge_threshold == (0.1, 0.15, 0.2, 0.25, 0.3)
    given = SweepGrid.around(defaults, 384, 384, svd_components=(10,), tau=(0.5,), merge_threshold=(0.3,))
    assert given.svd_components == (10, 188) and given.tau == (0.5, 0.6) and given.merge_threshold == (0.2, 0.3)


def test_the_sweep_clusters_once_per_target_and_tau_and_encodes_each_image_once(tiny_bundle, examples, monkeypatch):
    from insid3 import kernels
    from insid3.engine.runtime.backends import load_backend

    clusterings = []
    cluster = kernels.average_linkage_clusters
    monkeypatch.setattr(kernels, "average_linkage_clusters",
                        lambda features, tau: clusterings.append(tau) or cluster(features, tau))
    bundle = load_bundle(tiny_bundle)
    grid = SweepGrid.around(bundle.metadata.defaults, bundle.metadata.embed_dim, 128, **SMALL_GRID)
    backend = load_backend(bundle, "onnxruntime")
    scorer = SweepScorer(bundle, backend, grid, FeatureCache(backend.xp))
    benchmark = CalibrationBenchmark(read_examples(concepts_source(examples)), shots=1)
    episodes = list(benchmark.episodes(episode_rng(0)))
    for episode in episodes:
        target = benchmark.load(episode.target, episode.class_id)
        refs = [benchmark.load(r, episode.class_id) for r in episode.references]
        outcomes, _ = scorer.score(target.rgb, target.mask, [(r.rgb, r.mask) for r in refs])
        assert len(outcomes) == len(grid) == 8
    assert scorer.images_encoded == 8  # the 8 distinct images, each once, though each is used many times
    assert 0 < len(clusterings) <= len(episodes) * len(grid.tau)  # never once per svd_components or merge


def write_coco(examples: Path, out: Path) -> Path:
    """A COCO instances file of the two concepts' scenes (compressed RLE), images of both concepts
    and the negatives listed, written with pycocotools' own encoder."""
    mask_util = pytest.importorskip("pycocotools.mask")
    images, annotations = [], []
    categories = [{"id": 7, "name": "ellipse"}, {"id": 9, "name": "box"}]
    files = [(f"{c['name']}/{c['name']}{i}.png", c["id"]) for c in categories for i in range(4)]
    files += [(f"negatives/n{i}.png", None) for i in range(2)]
    for image_id, (name, category) in enumerate(files, start=1):
        images.append({"id": image_id, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
        if category is None:
            continue
        mask = np.asarray(Image.open(examples / name.replace(".png", ".mask.png"))) > 0
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                            "segmentation": rle, "area": int(mask.sum()), "bbox": list(mask_util.toBbox(rle)),
                            "iscrowd": 0})
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return out


def test_coco_examples_are_read_with_pycocotools(examples, tmp_path):
    coco_file = write_coco(examples, tmp_path / "instances.json")
    example_set = read_examples(ExampleSource("coco", coco_file, images=examples))
    assert [c.name for c in example_set.concepts] == ["ellipse", "box"]
    assert [c.category_id for c in example_set.concepts] == [7, 9]
    ellipse = example_set.concepts[0]
    assert len(ellipse.positives) == 4 and len(ellipse.negatives) == 6  # the boxes and the two negatives
    benchmark = CalibrationBenchmark(example_set, shots=1)
    for episode in benchmark.episodes(episode_rng(0)):
        loaded = benchmark.load(episode.target, episode.class_id)
        if is_negative(episode):
            assert not loaded.mask.any()
        else:
            stored = np.asarray(Image.open(episode.target.image.replace(".png", ".mask.png"))) > 0
            assert np.array_equal(loaded.mask, stored)


def test_the_cli_calibrates_on_coco(tiny_bundle, examples, tmp_path, capsys):
    coco_file = write_coco(examples, tmp_path / "instances.json")
    code = calibrate_cli.main(["--bundle", str(tiny_bundle), "--coco", str(coco_file), "--images", str(examples),
                               "--out", str(tmp_path / "out"), "--backend", "onnxruntime", "--no-progress",
                               "--svd-components", "62", "--tau", "0.6", "--merge-threshold", "0.2,0.3",
                               "--episodes", "6", "--no-heatmap"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert report["episodes_run"] == 6 and len(report["settings"]) == 2
    assert [c["name"] for c in report["concepts"]] == ["ellipse", "box"]
    assert "mIoU = " in capsys.readouterr().out


def test_ctrl_c_keeps_the_finished_episodes_and_the_same_command_resumes(tiny_bundle, examples, tmp_path,
                                                                        monkeypatch, capsys):
    argv = ["--bundle", str(tiny_bundle), "--folder", str(examples / "ellipse"), "--negatives",
            str(examples / "negatives"), "--backend", "onnxruntime", "--no-progress", "--svd-components", "31,62",
            "--tau", "0.6", "--merge-threshold", "0.2,0.3", "--no-heatmap", "--bootstrap", "50"]
    assert calibrate_cli.main(argv + ["--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "calibration.json").read_text())

    score = SweepScorer.score
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return score(self, *args, **kwargs)

    monkeypatch.setattr(SweepScorer, "score", interrupted)
    out = tmp_path / "resumed"
    assert calibrate_cli.main(argv + ["--out", str(out)]) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    assert len((out / LOG_FILE).read_text().splitlines()) == 1 + 2  # the header and two episodes
    monkeypatch.setattr(SweepScorer, "score", score)
    assert calibrate_cli.main(argv + ["--out", str(out)]) == 0
    resumed = json.loads((out / "calibration.json").read_text())
    assert resumed["timings"]["episodes_resumed"] == 2
    assert resumed["timings"]["episodes_computed"] == whole["episodes_run"] - 2
    assert resumed["settings"] == whole["settings"] and resumed["episodes"] == whole["episodes"]
    # another calibration's log is refused, in one line
    capsys.readouterr()
    assert calibrate_cli.main(argv + ["--shots", "2", "--out", str(out)]) == 2
    assert "belongs to another run" in capsys.readouterr().err


def swept(index: int, negative: bool, score: float | None) -> SweptEpisode:
    item = Item(image=f"t{index}.png", annotation="", object=-1 if negative else None)
    counts = Counts(intersection=(1, 0), union=(1, 0 if score is None else 1))
    return SweptEpisode(Episode(index, 0, item, (Item("r.png", "r.mask.png"),)), (Outcome(counts, score),))


def test_the_score_threshold_best_separates_present_from_absent():
    records = [swept(0, False, 0.9), swept(1, False, 0.8), swept(2, False, None), swept(3, False, 0.4),
               swept(4, True, 0.3), swept(5, True, None), swept(6, True, 0.5)]
    separation = propose_min_score(records, 0, "quality.score")
    t = separation.threshold
    assert t is not None and 0.5 < t.threshold <= 0.8
    assert t.false_positive_rate == 0.0 and t.miss_rate == pytest.approx(0.5)  # 0.4 and the empty mask missed
    assert propose_min_score(records[:4], 0, "quality.score").threshold is None  # no negatives


def test_bad_input_is_one_line_and_exit_2(tiny_bundle, examples, tmp_path, capsys):
    base = ["--bundle", str(tiny_bundle), "--out", str(tmp_path / "o"), "--no-progress"]
    for argv, words in (
        ([], "one of --folder, --concepts or --coco"),
        (["--folder", str(examples / "ellipse"), "--concepts", str(examples / "concepts.yaml")], "got --folder and"),
        (["--coco", str(tmp_path / "none.json")], "--images goes with --coco"),
        (["--folder", str(tmp_path)], "not a folder" if not tmp_path.is_dir() else "has no NAME.<image>"),
        (["--folder", str(examples / "ellipse"), "--shots", "0"], "--shots must be >= 1"),
        (["--folder", str(examples / "ellipse"), "--tau", "0.6,x"], "comma-separated"),
        (["--folder", str(examples / "ellipse"), "--tau", "1.5"], "tau=1.5"),
    ):
        assert calibrate_cli.main(base + argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_concept_needs_two_examples(examples, tmp_path):
    single = tmp_path / "single"
    save_scene(single, "only", 1, 0)
    with pytest.raises(ExamplesError, match="needs two or more|calibrating needs two"):
        read_examples(ExampleSource("folder", single))


def test_every_merge_threshold_from_one_aggregate_gives_the_masks_of_decoding_each(tiny_bundle, examples):
    """The sweep derives every merge_threshold's mask from one pruned aggregate per frame and tau
    (sweep.patch_masks_at): each equals the mask a Segmenter with that threshold decodes, on
    thresholds below zero (clusters without a hit join), around the defaults and above every score."""
    from insid3.engine.runtime.backends import load_backend
    from insid3.engine.runtime.images import prepare_reference_mask
    from insid3.engine.runtime.reference import Reference
    from insid3.evaluation.grid import on_grid
    from insid3.evaluation.metrics import intersection_union

    bundle = load_bundle(tiny_bundle)
    merges = (-0.3, -0.05, 0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.45, 0.6, 0.9)
    grid = SweepGrid.around(bundle.metadata.defaults, bundle.metadata.embed_dim, 128, svd_components=(62,),
                            tau=(0.5, 0.8), merge_threshold=merges)
    backend = load_backend(bundle, "onnxruntime")
    scorer = SweepScorer(bundle, backend, grid, FeatureCache(backend.xp))
    benchmark = CalibrationBenchmark(read_examples(concepts_source(examples), (examples / "negatives",)), shots=2)
    episodes = list(islice(benchmark.episodes(episode_rng(5)), 5))
    loaded = [(benchmark.load(e.target, e.class_id), [benchmark.load(r, e.class_id) for r in e.references])
              for e in episodes]
    swept = [scorer.score(target.rgb, target.mask, [(r.rgb, r.mask) for r in refs])[0] for target, refs in loaded]
    distinct = set()
    for index, setting in enumerate(grid.settings()):
        segmenter = Segmenter(bundle, backend, setting.hyperparameters)
        for (target, refs), episode, outcomes in zip(loaded, episodes, swept):
            features = scorer.features([target.rgb] + [r.rgb for r in refs])  # from the cache
            masks = [prepare_reference_mask(r.mask, r.rgb.shape[:2], 224) for r in refs]
            reference = Reference.from_shots(segmenter.shots_from_features(np.stack(features[1:]), masks),
                                             segmenter.fingerprint)
            alone = segmenter.decode(features[0], (224, 224), reference)  # what EpisodeRunner._score does
            assert outcomes[index].counts == intersection_union(alone, on_grid(target.mask, "square", 224)), (
                setting, episode.index)
            distinct.add((episode.index, outcomes[index].counts))
    assert len(distinct) > 2 * len(episodes)  # the thresholds do change the masks


def test_the_logged_score_is_the_quality_records_score(calibrated, tiny_bundle, examples):
    """The score S is proposed on is what a mask's quality record says (engine/runtime/quality.py),
    None where the mask is empty (its record says 0)."""
    from insid3.engine.runtime.reference import Reference

    result, _ = calibrated
    benchmark = CalibrationBenchmark(read_examples(concepts_source(examples), (examples / "negatives",)), shots=1)
    checked = 0
    for index, setting_result in enumerate(result.results[:4]):
        segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime",
                                          **setting_result.setting.hyperparameters.to_json())
        for record in result.records[:6]:
            episode = record.episode
            target = benchmark.load(episode.target, episode.class_id)
            refs = [benchmark.load(r, episode.class_id) for r in episode.references]
            shots = segmenter.encode_shots([(r.rgb, r.mask) for r in refs])
            reference = Reference.from_shots(shots, segmenter.fingerprint)
            features = segmenter.encode([segmenter.prepare(target.rgb)])[0]
            quality = segmenter.decode_concepts(features, (224, 224), {"c": reference})["c"].quality
            logged = record.outcomes[index].score
            assert logged == (quality.score if quality.components else None)
            checked += logged is not None
    assert checked > 0


def test_a_run_of_n_episodes_extends_to_more(tiny_bundle, examples, tmp_path):
    source, out = ExampleSource("folder", examples / "ellipse"), tmp_path / "out"
    small = {"svd_components": (62,), "tau": (0.6,), "merge_threshold": (0.2, 0.3), "heatmap": False}
    negatives = (examples / "negatives",)  # 4 labelled images and 2 negatives: 6 episodes
    first = calibrate(settings(tiny_bundle, source, out, episodes=3, negatives=negatives, **small))
    more = calibrate(settings(tiny_bundle, source, out, episodes=6, negatives=negatives, **small))
    assert more.report["timings"]["episodes_resumed"] == 3 and more.report["timings"]["episodes_computed"] == 3
    assert [r.episode for r in more.records[:3]] == [r.episode for r in first.records]


def test_a_refinement_sweep_scores_the_crf_as_segmenting_with_it(tiny_bundle, examples):
    from insid3.engine.runtime.backends import load_backend

    bundle = load_bundle(tiny_bundle)
    grid = SweepGrid.around(bundle.metadata.defaults, bundle.metadata.embed_dim, 128, svd_components=(62,),
                            tau=(0.6,), merge_threshold=(0.2,), refine=("bilinear", "crf"))
    backend = load_backend(bundle, "onnxruntime")
    scorer = SweepScorer(bundle, backend, grid, FeatureCache(backend.xp))
    benchmark = CalibrationBenchmark(read_examples(concepts_source(examples)), shots=1)
    episodes = list(islice(benchmark.episodes(episode_rng(0)), 3))
    swept = []
    for episode in episodes:
        target = benchmark.load(episode.target, episode.class_id)
        refs = [benchmark.load(r, episode.class_id) for r in episode.references]
        swept.append(scorer.score(target.rgb, target.mask, [(r.rgb, r.mask) for r in refs])[0])
    for index, setting in enumerate(grid.settings()):
        segmenter = Segmenter.from_bundle(tiny_bundle, backend="onnxruntime", refine=setting.refine,
                                          **setting.hyperparameters.to_json())
        runner = EpisodeRunner(segmenter, benchmark, FeatureCache(segmenter.xp))
        assert [r.counts for r in runner.run(episodes)] == [outcomes[index].counts for outcomes in swept], setting
    assert any(outcomes[0].counts != outcomes[1].counts for outcomes in swept)  # the CRF did change masks
