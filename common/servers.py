"""MCP server configuration: shape, policy and secrets, shared by the API and the workers.

`prepare_config` is the one door a config goes through before it is stored: it validates the shape
for the transport (unknown keys refused), applies the policy, then encrypts the secrets (`env` and
`headers` values). Policy (design §6), checked without any network access:

- stdio: the command must be listed in STDIO_COMMAND_ALLOWLIST, compared exactly (a name is
  resolved on PATH by the worker; an absolute path must be listed as such). An empty allowlist
  disables stdio altogether. `env` may not set PATH, LD_* or DYLD_*: they change which program runs.
- sse/http: http(s) only, no credentials in the URL (they would escape redaction); unless
  ALLOW_PRIVATE_URLS, a host that is `localhost` or a literal private, loopback, link-local,
  reserved or unspecified IP (in any notation the C resolver accepts) is refused. Hostnames are not
  resolved here: workers must re-check the address they connect to.

Workers call `check_policy` on the decrypted config before opening a session, so a server stored
under an older, looser policy is still refused. `announce_server_change` tells every worker that a
server changed, over the Redis pub/sub channel `<prefix>control`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import redis
from marshmallow import Schema, ValidationError, fields, validate

from common import control
from common.config import Settings, get_settings
from common.crypto import REDACTED, SECRET_MAPS, encrypt_config
from common.errors import Conflict, Unprocessable
from common.logs import get_logger

log = get_logger(__name__)

TRANSPORTS = ("stdio", "sse", "http")
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}\Z"  # \Z: "$" would accept a trailing newline
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")
_FORBIDDEN_ENV = re.compile(r"^(PATH|LD_.*|DYLD_.*)$")
_NO_NEWLINES = validate.Regexp(r"^[^\r\n]*\Z", error="Must not contain line breaks.")


class CommandNotAllowed(Unprocessable):
    code = "command_not_allowed"


class UrlNotAllowed(Unprocessable):
    code = "url_not_allowed"


class SlugTaken(Conflict):
    code = "slug_taken"


class SlugImmutable(Unprocessable):
    code = "slug_immutable"


class StdioConfig(Schema):
    command = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    args = fields.List(fields.String(), load_default=list)
    env = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=256)),
        values=fields.String(),
        load_default=dict,
    )
    cwd = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1024))


class RemoteConfig(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    headers = fields.Dict(
        keys=fields.String(validate=[validate.Length(min=1, max=256), _NO_NEWLINES]),
        values=fields.String(validate=_NO_NEWLINES),
        load_default=dict,
    )
    timeoutMs = fields.Integer(strict=True, validate=validate.Range(min=1000, max=300_000))


CONFIG_SCHEMAS: dict[str, type[Schema]] = {
    "stdio": StdioConfig,
    "sse": RemoteConfig,
    "http": RemoteConfig,
}


def normalize_config(transport: str, config: Any) -> dict[str, Any]:
    """The config with defaults filled in; 422 `validation_error` under `config` otherwise."""
    try:
        return CONFIG_SCHEMAS[transport]().load(config)
    except ValidationError as err:
        raise Unprocessable(
            "The server config does not match its transport.",
            details={"fields": {"config": err.messages}},
        ) from None


def _private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.match(host):
            return False  # a hostname: not resolved here
        try:  # "127.1", "2130706433", "0x7f.1": forms inet_aton (and so HTTP clients) accept
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("The server URL must be an http:// or https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("Credentials in the URL are not allowed; send them in `headers`.")
    host = parts.hostname.rstrip(".")
    local = host == "localhost" or host.endswith(".localhost") or _private_address(host)
    if local and not allow_private:
        raise UrlNotAllowed(
            f"The host {host!r} is private or local (set ALLOW_PRIVATE_URLS to allow it).",
            details={"host": host},
        )


def check_resolved_host(url: str, allow_private: bool) -> None:
    """Refuse a hostname that resolves to a private or local address. The API checks only the
    URL's text; workers call this before connecting (a name can point anywhere)."""
    if allow_private:
        return
    host = (urlsplit(url).hostname or "").rstrip(".")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return  # unresolvable: the connection itself will fail and say so
    private = sorted(a for a in addresses if _private_address(a.split("%")[0]))
    if private:
        raise UrlNotAllowed(
            f"The host {host!r} resolves to a private or local address.",
            details={"host": host, "addresses": private},
        )


def check_command(command: str, env: dict[str, str], allowlist: tuple[str, ...]) -> None:
    if not allowlist:
        raise CommandNotAllowed("stdio servers are disabled: STDIO_COMMAND_ALLOWLIST is empty.")
    if command not in allowlist:
        raise CommandNotAllowed(
            f"The command {command!r} is not in STDIO_COMMAND_ALLOWLIST.",
            details={"command": command, "allowed": list(allowlist)},
        )
    forbidden = sorted(name for name in env if _FORBIDDEN_ENV.match(name))
    if forbidden:
        raise CommandNotAllowed(
            "These env variables would change which program runs: " + ", ".join(forbidden),
            details={"env": forbidden},
        )


def check_policy(transport: str, config: dict[str, Any], settings: Settings | None = None) -> None:
    """Raise CommandNotAllowed / UrlNotAllowed when the config breaks the gateway's policy."""
    settings = settings or get_settings()
    if transport == "stdio":
        check_command(config["command"], config.get("env") or {}, settings.stdio_command_allowlist)
    else:
        check_url(config["url"], settings.allow_private_urls)


def _check_placeholders(config: dict[str, Any], previous: dict[str, Any] | None) -> None:
    for name in SECRET_MAPS:
        kept = (previous or {}).get(name) or {}
        orphans = [
            k for k, v in (config.get(name) or {}).items() if v == REDACTED and k not in kept
        ]
        if orphans:
            raise Unprocessable(
                f'"{REDACTED}" keeps a stored secret, but none is stored for these {name} keys.',
                details={"fields": {"config": {name: {k: ["No stored value."] for k in orphans}}}},
            )


def prepare_config(
    transport: str, config: Any, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate, police and encrypt `config` for storage; `"***"` keeps a `previous` secret."""
    normalized = normalize_config(transport, config)
    check_policy(transport, normalized)
    _check_placeholders(normalized, previous)
    return encrypt_config(normalized, previous=previous)


def announce_server_change(server_id: str, action: str) -> None:
    """Tell workers (pub/sub `<prefix>control`) that a server was upserted or deleted.

    Called after commit. A lost message is not fatal: workers also reconcile at every heartbeat.
    """
    try:
        control.publish(action, server_id)
    except redis.RedisError:
        log.warning("server_change_not_announced", server_id=server_id, action=action)
