"""refine="crf" end to end: the Segmenter, the transcription's episode, insid3-segment,
insid3-serve, insid3-bench and insid3-eval (the CRF itself: tests/kernels/test_crf_kernels.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from insid3.engine import Segmenter
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.runtime.timing import STAGES
from insid3.errors import SettingsError
from insid3.format.refinement import RefineSettings
from insid3.kernels.crf import CrfParameters, crf_refine, guide_image
from insid3.kernels.resize import threshold_bilinear

SIZE = (120, 150)


@pytest.fixture(scope="module")
def pairs():
    return scene_pairs(2, size=SIZE, seed=10)


@pytest.fixture(scope="module")
def segmenters(tiny_bundle):
    return (Segmenter.from_bundle(tiny_bundle, "onnxruntime", refine="crf"),
            Segmenter.from_bundle(tiny_bundle, "onnxruntime"))


def test_settings_round_trip_and_bad_values_are_one_line(tiny_bundle):
    setting = RefineSettings(method="crf", lattice_precision="float64")
    assert RefineSettings.from_json(json.loads(json.dumps(setting.to_json()))) == setting
    assert RefineSettings.of("crf") == RefineSettings(method="crf") and RefineSettings.of(None).method == "bilinear"
    with pytest.raises(SettingsError, match="refine='dense'"):
        RefineSettings.of("dense")
    with pytest.raises(SettingsError, match="lattice precision"):
        RefineSettings(method="crf", lattice_precision="float16")
    with pytest.raises(SettingsError, match="refine="):
        Segmenter.from_bundle(tiny_bundle, "onnxruntime", refine="sharp")


def _expected(bilinear: Segmenter, image, reference) -> np.ndarray:
    """The refinement by hand: bilinear's R x R mask, kernels.crf_refine on the target's pixels,
    then bilinear > 0.5 to the target's size."""
    meta = bilinear.bundle.metadata
    prepared = bilinear.prepare(image)
    features = bilinear.encode([prepared])[0]
    square = bilinear.decode(features, (meta.resolution, meta.resolution), reference)
    guide = guide_image(prepared.pixels, meta.mean, meta.std)
    refined = crf_refine(square, guide, CrfParameters.at_size(meta.resolution))
    return threshold_bilinear(refined, prepared.original_size)


def test_segmenter_refines_the_square_mask_before_the_resize(segmenters, pairs):
    crf, bilinear = segmenters
    assert crf.refine.crf and not bilinear.refine.crf and "refine crf (lattice float32)" in crf.describe()
    changed = 0
    for reference, target in pairs:
        ref_crf, ref_bilinear = (s.encode_reference([(reference.image, reference.mask)]) for s in segmenters)
        ours = crf.segment(target.image, ref_crf)
        assert set(crf.last_timings) == set(STAGES) and crf.last_timings["refine"] > 0
        np.testing.assert_array_equal(ours, _expected(bilinear, target.image, ref_bilinear))
        # the batched stream and the several-concepts path finish masks the same way
        np.testing.assert_array_equal(crf.segment_batch([target.image], 1, ref_crf)[0], ours)
        concept = crf.segment_concepts(target.image, {"it": ref_crf})["it"]
        np.testing.assert_array_equal(concept.mask, ours)
        assert concept.timings_ms["refine"] > 0  # the CRF is the concept's own cost
        changed += int((ours ^ bilinear.segment(target.image, ref_bilinear)).sum())
    assert changed > 0, "the CRF changed no pixel: the comparison would prove nothing"


def test_decode_without_the_targets_pixels_is_refused(segmenters, pairs):
    crf, _ = segmenters
    reference, target = pairs[0]
    ref = crf.encode_reference([(reference.image, reference.mask)])
    features = crf.encode([crf.prepare(target.image)])[0]
    with pytest.raises(SettingsError, match="needs the target's pixels"):
        crf.decode(features, SIZE, ref)


