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
        # As root, mosquitto would switch to its own user and lose access to the test's folder
        # (certificates, persistence): "user root" keeps it as it is.
        (tmp / "mosquitto.conf").write_text(
            ("user root\n" if os.geteuid() == 0 else "") +
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


def _pki(tmp):
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=tcu-test-ca")
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (tmp / f"{name}.ext").write_text(extra + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2",
        "-subj", "/CN=someone-else")


def _tls_rig(tmp_path):
    _pki(tmp_path)
    r = Rig(tmp_path)
    # A second listener with mutual TLS for the car; the backend stays on the plain one.
    r.tls_port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(conf.read_text()
                    + f"listener {r.tls_port} 127.0.0.1\ncafile {tmp_path}/ca.pem\ncertfile {tmp_path}/server.pem\n"
                      f"keyfile {tmp_path}/server.key\nrequire_certificate true\n")
    r.stop_broker()
    r.start_broker()
    return r


def _start_tls_daemon(r, ca, with_client_cert=True):
    log = os.path.join(ROOT, "hw", "traces", "alarm.log")
    conf = r.tmp / "telematicsd.conf"
    tls = f"tls-ca = {r.tmp}/{ca}\n" + (f"tls-cert = {r.tmp}/client.pem\ntls-key = {r.tmp}/client.key\n" if with_client_cert else "")
    conf.write_text(f"[can]\nsource = candump:{log}\ndbc = {DBC}\nreplay = fast\ntransmit-status = false\n"
                    f"[vehicle]\nprofile = {PROFILE}\n[control]\nsocket = {r.tmp}/ctl.sock\n"
                    f"[outbox]\npath = {r.tmp}/outbox.db\n[ecall]\njournal = {r.tmp}/ecall.journal\nlink = 127.0.0.1:{free_port()}\n"
                    f"[backend]\nbroker = 127.0.0.1:{r.tls_port}\n{tls}")
    r.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)], stderr=open(r.tmp / "daemon.log", "a"))


def _backend_status(r):
    out = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--socket", f"{r.tmp}/ctl.sock"], capture_output=True, text=True).stdout
    return dict(l.split(" = ", 1) for l in out.splitlines() if " = " in l)


def test_mutual_tls_delivers(tmp_path):
    r = _tls_rig(tmp_path)
    try:
        _start_tls_daemon(r, "ca.pem")
        assert wait_until(lambda: any(e["type"] == "alarmTriggered" for e in r.events()))
        assert _backend_status(r).get("outbox.backend.connected") == "true"
    finally:
        r.close()


@pytest.mark.parametrize("ca, client_cert", [("other-ca.pem", True), ("ca.pem", False)])
def test_a_wrong_ca_or_a_missing_client_certificate_is_refused_and_nothing_is_lost(tmp_path, ca, client_cert):
    r = _tls_rig(tmp_path)
    try:
        _start_tls_daemon(r, ca, with_client_cert=client_cert)
        assert wait_until(lambda: _backend_status(r).get("outbox.waiting.alarm") == "1")
        st = _backend_status(r)
        assert st["outbox.backend.connected"] == "false" and "outbox.backend.lastError" in st
        assert r.events() == []
    finally:
        r.close()
