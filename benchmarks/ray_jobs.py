"""`insid3 bench ray-jobs`: insid3 segment's throughput on this machine, locally
and as a Ray Data job with 1 and 2 CPU actors.

Draws `--targets` scenes, then runs the same `insid3-segment` job (one reference, PNG masks)
into fresh folders: locally, then with `--ray` on a local Ray instance the command starts,
`--workers 1 --cpus-per-worker C` and `--workers 2 --cpus-per-worker C/2` (C: this machine's
cores, so both pools ask for the same CPUs). For each it reports the wall time of the whole
command (Ray's start, the actors' model loading and the pipeline included), the time to the
first mask, and the steady rate: masks after the first over the time between the first and the
last (the files' modification times). Every run's masks are checked to equal the local run's.
One pass each, in this order: a figure for this machine, not a median.

    insid3 bench ray-jobs --bundle /tmp/vits16-448 --targets 24 --markdown out.md
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.benchmarks.writer import table, write_text
from insid3.engine.cli.segment import main as segment
from insid3.engine.jobs.scenes import draw_scene
from insid3.errors import Insid3Error, SettingsError


def draw(folder: Path, targets: int, size: tuple[int, int]) -> None:
    scene = draw_scene(1, size, concept=0)
    Image.fromarray(scene.image).save(folder / "ref.png")
    Image.fromarray(scene.mask.astype(np.uint8) * 255).save(folder / "ref_mask.png")
    (folder / "targets").mkdir()
    for seed in range(targets):
        Image.fromarray(draw_scene(100 + seed, size, concept=seed % 3).image).save(folder / "targets" / f"t{seed:04d}.jpg")


def one_run(bundle: str, folder: Path, name: str, extra: list[str], backend: str, batch_size: int) -> dict:
    out = folder / name
    argv = ["--bundle", bundle, "--ref", str(folder / "ref.png"), "--ref-mask", str(folder / "ref_mask.png"),
            "--backend", backend, "--batch-size", str(batch_size), "--out", str(out), *extra, str(folder / "targets")]
    started = time.time()
    code = segment(argv)
    wall = time.time() - started
    if code != 0:
        raise Insid3Error(f"insid3-segment {' '.join(extra) or '(local)'} exited {code}")
    stamps = sorted(path.stat().st_mtime for path in out.glob("t*.png"))
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    return {"run": name, "args": " ".join(extra) or "(local)", "wall_s": wall, "first_mask_s": stamps[0] - started,
            "steady_images_per_s": steady, "images": len(stamps)}


def same_masks(folder: Path, name: str, reference: str) -> bool:
    ours, theirs = sorted((folder / name).glob("t*.png")), sorted((folder / reference).glob("t*.png"))
    return [p.name for p in ours] == [p.name for p in theirs] and all(
        np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))) for a, b in zip(ours, theirs))


def markdown(rows: list[dict], note: str) -> str:
    base = next(row for row in rows if row["run"] == "ray-1")["steady_images_per_s"]
    lines = [note, "", *table(
        ("run", "command flags", "wall (s)", "first mask (s)", "steady images/s", "vs 1 actor", "masks"),
        ((row["run"], f"`{row['args']}`", f"{row['wall_s']:.1f}", f"{row['first_mask_s']:.1f}",
          f"{row['steady_images_per_s']:.2f}", f"{row['steady_images_per_s'] / base if base else 0.0:.2f}x", row["same"])
         for row in rows), "llrrrrl")]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class RayJobsBenchSettings:
    bundle: str
    targets: int = 24
    size: str = "480x640"
    backend: str = "onnxruntime"
    batch_size: int = 4
    cores: int = os.cpu_count() or 1
    markdown: Path | None = None


def run(settings: RayJobsBenchSettings) -> int:
    if settings.targets < 2:
        raise SettingsError("--targets must be >= 2 (the steady rate needs two masks)")
    height, width = (int(v) for v in settings.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="insid3-ray-bench-") as temporary:
        folder = Path(temporary)
        draw(folder, settings.targets, (height, width))
        runs = [("local", []),
                ("ray-1", ["--ray", "--workers", "1", "--cpus-per-worker", str(settings.cores)]),
                ("ray-2", ["--ray", "--workers", "2", "--cpus-per-worker", f"{settings.cores / 2:g}"])]
        rows = []
        for name, extra in runs:
            row = one_run(settings.bundle, folder, name, extra, settings.backend, settings.batch_size)
            row["same"] = "reference" if name == "local" else ("equal" if same_masks(folder, name, "local")
                                                               else "DIFFER")
            rows.append(row)
            print(f"{name}: {row['steady_images_per_s']:.2f} images/s steady, {row['wall_s']:.1f} s wall",
                  file=sys.stderr)
    note = (f"{settings.targets} targets {height}x{width}, bundle {Path(settings.bundle).name}, {settings.backend}, batch "
            f"{settings.batch_size}, {os.cpu_count()} cores seen; one pass each")
    text = markdown(rows, note)
    print(text)
    if settings.markdown:
        write_text(settings.markdown, text)
    return 0
