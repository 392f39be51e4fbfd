"""tcu-backend storing in PostgreSQL instead of its SQLite file: Debian's server, started by
each test on a Unix socket of its own (hw/postgres/cluster), password authentication from
libpq's password file. The same end-to-end tests as on SQLite, run on the server: a car
registers and renews, a fleet's every car arrives with no gap, the app API locks the car and
its S-PIN lock-out holds under concurrent guesses, a backend that dies before storing gets
the message again; and what only a server has: it is stopped under a running backend, and
nothing the cars sent is lost."""
import json
import os
import subprocess

import pytest

import test_app_api
import test_fleet
import test_link
import test_registration
from rig import Rig, door_events
from support import BIN, VIN, wait_until


@pytest.fixture
def rig(tmp_path, postgres):
    r = Rig(tmp_path, database=postgres)
    r.postgres = postgres
    yield r
    r.close()


def stored_on_the_server(rig):
    """The backend's file was never made: what it stored is in the server's tables."""
    assert not (rig.tmp / "backend.db").exists()
    return int(rig.postgres.sql("SELECT count(*) FROM messages")[0][0])


def test_a_car_registers_renews_and_its_messages_are_stored_on_postgresql(rig):
    test_registration.test_registration_with_the_pairing_code_end_to_end(rig)
    # What the registered car sends from then on (its state, its capabilities): that test ends
    # with the broker stopped, perhaps before the car sent it (then it waits in its outbox). With
    # the broker back, the car and the backend reconnect, and it reaches the server.
    rig.start_broker()
    assert wait_until(lambda: stored_on_the_server(rig) > 0, timeout=60)
    assert rig.postgres.sql(f"SELECT email, code_used_at IS NOT NULL FROM garage WHERE vin = '{VIN}'") == [["ana@example.com", "t"]]
    assert rig.postgres.sql(f"SELECT package FROM licences WHERE vin = '{VIN}'") == [["navi"]]


def test_every_car_of_a_fleet_reaches_postgresql_with_no_gap(rig):
    test_fleet.test_every_car_of_a_fleet_reaches_the_backend_with_no_gap(rig)
    assert stored_on_the_server(rig) == test_fleet.summary(rig)["messages"]


def test_the_app_api_locks_the_car_and_the_spin_lock_out_holds_on_postgresql(rig):
    api = test_app_api.serving(rig)
    test_app_api.test_an_app_logs_in_reads_the_car_and_locks_it(api)
    # Each guess is counted in one transaction before it is checked: the writers take turns on
    # the server too (an advisory lock), so at most the free tries are checked.
    test_app_api.test_concurrent_spin_guesses_cannot_pass_the_lock(api)


def test_a_backend_that_dies_before_storing_gets_the_message_again_on_postgresql(rig):
    test_link.test_a_backend_that_dies_before_storing_a_message_gets_it_again(rig)


def test_the_database_server_stopped_under_the_backend_loses_nothing(rig):
    """The server stops in the middle of a burst: the backend cannot store, so it acknowledges
    nothing more (the broker keeps the messages for its session) and says so; the server comes
    back and every event arrives once, in order, with no gap."""
    count = test_link.burst_log(rig.tmp / "burst.log")
    rig.start_daemon(rig.tmp / "burst.log", replay="original")
    assert wait_until(lambda: len(door_events(rig)) >= 20)
    rig.postgres.stop()
    log = rig.tmp / "backend.log"
    assert wait_until(lambda: "not acknowledged (the broker sends them again)" in log.read_text(), timeout=30)
    # The car goes on: the broker has its messages.
    acknowledged = int(rig.status().get("outbox.backend.acknowledged", "0"))
    assert wait_until(lambda: int(rig.status().get("outbox.backend.acknowledged", "0")) >= acknowledged + 50)
    assert rig.backend.poll() is None
    rig.postgres.start()
    test_link.assert_complete(rig, count)


def test_a_password_in_the_url_is_refused_and_never_shown(rig):
    r = subprocess.run([os.path.join(BIN, "tcu-backend"), "summary", "--db", "postgresql://tcu:s3cret-pw@/tcu?host=/nonexistent"],
                       capture_output=True, text=True)
    assert r.returncode == 64 and "password file" in r.stderr and "s3cret-pw" not in r.stderr
    # A server that is not there: a clear error naming it.
    r = subprocess.run([os.path.join(BIN, "tcu-backend"), "summary", "--db", "postgresql://tcu@/tcu?host=/nonexistent"],
                       capture_output=True, text=True)
    assert r.returncode == 66 and "cannot connect to PostgreSQL at postgresql://tcu@/tcu?host=/nonexistent" in r.stderr
    # A wrong password from the password file: refused by the server, said so.
    wrong = rig.tmp / "wrong.pgpass"
    wrong.write_text("*:*:*:tcu:not-the-password\n")
    wrong.chmod(0o600)
    r = subprocess.run([os.path.join(BIN, "tcu-backend"), "summary", "--db", rig.db], capture_output=True, text=True,
                       env={**os.environ, "PGPASSFILE": str(wrong)})
    assert r.returncode == 66 and "password authentication failed" in r.stderr, r.stderr
    assert json.loads(rig.portal("summary").stdout)["cars"] == 0
