"""The Ray side both jobs share: the command-line flags, joining or starting a cluster, the actor
pool's shape and fault tolerance, and the Segmenter every worker builds from the same spec.

Paths that workers read (the bundle, local inputs, a dataset root) are made absolute on the
driver: Ray workers run in their own folder, and on a cluster every node must see the same
paths (a shared file system, or the same copy on every node).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insid3.engine.runtime.reference import EncodingFingerprint
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import Insid3Error, SettingsError
from insid3.format.refinement import RefineSettings

# An actor that dies (its node lost or preempted, the OOM killer) is restarted, up to 10 times
# over the job, and its batch in flight retried, up to 3 times: enough for lost nodes, bounded so
# that an input killing its worker every time stops the job instead of looping. Ray Data hands
# the driver each batch's output once, whichever attempt made it.
FAULT_TOLERANCE = {"max_restarts": 10, "max_task_retries": 3}
CPU_WORKERS = 2  # --workers without GPUs


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """--ray and the cluster's shape, as both commands spell them."""
    group = parser.add_argument_group("Ray (dataset-scale jobs: README, Scale out)")
    group.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline on a Ray cluster")
    group.add_argument("--address", default=None,
                       help="the cluster to join, from one of its nodes (HEAD:6379, or auto: the one this node "
                            "belongs to); default: RAY_ADDRESS, else a local instance started for this job")
    group.add_argument("--workers", type=int, default=None,
                       help=f"actors running the model (default: one per GPU, else {CPU_WORKERS})")
    group.add_argument("--gpus-per-worker", type=float, default=None,
                       help="GPUs per actor (default: 1 where the cluster has GPUs, else 0: CPU actors)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0,
                       help="CPUs per actor (a CPU actor's backend uses this many threads)")


def check_ray_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The cluster flags' usage errors, as argparse reports them (one line, exit 2)."""
    if not args.ray and (args.address or args.workers is not None or args.gpus_per_worker is not None
                         or args.cpus_per_worker != 1.0):
        parser.error("--address, --workers, --gpus-per-worker and --cpus-per-worker apply to --ray")
    try:
        ClusterSettings.from_args(args)
    except SettingsError as exc:
        parser.error(str(exc))


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise SettingsError(f"--workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise SettingsError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker:g}")
        if self.cpus_per_worker <= 0:
            raise SettingsError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker:g}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ClusterSettings":
        return cls(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                   cpus_per_worker=args.cpus_per_worker)


@dataclass(frozen=True)
class ActorPlan:
    """The actor pool on the cluster joined: how many actors, and what each one asks for."""

    workers: int
    gpus: float
    cpus: float

    def remote_args(self) -> dict[str, float]:
        return {"num_cpus": self.cpus, **({"num_gpus": self.gpus} if self.gpus else {})}

    def threads(self) -> int | None:
        """A CPU actor's backend threads: its CPUs (not every core of a node it shares)."""
        return None if self.gpus else max(1, round(self.cpus))

    def describe(self) -> str:
        each = f"{self.gpus:g} GPU" if self.gpus else f"{self.cpus:g} CPU"
        return f"{self.workers} {'GPU' if self.gpus else 'CPU'} worker{'s' * (self.workers != 1)} ({each} each)"


