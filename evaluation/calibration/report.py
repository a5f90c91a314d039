"""The calibration's reports: JSON (everything), markdown (what to read first) and a heatmap PNG
(mIoU over svd_components x tau at the recommended merge_threshold and refinement)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from insid3.engine.jobs.manifest import write_atomically
from insid3.evaluation.calibration.results import SettingResult
from insid3.evaluation.calibration.sweep import SweepGrid

TOP_ROWS = 10


def write_json(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(report, indent=2) + "\n").encode())
    return path


def _setting_cells(row: dict) -> str:
    return f"{row['svd_components']} | {row['tau']:g} | {row['merge_threshold']:g} | {row['refine']}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict) -> str:
    best, default, gain, separation = report["recommended"], report["default"], report["gain"], report["min_score"]
    random = report["weights"] == "random-init"
    lines = [
        "# Calibration", "",
        f"Examples: {report['examples']}; {len(report['concepts'])} concept(s), {report['episodes_run']} episodes "
        f"({report['negatives_run']} negative), {report['shots']}-shot, seed {report['seed']}; "
        f"{len(report['settings'])} settings; bundle {report['bundle']} ({report['weights']}"
        + ("; random weights: these numbers test the mechanics, not segmentation quality" if random else "") + ").",
        "",
        f"**Recommended**: {_setting_cells(best).replace(' | ', ', ')} (svd_components, tau, merge_threshold, "
        f"refine): mIoU {best['miou']:.2f} against {default['miou']:.2f} with the bundle's defaults, "
        f"a gain of {gain['miou']:+.2f} ({100 * gain['level']:.0f}% bootstrap interval over episodes "
        f"{gain['low']:+.2f} to {gain['high']:+.2f}, {gain['resamples']} resamples"
        + ("; it includes 0: no better than the defaults on this data" if gain["low"] <= 0 <= gain["high"] else "")
        + ").", "",
    ]
    threshold = separation["threshold"]
    if threshold is None:
        lines += [f"**Score threshold**: none proposed ({separation['why']}).", ""]
    else:
        lines += [f"**Score threshold** S = {threshold['threshold']:.4f} on `{threshold['score']}` "
                  f"({separation['why']}): false-positive rate {_rate(threshold['false_positive_rate'])}, "
                  f"miss rate {_rate(threshold['miss_rate'])}.", ""]
    lines += ["| | svd_components | tau | merge_threshold | refine | mIoU | FB-IoU | FP rate on negatives | median IoU |",
              "|---|---|---|---|---|---|---|---|---|"]
    ranked = sorted(report["settings"], key=lambda row: -row["miou"])[:TOP_ROWS]
    shown = ranked + ([default] if default not in ranked else [])
    for row in shown:
        tag = "recommended" if row == best else ("defaults" if row == default else "")
        median = row["iou_quantiles"].get("p50")
        lines.append(f"| {tag} | {_setting_cells(row)} | {row['miou']:.2f} | {row['fb_iou']:.2f} | "
                     f"{_rate(row['false_positive_rate'])} | {'-' if median is None else f'{median:.1f}'} |")
    lines += ["", "Per concept (%):", "", "| concept | IoU, defaults | IoU, recommended | FB-IoU, defaults | "
              "FB-IoU, recommended |", "|---|---|---|---|---|"]
    for name in best["per_concept"]:
        lines.append(f"| {name} | {default['per_concept'][name]:.2f} | {best['per_concept'][name]:.2f} | "
                     f"{default['per_concept_fb_iou'][name]:.2f} | {best['per_concept_fb_iou'][name]:.2f} |")
    quantiles = best["iou_quantiles"]
    if quantiles:
        lines += ["", "Per-episode IoU on positives at the recommended setting (%): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in quantiles.items()) + "; per tenth: "
                  + " ".join(map(str, best["iou_histogram"])) + "."]
    if report.get("heatmap"):
        lines += ["", f"![mIoU over svd_components x tau]({Path(report['heatmap']).name})"]
    lines += ["", "Episodes, references and every setting's figures: the JSON report beside this file."]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, report: dict) -> Path:
    write_atomically(path, markdown(report).encode())
    return path


def heatmap_values(grid: SweepGrid, results: Sequence[SettingResult], best: SettingResult) -> np.ndarray:
    """(len(svd), len(tau)) mIoU at the recommended merge_threshold and refinement."""
    at = {(r.setting.svd_components, r.setting.tau): r.miou for r in results
          if r.setting.merge_threshold == best.setting.merge_threshold and r.setting.refine == best.setting.refine}
    return np.array([[at[(s, t)] for t in grid.tau] for s in grid.svd_components])


def write_heatmap(path: Path, grid: SweepGrid, results: Sequence[SettingResult], best: SettingResult) -> Path | None:
    """The PNG, or None (one line on stderr) when matplotlib (the bench extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("insid3 calibrate: no heatmap: matplotlib is missing (pip install 'insid3[bench]')", file=sys.stderr)
        return None
    values = heatmap_values(grid, results, best)
    figure, axes = plt.subplots(figsize=(1.2 * len(grid.tau) + 2.5, 0.6 * len(grid.svd_components) + 2))
    image = axes.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    axes.set_xticks(range(len(grid.tau)), [f"{t:g}" for t in grid.tau])
    axes.set_yticks(range(len(grid.svd_components)), [str(s) for s in grid.svd_components])
    axes.set_xlabel("tau")
    axes.set_ylabel("svd_components")
    axes.set_title(f"mIoU at merge_threshold {best.setting.merge_threshold:g}")
    middle = (values.min() + values.max()) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):  # dark text on the bright (high) end of viridis
            colour = "black" if values[i, j] > middle else "white"
            axes.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=axes, label="mIoU")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
