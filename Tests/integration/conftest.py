"""Fixtures shared by the integration tests (pytest loads this file first)."""
import pytest

from rig import Rig


@pytest.fixture
def rig(tmp_path):
    """The broker, the backend and the daemon, stopped after the test."""
    r = Rig(tmp_path)
    yield r
    r.close()