def plan_actors(settings: ClusterSettings) -> ActorPlan:
    """The pool for the cluster now joined; warns when it cannot fit (an autoscaler may add nodes)."""
    import ray

    resources = ray.cluster_resources()
    gpus_here, cpus_here = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    gpus = settings.gpus_per_worker if settings.gpus_per_worker is not None else (1.0 if gpus_here else 0.0)
    workers = settings.workers or (max(1, int(gpus_here // gpus)) if gpus else CPU_WORKERS)
    plan = ActorPlan(workers=workers, gpus=gpus, cpus=settings.cpus_per_worker)
    if workers * gpus > gpus_here or workers * plan.cpus + 1 > cpus_here:
        print(f"insid3: the cluster has {gpus_here:g} GPUs and {cpus_here:g} CPUs: {plan.describe()} and the "
              "reading tasks may wait for more nodes (an autoscaler), or never start", file=sys.stderr)
    return plan


@contextmanager
def connected(settings: ClusterSettings) -> Iterator[None]:
    """Ray connected for the block: the caller's connection if there is one (left open), else the
    cluster at --address / RAY_ADDRESS, else a local instance (shut down after)."""
    import ray

    if ray.is_initialized():
        yield
        return
    if settings.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=settings.address, logging_level="WARNING")
    else:  # logical CPUs for the actors plus one for reading, however few cores there are
        workers = settings.workers or CPU_WORKERS
        cpus = max(os.cpu_count() or 1, math.ceil(workers * settings.cpus_per_worker) + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def exit_after(code: int) -> None:
    """End a command's process at once after a --ray run: Ray's background threads can outlive
    ray.shutdown() and then end the process themselves, with their own exit code (seen after a
    Ctrl-C). Everything the command wrote is already closed; stdio is flushed here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def actor_pool_fault_tolerance() -> dict[str, int]:
    """FAULT_TOLERANCE as map_batches takes it. Ray 2.60 deprecates passing these (removed in
    2.64, where Ray Data's own defaults apply: restart and retry without limit)."""
    import ray

    major, minor = (int(part) for part in ray.__version__.split(".")[:2])
    return dict(FAULT_TOLERANCE) if (major, minor) < (2, 64) else {}


class RayJobError(Insid3Error):
    """The cluster stopped the job (a worker failed past its retries, the cluster went away)."""


def quiet_ray_data() -> None:
    """Ray Data's per-run INFO lines off (the command reports itself), and its one-time notice
    that its progress bars are off (the command draws its own)."""
    import logging

    import ray.data  # noqa: F401 - configures its loggers on import: adjust them after
    from ray.util.debug import log_once

    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":  # Ray Data's own log file keeps everything
            handler.setLevel(logging.WARNING)
    log_once("ray_data_progress_manager_disabled")


def streaming_dataset_options(dataset: Any) -> Any:
    """Results in input order (what makes outputs equal the local command's), no Ray progress bars
    (the command draws its own)."""
    context = dataset.context
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    return dataset


def absolute(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


@dataclass(frozen=True, kw_only=True)
class SegmenterSpec:
    """What every worker builds its Segmenter from (the bundle path must exist on its node)."""

    bundle: str
    backend: str = "auto"
    precision: str = "fp32"
    refine: RefineSettings = field(default_factory=RefineSettings)
    svd_components: int | None = None
    tau: float | None = None
    merge_threshold: float | None = None
    num_threads: int | None = None

    def build(self) -> Segmenter:
        return Segmenter.from_bundle(
            self.bundle, backend=self.backend, svd_components=self.svd_components, tau=self.tau,
            merge_threshold=self.merge_threshold, precision=self.precision, num_threads=self.num_threads,
            refine=self.refine,
        )


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker's Segmenter is, for the driver's messages, manifests and run identities."""

    describe: str
    backend: str
    device: str
    precision: str
    hyperparameters: dict
    fingerprint: EncodingFingerprint

    @classmethod
    def of(cls, segmenter: Segmenter) -> "WorkerInfo":
        backend = segmenter.backend
        return cls(segmenter.describe(), backend.name, backend.device, backend.precision,
                   segmenter.hyperparameters.to_json(), segmenter.fingerprint)


def probe_worker(spec: SegmenterSpec) -> WorkerInfo:
    """Build the Segmenter where a worker would (its resources), and say what it is."""
    return WorkerInfo.of(spec.build())


def on_worker_resources(function: Any, plan: ActorPlan, *, returns: int = 1) -> Any:
    """`function` as a Ray task asking for one actor's resources (so it lands on the same kind of
    node and device as the pool, and its backend is theirs), returning `returns` objects."""
    import ray

    return ray.remote(function).options(**plan.remote_args(), num_returns=returns,
                                        max_retries=FAULT_TOLERANCE["max_task_retries"])


def insid3_cause(exc: BaseException) -> Insid3Error | None:
    """The insid3 error behind a Ray error (a task's, an actor's, Ray Data's wrappers), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)  # a RayTaskError is also an instance of its cause's class
        if inner is None and isinstance(current, Insid3Error):
            return current
        current = inner or current.__cause__
    return None


def job_error(exc: BaseException) -> Insid3Error:
    """What the command says when Ray raises: the insid3 error behind it (its one line), or one
    line saying the cluster stopped the job and that the folder resumes."""
    cause = insid3_cause(exc)
    if cause is not None:
        return cause
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "no detail"
    return RayJobError(f"the Ray job stopped ({type(exc).__name__}: {first}); what was written is kept: "
                       "run the same command again to resume")


def remote_get(ref: Any) -> Any:
    """ray.get, with an error raised in the task re-raised as one line (`job_error`)."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        raise job_error(exc) from None
