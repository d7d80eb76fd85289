"""Per-process worker state: identity, the event-loop runtime, in-flight jobs.

Started on Celery's `worker_ready` (the `threads` pool never sends `worker_process_init`) and
torn down on `worker_shutdown`, closing every session and stdio child.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from workers.metrics import WorkerMetrics
from workers.runtime import Runtime

SERVERS_ENV = "MCPGW_WORKER_SERVERS"
NODENAME_ENV = "MCPGW_WORKER_NODENAME"


@dataclass(frozen=True)
class Selection:
    """Which servers this process serves: every registered one (`*`) or named slugs."""

    all_servers: bool
    slugs: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Selection:
        names = frozenset(s.strip() for s in text.split(",") if s.strip())
        return cls(all_servers="*" in names or not names, slugs=names - {"*"})

    def includes(self, slug: str) -> bool:
        return self.all_servers or slug in self.slugs


@dataclass
class WorkerProcess:
    nodename: str
    selection: Selection
    runtime: Runtime
    controller: Any = None  # workers.control.Controller (set once started)
    in_flight: set[str] = field(default_factory=set)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


_current: WorkerProcess | None = None


def default_nodename() -> str:
    return os.environ.get(NODENAME_ENV) or f"gw-{os.getpid()}@{socket.gethostname()}"


def selection_from_env() -> Selection:
    return Selection.parse(os.environ.get(SERVERS_ENV, "*"))


def set_current(process: WorkerProcess | None) -> None:
    global _current
    _current = process


def current() -> WorkerProcess:
    if _current is None:
        raise RuntimeError("worker runtime not started (tasks run only inside `python -m workers`)")
    return _current
