"""The same quality records whichever path segments a target: the local job's quality.csv, the
same job on a local Ray instance (--ray, two CPU actors: every row, cell for cell), and a real
insid3-serve on loopback (its X-Insid3-Quality headers, one concept and several)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support.scenes import save_example

from insid3.engine.cli.segment import main
from insid3.engine.jobs.outputs.quality import QUALITY_FILE, quality_of_row
from insid3.engine.jobs.scenes import draw_scene
from insid3.engine.runtime.quality import MaskQuality, QualityThresholds
from insid3.engine.serve.launch import running_server

NAMES = ("a", "b")
TARGETS = 4


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality-paths")
    for name, seed, concept in (("a", 1, 0), ("b", 2, 1)):
        save_example(root, name, seed, concept)
    (root / "targets").mkdir()
    for seed in range(TARGETS):
        Image.fromarray(draw_scene(30 + seed, (96, 128), concept=seed % 2).image).save(root / "targets" / f"t{seed}.png")
    return root


def job(bundle, root, out, *extra) -> list[str]:
    concepts = [f"--concept={name}={root / f'{name}.png'}:{root / f'{name}_mask.png'}" for name in NAMES]
    return ["--bundle", str(bundle), "--backend", "onnxruntime", "--no-progress", *concepts, *extra,
            "--out", str(out), str(root / "targets")]


@pytest.fixture(scope="module")
def local(tiny_bundle, workspace, tmp_path_factory):
    """The local job's quality.csv rows (targets resolved), and {(target stem, concept): MaskQuality}."""
    out = tmp_path_factory.mktemp("local")
    assert main(job(tiny_bundle, workspace, out)) == 0
    rows = resolved_rows(out)
    return rows, {(Path(row["target"]).stem, row["concept"]): quality_of_row(row) for row in rows}


def resolved_rows(out: Path) -> list[dict[str, str]]:
    """quality.csv's rows, each target (a path relative to the output folder) made absolute."""
    rows = list(csv.DictReader(io.StringIO((out / QUALITY_FILE).read_text())))
    return [{**row, "target": str((out / row["target"]).resolve())} for row in rows]


def test_the_local_job_has_a_record_per_target_and_concept(local):
    _, records = local
    assert sorted(records) == sorted((f"t{i}", name) for i in range(TARGETS) for name in NAMES)


@pytest.mark.ray
def test_the_ray_job_writes_the_same_quality_csv(tiny_bundle, workspace, local, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    try:
        extra = ("--ray", "--workers", "2", "--cpus-per-worker", "0.5", "--batch-size", "1")
        assert main(job(tiny_bundle, workspace, tmp_path / "ray", *extra)) == 0
    finally:
        ray.shutdown()
    assert resolved_rows(tmp_path / "ray") == local[0]  # every cell, as written


def served(header: str) -> MaskQuality:
    record = dict(json.loads(header))
    flags = record.pop("flags")
    quality = MaskQuality(**record)
    assert tuple(flags) == QualityThresholds().flags(quality)
    return quality


def test_the_server_answers_the_same_records(tiny_bundle, workspace, local, tmp_path):
    _, records = local
    args = ["--bundle", str(tiny_bundle), "--backend", "onnxruntime", "--max-batch", "4", "--max-wait-ms", "50"]
    with running_server(args, tmp_path / "server.log") as server, httpx.Client(base_url=server.url, timeout=60) as http:
        ids = {}
        for name in NAMES:
            files = [("image", ("r.png", (workspace / f"{name}.png").read_bytes(), "image/png")),
                     ("mask", ("m.png", (workspace / f"{name}_mask.png").read_bytes(), "image/png"))]
            response = http.post("/v1/references", files=files)
            assert response.status_code == 201, response.text
            ids[name] = response.json()["reference_id"]
        for index in range(TARGETS):
            upload = {"image": ("t.png", (workspace / "targets" / f"t{index}.png").read_bytes(), "image/png")}
            for name in NAMES:
                png = http.post("/v1/segment", data={"reference_id": ids[name]}, files=upload)
                assert png.status_code == 200 and png.headers["content-type"] == "image/png"
                assert served(png.headers["X-Insid3-Quality"]) == records[(f"t{index}", name)]
                assert float(png.headers["X-Insid3-Score"]) == records[(f"t{index}", name)].score
                rle = http.post("/v1/segment", data={"reference_id": ids[name], "format": "rle"}, files=upload).json()
                assert served(json.dumps(rle["quality"])) == records[(f"t{index}", name)]
            both = http.post("/v1/segment", data={"reference_id": [ids[n] for n in NAMES], "name": list(NAMES),
                                                  "format": "coco"}, files=upload)
            assert both.status_code == 200, both.text
            by_name = json.loads(both.headers["X-Insid3-Quality"])
            assert list(by_name) == list(NAMES)
            for name in NAMES:
                assert served(json.dumps(by_name[name])) == records[(f"t{index}", name)]
            scores = {a["category_id"]: a["score"] for a in both.json()["annotations"]}
            assert all(scores[i + 1] == records[(f"t{index}", n)].score for i, n in enumerate(NAMES) if i + 1 in scores)
