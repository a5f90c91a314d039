"""The Ray side both jobs share: joining or starting a cluster, the actor pool's shape (fitted to
the cluster, or waited for while an autoscaler may add nodes), its fault tolerance, and the
Segmenter every worker builds from the same spec. The command-line flags are engine/cli's
(arguments.add_ray); this module takes a ClusterSettings.

Paths that workers read (the bundle, local inputs, a dataset root) are made absolute on the
driver: Ray workers run in their own folder, and on a cluster every node must see the same
paths (a shared file system, or the same copy on every node).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
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
CLUSTER_TIMEOUT_S = 600.0  # how long a job waits for room for its pool (an autoscaler adding nodes)
LOCAL = "local"  # the address (--address or RAY_ADDRESS) that asks for a fresh local instance, as ray.init reads it
SAY_WAITING_AFTER_S = 2.0  # a pool that finds room within this is not worth a line
# Ray Data's driver-side threads that end with their pipeline (names as Ray 2.60 gives them: its
# scheduling loop, its block iterators, its metadata prefetcher), and how long to wait for them.
PIPELINE_THREADS = ("StreamingExecutor-", "iter_threaded", "ray-data-metadata-prefetch")
SETTLE_S = 30.0

Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """Where and how wide a --ray job runs. `address`: HEAD:6379, auto, local, or None
    (RAY_ADDRESS, else a local instance); `workers`/`gpus_per_worker` None: chosen from the
    cluster; `timeout_s`: how long to wait for room for the pool (0: no limit)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    timeout_s: float = CLUSTER_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise SettingsError(f"--workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise SettingsError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker:g}")
        if self.cpus_per_worker <= 0:
            raise SettingsError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker:g}")
        if self.timeout_s < 0:
            raise SettingsError(f"--cluster-timeout must be >= 0 (0: no limit), got {self.timeout_s:g}")

    def joins_a_cluster(self) -> bool:
        """Whether this names a running cluster (else a local instance is started for the job)."""
        return (self.address or os.environ.get("RAY_ADDRESS") or LOCAL) != LOCAL


@dataclass(frozen=True)
class Resources:
    """CPUs and GPUs, in Ray's logical units."""

    cpus: float
    gpus: float

    def holds(self, needs: Resources) -> bool:
        return needs.cpus <= self.cpus + 1e-9 and needs.gpus <= self.gpus + 1e-9

    def describe(self) -> str:
        gpus = f"{self.gpus:g} GPU{'s' * (self.gpus != 1)}" if self.gpus else "no GPU"
        return f"{self.cpus:g} CPU{'s' * (self.cpus != 1)} and {gpus}"


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

    def needs(self, reading_cpus: float) -> Resources:
        """The pool's resources, and `reading_cpus` for the reading tasks beside it."""
        return Resources(cpus=self.workers * self.cpus + reading_cpus, gpus=self.workers * self.gpus)

    def bundles(self, reading_cpus: float) -> list[dict[str, float]]:
        """The pool and a reading task as placement group bundles (an actor's CPUs and GPU on one node)."""
        actor = {"CPU": self.cpus, **({"GPU": self.gpus} if self.gpus else {})}
        return [dict(actor) for _ in range(self.workers)] + ([{"CPU": reading_cpus}] if reading_cpus else [])


@dataclass(frozen=True)
class PoolFit:
    """The pool to start: `note`, one line when it is not the one asked for; `may_wait`, whether
    it needs more than the cluster has now (an autoscaler may add it)."""

    plan: ActorPlan
    note: str | None = None
    may_wait: bool = False


