"""The usage writer: Redis stream `usage` → `mcp_tool_usage`, in batches, without loss.

Entries are read through the consumer group `writers` and acknowledged (XACK, then XDEL) only
after their batch committed, so:
- Postgres down → the insert fails, nothing is acked; the entries stay pending and the next
  flush (this process: its own pending entries first; another: XAUTOCLAIM) writes them.
- A writer killed mid-batch leaves its entries pending; after CLAIM_IDLE_MS any writer claims
  them. The insert is `ON CONFLICT (id) DO NOTHING`, so an entry written but not acked before the
  kill is still one row.
- An entry Postgres refuses for its content (never for being down) is isolated row by row and
  moved to `usage:dead`, so one bad record cannot hold up the others.

Every worker process runs `flush_if_free` every second from a thread, under a short Redis lock
so one process flushes at a time; beat also sends `mcp.flush_usage` to `mcp.control` as a safety
net. A record is therefore in Postgres about a second after it was recorded.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import redis
from celery import shared_task
from redis.exceptions import LockError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from common.db import get_engine
from common.logs import get_logger
from common.models import McpToolUsage
from common.queues import FLUSH_USAGE
from common.redis import get_redis, key
from common.usage import STREAM_FIELD, dead_letter_key, stream_key

log = get_logger(__name__)

GROUP = "writers"
CLAIM_IDLE_MS = 5000  # a pending entry untouched this long belongs to a dead (or stuck) writer
MAX_BATCH = 1000
FLUSH_INTERVAL_SECONDS = 1.0
FLUSH_BUDGET_SECONDS = 4.0  # one locked flush stops reading new batches after this
LOCK_SECONDS = 10  # > budget + one batch: the lock outlives a flush unless the writer hangs
PRUNE_IDLE_MS = 3_600_000

_TABLE = McpToolUsage.__table__
# Postgres parses the records itself: one JSON array per batch, no per-row work in Python.
# (Table and column names come from the model, never from input.)
_COLUMN_LIST = ", ".join(column.name for column in _TABLE.columns)
_INSERT_SQL = (
    f"INSERT INTO {_TABLE.name} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} "  # noqa: S608
    f"FROM json_populate_recordset(NULL::{_TABLE.name}, %s) ON CONFLICT (id) DO NOTHING"
)

Entry = tuple[str, dict[str, str] | None]  # (stream id, fields); no fields: deleted since read


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_group(client: redis.Redis) -> None:
    """Create the group (and stream) if missing, from id 0: nothing recorded earlier is skipped."""
    try:
        client.xgroup_create(stream_key(), GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _read(client: redis.Redis, consumer: str, start: str, count: int) -> list[Entry]:
    answer = client.xreadgroup(GROUP, consumer, {stream_key(): start}, count=count)
    return answer[0][1] if answer else []


def _batches(
    client: redis.Redis, consumer: str, count: int, claim_idle_ms: int
) -> Iterator[list[Entry]]:
    """This consumer's own pending entries, then a dead writer's, then new ones (lazily)."""
    last = "0-0"
    while entries := _read(client, consumer, last, count):
        yield entries
        last = entries[-1][0]
    cursor = "0-0"
    while True:
        answer = client.xautoclaim(stream_key(), GROUP, consumer, claim_idle_ms, cursor, count)
        cursor, entries = answer[0], answer[1]
        if entries:
            yield entries
        if cursor in ("0-0", b"0-0"):
            break
    while entries := _read(client, consumer, ">", count):
        yield entries


def _is_bad_data(exc: Exception) -> bool:
    """Refused for its content (not because the database is unreachable)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _insert(raws: list[str]) -> list[int]:
    """Insert the records in one transaction; returns the indexes of those Postgres refused."""
    try:
        with get_engine().begin() as conn:
            conn.exec_driver_sql(_INSERT_SQL, ("[" + ",".join(raws) + "]",))
        return []
    except SQLAlchemyError as exc:
        if not _is_bad_data(exc):
            raise
    refused = []
    with get_engine().begin() as conn:  # isolate the bad ones, keep the rest
        for index, raw in enumerate(raws):
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(_INSERT_SQL, ("[" + raw + "]",))
            except SQLAlchemyError as exc:
                if not _is_bad_data(exc):
                    raise
                refused.append(index)
    return refused


