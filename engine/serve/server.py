"""Run the server in this process, from frozen settings (engine/cli/serve.py builds them):

    serve_here(bundle, settings, listen, announce)              one process: uvicorn, one engine
    serve_on_ray(bundle, settings, listen, options, address, announce)   a Ray Serve deployment

Both take the port before any model loads (a port in use fails in one line, not after a minute
of loading), and both say where they serve through `announce` once the engine is ready.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from insid3.engine.serve.settings import Listen, RayOptions, ServeSettings
from insid3.errors import Insid3Error

log = logging.getLogger("insid3.serve")


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


def serve_here(bundle: str | Path, settings: ServeSettings, listen: Listen, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM (a graceful shutdown: requests in flight finish)."""
    import uvicorn

    from insid3.engine.runtime.segmenter import Segmenter
    from insid3.engine.serve.local import create_local_app

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)  # the engine is loaded and warm, the socket listens
            announce(listen.announcement())

    listener = bind_listener(listen.host, listen.port)
    segmenter = Segmenter.from_bundle(bundle, **settings.engine_options())
    log.info("engine: %s", segmenter.describe())
    config = uvicorn.Config(create_local_app(segmenter, settings), host=listen.host, port=listen.port,
                            log_level=listen.log_level, access_log=listen.access_log)
    AnnouncingServer(config).run(sockets=[listener])


def serve_on_ray(bundle: str | Path, settings: ServeSettings, listen: Listen, options: RayOptions,
                 address: str | None, announce: Callable[[str], None]) -> None:
    """Start a local Ray instance (or join `address`), deploy, and block until SIGINT or SIGTERM."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise Insid3Error("--ray needs Ray Serve: pip install 'insid3[ray]'") from None
    from insid3.engine.serve.ray_app import MATCH_REGISTRY_NAME, NAMESPACE, REGISTRY_NAME, build_application
    from insid3.format.bundle import load_bundle

    folder = load_bundle(bundle).folder.resolve()  # fail here, in one line, not in every replica
    bind_listener(listen.host, listen.port).close()  # Ray binds it itself; fail early when it is taken
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logs = {"enable_access_log": listen.access_log}  # the proxy's and the replicas' request lines
    try:
        serve.start(http_options={"host": listen.host, "port": listen.port}, logging_config=logs)
        serve.run(build_application(str(folder), settings, options), name="insid3", route_prefix="/",
                  logging_config=logs)
        announce(f"Ray Serve: {listen.announcement()}")
        stop.wait()
    finally:
        serve.shutdown()
        for name in (REGISTRY_NAME, MATCH_REGISTRY_NAME):
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:  # never created
                pass
        ray.shutdown()
