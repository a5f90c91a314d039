"""One router per resource, mounted in one place (app.create_app):

    health.py        GET /healthz, /readyz, /metrics
    references.py    POST /v1/references, DELETE /v1/references/{id}
    segment.py       POST /v1/segment (one mask, or several concepts)
    match.py         POST /v1/match, /v1/match/references, DELETE /v1/match/references/{id}
    web.py           GET / and /web/<file>: the web page

Each route is written once: it is given the app's Service (deps.py), whichever execution
(local.py, ray_app.py) runs the engine behind it.
"""