def asked_plan(settings: ClusterSettings, now: Resources, most: Resources | None = None) -> ActorPlan:
    """The pool the settings ask for on a cluster that has `now` and may grow to `most`: GPU
    actors where it has or may have GPUs, by default one per GPU it has now (an autoscaler's
    limit may be unbounded), at least one."""
    has_gpus = bool(now.gpus or (most is not None and most.gpus))
    per_worker = settings.gpus_per_worker if settings.gpus_per_worker is not None else (1.0 if has_gpus else 0.0)
    workers = settings.workers or (max(1, int(now.gpus // per_worker)) if per_worker else CPU_WORKERS)
    return ActorPlan(workers=workers, gpus=per_worker, cpus=settings.cpus_per_worker)


def fit_pool(asked: ActorPlan, *, workers_given: bool, reading_cpus: float, now: Resources,
             most: Resources | None) -> PoolFit:
    """The pool for a cluster that holds `now` and can grow to `most` (`now` for a cluster that
    cannot grow, None where an autoscaler may add nodes without a known limit), with room for
    `reading_cpus` beside it: the reading tasks cannot run on CPUs the actors hold, and a job
    whose actors take every CPU waits forever for its first input."""
    needs = asked.needs(reading_cpus)
    if now.holds(needs):
        return PoolFit(asked)
    if most is None or most.holds(needs):
        return PoolFit(asked, may_wait=True)
    fitted = shrunk(asked, workers_given=workers_given, reading_cpus=reading_cpus, room=most)
    beside = f", and {reading_cpus:g} CPU for reading" if reading_cpus else ""
    note = (f"the cluster {'has' if most == now else 'may grow to'} {most.describe()}: {fitted.describe()}{beside}, "
            f"instead of {asked.describe()}")
    return PoolFit(fitted, note, may_wait=not now.holds(fitted.needs(reading_cpus)))


def shrunk(asked: ActorPlan, *, workers_given: bool, reading_cpus: float, room: Resources) -> ActorPlan:
    """`asked` cut to `room`: GPU actors to the GPUs there are; CPU actors shared out (the count
    given, or one per GPU, kept) or fewer (the default count); SettingsError where none fits."""
    workers, cpus = asked.workers, asked.cpus
    if asked.gpus:
        if room.gpus < asked.gpus:
            raise SettingsError(f"--gpus-per-worker {asked.gpus:g}: the cluster has {room.describe()} "
                                "(--gpus-per-worker 0: CPU workers)")
        workers = min(workers, int(room.gpus / asked.gpus + 1e-9))
    left = math.floor((room.cpus - reading_cpus) * 100) / 100  # hundredths: sums that never exceed the room
    if left <= 0:
        raise SettingsError(f"the cluster has {room.describe()}: no CPU left for the workers beside "
                            f"{reading_cpus:g} for reading the inputs")
    if workers * cpus > left:
        if asked.gpus or workers_given:
            cpus = math.floor(left / workers * 100) / 100
        else:
            workers, cpus = max(1, int(left // cpus)), min(cpus, left)
    if cpus <= 0:
        raise SettingsError(f"the cluster has {room.describe()}: too few CPUs for {workers} workers "
                            "(ask for fewer --workers)")
    return ActorPlan(workers=workers, gpus=asked.gpus, cpus=cpus)


def autoscaler_limit() -> Resources | None:
    """The most the cluster's autoscaler may grow it to, where the autoscaler publishes it
    (autoscaler v2, KubeRay), read as Ray Data reads it; None where not published."""
    try:
        from ray._private.state import state

        limits = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - a private API of Ray's: gone or changed means "not known"
        return None
    return Resources(cpus=float(limits.get("CPU", 0)), gpus=float(limits.get("GPU", 0))) if limits else None


def plan_actors(settings: ClusterSettings, *, fixed: bool, reading_cpus: float, say: Say) -> ActorPlan:
    """The pool for the cluster now joined, once the cluster has room for it and `reading_cpus`
    beside it. A cluster that cannot grow (`fixed`: a local instance; or past its autoscaler's
    published limit) gets a pool fitted to it, said in one line; where nodes may be added the job
    says so and waits up to settings.timeout_s; SettingsError or RayJobError (one line) where
    neither works."""
    import ray

    total = ray.cluster_resources()
    now = Resources(cpus=float(total.get("CPU", 0)), gpus=float(total.get("GPU", 0)))
    most = now if fixed else autoscaler_limit()
    asked = asked_plan(settings, now, most)
    fit = fit_pool(asked, workers_given=settings.workers is not None, reading_cpus=reading_cpus, now=now, most=most)
    if fit.note:
        say(fit.note)
    reserve(fit.plan, reading_cpus, settings.timeout_s, say, now=now)
    return fit.plan


def reserve(plan: ActorPlan, reading_cpus: float, timeout_s: float, say: Say, *, now: Resources) -> None:
    """Return once the cluster can place the pool and a reading task together (a placement group
    asking for them, then removed: the request an autoscaler adds nodes for); say so when that
    takes more than a moment, and stop with one line after `timeout_s` (0: no limit)."""
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group(plan.bundles(reading_cpus))
    try:
        if group.wait(timeout_seconds=SAY_WAITING_AFTER_S):
            return
        beside = f" and {reading_cpus:g} CPU for reading" if reading_cpus else ""
        limit = f"up to {timeout_s:g} s (--cluster-timeout)" if timeout_s else "without limit (--cluster-timeout 0)"
        say(f"the cluster has {now.describe()} (some may be busy): waiting {limit} for room for {plan.describe()}"
            f"{beside}, which an autoscaler may add")
        deadline = time.monotonic() + max(0.0, timeout_s - SAY_WAITING_AFTER_S)
        while not timeout_s or time.monotonic() < deadline:
            if group.wait(timeout_seconds=10.0 if not timeout_s else max(0.1, min(10.0, deadline - time.monotonic()))):
                return
        raise RayJobError(f"the cluster had no room for {plan.describe()}{beside} within {timeout_s:g} s "
                          "(--cluster-timeout): add nodes, or ask for fewer --workers or --cpus-per-worker")
    finally:
        remove_placement_group(group)


@contextmanager
def connected(settings: ClusterSettings) -> Iterator[bool]:
    """Ray connected for the block: the caller's connection if there is one (left open), else the
    cluster at --address / RAY_ADDRESS, else a local instance (`local` included: shut down after).
    Yields whether the cluster is fixed (a local instance: no node will be added)."""
    import ray

    if ray.is_initialized():
        yield False
        return
    if settings.joins_a_cluster():
        ray.init(address=settings.address, logging_level="WARNING")
    else:  # logical CPUs for the actors plus one for reading, however few cores there are
        workers = settings.workers or CPU_WORKERS
        cpus = max(os.cpu_count() or 1, math.ceil(workers * settings.cpus_per_worker) + 1)
        ray.init(address=LOCAL, num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        yield not settings.joins_a_cluster()
    finally:
        settle_pipelines(SETTLE_S)
        ray.shutdown()


def settle_pipelines(timeout_s: float) -> None:
    """Wait (up to `timeout_s`) for the threads of the pipelines just closed to end. One still
    running after ray.shutdown() calls into the shut-down core worker, and Ray then ends the whole
    process with exit code 1 ("The core worker has already been shutdown ... The process will
    exit"): a Ctrl-C'd job on a loaded machine exited 1, not 130, because Ray Data's own shutdown
    waits only 2 s for its scheduling loop."""
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.startswith(PIPELINE_THREADS):
            thread.join(max(0.0, deadline - time.monotonic()))


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
