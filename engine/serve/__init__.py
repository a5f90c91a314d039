"""insid3-serve: INSID3 over HTTP with cached references and dynamic batching (docs/serve.md).

A client registers a reference once (POST /v1/references) and sends many targets
(POST /v1/segment); concurrent targets share backbone calls. Modules:

    app.py         the app factory: error rule, limits, metrics, the routers mounted in one place
    routes/        one router per resource: references, segment, match, health (and metrics), web
    deps.py        what the routes are given: the app's Service (ready, or any)
    service.py     Service, the one interface behind every route, and its Execution protocol
    local.py       one process: LocalExecution, our DynamicBatcher (batching.py), EngineRunner (runner.py)
    ray_app.py     Ray Serve: one replica per GPU, @serve.batch, references shared through the object store
    references.py  the device-resident reference cache (LRU + TTL, count and byte bounds), local or shared
    concepts.py    several concepts on one target; matching.py keypoint matching (their queue items)
    profiles.py    calibration profiles per reference: checked, encoded under, applied (min_score too)
    uploads.py     upload decoding with the pixel limit; limits.py the body-size limit (413)
    metrics.py     Prometheus metrics in a per-app registry; responses.py PNG, timing headers, errors
    settings.py    ServeSettings, the frozen settings the CLI (engine/cli/serve.py) builds
    launch.py      starts insid3-serve as a child process (tests, the load generator)
"""
