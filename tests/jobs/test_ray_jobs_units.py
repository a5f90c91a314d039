"""The Ray jobs' parts that need no cluster: listing and reading inputs (local and URIs through
pyarrow's file systems), the reading stage, results and references in transit, the actor
pool's shape, the one-line errors, and the folds' interleaving."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from insid3.engine.cli import evaluate as eval_cli
from insid3.engine.cli.arguments import add_ray, new_parser
from insid3.engine.cli.main import run_command
from insid3.engine.cli.segment import main as segment_main
from insid3.engine.jobs.concept_specs import ConceptSpec
from insid3.engine.jobs.outputs import OutputOptions
from insid3.engine.jobs.outputs.coco import CocoOutputs
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.images import prepare_image
from insid3.engine.runtime.reference import Reference
from insid3.errors import InputImageError, SettingsError

pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray")

from insid3.engine.jobs.ray_data import cluster  # noqa: E402 - after the skips: these need Ray and pyarrow
from insid3.engine.jobs.ray_data import segment as ray_segment  # noqa: E402
from insid3.engine.jobs.ray_data.inputs import RemoteTarget, list_targets, read_input  # noqa: E402
from insid3.evaluation.ray_runner import interleaved  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    for seed in range(3):
        Image.fromarray(draw_scene(seed, (64, 80), concept=0).image).save(root / f"p{seed}.png")
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"garbage")
    scene = draw_scene(5, (64, 80), concept=0)
    Image.fromarray(scene.image).save(root / "ref.png")
    Image.fromarray(scene.mask.astype(np.uint8) * 255).save(root / "ref_mask.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "small_mask.png")
    return root


def test_uris_are_listed_through_pyarrow_as_local_paths_are(files):
    uri = f"file://{files}"
    listed = list_targets([f"{uri}/", f"{uri}/p1.png"])  # p1 again: listed once
    assert [str(t) for t in listed] == [f"{uri}/{n}" for n in ("broken.jpg", "p0.png", "p1.png", "p2.png", "ref.png",
                                                               "ref_mask.png", "small_mask.png")]
    assert all(isinstance(t, RemoteTarget) for t in listed) and listed[2].stem == "p1" and listed[2].name == "p1.png"
    assert [t.stem for t in list_targets([f"{uri}/p*.png"])] == ["p0", "p1", "p2"]
    assert list_targets([f"{uri}/p0.png", str(files / "p1.png")]) == [RemoteTarget(f"{uri}/p0.png"), files / "p1.png"]
    with pytest.raises(InputImageError, match="share the stem 'ref'"):  # a URI and a path: the same mask file name
        list_targets([f"{uri}/ref.png", str(files / "ref.png")])
    with pytest.raises(InputImageError, match="does not exist"):
        list_targets([f"{uri}/nothing/"])
    with pytest.raises(InputImageError, match="^target nosuchscheme://x/y.jpg: "):
        list_targets(["nosuchscheme://x/y.jpg"])


def test_inputs_are_read_where_the_task_runs(files):
    data = (files / "p0.png").read_bytes()
    assert read_input(f"file://{files}/p0.png", "a") == data == read_input(str(files / "p0.png"), "a")
    with pytest.raises(InputImageError, match="^image shown/as/this does not exist$"):
        read_input(str(files / "gone.png"), "shown/as/this")
    with pytest.raises(InputImageError, match="^cannot read image gone: "):
        read_input(f"file://{files}/gone.png", "gone")


def test_the_reading_stage_prepares_as_the_local_command_and_names_what_fails(segmenter, files):
    meta = segmenter.bundle.metadata
    names = ["p0.png", "broken.jpg", "p2.png"]
    batch = {"index": np.arange(3), "location": np.array([str(files / "p0.png"), str(files / "broken.jpg"),
                                                          f"file://{files}/p2.png"], dtype=object),
             "name": np.array(names, dtype=object)}
    rows = ray_segment.read_and_prepare(batch, resolution=meta.resolution, mean=tuple(meta.mean), std=tuple(meta.std))
    assert rows["pixels"].shape == (3, 3, meta.resolution, meta.resolution)
    for i in (0, 2):
        expected = segmenter.prepare(files / names[i])
        assert rows["error"][i] == "" and tuple(rows["size"][i]) == expected.original_size
        np.testing.assert_array_equal(rows["pixels"][i], expected.pixels)
    with pytest.raises(InputImageError) as local:
        prepare_image(files / "broken.jpg", meta.resolution, meta.mean, meta.std)
    assert rows["error"][1] == str(local.value).replace(str(files / "broken.jpg"), "broken.jpg")


def test_results_travel_packed_and_come_back_whole(segmenter, files):
    reference = segmenter.encode_reference([(files / "ref.png", files / "ref_mask.png")])
    result = segmenter.segment_concepts(files / "p1.png", {"a": reference, "b": reference})
    data = ray_segment.pack_result(result)
    back = ray_segment.unpack_result(data)
    assert back.names == result.names and back.original_size == result.original_size
    for ours, theirs in zip(back, result):
        assert ours.mask.dtype == bool and np.array_equal(ours.mask, theirs.mask)
        assert np.array_equal(ours.score_low, theirs.score_low) and ours.seed == theirs.seed
    assert np.array_equal(back.label_map(), result.label_map())
    assert [i.bbox for i in back.instances()] == [i.bbox for i in result.instances()]
    assert len(data) < sum(c.mask.size for c in result)  # bits, not bytes, per pixel


def test_references_are_encoded_as_the_local_command_encodes_them(segmenter, files, tiny_bundle):
    spec = ConceptSpec("a", ((files / "ref.png", files / "ref_mask.png"),) * 2)  # two shots
    info, references = ray_segment.encode_references(cluster.SegmenterSpec(bundle=str(tiny_bundle), backend="onnxruntime"),
                                         ray_segment.shots_to_send([spec], segmenter.bundle.metadata.resolution))
    local = Reference.from_shots(tuple(shot for pair in spec.shots for shot in segmenter.encode_shots([pair])),
                                 segmenter.fingerprint)  # shot by shot, as insid3-segment encodes them
    assert info.backend == "onnxruntime" and info.fingerprint == segmenter.fingerprint
    for field in ("debiased", "patch_masks", "prototype"):
        assert np.array_equal(getattr(references["a"], field), getattr(local, field)), field
    bad = ConceptSpec("a", ((files / "ref.png", files / "small_mask.png"),))
    with pytest.raises(InputImageError, match=f"mask {files / 'small_mask.png'} is 10x10"):
        ray_segment.shots_to_send([bad], segmenter.bundle.metadata.resolution)  # the local command's line, on the driver


def test_a_uri_target_is_written_under_its_uri(segmenter, files, tmp_path):
    reference = segmenter.encode_reference([(files / "ref.png", files / "ref_mask.png")])
    result = segmenter.segment_concepts(files / "p1.png", {"object": reference})
    target = RemoteTarget("s3://bucket/photos/p1.png")
    writer = CocoOutputs(tmp_path, OutputOptions(format="coco-rle", names=("object",)))
    writer.write(target, result)
    writer.close()
    assert CocoOutputs(tmp_path, OutputOptions(format="coco-rle", names=("object",))).done(target)
    document = json.loads((tmp_path / "masks.coco.json").read_text())
    assert document["images"][0]["file_name"] == "s3://bucket/photos/p1.png"


def test_the_pool_is_one_actor_per_gpu_or_n_cpu_actors():
    plan = cluster.asked_plan(cluster.ClusterSettings(), cluster.Resources(cpus=32.0, gpus=4.0))
    assert (plan.workers, plan.gpus, plan.remote_args(), plan.threads()) == (4, 1.0, {"num_cpus": 1.0, "num_gpus": 1.0},
                                                                              None)
    assert plan.describe() == "4 GPU workers (1 GPU each)"
    plan = cluster.asked_plan(cluster.ClusterSettings(cpus_per_worker=2), cluster.Resources(cpus=2.0, gpus=0.0))
    assert (plan.workers, plan.remote_args(), plan.threads()) == (2, {"num_cpus": 2}, 2)
    unbounded = cluster.Resources(cpus=float(2**63 - 1), gpus=float(2**63 - 1))  # an autoscaler without a limit
    grows = cluster.asked_plan(cluster.ClusterSettings(), cluster.Resources(cpus=8.0, gpus=0.0), unbounded)
    assert (grows.workers, grows.gpus) == (1, 1.0)  # GPU actors for the GPU nodes to come; one, not one per GPU allowed
    assert plan.bundles(1.0) == [{"CPU": 2}, {"CPU": 2}, {"CPU": 1.0}]  # the pool and a reading task, placed together


CPU2, GPU4 = cluster.Resources(cpus=2.0, gpus=0.0), cluster.Resources(cpus=16.0, gpus=4.0)


def fit(asked: cluster.ActorPlan, now: cluster.Resources, most: cluster.Resources | None, *, given: bool = True,
        reading: float = 1.0) -> cluster.PoolFit:
    return cluster.fit_pool(asked, workers_given=given, reading_cpus=reading, now=now, most=most)


def test_a_pool_that_fits_is_left_as_asked():
    asked = cluster.ActorPlan(workers=2, gpus=0.0, cpus=0.5)
    assert fit(asked, CPU2, CPU2) == cluster.PoolFit(asked)
    assert fit(cluster.ActorPlan(workers=4, gpus=1.0, cpus=1.0), GPU4, None) == cluster.PoolFit(
        cluster.ActorPlan(workers=4, gpus=1.0, cpus=1.0))


def test_a_pool_too_wide_for_a_fixed_cluster_is_fitted_to_it_and_says_so():
    asked = cluster.ActorPlan(workers=2, gpus=0.0, cpus=1.0)  # the case: both CPUs to the actors, none to read
    shared = fit(asked, CPU2, CPU2, given=True)  # the count asked for is kept: the CPUs are shared
    assert shared.plan == cluster.ActorPlan(workers=2, gpus=0.0, cpus=0.5) and not shared.may_wait
    assert shared.note == ("the cluster has 2 CPUs and no GPU: 2 CPU workers (0.5 CPU each), and 1 CPU for reading, "
                           "instead of 2 CPU workers (1 CPU each)")
    assert fit(asked, CPU2, CPU2, given=False).plan == cluster.ActorPlan(workers=1, gpus=0.0, cpus=1.0)  # fewer
    assert fit(cluster.ActorPlan(workers=3, gpus=0.0, cpus=1.0), CPU2, CPU2, reading=0.0).plan == cluster.ActorPlan(
        workers=3, gpus=0.0, cpus=0.66)  # eval's pool: nothing to read, every CPU to the actors
    gpus = fit(cluster.ActorPlan(workers=8, gpus=1.0, cpus=4.0), GPU4, GPU4)
    assert gpus.plan == cluster.ActorPlan(workers=4, gpus=1.0, cpus=3.75) and "instead of 8 GPU workers" in gpus.note


def test_a_pool_no_fixed_cluster_can_hold_stops_with_one_line():
    with pytest.raises(SettingsError, match=r"^--gpus-per-worker 1: the cluster has 2 CPUs and no GPU \(--gpus-per"):
        fit(cluster.ActorPlan(workers=1, gpus=1.0, cpus=1.0), CPU2, CPU2)
    one = cluster.Resources(cpus=1.0, gpus=0.0)
    with pytest.raises(SettingsError, match="^the cluster has 1 CPU and no GPU: no CPU left for the workers beside 1"):
        fit(cluster.ActorPlan(workers=1, gpus=0.0, cpus=1.0), one, one)


def test_a_cluster_that_may_grow_is_waited_for_up_to_its_autoscalers_limit():
    asked = cluster.ActorPlan(workers=4, gpus=1.0, cpus=1.0)
    assert fit(asked, CPU2, None) == cluster.PoolFit(asked, may_wait=True)  # no published limit: nodes may come
    assert fit(asked, CPU2, GPU4) == cluster.PoolFit(asked, may_wait=True)  # within the autoscaler's limit
    grown = fit(cluster.ActorPlan(workers=8, gpus=1.0, cpus=1.0), CPU2, GPU4)  # past it: fitted to it, then waited for
    assert grown.plan == asked and grown.may_wait and grown.note.startswith("the cluster may grow to 16 CPUs and 4 GPUs")


def test_ray_errors_are_one_line():
    cause = InputImageError("cannot read image a.jpg: corrupt")
    wrapped = ray.exceptions.RayTaskError("f", "Traceback ...", cause).as_instanceof_cause()
    assert cluster.job_error(wrapped) is cause
    stopped = cluster.job_error(ray.exceptions.RayActorError())
    assert isinstance(stopped, cluster.RayJobError) and "\n" not in str(stopped) and "resume" in str(stopped)


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2"], "apply to --ray"),
    (["--ray", "--workers", "0"], "--workers must be >= 1"),
    (["--ray", "--cpus-per-worker", "0"], "--cpus-per-worker must be > 0"),
    (["--cluster-timeout", "5"], "apply to --ray"),
    (["--ray", "--cluster-timeout", "-1"], "--cluster-timeout must be >= 0 (0: no limit)"),
])
def test_cluster_flags_are_checked_by_both_commands(tiny_bundle, tmp_path, capsys, argv, message):
    segment_code = segment_main(["--bundle", str(tiny_bundle), "--ref", "r.png", "--ref-mask", "m.png", "--out", str(tmp_path),
                  "x.jpg", *argv])
    evaluate_code = eval_cli.main(["--bundle", str(tiny_bundle), "--dataset", "coco", "--data-root", str(tmp_path), *argv])
    assert segment_code == evaluate_code == 2
    assert capsys.readouterr().err.count(message) == 2


def test_overlays_of_uri_targets_are_refused_before_any_cluster(tiny_bundle, files, tmp_path, capsys):
    argv = ["--bundle", str(tiny_bundle), "--ref", str(files / "ref.png"), "--ref-mask", str(files / "ref_mask.png"),
            "--out", str(tmp_path / "out"), "--overlay", "--ray", f"file://{files}/p0.png"]
    assert segment_main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "insid3-segment: error: --overlay reads each target again on this machine: not with URI targets")
    assert not ray.is_initialized()


def test_help_shows_the_cluster_flags_and_their_defaults(capsys):
    parser = new_parser("insid3 segment", None)
    add_ray(parser)
    text = " ".join(parser.format_help().split())
    assert "--gpus-per-worker" in text and "--cpus-per-worker CPUS_PER_WORKER CPUs per actor" in text
    assert "(default: 1.0)" in text
    assert "--cluster-timeout SECONDS how long to wait for room for the workers" in text and "(default: 600; 0: no limit)" in text


def test_the_folds_interleave_each_in_episode_order():
    class Run:
        def __init__(self, episodes):
            self.remaining = iter(episodes)

    work = interleaved({0: Run(["a0", "a1", "a2"]), 1: Run(["b0"]), 2: Run(["c0", "c1"])})
    assert work == [(0, "a0"), (1, "b0"), (2, "c0"), (0, "a1"), (2, "c1"), (0, "a2")]


def test_an_image_in_bytes_fails_as_its_file_would(files):
    from insid3.engine.runtime.images import decode_file_bytes, load_rgb

    image = decode_file_bytes((files / "p0.png").read_bytes(), "p0.png")
    assert np.array_equal(np.asarray(load_rgb(image)), np.asarray(load_rgb(files / "p0.png")))
    with pytest.raises(InputImageError, match="^cannot read image x.jpg: not an image format PIL reads$"):
        decode_file_bytes(b"garbage", "x.jpg")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buffer, format="PNG")
    with pytest.raises(InputImageError, match="^cannot read mask m.png: corrupt or truncated"):
        decode_file_bytes(buffer.getvalue()[:60], "m.png", "mask")


def test_the_throughput_benchmark_reports_against_one_actor(capsys):
    from insid3.benchmarks import ray_jobs

    rows = [{"run": "local", "args": "(local)", "wall_s": 2.0, "first_mask_s": 0.5, "steady_images_per_s": 4.0,
             "same": "reference"},
            {"run": "ray-1", "args": "--ray --workers 1", "wall_s": 9.0, "first_mask_s": 8.0, "steady_images_per_s": 2.0,
             "same": "equal"}]
    table = ray_jobs.markdown(rows, "note").splitlines()
    assert table[0] == "note" and table[-2].endswith("| 4.00 | 2.00x | reference |")
    assert table[-1] == "| ray-1 | `--ray --workers 1` | 9.0 | 8.0 | 2.00 | 1.00x | equal |"
    stop_code = run_command("insid3 bench", "bench", ["ray-jobs", "--bundle", "B", "--targets", "1"])
    assert stop_code == 2 and "--targets must be >= 2" in capsys.readouterr().err


@pytest.mark.parametrize(("version", "expected"), [("2.60.0", cluster.FAULT_TOLERANCE), ("2.63.1", cluster.FAULT_TOLERANCE),
                                                   ("2.64.0", {})])
def test_the_actor_pool_restarts_dead_actors_and_retries_their_batches(version, expected, monkeypatch):
    """Killed actors come back and their batches run again: our limits where Ray still takes them,
    Ray Data's own (restart and retry without limit) from 2.64 on."""
    import ray

    monkeypatch.setattr(ray, "__version__", version)
    assert cluster.actor_pool_fault_tolerance() == expected
    assert cluster.FAULT_TOLERANCE["max_restarts"] > 0 and cluster.FAULT_TOLERANCE["max_task_retries"] > 0
