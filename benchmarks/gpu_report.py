"""The GPU acceptance run's report and time budget (benchmarks/gpu_acceptance.py).

A run is phases; each ends with a `PhaseResult` (status, seconds, a one-line summary, details,
markdown lines). The report is rewritten, JSON and markdown, whenever a phase ends, so a run cut
short still leaves what it finished. `read_report` reads the JSON back. Inside a phase's own process,
`PhaseContext` is its deadline and its result file, written as it goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from insid3.benchmarks.writer import ReportFiles, as_json, table, write_report, write_text

BUNDLES = {"small-768": ("small", 768), "large-1024": ("large", 1024)}  # exported, then compared
# --simulate-cpu: the same keys, tiny random-init models (2 blocks, 128 wide) that export in seconds.
SIMULATED_BUNDLES = {"small-768": ("tiny", 224), "large-1024": ("tiny", 256)}
JSON_FILE = "acceptance.json"
MARKDOWN_FILE = "acceptance.md"
STATUSES = ("passed", "failed", "error", "timed out", "skipped", "interrupted")


@dataclass(frozen=True)
class PhaseResult:
    name: str
    status: str  # one of STATUSES
    seconds: float
    limit_s: float
    summary: str  # one line
    details: dict = field(default_factory=dict)
    markdown: tuple[str, ...] = ()  # the phase's own lines for the markdown report

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"phase {self.name}: status {self.status!r} is not one of {', '.join(STATUSES)}")

    @classmethod
    def from_json(cls, data: Mapping) -> "PhaseResult":
        return cls(**{**data, "markdown": tuple(data.get("markdown", ()))})


class Budget:
    """The run's wall-clock budget: a phase gets its own limit or what is left, whichever is less."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if total_s <= 0:
            raise ValueError(f"the budget must be > 0 s, got {total_s}")
        self.total_s, self._clock = float(total_s), clock
        self._started = clock()

    def elapsed(self) -> float:
        return self._clock() - self._started

    def remaining(self) -> float:
        return max(0.0, self.total_s - self.elapsed())

    def limit_for(self, phase_limit_s: float, reserve_s: float = 0.0) -> float:
        """Seconds a phase starting now may take: its limit, cut to the budget left less a reserve."""
        return max(0.0, min(phase_limit_s, self.remaining() - reserve_s))


@dataclass
class Report:
    budget_s: float
    environment: dict
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    elapsed_s: float = 0.0
    outcome: str = "running"  # "running", then "passed" | "failed" | "interrupted" | "no GPU"

    def to_json(self) -> dict:
        return {
            "tool": "python -m insid3.benchmarks.gpu_acceptance", "started_at": self.started_at,
            "budget_s": self.budget_s, "elapsed_s": round(self.elapsed_s, 1), "outcome": self.outcome,
            "environment": self.environment,
            "phases": {name: asdict(result) for name, result in self.phases.items()},
        }

    def markdown(self) -> str:
        lines = [
            "# GPU acceptance run", "",
            f"{self.started_at}: {self.outcome}, {self.elapsed_s:.0f} s of a {self.budget_s:.0f} s budget.", "",
        ]
        lines += [f"- {key}: {value}" for key, value in self.environment.items()]
        lines += ["", *table(("phase", "status", "seconds", "limit", "summary"), (
            (r.name, r.status, f"{r.seconds:.1f}", f"{r.limit_s:.0f}", r.summary.replace("|", "/"))
            for r in self.phases.values()))]
        for result in self.phases.values():
            if result.markdown:
                lines += ["", f"## {result.name}", "", *result.markdown]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> None:
        """Both files, each replaced whole (the one report writer, writer.py)."""
        folder.mkdir(parents=True, exist_ok=True)
        write_report(self.to_json(), ReportFiles(json=folder / JSON_FILE, markdown=folder / MARKDOWN_FILE),
                     markdown=lambda _: self.markdown(), indent=1)


def read_report(folder: str | Path) -> Report:
    data = json.loads((Path(folder) / JSON_FILE).read_text())
    report = Report(budget_s=data["budget_s"], environment=data["environment"], started_at=data["started_at"])
    report.phases = {name: PhaseResult.from_json(result) for name, result in data["phases"].items()}
    report.elapsed_s, report.outcome = data["elapsed_s"], data["outcome"]
    return report


@dataclass
class PhaseContext:
    work: Path
    out: Path
    result_file: Path
    deadline: float  # time.monotonic() by which the phase must have written its result
    simulate: bool = False  # --simulate-cpu: the phase's logic on the CPU, GPU calls replaced

    @property
    def device(self) -> str:
        """Where the phase's torch work runs: "cuda", or "cpu" in a simulated run."""
        return "cpu" if self.simulate else "cuda"

    @property
    def torch_backend(self) -> str:
        """The backend ours runs on: torch-cuda, or the CPU torch backend in a simulated run."""
        return "torch" if self.simulate else "torch-cuda"

    @property
    def bundles(self) -> dict[str, tuple[str, int]]:
        return SIMULATED_BUNDLES if self.simulate else BUNDLES

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self, status: str, summary: str, details: dict, markdown: Sequence[str] = ()) -> None:
        write_text(self.result_file, as_json(
            {"status": status, "summary": summary, "details": details, "markdown": list(markdown)}, indent=1))


def bundle_folder(work: Path, key: str) -> Path:
    return work / "bundles" / key


def ended_file(work: Path, phase: str) -> Path:
    """Written by the run when `phase` has ended (or will not run): its status and summary."""
    return work / f"phase-{phase}.ended"


def mark_ended(work: Path, phase: str, status: str, summary: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    ended_file(work, phase).write_text(json.dumps({"status": status, "summary": summary}))


def wait_for_bundle(ctx: PhaseContext, key: str, reserve_s: float, poll_s: float = 0.5) -> tuple[Path | None, str]:
    """(the export phase's bundle once published (it appears whole), "") or (None, why not): the
    export phase ended without it (it failed, was stopped or was not part of the run), or fewer
    than `reserve_s` seconds are left. A dead export is noticed within `poll_s`, not at the deadline."""
    folder = bundle_folder(ctx.work, key)
    while not (folder / "insid3.json").is_file():
        ended = ended_file(ctx.work, "export")
        if ended.is_file():
            if (folder / "insid3.json").is_file():  # published just before it ended
                break
            export = json.loads(ended.read_text())
            return None, f"the export phase ended ({export['status']}: {export['summary'][:160]}) without {key}"
        if ctx.left() < reserve_s:
            return None, f"{key} was not exported in time ({ctx.left():.0f} s left, {reserve_s:.0f} s needed after it)"
        time.sleep(poll_s)
    return folder, ""
