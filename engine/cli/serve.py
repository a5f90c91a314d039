"""The HTTP service: a web page at /, the REST API under /v1/ (its OpenAPI page at /docs), on
loopback unless told otherwise. docs/serve.md describes the page, the API, its limits and errors.

    insid3 serve --bundle bundles/dinov3-vits16-768 [--port 8000] [--max-batch 8 --max-wait-ms 10]
    insid3 serve --bundle /srv/bundles/dinov3-vits16-768 --ray --host 0.0.0.0 --num-replicas 4

Without --ray one process owns the engine (uvicorn, one event loop, one engine thread). With
--ray the same app runs as a Ray Serve deployment (engine/serve/ray_app.py): this process starts
a local Ray instance (or joins --address), deploys, and blocks until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging

from insid3.engine.cli import arguments as shared

__all__ = ["configure", "main", "run"]


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port: use 1-65535")
    return port


def configure(parser: argparse.ArgumentParser) -> None:
    from insid3.engine.serve.settings import Listen, ServeSettings

    d, listen = ServeSettings(), Listen()
    shared.add_bundle(parser)
    where = parser.add_argument_group("where it listens, what it logs")
    where.add_argument("--host", default=listen.host, help="bind address (127.0.0.1: reachable from this machine only; 0.0.0.0: every interface)")
    where.add_argument("--port", type=port_number, default=listen.port, help="TCP port, 1-65535")
    where.add_argument("--log-level", default=listen.log_level, choices=("debug", "info", "warning", "error"),
                       help="log verbosity (stderr)")
    where.add_argument("--access-log", action="store_true",
                       help="one line per request on stdout (with --ray: in Ray Serve's logs); off by default")
    shared.add_backend(parser)
    shared.add_precision(parser)
    shared.add_hyperparameters(parser)
    shared.add_refine(parser)
    shared.add_profile(parser)
    parser.add_argument("--min-score", type=float, default=None, metavar="S",
                        help="answer an empty mask where a concept's score is below S (judged absent; "
                             "docs/quality.md) for references registered without a profile (default: none, "
                             "or --profile's)")
    limits = parser.add_argument_group("batching and limits")
    limits.add_argument("--max-batch", type=shared.positive_int, default=d.max_batch,
                        help="targets per backbone call (1: off)")
    limits.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="longest wait for a batch to fill")
    limits.add_argument("--max-queue", type=shared.positive_int, default=d.max_queue, help="waiting targets before 503")
    limits.add_argument("--reference-ttl", type=float, default=d.reference_ttl_s, help="seconds a reference lives")
    limits.add_argument("--max-references", type=shared.positive_int, default=d.max_references,
                        help="cached references at most")
    limits.add_argument("--max-reference-mb", type=float, default=d.max_reference_bytes / 2**20,
                        help="device memory for cached references")
    limits.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20, help="largest request body")
    limits.add_argument("--max-image-pixels", type=shared.positive_int, default=d.max_image_pixels,
                        help="largest image (width x height) decoded; larger ones get 413")
    ray = parser.add_argument_group("Ray Serve (docs/serve.md)")
    ray.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment")
    ray.add_argument("--address", "--ray-address", dest="ray_address", default=None,
                     help="the Ray cluster to join (default: start a local one)")
    ray.add_argument("--num-replicas", type=int, default=None, help="replicas (default: one per GPU, or 1)")
    ray.add_argument("--min-replicas", type=int, default=None, help="autoscaling lower bound (default: none)")
    ray.add_argument("--max-replicas", type=int, default=None, help="autoscaling upper bound (default: none)")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs per replica when there is no GPU")


def settings_from(args: argparse.Namespace):
    from insid3.engine.serve.settings import ServeSettings

    shared.profile_into(args)  # --profile: what the command line leaves unset
    return ServeSettings(
        backend=args.backend,
        precision=args.precision,
        svd_components=args.svd_components,
        tau=args.tau,
        merge_threshold=args.merge_threshold,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        reference_ttl_s=args.reference_ttl,
        max_references=args.max_references,
        max_reference_bytes=int(args.max_reference_mb * 2**20),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        refine=args.refine,
        crf_lattice=args.crf_lattice,
        min_score=args.min_score,
    ).validated()


def run(args: argparse.Namespace, prog: str) -> int:
    from insid3.engine.serve.server import serve_here, serve_on_ray
    from insid3.engine.serve.settings import Listen, RayOptions

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings_from(args)
    listen = Listen(host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)

    def announce(line: str) -> None:
        print(f"{prog}: {line}", flush=True)

    if args.ray:
        options = RayOptions(args.num_replicas, args.min_replicas, args.max_replicas, args.replica_cpus)
        serve_on_ray(args.bundle, settings, listen, options, args.ray_address, announce)
    else:
        ray_only = [flag for flag, given in (("--address", args.ray_address), ("--num-replicas", args.num_replicas),
                                             ("--min-replicas", args.min_replicas),
                                             ("--max-replicas", args.max_replicas),
                                             ("--replica-cpus", args.replica_cpus != 1.0)) if given]
        if ray_only:
            raise shared.UsageError(f"{', '.join(ray_only)} apply to --ray")
        serve_here(args.bundle, settings, listen, announce)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`insid3-serve ARGS` in-process (tests); `python -m insid3.engine.cli.serve` too."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-serve", "serve", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("serve")()