def _settle(client: redis.Redis, entries: list[Entry]) -> int:
    """Write one batch, then acknowledge every entry of it; returns how many were settled."""
    raws = [fields.get(STREAM_FIELD, "") for _, fields in entries if fields is not None]
    dead = [{STREAM_FIELD: raws[index]} for index in _insert(raws)] if raws else []
    pipe = client.pipeline(transaction=False)
    for body in dead:
        pipe.xadd(dead_letter_key(), body)
    ids = [entry_id for entry_id, _ in entries]
    pipe.xack(stream_key(), GROUP, *ids)
    pipe.xdel(stream_key(), *ids)
    pipe.execute()
    if dead:
        log.error("usage_records_dead_lettered", count=len(dead), stream=dead_letter_key())
    return len(ids)


def flush_usage(
    max_batch: int = MAX_BATCH,
    *,
    consumer: str | None = None,
    claim_idle_ms: int = CLAIM_IDLE_MS,
    budget_seconds: float = FLUSH_BUDGET_SECONDS,
) -> int:
    """Move buffered usage records into Postgres; returns how many stream entries were settled.

    A database outage raises (SQLAlchemyError) with every unsettled entry left pending.
    """
    client = get_redis()
    ensure_group(client)
    deadline = time.monotonic() + budget_seconds
    settled = 0
    for entries in _batches(client, consumer or consumer_name(), max_batch, claim_idle_ms):
        settled += _settle(client, entries)
        if time.monotonic() >= deadline:
            break
    return settled


def prune_consumers(idle_ms: int = PRUNE_IDLE_MS) -> int:
    """Forget writers gone for `idle_ms` with nothing pending (every worker start adds one)."""
    client, removed = get_redis(), 0
    for info in client.xinfo_consumers(stream_key(), GROUP):
        if info["pending"] == 0 and info["idle"] > idle_ms:
            client.xgroup_delconsumer(stream_key(), GROUP, info["name"])
            removed += 1
    return removed


def flush_if_free(prune: bool = False) -> int | None:
    """One flush under the writers' lock; None when another process holds it."""
    lock = get_redis().lock(key("lock", "usage-flush"), timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return None
    try:
        settled = flush_usage()
        if prune:
            prune_consumers()  # under the lock: no writer reads while consumers are removed
        return settled
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("usage_flush_outlived_lock")  # harmless: the insert is idempotent


@shared_task(name=FLUSH_USAGE, ignore_result=True)
def flush_usage_task() -> int:
    """Beat's safety net for the per-process flushers."""
    try:
        return flush_if_free(prune=True) or 0
    except SQLAlchemyError as exc:
        log.warning("usage_flush_failed", error=str(exc).splitlines()[0])
        return 0


class Flusher:
    """A worker process's flush thread (every second; slower while Postgres is down)."""

    def __init__(self, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mcp-usage-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(min(5.0, self.interval * 2**self._failures)):
            self.tick()

    def tick(self) -> None:
        try:
            flush_if_free()
        except (SQLAlchemyError, redis.RedisError, OSError) as exc:
            if self._failures == 0:
                log.warning("usage_flush_failed", error=str(exc).splitlines()[0])
            self._failures = min(self._failures + 1, 3)
            return
        except Exception:
            log.exception("usage_flush_error")
            return
        if self._failures:
            log.info("usage_flush_recovered")
        self._failures = 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then flush what this process recorded last (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.tick()


_flusher: Flusher | None = None


def start_flusher() -> None:
    global _flusher
    if _flusher is None:
        _flusher = Flusher()
        _flusher.start()


def stop_flusher() -> None:
    global _flusher
    if _flusher is not None:
        _flusher.stop()
        _flusher = None
