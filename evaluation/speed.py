"""insid3-eval beside the authors' way, on the same episodes and weights, in one process.

    insid3 eval speed --bundle B --dataset coco --data-root R --episodes 24 --passes 3
    insid3 eval speed --bundle B --synthetic DIR --episodes 24   # writes a COCO-20i layout

After an untimed warm-up of both sides on two episodes, each pass runs the first N episodes through insid3-eval's runner (a fresh feature cache, the
backbone batched across episodes, decoding overlapping encoding) and then through
insid3.authors_way as the authors' evaluation script does (every reference re-encoded with its
target, torch eager, sklearn clustering, per-cluster loops), alternately; it reports the median
episodes/s of each side, their ratio, and whether every episode's counts agree. The authors'
script itself needs their repository and a CUDA device, so its transcription stands in for it.
"""

from __future__ import annotations

import pickle
import statistics
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.segmenter import Segmenter
from insid3.evaluation.datasets import build_benchmark
from insid3.evaluation.features_cache import FeatureCache
from insid3.evaluation.metrics import IoUMeter
from insid3.evaluation.runner import EpisodeRunner
from insid3.evaluation.sampling import episode_rng


def write_synthetic_coco(root: Path, images_per_class: int = 6, size: tuple[int, int] = (480, 640)) -> Path:
    """A COCO-20i layout of drawn scenes (engine/jobs/scenes.py): fold 0's 20 classes, each with its own
    images of one concept, label value c + 1 on the concept's pixels. Returns the data root."""
    base = root / "COCO2014"
    lists: dict[int, list[str]] = {c: [] for c in range(80)}
    for j, c in enumerate(range(0, 80, 4)):
        for i in range(images_per_class):
            name = f"val2014/COCO_val2014_{1000 * c + i:012d}.jpg"
            scene = draw_scene(seed=1000 * c + i, size=size, concept=j % 3)
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene.image).save(base / name, quality=95)
            label = base / "annotations" / name.replace(".jpg", ".png")
            label.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((scene.mask * (c + 1)).astype(np.uint8), mode="L").save(label)
            lists[c].append(name)
    (base / "splits" / "val").mkdir(parents=True, exist_ok=True)
    for fold in range(4):
        split = {c: lists[c] if c % 4 == fold else [] for c in range(80)}
        (base / "splits" / "val" / f"fold{fold}.pkl").write_bytes(pickle.dumps(split))
    return root


def _pass(results, benchmark) -> tuple[float, list, IoUMeter]:
    meter = IoUMeter(benchmark.class_ids, benchmark.num_classes)
    started, counts = time.perf_counter(), []
    for result in results:
        meter.update(result.counts, result.episode.class_id)
        counts.append(result.counts)
    return time.perf_counter() - started, counts, meter


@dataclass(frozen=True, kw_only=True)
class SpeedSettings:
    bundle: str
    data_root: Path
    dataset: str = "coco"
    fold: int = 0
    shots: int = 1
    episodes: int = 24
    passes: int = 3
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8


def measure(settings: SpeedSettings) -> dict:
    from insid3.authors_way import load_model
    from insid3.evaluation.authors_side import run_authors_way

    benchmark = build_benchmark(settings.dataset, str(settings.data_root), settings.fold, settings.shots)
    segmenter = Segmenter.from_bundle(settings.bundle, backend=settings.backend, precision=settings.precision)
    model = load_model(settings.bundle)
    episodes = list(islice(benchmark.episodes(episode_rng()), settings.episodes))
    # Untimed warm-up of both sides (compiled kernels loaded, backend sessions and torch ready).
    list(EpisodeRunner(segmenter, benchmark, FeatureCache(segmenter.xp)).run(episodes[:2]))
    list(run_authors_way(model, benchmark, episodes[:2]))
    ours_rates, theirs_rates, agree, encoded = [], [], True, 0
    for p in range(settings.passes):
        runner = EpisodeRunner(segmenter, benchmark, FeatureCache(segmenter.xp), batch_size=settings.batch_size)
        seconds, ours, ours_meter = _pass(runner.run(episodes), benchmark)
        ours_rates.append(len(episodes) / seconds)
        encoded = runner.stats.images_encoded
        seconds, theirs, theirs_meter = _pass(run_authors_way(model, benchmark, episodes), benchmark)
        theirs_rates.append(len(episodes) / seconds)
        differing = sum(a != b for a, b in zip(ours, theirs))
        agree = agree and differing == 0
        print(f"pass {p + 1}: ours {ours_rates[-1]:.3f} ep/s, authors' way {theirs_rates[-1]:.3f} ep/s, "
              f"{differing} of {len(episodes)} episodes with other counts", file=sys.stderr, flush=True)
    ours_median, theirs_median = statistics.median(ours_rates), statistics.median(theirs_rates)
    return {
        "dataset": settings.dataset, "fold": settings.fold, "shots": settings.shots, "episodes": len(episodes),
        "bundle": segmenter.describe(), "passes": settings.passes, "batch_size": settings.batch_size,
        "ours_episodes_per_second": ours_rates, "authors_episodes_per_second": theirs_rates,
        "ours_median": ours_median, "authors_median": theirs_median, "ratio": ours_median / theirs_median,
        # each pass's two sides run back to back: the median of their ratios resists a machine whose load drifts
        "pass_ratio_median": statistics.median(o / t for o, t in zip(ours_rates, theirs_rates)),
        "images_needed": sum(1 + len(e.references) for e in episodes), "images_encoded_by_ours": encoded,
        "counts_identical": agree, "miou_ours": ours_meter.miou(), "miou_authors": theirs_meter.miou(),
    }
