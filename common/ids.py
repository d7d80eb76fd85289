"""Identifiers: cuid2 for rows and jobs, random secrets for API keys."""

from __future__ import annotations

import hashlib
import secrets

from cuid2 import Cuid

_cuid = Cuid(length=25)

API_KEY_PREFIX = "mcpgw_"


def new_id() -> str:
    """A collision-resistant, URL-safe row or job id."""
    return _cuid.generate()


def new_api_key() -> str:
    """A fresh API key: recognisable prefix + 32 random bytes."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is safe here (no dictionary to guess from).
    return hashlib.sha256(key.encode()).hexdigest()
