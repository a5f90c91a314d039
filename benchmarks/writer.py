"""The one report writer of the benchmarks and of the evaluation's speed figures.

A report is a dict (the JSON contract of its tool); beside it, optionally, its markdown (the
tool's `markdown(report)`, whose tables `table` lays out) and a PNG chart (the tool's plot
function). Each file is written beside its final name and renamed, so a reader never meets half
a report, and a run cut short leaves the previous report whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from insid3.errors import SettingsError


@dataclass(frozen=True)
class ReportFiles:
    """Where the report goes besides the terminal: JSON, markdown, a PNG chart (None: not written)."""

    json: Path | None = None
    markdown: Path | None = None
    plot: Path | None = None

    def check(self) -> None:
        """Fail in one line before a run of minutes when a file could not be written after it."""
        if self.plot is not None and self.plot.suffix.lower() != ".png":
            raise SettingsError(f"--plot {self.plot}: the chart is written as PNG, name it *.png")
        for path in (self.json, self.markdown, self.plot):
            if path is not None and not path.parent.is_dir():
                raise SettingsError(f"cannot write {path}: folder {path.parent} does not exist")


def table_row(cells: Sequence[object]) -> str:
    """`| a | b |`; an empty cell is `| |`."""
    return "|" + "|".join(f" {cell} " if str(cell) else " " for cell in cells) + "|"


def table(header: Sequence[object], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A markdown table's lines. `align` has one letter per column, `l` (`---`) or `r` (`---:`);
    columns it does not reach are left-aligned."""
    rule = "|" + "".join("---:|" if align[i:i + 1] == "r" else "---|" for i in range(len(header)))
    return [table_row(header), rule, *(table_row(row) for row in rows)]


def as_json(report: dict | list, indent: int = 2) -> str:
    return json.dumps(report, indent=indent) + "\n"


def write_text(path: Path, text: str) -> Path:
    """`text` in `path`, replaced whole (written beside it, then renamed)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)
    return path


def write_report(
    report: dict, files: ReportFiles, *, markdown: Callable[[dict], str] | None = None,
    plot: Callable[[dict, Path], object] | None = None, indent: int = 2,
) -> None:
    """The report as JSON, markdown and a chart, each where `files` names one."""
    if files.json:
        write_text(files.json, as_json(report, indent))
    if files.markdown and markdown is not None:
        write_text(files.markdown, markdown(report))
    if files.plot and plot is not None:
        plot(report, files.plot)
