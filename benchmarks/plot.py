"""`--plot FILE.png`: per-stage latency bars, ours beside the authors' way (matplotlib, Agg).

The plotted numbers are also stored in the PNG's text chunk `insid3-stages-ms` (JSON), so a
tool or a test can read back exactly what the bars show.
"""

from __future__ import annotations

import json
from pathlib import Path

from insid3.engine.runtime.timing import STAGES

METADATA_KEY = "insid3-stages-ms"


def stage_series(report: dict) -> dict[str, dict[str, float]]:
    series = {"ours": {s: report["ours"]["stages_ms"][s] for s in STAGES}}
    if report["reference"]:
        series["authors' way"] = {s: report["reference"]["stages_ms"][s] for s in STAGES}
    return series


def plot_stages(report: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = stage_series(report)
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(10, 4.5))
    for i, (label, stages) in enumerate(series.items()):
        positions = [x + (i - (len(series) - 1) / 2) * width for x in range(len(STAGES))]
        fps = report["ours" if label == "ours" else "reference"]["fps"]
        bars = axes.bar(positions, [stages[s] for s in STAGES], width, label=f"{label} ({fps:.2f} targets/s)")
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    config = report["config"]
    axes.set_xticks(range(len(STAGES)), STAGES)
    # The backbone is 10-1000x the other stages: a log axis keeps them all readable; symlog
    # (linear below 1 ms) keeps a stage that took 0 ms plottable.
    axes.set_yscale("symlog", linthresh=1.0)
    tallest = max(max(stages.values()) for stages in series.values())
    axes.set_ylim(0, max(tallest, 1.0) * 3)  # room for the tallest bar's label
    axes.set_ylabel("ms per target (mean, log scale)")
    axes.set_title(
        f"{config['arch']} @ {config['resolution']} px, {config['backend']} {config['precision']}: "
        "latency per stage"
    )
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png", metadata={METADATA_KEY: json.dumps(series)})
    plt.close(figure)
    return path


def read_plotted(path: str | Path) -> dict[str, dict[str, float]]:
    """The numbers a plot written by `plot_stages` shows."""
    from PIL import Image

    with Image.open(path) as image:
        return json.loads(image.text[METADATA_KEY])
