"""Per-process call metrics, published in the worker's heartbeat (design §4) so the API's
`/metrics` can export every worker's figures from one scrape, wherever the workers run."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.counts[index] += 1
        self.count += 1
        self.sum += seconds

    def snapshot(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for n in self.counts:
            running += n
            cumulative.append(running)
        return {
            "buckets": list(BUCKETS),
            "counts": cumulative,
            "count": self.count,
            "sum": self.sum,
        }


class WorkerMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._seconds: dict[str, _Histogram] = defaultdict(_Histogram)

    def observe_call(self, slug: str, status: str, seconds: float) -> None:
        with self._lock:
            self._calls[slug][status] += 1
            self._seconds[slug].observe(seconds)

    def snapshot(self, sessions: dict[str, dict[str, Any]], in_flight: int) -> dict[str, Any]:
        with self._lock:
            return {
                "inFlight": in_flight,
                "reconnects": {slug: s.get("reconnects", 0) for slug, s in sessions.items()},
                "calls": {slug: dict(by_status) for slug, by_status in self._calls.items()},
                "callSeconds": {slug: h.snapshot() for slug, h in self._seconds.items()},
            }
