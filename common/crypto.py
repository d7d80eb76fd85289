"""Encryption at rest for server secrets (stdio `env` values, HTTP `headers` values).

Fernet (AES-128-CBC + HMAC) with a key derived from SECRET_KEY. Secret values are stored as
`enc:<token>`; responses show `"***"` instead (see `redact_config`).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from common.config import get_settings

REDACTED = "***"
_PREFIX = "enc:"
SECRET_MAPS = ("env", "headers")


@cache
def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()))


def encrypt(value: str) -> str:
    return _PREFIX + _fernet(get_settings().secret_key).encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(_PREFIX):
        return value
    try:
        return _fernet(get_settings().secret_key).decrypt(value[len(_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret cannot be decrypted with this SECRET_KEY") from None


def _map_values(config: dict[str, Any], fn) -> dict[str, Any]:
    out = dict(config)
    for name in SECRET_MAPS:
        if isinstance(out.get(name), dict):
            out[name] = {k: fn(v) for k, v in out[name].items()}
    return out


def encrypt_config(
    config: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Encrypt secret values; a value sent back as "***" keeps the previously stored secret."""
    out = dict(config)
    for name in SECRET_MAPS:
        values = out.get(name)
        if not isinstance(values, dict):
            continue
        old = (previous or {}).get(name) or {}
        out[name] = {
            k: old[k] if v == REDACTED and k in old else encrypt(str(v)) for k, v in values.items()
        }
    return out


def decrypt_config(config: dict[str, Any]) -> dict[str, Any]:
    return _map_values(config, decrypt)


def redact_config(config: dict[str, Any]) -> dict[str, Any]:
    return _map_values(config, lambda _v: REDACTED)