def test_the_transcriptions_episode_refines_like_the_kernels():
    """authors_way.segment_features with the authors' CRF module equals its bilinear R x R mask
    refined by kernels.crf_refine and resized (the CRF itself is held bit for bit elsewhere)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from insid3.authors_way.crf import AuthorsCrf
    from insid3.authors_way.episode import segment_features

    resolution, grid, channels = 24, (2, 2), 8  # 12 px patches: the oracle CRF is plain loops
    rng = np.random.default_rng(3)
    shot = rng.standard_normal((4, channels))
    target = np.stack([shot[0] + 0.1 * rng.standard_normal(channels), shot[1], shot[0], shot[3]])
    features = torch.nn.functional.normalize(torch.tensor(np.stack([shot, target]), dtype=torch.float32), dim=-1)
    masks = torch.zeros((1, resolution, resolution), dtype=torch.bool)
    masks[0, :12, :12] = True
    basis = torch.linalg.qr(torch.tensor(rng.standard_normal((channels, 2)), dtype=torch.float32))[0]
    pixels = torch.tensor(rng.standard_normal((3, resolution, resolution)), dtype=torch.float32)
    common = dict(tau=0.6, merge_threshold=0.2, grid=grid, resolution=resolution)
    square = segment_features(features, masks, basis, original_size=(resolution, resolution), **common).numpy()
    assert 0 < square.sum() < square.size
    refined = segment_features(features, masks, basis, original_size=(40, 50), crf=AuthorsCrf.at_size(resolution),
                               pixels=pixels, **common).numpy()
    guide = guide_image(pixels.numpy(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    expected = threshold_bilinear(crf_refine(square, guide, CrfParameters.at_size(resolution)), (40, 50))
    np.testing.assert_array_equal(refined, expected)


def _save(folder, pairs):
    folder.mkdir()
    reference, _ = pairs[0]
    Image.fromarray(reference.image).save(folder / "ref.png")
    Image.fromarray(reference.mask.astype(np.uint8) * 255).save(folder / "ref.mask.png")
    targets = folder / "targets"
    targets.mkdir()
    for i, (_, target) in enumerate(pairs):
        Image.fromarray(target.image).save(targets / f"t{i}.png")
    return folder / "ref.png", folder / "ref.mask.png", targets


def test_insid3_segment_refine_crf_writes_the_segmenters_masks_and_records_it(tiny_bundle, segmenters, pairs,
                                                                             tmp_path, capsys):
    from insid3.engine.cli.segment import main

    ref, ref_mask, targets = _save(tmp_path / "in", pairs)
    out = tmp_path / "out"
    argv = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--ref", str(ref), "--ref-mask", str(ref_mask),
            "--out", str(out), str(targets)]
    assert main([*argv, "--refine", "crf"]) == 0
    crf, _ = segmenters
    reference = crf.encode_reference([(str(ref), str(ref_mask))])
    for i in range(len(pairs)):
        written = np.asarray(Image.open(out / f"t{i}.png")) > 0
        np.testing.assert_array_equal(written, crf.segment(str(targets / f"t{i}.png"), reference))
    manifest = json.loads((out / "insid3-job.json").read_text())
    assert manifest["hyperparameters"]["refine"] == {"method": "crf", "lattice_precision": "float32"}
    capsys.readouterr()
    assert main(argv) != 0  # the bilinear default is another job: refused, one line
    assert "hyperparameters" in capsys.readouterr().err


def test_every_command_shows_the_refine_option_and_its_default():
    for module in ("insid3.engine.cli.segment", "insid3.engine.cli.serve", "insid3.engine.cli.bench",
                   "insid3.engine.cli.evaluate"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        text = " ".join(result.stdout.split())
        assert result.returncode == 0 and "--refine {bilinear,crf}" in text, module
        assert "(default: bilinear)" in text, module
        if module != "insid3.engine.cli.evaluate":
            assert "--crf-lattice {float32,float64}" in text and "(default: float32)" in text, module


def test_insid3_serve_refine_crf_answers_the_segmenters_mask(tiny_bundle, segmenters, pairs, tmp_path):
    import io

    import httpx

    from insid3.engine.serve.launch import running_server

    def png(array):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    reference, target = pairs[0]
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--refine", "crf"]
    with running_server(args, tmp_path / "server.log") as server, httpx.Client(base_url=server.url, timeout=120) as http:
        registered = http.post("/v1/references", files=[
            ("image", ("r.png", png(reference.image), "image/png")),
            ("mask", ("m.png", png(reference.mask.astype(np.uint8) * 255), "image/png"))])
        assert registered.status_code == 201
        answer = http.post("/v1/segment", data={"reference_id": registered.json()["reference_id"]},
                           files={"image": ("t.png", png(target.image), "image/png")})
        assert answer.status_code == 200 and "refine" in answer.headers["Server-Timing"]
    crf, _ = segmenters
    expected = crf.segment(target.image, crf.encode_reference([(reference.image, reference.mask)]))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(answer.content))) > 0, expected)


def test_insid3_bench_reports_the_refine_stage(tiny_bundle, tmp_path, capsys):
    from insid3.engine.cli.bench import main

    out = tmp_path / "bench.json"
    argv = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--iters", "1", "--warmup", "0",
            "--targets", "1", "--json", str(out)]
    assert main([*argv, "--refine", "crf"]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["refine"]["method"] == "crf" and report["ours"]["stages_ms"]["refine"] > 0
    assert main([*argv, "--refine", "crf", "--compare-reference"]) == 2
    assert "cannot --compare-reference" in capsys.readouterr().err


def test_insid3_eval_refine_crf_runs_and_records_it(tiny_bundle, tmp_path):
    from support import eval_layouts as layouts

    from insid3.engine.cli import evaluate as cli

    root = tmp_path / "data"
    layouts.WRITERS["isic"](root / "isic")
    out = tmp_path / "out"
    argv = ["--bundle", str(tiny_bundle), "--dataset", "isic", "--data-root", str(root / "isic"), "--out", str(out),
            "--backend", "onnxruntime", "--no-progress", "--episodes", "2", "--refine", "crf"]
    assert cli.main(argv) == 0
    report = json.loads((out / "isic-1shot.json").read_text())
    assert report["settings"]["refine"] == "crf" and report["episodes_run"] == 2


def test_the_crf_benchmark_writes_a_report_it_reads_back(tmp_path, capsys):
    from support.commands import verb

    out = tmp_path / "crf.json"
    assert verb("bench", "crf")(["--sizes", "64", "--repeats", "1", "--json", str(out), "--markdown", str(tmp_path / "c.md")]) == 0
    report = json.loads(out.read_text())
    assert report["command"] == f"insid3 bench crf --sizes 64 --repeats 1 --json {out} --markdown {tmp_path / 'c.md'}"
    (entry,) = report["refine"]
    assert entry["size"] == 64 and set(entry["sides"]) == {"float32", "float64"} and entry["band_pixels"] > 0
    assert entry["sides"]["float32"]["ms"] > 0 and "| 64 |" in (tmp_path / "c.md").read_text()
    assert verb("bench", "crf")(["--sizes", "60"]) == 2 and "multiples of 16" in capsys.readouterr().err
    assert verb("bench", "crf-build")(["--crf-source", str(tmp_path), "--insid3-source", str(tmp_path), "--out",
                             str(tmp_path / "build")]) == 2
    assert "does not exist" in capsys.readouterr().err
