"""`insid3-serve`: the HTTP service (see app.py for the API), on loopback unless told otherwise.

    insid3-serve --bundle bundles/dinov3-vits16-768 [--port 8000] [--max-batch 8 --max-wait-ms 10]
    insid3-serve --bundle /srv/bundles/dinov3-vits16-768 --ray --host 0.0.0.0 --num-replicas 4

Without --ray one process owns the engine (uvicorn, one event loop, one engine thread). With
--ray the same app runs as a Ray Serve deployment (ray_app.py); this process starts a local Ray
instance (or joins --ray-address), deploys, and blocks until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading

from insid3.engine.serve.settings import ServeSettings
from insid3.errors import Insid3Error
from insid3.format.refinement import add_refine_arguments

log = logging.getLogger("insid3.serve")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = ServeSettings()
    parser = argparse.ArgumentParser(
        prog="insid3-serve", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only by default)")
    parser.add_argument("--port", type=port_number, default=8000, help="TCP port, 1-65535")
    parser.add_argument("--backend", default=d.backend, help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="targets per backbone call (1: off)")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="longest wait for a batch to fill")
    parser.add_argument("--max-queue", type=int, default=d.max_queue, help="waiting targets before 503")
    parser.add_argument("--reference-ttl", type=float, default=d.reference_ttl_s, help="seconds a reference lives")
    parser.add_argument("--max-references", type=int, default=d.max_references, help="cached references at most")
    parser.add_argument("--max-reference-mb", type=float, default=d.max_reference_bytes / 2**20,
                        help="device memory for cached references")
    parser.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20, help="largest request body")
    parser.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels,
                        help="largest image (width x height) decoded")
    add_refine_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="log verbosity")
    ray = parser.add_argument_group("Ray Serve")
    ray.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment")
    ray.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    ray.add_argument("--num-replicas", type=int, default=None, help="default: one per GPU, or 1")
    ray.add_argument("--min-replicas", type=int, default=None, help="autoscaling lower bound")
    ray.add_argument("--max-replicas", type=int, default=None, help="autoscaling upper bound")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs per replica when there is no GPU")
    return parser.parse_args(argv)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port: use 1-65535")
    return port


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads: a port in use fails in one line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise Insid3Error(f"--host {host} cannot be resolved: {exc.strerror}") from None
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise Insid3Error(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener


def settings_from(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        backend=args.backend,
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
    ).validated()


def serve_local(args: argparse.Namespace, settings: ServeSettings) -> None:
    import uvicorn

    from insid3.engine.runtime.segmenter import Segmenter
    from insid3.engine.serve.local import create_local_app

    listener = bind_listener(args.host, args.port)
    segmenter = Segmenter.from_bundle(args.bundle, backend=settings.backend, refine=settings.refine_settings)
    log.info("engine: %s", segmenter.describe())
    app = create_local_app(segmenter, settings)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


def serve_ray(args: argparse.Namespace, settings: ServeSettings) -> None:
    try:
        import ray
        from ray import serve
    except ImportError:
        raise Insid3Error("--ray needs Ray Serve: pip install 'insid3[ray]'") from None
    from insid3.engine.serve.ray_app import NAMESPACE, REGISTRY_NAME, RayOptions, build_application
    from insid3.format.bundle import load_bundle

    bundle = load_bundle(args.bundle)  # fail here, in one line, not in every replica
    bind_listener(args.host, args.port).close()  # Ray binds it itself; fail early when it is taken
    options = RayOptions(args.num_replicas, args.min_replicas, args.max_replicas, args.replica_cpus)
    ray.init(address=args.ray_address, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_application(str(bundle.folder.resolve()), settings, options), name="insid3", route_prefix="/")
        print(f"insid3-serve: Ray Serve on http://{args.host}:{args.port}", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        try:
            ray.kill(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE))
        except ValueError:  # never created
            pass
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = settings_from(args)
        (serve_ray if args.ray else serve_local)(args, settings)
    except Insid3Error as exc:
        print(f"insid3-serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
