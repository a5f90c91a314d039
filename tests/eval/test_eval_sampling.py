"""insid3-eval's episodes: the authors' draws, checked against the protocol's golden vectors and
against an independent transcription of its sampling rules (tests/support/eval_transcription.py), on a
tiny synthetic dataset in each of the nine layouts (tests/support/eval_layouts.py)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import eval_layouts as layouts
from support import eval_transcription as transcription

from insid3.evaluation.datasets import REGISTRY, DatasetError, build_benchmark
from insid3.evaluation.sampling import SamplingError, draw, draw_references, episode_rng


def episodes(name, root, fold, shots, n):
    benchmark = build_benchmark(name, str(root), fold, shots)
    return benchmark, list(islice(benchmark.episodes(episode_rng()), n))


def triples(found):
    return [(e.class_id, e.target.image, [r.image for r in e.references]) for e in found]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("eval-layouts")
    out = {}
    for name, writer in layouts.WRITERS.items():
        out[name] = base / name
        writer(out[name])
    out["coco3"] = base / "coco3"
    layouts.write_coco(out["coco3"], images=3)
    out["coco_varied"] = base / "coco_varied"
    layouts.write_coco(out["coco_varied"], images=4, lengths={4 * j: 2 + j % 3 for j in range(20)})
    out["lvis6"] = base / "lvis6"
    layouts.write_lvis(out["lvis6"], more=4)
    return out


# ---------------------------------------------------------------- the random primitive
def test_golden_permutation_vector():
    rng = episode_rng(0)
    assert [int(rng.permutation(n)[0]) for n in (20, 5, 1, 7, 3, 2, 2, 100)] == [18, 4, 0, 2, 2, 0, 0, 93]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=30), min_size=1, max_size=8), st.integers(0, 2**31))
def test_draw_is_numpys_choice_with_the_same_stream(lists, seed):
    np.random.seed(seed)
    theirs = [np.random.choice(items, 1, replace=False)[0] for items in lists] + [np.random.randint(1 << 30)]
    rng = episode_rng(seed)
    ours = [draw(rng, items) for items in lists] + [rng.randint(1 << 30)]
    assert ours == theirs


def test_a_one_item_draw_consumes_nothing_and_an_empty_one_is_an_error():
    rng = episode_rng(0)
    assert draw(rng, ["only"]) == "only"
    assert int(rng.permutation(20)[0]) == 18
    with pytest.raises(SamplingError, match="empty"):
        draw(rng, [])


def test_the_reference_loop_allows_repeats_and_refuses_to_hang():
    rng = episode_rng(0)
    assert draw_references(rng, ["a", "b"], target_key="a", shots=3) == ["b", "b", "b"]
    with pytest.raises(SamplingError, match="never ends"):
        draw_references(rng, ["a", "a"], target_key="a", shots=1)


# ---------------------------------------------------------------- golden episodes of the protocol
def index_of(path: str) -> int:
    return int(Path(path).stem[-2:]) - 1


def test_coco_golden_episodes(roots):
    _, one = episodes("coco", roots["coco3"], 0, 1, 8)
    assert [(e.class_id, index_of(e.target.image), [index_of(r.image) for r in e.references]) for e in one] == [
        (72, 0, [1]), (24, 2, [0]), (52, 1, [2]), (60, 2, [1]), (24, 1, [0]), (68, 2, [0]), (20, 1, [2]), (24, 1, [0])]
    _, five = episodes("coco", roots["coco3"], 0, 5, 4)
    assert [(e.class_id, index_of(e.target.image), [index_of(r.image) for r in e.references]) for e in five] == [
        (72, 0, [1, 2, 2, 2, 2]), (44, 0, [1, 1, 2, 2, 1]), (76, 2, [1, 1, 1, 0, 0]), (24, 2, [0, 1, 0, 0, 0])]


def test_lvis_golden_episodes_and_shot_dependent_classes(roots):
    benchmark, found = episodes("lvis", roots["lvis"], 0, 1, 4)
    assert benchmark.categories == [100] and benchmark.class_ids == (0,) and len(benchmark) == 2300
    assert [(e.target.entry[-5], [r.entry[-5] for r in e.references]) for e in found] == [
        ("1", ["0"]), ("0", ["1"]), ("0", ["1"]), ("1", ["0"])]
    # with 2 shots only the 6 categories of more than two images take part: too few for 10 folds
    with pytest.raises(DatasetError, match="fewer than the 10 folds"):
        build_benchmark("lvis", str(roots["lvis"]), 0, 2)


def test_pascal_part_golden_episodes(roots):
    benchmark, found = episodes("pascal_part", roots["pascal_part"], 1, 1, 10)
    assert len(benchmark) == 6 and [benchmark.class_name(c) for c in benchmark.class_ids] == ["chair+LEG", "sofa+BACK"]
    assert [(e.class_id, e.target.image[-6:-4], e.references[0].image[-6:-4]) for e in found] == [
        (0, "03", "01"), (1, "04", "05"), (0, "03", "02"), (1, "05", "04"), (0, "01", "02"), (1, "04", "05")]
    assert found[2].target.object == 2 and found[2].target.crop == (0, 20, 0, 20)  # the second chair of 03
    assert found[0].target.crop == (2, 28, 4, 36)
    loaded = benchmark.load(found[0].target, 0)
    assert loaded.rgb.shape == (26, 32, 3) and loaded.mask.shape == (26, 32)


def test_pascal_part_refuses_the_hang_of_too_few_distinct_images(roots):
    benchmark = build_benchmark("pascal_part", str(roots["pascal_part"]), 1, 2)
    with pytest.raises(SamplingError, match="never ends"):
        list(islice(benchmark.episodes(episode_rng()), 4))


def test_paco_part_golden_episodes(roots):
    _, one = episodes("paco_part", roots["paco_part"], 0, 1, 6)
    assert [(e.class_id, e.target.entry, [r.entry for r in e.references]) for e in one] == [
        (1, 4, [5]), (0, 1, [3]), (1, 4, [5]), (1, 5, [4]), (1, 4, [5]), (0, 1, [3])]
    benchmark, two = episodes("paco_part", roots["paco_part"], 0, 2, 3)
    assert benchmark.categories == [1000]
    assert [(e.class_id, e.target.entry, [r.entry for r in e.references]) for e in two] == [
        (0, 3, [1, 2]), (0, 2, [1, 1]), (0, 1, [3, 3])]
    loaded = benchmark.load(two[0].target, 0)
    assert loaded.rgb.shape == (21, 30, 3)  # the 30 x 21 crop of [2.5, 3.5, 30.2, 20.7]


def test_isaid_golden_episodes_and_its_newline_rule(roots, tmp_path):
    _, found = episodes("isaid", roots["isaid"], 1, 1, 9)
    stem = lambda path: Path(path).name[3:5]  # noqa: E731
    assert [(e.class_id, stem(e.target.image), stem(e.references[0].image)) for e in found] == [
        (5, "00", "02"), (5, "01", "02"), (5, "02", "00"), (6, "00", "01"), (6, "01", "00")]
    layouts.write_isaid(tmp_path, trailing_newline=False)
    assert len(build_benchmark("isaid", str(tmp_path), 1, 1)) == 4  # the last line is lost, as theirs


def test_isic_golden_episodes(roots):
    benchmark, found = episodes("isic", roots["isic"], None, 1, 6)
    position = lambda e, path: benchmark.lists[e.class_id].index(path)  # noqa: E731
    assert [(e.class_id, position(e, e.target.image), [position(e, r.image) for r in e.references]) for e in found] == [
        (0, 1, [0]), (1, 2, [0]), (2, 3, [1]), (0, 1, [0]), (1, 0, [1]), (2, 0, [2])]
    assert all(p.endswith(".jpg") for p in benchmark.lists[0]) and len(benchmark) == 600


def test_lung_suim_and_permis_lists(roots):
    lung, found = episodes("lung", roots["lung"], None, 1, 50)
    images = {Path(e.target.image).name for e in found}
    assert images <= {"CHNCXR_0001_0.png", "MCUCXR_0001_0.png", "CHNCXR_0002_1.png"} and len(lung) == 600
    assert all(lung.load(e.target, 0).mask.any() for e in found[:3])
    suim, found = episodes("suim", roots["suim"], None, 1, 20)
    assert len(suim) == 14 and [e.class_id for e in found] == [k % 7 for k in range(14)]
    assert all("d_r_3_" not in e.target.annotation for e in found)  # the empty masks are left out
    permis, found = episodes("permis", roots["permis"], None, 5, 10)
    assert [(Path(e.target.image).name, [Path(r.image).name for r in e.references]) for e in found] == [
        ("1.jpg", ["0.jpg"]), ("2.jpg", ["0.jpg"])]


def test_a_class_with_one_image_stops_with_one_line(tmp_path):
    layouts.write_coco(tmp_path, images=2, lengths={c: 1 for c in range(80)})
    benchmark = build_benchmark("coco", str(tmp_path), 0, 1)
    with pytest.raises(SamplingError, match="no image other than the target"):
        next(benchmark.episodes(episode_rng()))


# ---------------------------------------------------------------- against the transcription
CASES = [
    ("coco", "coco_varied", 0, transcription.coco, 120),
    ("lvis", "lvis6", 0, transcription.lvis, 60),
    ("isaid", "isaid", 1, transcription.isaid, 5),
    ("paco_part", "paco_part", 0, transcription.paco_part, 60),
    ("pascal_part", "pascal_part", 1, transcription.pascal_part, 6),
]


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("name,root,fold,independent,n", CASES, ids=[c[0] for c in CASES])
def test_episodes_equal_the_transcription(roots, name, root, fold, independent, n, shots):
    if name in ("pascal_part", "paco_part") and shots == 5:
        shots = 1 if name == "pascal_part" else 2
    _, found = episodes(name, roots[root], fold, shots, n)
    assert triples(found) == independent(str(roots[root]), fold, shots, n)


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("name", ["isic", "lung", "suim"])
def test_folder_episodes_equal_the_transcription(roots, name, shots):
    n = 14 if name == "suim" else 60
    _, found = episodes(name, roots[name], None, shots, n)
    assert triples(found) == transcription.folder_cycle(str(roots[name]), name, shots, n)


# ---------------------------------------------------------------- layout errors
def test_every_registered_dataset_reads_its_layout(roots):
    for name, spec in REGISTRY.items():
        fold = {"isaid": 1, "pascal_part": 1}.get(name, spec.folds[0] if spec.folds else None)
        benchmark, found = episodes(name, roots[name], fold, 1, 2)
        loaded = benchmark.load(found[0].target, found[0].class_id)
        assert loaded.rgb.dtype == np.uint8 and loaded.mask.shape == loaded.rgb.shape[:2], name


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_missing_dataset_is_one_line_naming_the_path(tmp_path, name):
    with pytest.raises(DatasetError) as error:
        build_benchmark(name, str(tmp_path), REGISTRY[name].folds[0] if REGISTRY[name].folds else None, 1)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_a_malformed_file_is_one_line(tmp_path):
    layouts.write_coco(tmp_path)
    (tmp_path / "COCO2014/splits/val/fold0.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a readable pickle"):
        build_benchmark("coco", str(tmp_path), 0, 1)
    layouts.write_isaid(tmp_path)
    (tmp_path / "iSAID/splits/val/fold1.txt").write_text("P0600\n")
    with pytest.raises(DatasetError, match="line 1"):
        build_benchmark("isaid", str(tmp_path), 1, 1)


def test_paco_part_draws_again_when_a_crop_is_empty(roots, tmp_path):
    import pickle

    layouts.write_paco_part(tmp_path)
    path = tmp_path / "PACO-Part/paco/paco_part_val.pkl"
    val = pickle.loads(path.read_bytes())
    for annotation in val["img2anno"][2]:
        annotation["obj_bbox"] = [50.0, 40.0, 5.0, 5.0]  # outside the 40 x 30 image: an empty crop
    path.write_bytes(pickle.dumps(val))
    _, found = episodes("paco_part", tmp_path, 0, 1, 40)
    used = [e.target.entry for e in found] + [r.entry for e in found for r in e.references]
    assert 2 not in used and len(found) == 40
    # the same episodes as the unmodified layout until its first episode with image 2, then others
    _, plain = episodes("paco_part", roots["paco_part"], 0, 1, 40)
    first = next(i for i, e in enumerate(plain) if 2 in [e.target.entry] + [r.entry for r in e.references])
    key = lambda e: (e.class_id, e.target.entry, e.target.object, [(r.entry, r.object) for r in e.references])  # noqa: E731
    assert [key(e) for e in found[:first]] == [key(e) for e in plain[:first]] and key(found[first]) != key(plain[first])
