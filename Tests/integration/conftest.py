"""Fixtures shared by the integration tests (pytest loads this file first): the real peers the
tests talk to, each made in the test's own folder and stopped after it."""
import pytest

from rig import Rig
from support import DaemonConfig, Gpsd, Postgres, Psap, SimCar


@pytest.fixture
def rig(tmp_path):
    """The broker (mosquitto with mutual TLS), the backend and the daemon."""
    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.fixture
def postgres():
    """A PostgreSQL server of the test's own (hw/postgres/cluster), stopped and removed after it."""
    p = Postgres()
    yield p
    p.close()


@pytest.fixture
def daemon_config(tmp_path):
    """The daemon's configuration, typed: set what the test is about, then write()."""
    return DaemonConfig(tmp_path)


@pytest.fixture
def gpsd(tmp_path):
    """A real gpsd fed with NMEA over UDP."""
    g = Gpsd(tmp_path)
    yield g
    g.stop()


@pytest.fixture
def psap(tmp_path):
    """Makes tcu-psap instances: psap(scenario_text) -> Psap."""
    made = []

    def make(scenario="", port=None):
        p = Psap(tmp_path, scenario, port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def sim_car(tmp_path):
    """Makes the simulated car on a software bus: sim_car(bus, *tcu_car_args) -> SimCar."""
    made = []

    def make(bus, *args):
        c = SimCar(tmp_path, bus, *args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# The files whose module fixture builds for minutes (test_install.py: make deb, a release build)
# go first: with the tests run two files at a time (make test's TEST_JOBS), the build then
# overlaps every other file's tests instead of running alone at the end (make test passes
# --no-loadscope-reorder, without which pytest-xdist would hand out the files with the most
# tests first, whatever this order).
FIRST = ("test_install.py",)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: 0 if item.path.name in FIRST else 1)
