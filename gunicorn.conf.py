"""gunicorn hooks for the API: Prometheus multiprocess mode (`gunicorn -c gunicorn.conf.py`).

Each gunicorn worker process counts its own requests; in multiprocess mode prometheus_client
keeps those values in files under PROMETHEUS_MULTIPROC_DIR and `/metrics` merges them, so a scrape
answered by any worker shows the whole API. The variable must be set before a worker imports
prometheus_client, so it is set here, in the master, before any worker is forked: a fresh
temporary directory of this master's own unless the operator names one (then it is emptied at
start, since stale files would add a previous run's counts). Only the API gets it: Flower also
uses prometheus_client and would otherwise write its series into the API's.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from common.logs import json_formatter

# gunicorn's own lines (start, worker boot, timeouts) in the same JSON as the app's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": json_formatter}},
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["json"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["json"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
    },
}

_own_dir: str | None = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_dir = tempfile.mkdtemp(prefix="mcpgw-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_dir


def on_starting(server) -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # drops the dead worker's live-gauge files


def on_exit(server) -> None:
    if _own_dir:
        shutil.rmtree(_own_dir, ignore_errors=True)
