"""The one side-by-side harness (schedules, medians, output agreement) and the one report writer
(tables, files written whole and read back)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from insid3.benchmarks.harness import (
    Entrant,
    InProcess,
    Pass,
    SideRun,
    differing,
    in_process,
    pass_ratio_median,
    run_side_by_side,
)
from insid3.benchmarks.isolation import SideProcess
from insid3.benchmarks.writer import ReportFiles, table, table_row, write_report
from insid3.errors import SettingsError


class Recorder:
    """A side that logs every call in a shared list and makes `units` outputs per pass."""

    def __init__(self, name: str, log: list, seconds: float, outputs: tuple = (1, 2)) -> None:
        self.name, self.log, self.seconds, self.outputs = name, log, seconds, outputs

    def start(self) -> str:
        self.log.append((self.name, "start"))
        return f"{self.name} cold"

    def warm_up(self) -> None:
        self.log.append((self.name, "warm_up"))

    def measure_pass(self) -> Pass:
        self.log.append((self.name, "measure_pass"))
        return Pass(seconds=self.seconds, units=len(self.outputs), outputs=self.outputs)

    def finish(self) -> dict:
        self.log.append((self.name, "finish"))
        return {"side": self.name}


def test_interleaved_passes_alternate_which_side_goes_first_and_open_each_side_after_the_last_warms_up():
    log: list = []

    def opened(name: str, seconds: float) -> InProcess:
        log.append((name, "open"))
        return InProcess(Recorder(name, log, seconds))

    runs = run_side_by_side([Entrant("a", lambda: opened("a", 0.5)), Entrant("b", lambda: opened("b", 2.0))], 3)
    assert log[:6] == [("a", "open"), ("a", "start"), ("a", "warm_up"), ("b", "open"), ("b", "start"), ("b", "warm_up")]
    passes = [name for name, method in log if method == "measure_pass"]
    assert passes == ["a", "b", "b", "a", "a", "b"]  # ABBA
    assert log[-2:] == [("a", "finish"), ("b", "finish")]
    assert runs["a"].cold_start == "a cold" and runs["b"].result == {"side": "b"}
    assert runs["a"].fps() == [4.0, 4.0, 4.0] and runs["b"].median_fps() == 1.0
    assert pass_ratio_median(runs["a"], runs["b"]) == 4.0


def test_blocked_schedule_finishes_a_side_before_the_next_starts():
    log: list = []
    runs = run_side_by_side([in_process("a", lambda: Recorder("a", log, 1.0)),
                             in_process("b", lambda: Recorder("b", log, 1.0))], 2, interleave=False)
    assert [name for name, _ in log] == ["a"] * 5 + ["b"] * 5
    assert [method for _, method in log[:5]] == ["start", "warm_up", "measure_pass", "measure_pass", "finish"]
    assert len(runs["b"].passes) == 2


def test_progress_names_every_step_with_the_words_given():
    lines: list[str] = []
    run_side_by_side([in_process("ours", lambda: Recorder("ours", [], 1.0))], 1, report=lines.append,
                     words={"ours": {"start": "cold start (bundle)"}})
    assert [line.split(" s  ", 1)[1] for line in lines] == [
        "ours: cold start (bundle) ...", "ours: warm-up ...", "ours: timed pass 1/1 ...", "ours: finish ..."]


def test_median_fps_is_the_median_over_passes():
    run = SideRun("x", passes=[Pass(seconds=s, units=2) for s in (1.0, 4.0, 0.5)])
    assert run.fps() == [2.0, 0.5, 4.0] and run.median_fps() == 2.0


def test_differing_counts_masks_and_counts_that_disagree():
    mask = np.zeros((3, 4), dtype=bool)
    other = mask.copy()
    other[0, 0] = True
    assert differing((mask, mask), (mask.copy(), mask)) == 0
    assert differing((mask, mask), (other, mask)) == 1
    assert differing([(1, 2), (3, 4)], [(1, 2), (3, 5)]) == 1
    assert differing([(1, 2)], [(1, 2), (3, 4)]) == 2


def test_sides_in_their_own_processes_go_through_the_same_harness(tmp_path):
    runs = run_side_by_side([Entrant("a", lambda: SideProcess(ProcessSide, 0.25)),
                             Entrant("b", lambda: SideProcess(ProcessSide, 0.5))], 2)
    assert runs["a"].median_fps() == 8.0 and runs["b"].median_fps() == 4.0
    assert runs["a"].result != runs["b"].result  # each side's own process id
    assert differing(runs["a"].outputs(), runs["b"].outputs()) == 0


class ProcessSide:
    """Picklable by name for a spawned process; finish answers its process id."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def start(self) -> None:
        pass

    def warm_up(self) -> None:
        pass

    def measure_pass(self) -> Pass:
        return Pass(seconds=self.seconds, units=2, outputs=(np.ones((2, 2), dtype=bool), np.zeros((2, 2), dtype=bool)))

    def finish(self) -> int:
        import os

        return os.getpid()


def test_table_lays_out_alignment_and_empty_cells():
    lines = table(("", "ours", "authors' way"), [("fps", "1.00", "")], "lrr")
    assert lines == ["| | ours | authors' way |", "|---|---:|---:|", "| fps | 1.00 | |"]
    assert table_row([1, "a b"]) == "| 1 | a b |"
    assert table(("a", "b"), ())[1] == "|---|---|"  # alignment defaults to left


def test_write_report_writes_each_file_whole_and_json_reads_back(tmp_path):
    report = {"fps": 1.5, "rows": [1, 2]}
    files = ReportFiles(json=tmp_path / "r.json", markdown=tmp_path / "r.md", plot=None)
    write_report(report, files, markdown=lambda r: f"# fps {r['fps']}\n")
    assert json.loads(files.json.read_text()) == report
    assert files.markdown.read_text() == "# fps 1.5\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]  # no partial file left


def test_report_files_are_checked_before_a_run(tmp_path):
    ReportFiles(json=tmp_path / "a.json", plot=tmp_path / "a.png").check()
    with pytest.raises(SettingsError, match="PNG"):
        ReportFiles(plot=tmp_path / "a.jpg").check()
    with pytest.raises(SettingsError, match="does not exist"):
        ReportFiles(markdown=tmp_path / "missing" / "a.md").check()
