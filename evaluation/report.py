"""insid3-eval's reports: JSON with everything a run measured, and markdown laid out like the
paper's Table 1 (our figure under the published one, the bundle's weights named).

A run's JSON (one dataset, fold and shot count): dataset, title, fold, shots, protocol, miou and
fb_iou (percent), published (the paper's figure for the setting, or null), per_class, episodes
(in order: class_id, target, references, intersection, union), settings, timings. With
--all-folds the JSON holds fold "all", the mean of the fold mIoUs (and of the FB-IoUs) as the
paper averages, fold_miou, and the run reports under "runs".

    insid3 eval report coco.json lvis.json ... --markdown table1.md

puts several reports in one Table 1.
"""

from __future__ import annotations

import json
from pathlib import Path

from insid3.benchmarks.writer import table, write_text
from insid3.engine.jobs.job_folder import output_error, write_atomically
from insid3.evaluation.datasets import REGISTRY, DatasetEntry
from insid3.evaluation.metrics import IoUMeter

PAPER_ROW = "INSID3, paper (ViT-L/16, 1024 px; the authors ran with their dense-CRF refinement on)"


def run_report(
    *,
    spec: DatasetEntry,
    fold: int | None,
    shots: int,
    protocol: str,
    meter: IoUMeter,
    episodes: list[dict],
    class_names: dict[int, str],
    settings: dict,
    timings: dict,
    notes: list[str],
    episodes_full: int,
) -> dict:
    per_class = [{**row, "name": class_names.get(row["class_id"], "")} for row in meter.per_class()]
    return {
        "dataset": spec.name,
        "title": spec.title,
        "fold": fold,
        "shots": shots,
        "protocol": protocol,
        "miou": meter.miou(),
        "fb_iou": meter.fb_iou(),
        "published": spec.published_for(shots) if protocol == "square" else None,  # Table 1: the fold mean
        "published_fold": spec.published_for_fold(shots, fold) if protocol == "square" else None,
        "episodes_run": len(episodes),
        "episodes_full": episodes_full,
        "per_class": per_class,
        "episodes": episodes,
        "settings": settings,
        "timings": timings,
        "notes": notes,
    }


def folds_report(spec: DatasetEntry, shots: int, runs: list[dict]) -> dict:
    """The paper's figure: the mean over folds of the fold mIoUs (not pooled episodes)."""
    mean = lambda key: sum(run[key] for run in runs) / len(runs)  # noqa: E731
    return {
        "dataset": spec.name,
        "title": spec.title,
        "fold": "all",
        "shots": shots,
        "protocol": runs[0]["protocol"],
        "miou": mean("miou"),
        "fb_iou": mean("fb_iou"),
        "published": runs[0]["published"],
        "fold_miou": {str(run["fold"]): run["miou"] for run in runs},
        "settings": runs[0]["settings"],
        "timings": {
            "seconds": sum(run["timings"]["seconds"] for run in runs),
            "episodes_computed": sum(run["timings"]["episodes_computed"] for run in runs),
        },
        "runs": runs,
    }


def write_json(path: str | Path, report: dict) -> None:
    """Written whole or not at all; a failure (a full disk) is one OutputWriteError line."""
    _write_report(Path(path), (json.dumps(report, indent=1) + "\n").encode())


def _write_report(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path, len(data)) from None
    write_atomically(path, data)


def describe_weights(settings: dict) -> str:
    bundle = settings["bundle"]
    weights = bundle["weights"]
    if weights["kind"] == "random-init":
        source = f"random-init weights (seed {weights.get('seed')}): NOT a quality figure"
    else:
        source = f"{weights['kind']} weights {Path(weights.get('path') or '?').name} (sha256 {str(weights.get('sha256'))[:12]})"
    return f"{bundle['arch']} at {bundle['resolution']} px, {source}"


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def markdown(reports: list[dict]) -> str:
    """Table 1's columns (the nine datasets in the paper's order), the published row and ours."""
    if not reports:
        raise ValueError("no report to lay out")
    shots = sorted({r["shots"] for r in reports})
    by_dataset = {r["dataset"]: r for r in reports}
    columns = list(REGISTRY.values())
    lines = [f"# insid3-eval: {', '.join(f'{k}-shot' for k in shots)} mIoU (%)", ""]
    weights = sorted({describe_weights(r["settings"]) for r in reports})
    lines += [f"Ours: {w}." for w in weights]
    protocols = sorted({r["protocol"] for r in reports})
    lines += [f"Comparison grid: {', '.join(protocols)} (square is the authors' protocol; original is not the paper's).", ""]
    table1 = []
    for k in shots:
        table1.append([f"{PAPER_ROW}, {k}-shot", *(_figure(spec.published_for(k)) for spec in columns)])
        ours = []
        for spec in columns:
            report = by_dataset.get(spec.name)
            ours.append(_figure(report["miou"]) if report is not None and report["shots"] == k else "—")
        table1.append([f"this engine, {k}-shot", *ours])
    lines += table(["", *(spec.title for spec in columns)], table1)
    runs = []
    for report in reports:
        for run in report.get("runs", [report]):
            timings = run["timings"]
            runs.append([run["title"], run["fold"] if run["fold"] is not None else "—", run["shots"],
                         f"{run['miou']:.1f}", f"{run['fb_iou']:.1f}", _figure(run.get("published_fold")),
                         f"{run['episodes_run']} of {run['episodes_full']}",
                         f"{timings.get('episodes_per_second', 0):.2f}"])
        if "runs" in report:
            runs.append([report["title"], "mean of folds", report["shots"], f"{report['miou']:.1f}",
                         f"{report['fb_iou']:.1f}", _figure(report["published"]), "", ""])
    lines += ["", *table(["dataset", "fold", "shots", "mIoU", "FB-IoU", "published (fold)", "episodes", "episodes/s"],
                         runs)]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, reports: list[dict]) -> None:
    _write_report(Path(path), markdown(reports).encode())


def print_figures(figures: dict, json_path: Path | None) -> None:
    """A measurement tool's figures as JSON on stdout, and in `json_path` when given."""
    text = json.dumps(figures, indent=1)
    print(text)
    if json_path is not None:
        write_text(json_path, text + "\n")
