"""What an operator may set on `insid3 serve`, as frozen settings the CLI builds (library code
never sees argparse): the engine and its limits (ServeSettings, sent to every Ray replica), where
the server listens and what it logs (Listen), and the Ray Serve deployment's shape (RayOptions)."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from insid3.errors import SettingsError
from insid3.format.refinement import RefineSettings

# None: the bundle's value (min_score: none, no mask is emptied)
_OPTIONAL_NUMBERS = {"svd_components": int, "tau": float, "merge_threshold": float, "min_score": float}


def pil_pixel_ceiling() -> int | None:
    """The most pixels PIL opens at all (it refuses larger images as decompression bombs); None: no ceiling."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class ServeSettings:
    """Serving knobs; `validated()` names the first one out of range.

    backend, precision, svd_components, tau, merge_threshold, refine, crf_lattice: the engine
        (None hyperparameters: the bundle's, insid3.json).
    max_batch: targets per backbone call (1 turns batching off).
    max_wait_ms: how long the oldest waiting target may wait for others to join its batch.
    max_queue: targets admitted but not yet sent to the backbone; one more gets 503.
    reference_ttl_s: a registered reference expires this long after registration.
    max_references / max_reference_bytes: the device-resident cache's bounds (LRU eviction).
    max_shots: image/mask pairs one registration may carry.
    max_upload_bytes: a request body larger than this gets 413 before it is parsed.
    max_image_pixels: an image (or mask) with more pixels gets 413 before it is decoded (at most
        what PIL opens at all, so the limit a client is told is always this one).
    min_score: a concept scoring below it is judged absent (its mask emptied) for references
        registered without a profile of their own (which bring theirs); None: never.
    """

    backend: str = "auto"
    precision: str = "fp32"  # the CPU backends' compute precision
    svd_components: int | None = None
    tau: float | None = None
    merge_threshold: float | None = None
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    reference_ttl_s: float = 3600.0
    max_references: int = 256
    max_reference_bytes: int = 2 << 30
    max_shots: int = 16
    max_upload_bytes: int = 32 << 20
    max_image_pixels: int = 40_000_000
    refine: str = "bilinear"  # mask refinement of every request: "bilinear" or "crf" (docs/crf.md)
    crf_lattice: str = "float32"  # the CRF lattice's arithmetic
    min_score: float | None = None  # `insid3 serve --min-score`, or the server-wide profile's

    @property
    def refine_settings(self) -> RefineSettings:
        return RefineSettings(method=self.refine, lattice_precision=self.crf_lattice)

    def validated(self) -> ServeSettings:
        positive_ints = ("max_batch", "max_queue", "max_references", "max_reference_bytes", "max_shots",
                         "max_upload_bytes", "max_image_pixels")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}={getattr(self, name)} must be >= 1")
        ceiling = pil_pixel_ceiling()
        if ceiling is not None and self.max_image_pixels > ceiling:
            raise SettingsError(f"max_image_pixels={self.max_image_pixels} is over {ceiling}, the most pixels "
                                "PIL opens: use at most that")
        if self.max_wait_ms < 0:
            raise SettingsError(f"max_wait_ms={self.max_wait_ms} must be >= 0")
        if self.reference_ttl_s <= 0:
            raise SettingsError(f"reference_ttl_s={self.reference_ttl_s} must be > 0")
        RefineSettings(method=self.refine, lattice_precision=self.crf_lattice)  # a SettingsError names a bad one
        if self.min_score is not None and not 0 <= self.min_score <= 1:
            raise SettingsError(f"min_score={self.min_score:g} must be a quality score in [0, 1]")
        return self

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1e3

    def engine_options(self) -> dict[str, Any]:
        """Segmenter.from_bundle's keyword arguments for these settings."""
        return {"backend": self.backend, "precision": self.precision, "svd_components": self.svd_components,
                "tau": self.tau, "merge_threshold": self.merge_threshold, "refine": self.refine_settings}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ServeSettings:
        """From to_json's dict, or from strings (Ray's `serve run ... name=value`)."""
        known = cls.__dataclass_fields__
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SettingsError(f"unknown serve setting(s): {', '.join(unknown)}")

        def parsed(name: str, value: Any) -> Any:
            if name in _OPTIONAL_NUMBERS:
                return None if value in (None, "", "None") else _OPTIONAL_NUMBERS[name](value)
            return type(getattr(cls, name))(value)

        try:
            return cls(**{name: parsed(name, value) for name, value in data.items()}).validated()
        except ValueError as exc:
            raise SettingsError(f"bad serve setting: {exc}") from None


@dataclass(frozen=True)
class Listen:
    """Where the HTTP server listens, and what it logs (stderr; the access log on stdout)."""

    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 8000
    log_level: str = "info"
    access_log: bool = False  # one line per request; off: the logs stay readable at batch rates (metrics count them)

    @property
    def url(self) -> str:
        """The server's base URL as a browser on this machine would write it."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):  # every interface: name the machine
            host = socket.gethostname()
        elif ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def announcement(self) -> str:
        """The line a started server prints: its page, its API and the API's OpenAPI page."""
        return (f"serving the web page at {self.url}/ and the API at {self.url}/v1/ "
                f"(its OpenAPI page: {self.url}/docs); Ctrl-C stops")


@dataclass(frozen=True)
class RayOptions:
    """How many replicas and what each asks for; min/max replicas turn on autoscaling."""

    num_replicas: int | None = None  # None: one per GPU, or 1 without GPUs
    min_replicas: int | None = None
    max_replicas: int | None = None
    replica_cpus: float = 1.0  # CPU replicas only

    def deployment_options(self, settings: ServeSettings, cluster_gpus: float) -> dict[str, Any]:
        on_gpu = cluster_gpus >= 1
        options: dict[str, Any] = {
            "ray_actor_options": {"num_gpus": 1} if on_gpu else {"num_cpus": self.replica_cpus},
            # Enough requests in flight per replica to fill a batch while the previous one runs.
            "max_ongoing_requests": 2 * settings.max_batch + 2,
            "max_queued_requests": settings.max_queue,
            # The proxy answers a full queue with 503; tell clients when to come back.
            "backpressure_config": {"status_code": 503, "retry_after_s": max(1.0, settings.max_wait_s)},
        }
        if self.min_replicas is not None or self.max_replicas is not None:
            low = self.min_replicas if self.min_replicas is not None else 1
            high = self.max_replicas if self.max_replicas is not None else max(low, int(cluster_gpus) or 1)
            if not 0 <= low <= high or high < 1:
                raise SettingsError(f"replica bounds min={low} max={high}: need 0 <= min <= max, max >= 1")
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": high,
                "target_ongoing_requests": settings.max_batch,
            }
        else:
            count = self.num_replicas if self.num_replicas is not None else (int(cluster_gpus) if on_gpu else 1)
            if count < 1:
                raise SettingsError(f"num_replicas={count} must be >= 1")
            options["num_replicas"] = count
        return options
