"""`python -m workers --servers SLUGS`: a pinned worker process.

Consumes `mcp.control` and the queues of the selected servers (`*` = every registered server,
including ones registered later) with Celery's `threads` pool, and holds one MCP session per
server in its event-loop thread.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import sys

from common.config import ConfigError, get_settings
from common.queues import CONTROL_QUEUE, server_queue

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--servers", default="*", help="comma-separated slugs, or '*' for all")
    parser.add_argument("--concurrency", type=int, default=None, help="threads (default: config)")
    parser.add_argument("--loglevel", default=None)
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [n for n in names if n != "*" and not SLUG.match(n)]
    if not names or bad:
        parser.error(f"--servers: not a slug list: {args.servers!r}")
    return args


def _initial_queues(servers: str) -> list[str]:
    slugs = {s.strip() for s in servers.split(",")} - {"*", ""}
    return [CONTROL_QUEUE, *sorted(server_queue(s) for s in slugs)]


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    os.environ["MCPGW_WORKER_SERVERS"] = args.servers
    nodename = f"gw-{os.getpid()}-{secrets.token_hex(2)}@{socket.gethostname()}"
    from workers.celery_app import app  # after the environment is settled

    app.worker_main(
        [
            "--quiet",  # no ASCII banner: every line the worker writes is JSON
            "worker",
            "--pool=threads",
            f"--concurrency={args.concurrency or settings.worker_concurrency}",
            f"--queues={','.join(_initial_queues(args.servers))}",
            f"--hostname={nodename}",
            f"--loglevel={(args.loglevel or settings.log_level).upper()}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


if __name__ == "__main__":
    main()
