"""Bounded load generator for insid3-serve: dynamic batching on vs off, side by side, on loopback.

    insid3-export --size small --res 256 --random-init --no-trt --out /tmp/insid3-vits-256
    insid3 bench serve --bundle /tmp/insid3-vits-256 --requests 200 --concurrency 16

For each --max-batch value (default 8, then 1 = batching off) it starts its own insid3-serve on a
free loopback port, registers one reference, and sends a FIXED number of /v1/segment requests
from --concurrency client threads (httpx), stopping early at --time-limit seconds. It reports
throughput, p50/p99 latency, errors, and the server's `insid3_batch_size` histogram (from
/metrics, as the difference before/after the run). With --url it measures one running server
instead (loopback addresses only). Targets are the project's drawn scenes (engine/jobs/scenes.py).

Random-init bundles measure speed only; never read their masks as quality.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from insid3.benchmarks.writer import as_json, write_text
from insid3.engine.jobs.scenes import scene_pairs
from insid3.engine.serve.launch import running_server
from insid3.errors import SettingsError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class RunResult:
    label: str
    sent: int
    ok: int
    errors: int
    wall_s: float
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    mean_batch: float
    batch_histogram: dict[str, int]  # upper bound -> backbone calls in that bucket (not cumulative)
    error_samples: list[str]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def batch_buckets(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        sample.labels.get("le", sample.name): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "insid3_batch_size"
        for sample in family.samples
        if sample.name in ("insid3_batch_size_bucket", "insid3_batch_size_sum", "insid3_batch_size_count")
    }


def histogram_delta(before: dict[str, float], after: dict[str, float]) -> tuple[float, dict[str, int]]:
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    count = delta.get("insid3_batch_size_count", 0.0)
    mean = delta.get("insid3_batch_size_sum", 0.0) / count if count else 0.0
    bounds = sorted((k for k in delta if k.replace(".", "", 1).isdigit() or k == "+Inf"),
                    key=lambda k: float("inf") if k == "+Inf" else float(k))
    buckets, below = {}, 0.0
    for bound in bounds:  # cumulative -> per bucket
        if delta[bound] - below:
            buckets[bound.removesuffix(".0")] = int(delta[bound] - below)
        below = delta[bound]
    return mean, buckets


def drive(url: str, label: str, requests: int, concurrency: int, time_limit_s: float, size: tuple[int, int]) -> RunResult:
    pairs = scene_pairs(4, size=size, seed=11)
    reference = pairs[0][0]
    with httpx.Client(base_url=url, timeout=120) as http:
        registered = http.post("/v1/references", files=[
            ("image", ("ref.png", png(reference.image))), ("mask", ("mask.png", png(reference.mask)))])
        registered.raise_for_status()
        reference_id = registered.json()["reference_id"]
        targets = [png(target.image) for _, target in pairs if target.concept == reference.concept] or \
                  [png(pairs[0][1].image)]
        for target in targets:  # warm the kernels' first-call costs outside the measurement
            http.post("/v1/segment", data={"reference_id": reference_id}, files={"image": ("t.png", target)})
    before = batch_buckets(url)
    latencies: list[float] = []
    errors: list[str] = []
    issued = iter(range(requests))
    lock = threading.Lock()
    deadline = time.perf_counter() + time_limit_s

    def client() -> None:
        with httpx.Client(base_url=url, timeout=max(30.0, time_limit_s)) as http:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(issued, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    response = http.post("/v1/segment", data={"reference_id": reference_id},
                                         files={"image": ("t.png", targets[index % len(targets)])})
                    failure = None if response.status_code == 200 else f"{response.status_code} {response.text[:80]}"
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
                with lock:
                    (errors.append(failure) if failure else latencies.append(elapsed))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    mean_batch, histogram = histogram_delta(before, batch_buckets(url))
    ms = sorted(1e3 * t for t in latencies)
    return RunResult(
        label=label,
        sent=len(latencies) + len(errors),
        ok=len(latencies),
        errors=len(errors),
        wall_s=wall,
        throughput=len(latencies) / wall if wall else 0.0,
        p50_ms=statistics.median(ms) if ms else float("nan"),
        p99_ms=ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan"),
        mean_batch=mean_batch,
        batch_histogram=histogram,
        error_samples=errors[:3],
    )


def table(results: list[RunResult]) -> str:
    header = f"{'server':<28} {'sent':>5} {'ok':>5} {'err':>4} {'wall s':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}  backbone calls by batch size"
    rows = [header]
    for r in results:
        hist = " ".join(f"<={bound}:{n}" for bound, n in r.batch_histogram.items())
        rows.append(f"{r.label:<28} {r.sent:>5} {r.ok:>5} {r.errors:>4} {r.wall_s:>7.1f} {r.throughput:>7.2f} "
                    f"{r.p50_ms:>8.0f} {r.p99_ms:>8.0f} {r.mean_batch:>6.2f}  {hist}")
    return "\n".join(rows)


@dataclass(frozen=True, kw_only=True)
class LoadSettings:
    bundle: Path | None = None
    url: str | None = None
    max_batch: tuple[int, ...] = (8, 1)
    max_wait_ms: float = 10.0
    backend: str = "auto"
    requests: int = 200
    concurrency: int = 16
    time_limit: float = 90.0
    image_size: str = "480x640"
    json: Path | None = None


def run(settings: LoadSettings) -> int:
    if (settings.url is None) == (settings.bundle is None):
        raise SettingsError("give --bundle (servers started here) or --url (a running server), one of them")
    if settings.url and urlparse(settings.url).hostname not in LOOPBACK:
        raise SettingsError(f"--url {settings.url}: only loopback servers (127.0.0.1, localhost, ::1)")
    if settings.bundle and not settings.bundle.is_dir():
        raise SettingsError(f"--bundle {settings.bundle} is not a folder (make one with insid3 export ... --random-init --no-trt)")
    if settings.requests < 1 or settings.concurrency < 1 or settings.time_limit <= 0:
        raise SettingsError("--requests, --concurrency and --time-limit must be positive")
    height, width = (int(v) for v in settings.image_size.lower().split("x"))
    results = []
    if settings.url:
        results.append(drive(settings.url, settings.url, settings.requests, settings.concurrency, settings.time_limit, (height, width)))
    for max_batch in ([] if settings.url else settings.max_batch):
        label = f"max-batch {max_batch}, wait {settings.max_wait_ms:g} ms"
        server_args = ["--bundle", str(settings.bundle), "--backend", settings.backend, "--max-batch", str(max_batch),
                       "--max-wait-ms", str(settings.max_wait_ms), "--max-queue", str(max(64, 2 * settings.concurrency)),
                       "--log-level", "warning"]
        with tempfile.TemporaryDirectory() as logs, running_server(server_args, Path(logs) / "server.log") as server:
            print(f"{label}: {server.url}, {settings.requests} requests from {settings.concurrency} clients ...", flush=True)
            results.append(drive(server.url, label, settings.requests, settings.concurrency, settings.time_limit, (height, width)))
    print(table(results))
    for r in results:
        for sample in r.error_samples:
            print(f"  {r.label}: error {sample}")
    if len(results) == 2 and results[1].throughput:
        print(f"throughput ratio {results[0].label} / {results[1].label}: {results[0].throughput / results[1].throughput:.2f}x")
    if settings.json:
        write_text(settings.json, as_json([asdict(r) for r in results]))
    return 0
