"""The admin's side of ``dicomnode serve``: a status page, ``/healthz`` and ``/readyz`` for an orchestrator, and
``/metrics`` for Prometheus, on a port of their own (``http:`` in the configuration).

- ``events``: counters and histograms incremented where things happen (receiver, workers, dispatcher);
- ``multiproc``: prometheus-client's multiprocess mode, which lets the main process export those counters;
- ``queries``: what the page and the scrape read from the database;
- ``health``: liveness and readiness;
- ``metrics``: the ``/metrics`` registry (event files plus database and disk read at scrape time);
- ``security``: token, session cookie, CSRF and Host checks;
- ``app``: the Starlette application and its Jinja2 templates; ``server``: uvicorn in a thread of ``serve``.
"""
