"""The dashboard: a small web app served by `watchd run` in its own asyncio loop.

    config.py   `HttpConfig`, the `http:` section (listen, token, allowed hosts, cache cap)
    live.py     `LiveState`: what only the running daemon knows (heartbeat, budget, pauses)
    reader.py   the read-only ledger connection, in one worker thread of its own
    queries.py  the ledger reads the pages need, each an index walk (plain data out)
    metrics.py  `Metrics`: a transition observer for counters, ledger gauges at scrape time
    thumbs.py   thumbnails of ledger paths inside configured folders, cached under state_dir
    security.py Host check, token sessions, CSRF
    app.py      the Starlette app: pages, forms, /metrics, /healthz
    server.py   `DashboardServer`: uvicorn's `Server` on the daemon's loop, start and stop

It never writes the ledger itself: the two mutations (retry, pause/resume) go through the
functions the CLI uses, run on the daemon's own ledger by a `do_write` callable the daemon
passes in. Importing this package is cheap (config.py imports `HttpConfig` from here):
Starlette and uvicorn load only with app.py and server.py.
"""
