"""The durable link end to end: the daemon's outbox publishes over a real mosquitto broker to
the real tcu-backend, which stores every message once and finds gaps in the sequence."""
import json
import os
import random
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(os.environ.get("TCUCTL", os.path.join(ROOT, ".build", "debug", "tcuctl")))
DBC = os.path.join(ROOT, "hw", "vehicle.dbc")
PROFILE = os.path.join(ROOT, "hw", "vehicle-profile.conf")
VIN = "VSSZZZKLZNR012345"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


class Rig:
    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        (tmp / "broker").mkdir()
        (tmp / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {tmp}/broker/\nautosave_interval 1\n")
        self.broker = None
        self.start_broker()
        self.backend = subprocess.Popen([os.path.join(BIN, "tcu-backend"), "serve", "--broker", f"127.0.0.1:{self.port}",
                                         "--db", str(tmp / "backend.db")], stderr=subprocess.PIPE, text=True)
        # The backend's subscription must exist before cars publish.
        assert wait_until(lambda: os.path.exists(tmp / "backend.db") and self.connection() is not None or self.backend_ready())
        self.daemon = None

    def backend_ready(self):
        import select
        r, _, _ = select.select([self.backend.stderr], [], [], 0)
        return bool(r) and "connected" in self.backend.stderr.readline()

    def start_broker(self):
        self.broker = subprocess.Popen(["mosquitto", "-c", str(self.tmp / "mosquitto.conf")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self.broker_up)

    def broker_up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop_broker(self):
        self.broker.send_signal(signal.SIGTERM)
        self.broker.wait(timeout=10)

    def start_daemon(self, log, replay="fast"):
        conf = self.tmp / "telematicsd.conf"
        conf.write_text(f"[can]\nsource = candump:{log}\ndbc = {DBC}\nreplay = {replay}\ntransmit-status = false\n"
                        f"[vehicle]\nprofile = {PROFILE}\n[control]\nsocket = {self.tmp}/ctl.sock\n"
                        f"[outbox]\npath = {self.tmp}/outbox.db\n[ecall]\njournal = {self.tmp}/ecall.journal\n"
                        f"link = 127.0.0.1:{free_port()}\n[backend]\nbroker = 127.0.0.1:{self.port}\nkeepalive-s = 5\n")
        self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                       stderr=open(self.tmp / "daemon.log", "a"))

    def backend_cli(self, *args):
        r = subprocess.run([os.path.join(BIN, "tcu-backend"), *args, "--db", str(self.tmp / "backend.db")],
                           capture_output=True, text=True)
        return r.stdout

    def events(self):
        return [json.loads(l) for l in self.backend_cli("events", VIN).splitlines() if l.strip()]

    def gaps(self):
        return json.loads(self.backend_cli("gaps", VIN))

    def connection(self):
        out = self.backend_cli("connection", VIN).strip()
        return None if out in ("", "null") else json.loads(out)

    def outbox_waiting(self):
        import sqlite3
        try:
            with sqlite3.connect(self.tmp / "outbox.db") as db:
                return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        except sqlite3.OperationalError:
            return 0  # not created yet

    def close(self):
        for p in (self.daemon, self.backend, self.broker):
            if p and p.poll() is None:
                p.terminate()
                p.wait(timeout=10)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def test_events_reach_the_backend_once_in_order_and_the_car_says_online(rig):
    rig.start_daemon(os.path.join(ROOT, "hw", "traces", "alarm.log"))
    events = wait_until(lambda: (e := rig.events()) and any(x["type"] == "opened" for x in e) and e)
    types = [e["type"] for e in events]
    assert "alarmTriggered" in types and "opened" in types
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["vin"] == VIN and "sentAt" in e and "capturedAt" in e for e in events)
    assert rig.gaps()["gaps"] == []
    assert wait_until(lambda: rig.connection() == {"online": True})
    # Delivered messages leave the outbox only on PUBACK.
    assert wait_until(lambda: rig.outbox_waiting() == 0)
    rig.daemon.kill()  # no clean goodbye: the broker publishes the last will
    assert wait_until(lambda: rig.connection() == {"online": False}, timeout=20)


def test_a_broker_outage_loses_nothing_and_keeps_the_order(rig):
    rig.stop_broker()
    rig.start_daemon(os.path.join(ROOT, "hw", "traces", "drive.log"))
    # The car goes on while the broker is away: everything waits in the outbox.
    assert wait_until(lambda: rig.outbox_waiting() >= 5)
    waiting = rig.outbox_waiting()
    rig.start_broker()
    assert wait_until(lambda: len(rig.events()) >= waiting)
    events = rig.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert rig.gaps()["gaps"] == []
    # Per-stream order: the capture times of the events stream never go back.
    times = [e["capturedAt"] for e in events if e["type"] != "alarmTriggered"]
    assert times == sorted(times)


def test_kill_minus_9_at_random_moments_loses_no_event(rig):
    rng = random.Random(4242)
    log = os.path.join(ROOT, "hw", "traces", "drive.log")
    for _ in range(6):
        # Crash at a random point of the burst: after a random number of further deliveries.
        target = len(rig.events()) + rng.randint(1, 12)
        rig.start_daemon(log)
        wait_until(lambda: len(rig.events()) >= target, timeout=10)
        rig.daemon.kill()
        rig.daemon.wait()
    rig.start_daemon(log)
    assert wait_until(lambda: rig.outbox_waiting() == 0 and len(rig.events()) > 0, timeout=40)
    gaps = rig.gaps()
    assert gaps["gaps"] == [], gaps
    events = rig.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
