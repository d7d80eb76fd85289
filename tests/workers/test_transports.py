"""The worker re-applies the gateway's command/URL policy at connect time."""

from __future__ import annotations

import pytest

from common.servers import CommandNotAllowed, UrlNotAllowed, check_resolved_host
from workers.transports import ServerSpec, enforce_policy


def test_a_command_outside_the_allowlist_is_refused_at_connect_time():
    spec = ServerSpec("id", "s", "stdio", {"command": "/bin/sh", "args": [], "env": {}})
    with pytest.raises(CommandNotAllowed):
        enforce_policy(spec)


def test_a_hostname_resolving_to_loopback_is_refused_unless_private_urls_are_allowed():
    with pytest.raises(UrlNotAllowed):
        check_resolved_host("http://localhost:8080/mcp", allow_private=False)
    check_resolved_host("http://localhost:8080/mcp", allow_private=True)
