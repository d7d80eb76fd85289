import pytest


@pytest.fixture(autouse=True)
def _clean(clean_state):
    """API tests start from empty tables."""
