"""insid3-serve: INSID3 over HTTP with cached references and dynamic batching.

A client registers a reference once (POST /v1/references) and sends many targets
(POST /v1/segment); concurrent targets share backbone calls. Modules:

    app.py         the HTTP API (FastAPI), shared by both ways of running it
    local.py       one process: LocalService, our DynamicBatcher (batching.py), EngineRunner (runner.py)
    ray_app.py     Ray Serve: one replica per GPU, @serve.batch, references shared through the object store
    references.py  the device-resident reference cache (LRU + TTL, count and byte bounds)
    uploads.py     upload decoding with the pixel limit; limits.py the body-size limit (413)
    metrics.py     Prometheus metrics in a per-app registry
    cli.py         the insid3-serve command; launch.py starts one as a child process (tests, loadgen)
"""
