import secrets

import pytest

from tests.harness import Gateway


@pytest.fixture
def gateway(client, admin_headers) -> Gateway:
    return Gateway(client, admin_headers)


@pytest.fixture
def slug() -> str:
    return "r-" + secrets.token_hex(4)
