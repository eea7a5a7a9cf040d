"""A live dashboard in the browser: every flow running in this process, runs and streams.

Nothing starts until ``serve`` is called (importing kisflow starts no thread and opens no
port)::

    import kisflow as kf

    with kf.dashboard.serve() as board:  # 127.0.0.1, a free port
        print("dashboard at", board.url)
        for result in flow.stream(rows, batch_size=1000):
            ...

The page shows each flow's chain (SVG, each stage coloured idle, running or failing)
and, per stage, calls, rows in / out / filtered / dead-lettered, retries, rows/s over
the last 10 s, p50 and p99 call time and the last error; per stream, its position,
committed rows, lag, batches in flight and checkpoint age. It updates over server-sent
events twice a second; ``/api/flows`` serves the same figures as JSON. See
docs/dashboard.md.
"""

from kisflow.dashboard._figures import ENDED_AFTER, RATE_WINDOW, RESERVOIR, Figures
from kisflow.dashboard._server import DEFAULT_ADDRESS, INTERVAL, Dashboard, serve

__all__ = [
    "DEFAULT_ADDRESS",
    "ENDED_AFTER",
    "INTERVAL",
    "RATE_WINDOW",
    "RESERVOIR",
    "Dashboard",
    "Figures",
    "serve",
]
