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

from support import BIN, DBC, OTHER_VIN, PROFILE, ROOT, VIN, SimCar, free_port, listening, pki, tls_args, wait_until, terminate
from support import expected as expected_in


class Rig:
    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        (tmp / "broker").mkdir()
        # Mutual TLS and the ACL, as docs/operations.md sets a broker up: no anonymous client.
        self.pki = pki(tmp / "pki", self.port)
        (tmp / "mosquitto.conf").write_text(
            (self.pki / "mosquitto.conf").read_text() +
            f"max_queued_messages 1000000\npersistence true\npersistence_location {tmp}/broker/\nautosave_interval 1\n"
            f"log_dest file {tmp}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n")
        self.broker = None
        self.start_broker()
        # The backend's subscription must exist before cars publish.
        self.start_backend()
        # The backend's public key, installed in the car: the answers it acts on are signed.
        self.answer_key = self.portal("keys").stdout.strip()
        self.daemon = None

    def backend_ready(self, connections):
        log = self.tmp / "backend.log"
        return log.exists() and log.read_text().count("connected to") >= connections

    def start_broker(self):
        self.broker = subprocess.Popen(["mosquitto", "-c", str(self.tmp / "mosquitto.conf")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self.broker_up)

    def broker_up(self):
        return listening(self.port)

    def stop_broker(self):
        self.broker.send_signal(signal.SIGTERM)
        self.broker.wait(timeout=10)

    def daemon_config(self, log, replay="fast", broker_port=None, keepalive=5, outbox=None, follow=False, bus=None):
        conf = self.tmp / "telematicsd.conf"
        source = (f"source = logbus:{bus}\n" if bus else
                  f"source = candump:{log}\nreplay = {replay}\nfollow = {'true' if follow else 'false'}\n")
        conf.write_text(f"[can]\n{source}dbc = {DBC}\ntransmit-status = false\n"
                        f"[vehicle]\nprofile = {PROFILE}\n[control]\nsocket = {self.tmp}/ctl.sock\n"
                        f"[outbox]\npath = {outbox or self.tmp / 'outbox.db'}\n[ecall]\njournal = {self.tmp}/ecall.journal\n"
                        f"link = 127.0.0.1:{free_port()}\n[backend]\nbroker = 127.0.0.1:{broker_port or self.port}\n"
                        f"tls-ca = {self.pki}/ca.pem\ntls-cert = {self.pki}/{VIN}.pem\ntls-key = {self.pki}/{VIN}.key\n"
                        f"answer-key = {self.answer_key}\n"
                        f"keepalive-s = {keepalive}\n[privacy]\nsettings-file = {self.tmp}/settings.json\n")
        return conf

    def start_daemon(self, log, replay="fast", **options):
        conf = self.daemon_config(log, replay, **options)
        self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                       stderr=open(self.tmp / "daemon.log", "a"))

    def start_live_daemon(self, extra=""):
        """telematicsd on a CAN log the test writes to as it goes (`follow`), with `extra`
        configuration appended; returns the log and the configuration file."""
        log = self.tmp / "live.log"
        log.write_text("")
        conf = self.daemon_config(log, follow=True)
        conf.write_text(conf.read_text() + extra)
        self.run_daemon(conf)
        return log, conf

    def start_sim_car(self, extra="", car_args=()):
        """The simulated car (tcu-car) and the daemon on their software bus, the daemon registered-
        ready (a registration file, `extra` configuration) and connected; returns the car."""
        bus = self.tmp / "bus"
        self.car = SimCar(self.tmp, bus, *car_args)
        conf = self.daemon_config(None, bus=bus)
        conf.write_text(conf.read_text() + f"[registration]\nfile = {self.tmp}/registration.json\n" + extra)
        self.run_daemon(conf)
        assert wait_until(lambda: self.status().get("outbox.backend.connected") == "true")
        return self.car

    def start_car(self, extra=""):
        """The live daemon with a registration file (and `extra` configuration), connected to the
        broker; returns the CAN log and the configuration file."""
        log, conf = self.start_live_daemon(f"[registration]\nfile = {self.tmp}/registration.json\n" + extra)
        assert wait_until(lambda: self.status().get("outbox.backend.connected") == "true")
        return log, conf

    def run_daemon(self, conf):
        self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                       stderr=open(self.tmp / "daemon.log", "a"))

    def portal(self, *args, input=""):
        """tcu-backend on the backend's database: its queries and the portal's commands.
        `input` is its standard input: the secrets it reads (a password, an S-PIN), one per line."""
        return subprocess.run([os.path.join(BIN, "tcu-backend"), *args, "--db", str(self.tmp / "backend.db")],
                              capture_output=True, text=True, input=input)

    def tcuctl(self, *args, input=""):
        return subprocess.run([os.path.join(BIN, "tcuctl"), *args, "--socket", f"{self.tmp}/ctl.sock"], capture_output=True, text=True,
                              input=input)

    def add_car(self):
        """Ana signs up, verifies her address and adds the car: the car's entry, with its pairing code."""
        self.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
        self.portal("user", "verify", "ana@example.com")
        return json.loads(self.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)

    def start_backend(self, clock_offset_days=0, extra=()):
        log = self.tmp / "backend.log"
        connections = log.read_text().count("connected to") + 1 if log.exists() else 1
        self.backend = subprocess.Popen([os.path.join(BIN, "tcu-backend"), "serve", *self.broker_args(),
                                         "--db", str(self.tmp / "backend.db"), f"--clock-offset-days={clock_offset_days}", *extra],
                                        stderr=open(log, "a"))
        assert wait_until(lambda: self.backend_ready(connections))

    def broker_args(self):
        """tcu-backend's options for the broker, with the backend's own identity."""
        return ["--broker", f"127.0.0.1:{self.port}", *tls_args(self.pki, "tcu-backend", kind="backend")]

    def mqtt(self, identity="tcu-backend"):
        """mosquitto_pub/sub's options for the broker, as IDENTITY (a VIN, or tcu-backend)."""
        return ["-h", "127.0.0.1", "-p", str(self.port), *tls_args(self.pki, identity)]

    def restart_backend(self, clock_offset_days=0, extra=()):
        self.backend.terminate()
        self.backend.wait(timeout=10)
        self.start_backend(clock_offset_days, extra)

    def status(self):
        r = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--socket", f"{self.tmp}/ctl.sock"], capture_output=True, text=True)
        return dict(l.split(" = ", 1) for l in r.stdout.splitlines() if " = " in l)

    def state(self):
        return json.loads(self.backend_cli("state", VIN))

    def backend_cli(self, *args):
        return self.portal(*args).stdout

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
        if getattr(self, "car", None):
            self.car.close()
        terminate(self.daemon, self.backend, self.broker)


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
    times = [e["capturedAt"] for e in events if e["type"] in EVENT_TYPES]
    assert times == sorted(times)
    # State was coalesced while the broker was away: one message per block, the newest.
    blocks = [e["block"] for e in events if e["type"] == "state"]
    assert blocks and len(blocks) == len(set(blocks)), blocks
    assert wait_until(lambda: state_matches(rig.state(), expected("drive")))


EVENT_TYPES = {"opened", "closed", "lockStateChanged", "ignitionOn", "ignitionOff"}


def expected(name):
    return expected_in("traces", name)


def as_text(v):
    return v if isinstance(v, str) else json.dumps(v)


def state_matches(state, want):
    """Whether every `block.rest.of.key = value` of an .expected file is the backend's state."""
    for key, value in want.items():
        block, *rest = key.split(".")
        node = state["blocks"].get(block, {}).get("values")
        for part in rest:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or as_text(node) != value:
            return False
    return True


def test_the_backend_holds_the_latest_state_block_by_block(rig):
    rig.start_daemon(os.path.join(ROOT, "hw", "traces", "drive.log"))
    assert wait_until(lambda: state_matches(rig.state(), expected("drive"))), rig.state()
    state = rig.state()
    assert set(state["blocks"]) >= {"ignition", "driving", "doors", "locks", "windows", "lights", "climate", "cluster",
                                    "service", "occupancy", "alarm", "battery"}
    assert "crash" not in state["blocks"] and "buttons" not in state["blocks"]
    for block in state["blocks"].values():
        assert block["capturedAt"] > 1_700_000_000_000 and block["receivedAt"] > 1_700_000_000_000
    # The car's speed changed hundreds of times; at most one driving block a second went out.
    messages = [e for e in rig.events() if e["type"] == "state"]
    assert 1 <= sum(1 for m in messages if m["block"] == "driving") <= 5
    assert rig.gaps()["gaps"] == []


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


def _start_tls_daemon(r, identity=VIN, ca="ca.pem", with_client_cert=True):
    log = os.path.join(ROOT, "hw", "traces", "alarm.log")
    conf = r.daemon_config(log)
    text = conf.read_text().replace(f"tls-ca = {r.pki}/ca.pem", f"tls-ca = {r.tmp}/{ca}" if ca != "ca.pem" else f"tls-ca = {r.pki}/ca.pem")
    text = text.replace(f"{r.pki}/{VIN}.", f"{r.pki}/{identity}.")
    if not with_client_cert:
        text = "".join(l + "\n" for l in text.splitlines() if not l.startswith(("tls-cert", "tls-key")))
    conf.write_text(text)
    r.run_daemon(conf)


def _backend_status(r):
    out = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--socket", f"{r.tmp}/ctl.sock"], capture_output=True, text=True).stdout
    return dict(l.split(" = ", 1) for l in out.splitlines() if " = " in l)


def test_mutual_tls_delivers(rig):
    _start_tls_daemon(rig)
    assert wait_until(lambda: any(e["type"] == "alarmTriggered" for e in rig.events()))
    assert _backend_status(rig).get("outbox.backend.connected") == "true"


@pytest.mark.parametrize("ca, client_cert", [("other-ca.pem", True), ("ca.pem", False)])
def test_a_wrong_ca_or_a_missing_client_certificate_is_refused_and_nothing_is_lost(rig, ca, client_cert):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=someone-else"],
                   check=True, capture_output=True, cwd=rig.tmp)
    _start_tls_daemon(rig, ca=ca, with_client_cert=client_cert)
    assert wait_until(lambda: _backend_status(rig).get("outbox.waiting.alarm") == "1")
    # The refused handshake is recorded once the link's first attempt has ended.
    assert wait_until(lambda: "outbox.backend.lastError" in _backend_status(rig))
    assert _backend_status(rig)["outbox.backend.connected"] == "false"
    assert rig.events() == []


def test_a_car_reaches_only_its_own_topics_and_cannot_command_itself(rig):
    """The broker's ACL: another car's certificate publishes nothing on this car's topics and
    reads none of them; no car publishes commands or answers; a client without a certificate
    is refused."""
    sub = subprocess.Popen(["mosquitto_sub", *rig.mqtt(OTHER_VIN), "-t", f"vehicles/{VIN}/#", "-v", "-W", "8"],
                           stdout=subprocess.PIPE, text=True)
    own = subprocess.Popen(["mosquitto_sub", *rig.mqtt(VIN), "-t", f"vehicles/{VIN}/#", "-v", "-W", "8"],
                           stdout=subprocess.PIPE, text=True)
    # Both subscriptions are in place (the broker's log says so) before anything is published.
    assert wait_until(lambda: (rig.tmp / "mosquitto.log").read_text().count(f" vehicles/{VIN}/#") >= 2)
    for identity, topic, body in [(OTHER_VIN, f"vehicles/{VIN}/events", '{"id":"x1","seq":1,"type":"opened"}'),
                                  (OTHER_VIN, f"vehicles/{VIN}/commands", '{"id":"x2"}'),
                                  (VIN, f"vehicles/{VIN}/commands", '{"id":"x3"}'),
                                  (VIN, f"vehicles/{VIN}/registration/response", '{"requestId":"x4","ok":true}'),
                                  ("tcu-backend", f"vehicles/{VIN}/commands", '{"id":"from-backend"}')]:
        subprocess.run(["mosquitto_pub", *rig.mqtt(identity), "-q", "1", "-t", topic, "-m", body], check=True)
    anonymous = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(rig.port), "--cafile", f"{rig.pki}/ca.pem",
                                "-t", f"vehicles/{VIN}/events", "-m", "{}"], capture_output=True, text=True)
    assert anonymous.returncode != 0
    seen_by_stranger, _ = sub.communicate(timeout=15)
    seen_by_car, _ = own.communicate(timeout=15)
    assert seen_by_stranger == ""
    # The car sees only the backend's command; the backend stored nothing of the stranger's.
    assert seen_by_car.splitlines() == [f'vehicles/{VIN}/commands {{"id":"from-backend"}}']
    assert rig.events() == []


def burst_log(path, frames=400, period_ms=20):
    """A candump log in which the front left door opens and closes every frame: frames - 1
    events, spread over frames × period of replay time."""
    t0 = 1764000000.0
    with open(path, "w") as f:
        for i in range(frames):
            f.write(f"({t0 + i * period_ms / 1000:.6f}) can0 583#{i % 2:02X}000000\n")
    return frames - 1


def door_events(rig):
    return [e for e in rig.events() if e.get("quantity") == "doors.frontLeft.open"]


def assert_complete(rig, count):
    """Every door event arrived exactly once, in order, with no gap in the sequence."""
    assert wait_until(lambda: len(door_events(rig)) >= count and rig.outbox_waiting() == 0, timeout=60), \
        (len(door_events(rig)), rig.outbox_waiting())
    events = door_events(rig)
    assert len(events) == count
    assert [e["type"] for e in events] == ["opened" if i % 2 == 1 else "closed" for i in range(1, count + 1)]
    assert [e["capturedAt"] for e in events] == sorted(e["capturedAt"] for e in events)
    everything = rig.events()
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert rig.gaps()["gaps"] == []


def test_a_backend_restart_mid_burst_loses_nothing(rig):
    count = burst_log(rig.tmp / "burst.log")
    rig.start_daemon(rig.tmp / "burst.log", replay="original")
    assert wait_until(lambda: len(door_events(rig)) >= 20)
    rig.backend.kill()
    rig.backend.wait()
    stored = len(door_events(rig))
    # The car goes on publishing; the broker keeps the messages for the backend's session.
    assert wait_until(lambda: int(rig.status().get("outbox.backend.acknowledged", "0")) >= stored + 50)
    rig.start_backend()
    assert_complete(rig, count)


class Proxy:
    """A TCP relay between the car and the broker that the test can cut: `drop` discards
    everything in both directions on open connections and refuses new ones (a dead link
    the car must notice by its keepalive); `reset` closes every connection at once."""

    def __init__(self, target_port):
        import threading
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.dropping = threading.Event()
        self.lock = threading.Lock()
        self.sockets = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.dropping.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        while True:
            try:
                data = a.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            if not self.dropping.is_set():
                try:
                    b.sendall(data)
                except OSError:
                    pass

    def reset(self):
        import struct
        with self.lock:
            for s in self.sockets:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass
            self.sockets = []

    def close(self):
        self.server.close()
        self.reset()


def test_a_dead_link_with_the_broker_up_is_noticed_and_loses_nothing(rig):
    count = burst_log(rig.tmp / "burst.log")
    proxy = Proxy(rig.port)
    try:
        rig.start_daemon(rig.tmp / "burst.log", replay="original", broker_port=proxy.port, keepalive=5)
        assert wait_until(lambda: len(door_events(rig)) >= 20)
        # Packets vanish: no error, no FIN; only the keepalive can tell.
        proxy.dropping.set()
        assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "false", timeout=20)
        assert wait_until(lambda: rig.outbox_waiting() >= 20)
        proxy.dropping.clear()
        proxy.reset()
        assert_complete(rig, count)
        assert int(rig.status()["outbox.backend.reconnects"]) >= 1
        assert proxy.connections >= 2
    finally:
        proxy.close()


def test_connections_reset_mid_burst_lose_nothing(rig):
    count = burst_log(rig.tmp / "burst.log")
    proxy = Proxy(rig.port)
    try:
        rig.start_daemon(rig.tmp / "burst.log", replay="original", broker_port=proxy.port)
        for round in range(3):
            assert wait_until(lambda: proxy.connections == round + 1 and len(door_events(rig)) >= 20 * (round + 1))
            proxy.reset()
        assert_complete(rig, count)
        assert int(rig.status()["outbox.backend.reconnects"]) >= 3
    finally:
        proxy.close()


def in_private_tmpfs(directory, size, argv):
    """argv run in a mount namespace of its own where `directory` is a fresh tmpfs of `size`:
    a small disk, without touching the host's mounts (unprivileged: in a user namespace too)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    return ["unshare", *user, "--mount", "sh", "-c", script, "sh", size, str(directory), *argv]


def test_a_small_disk_filling_up_evicts_low_priority_data_and_keeps_the_alarms(rig):
    # 30 000 door events (far more than a 4 MiB disk holds), then three alarms.
    log = rig.tmp / "flood.log"
    burst_log(log, frames=30_000, period_ms=1)
    with open(log, "a") as f:
        for i in range(6):
            f.write(f"({1764000100 + i:.6f}) can0 5A0#{0x01 | (i % 2) << 1 | (i % 2) << 2:02X}010000\n")
    rig.stop_broker()  # nothing drains: everything stays on the small disk
    disk = rig.tmp / "disk"
    disk.mkdir()
    conf = rig.daemon_config(log, outbox=disk / "outbox.db")
    rig.daemon = subprocess.Popen(in_private_tmpfs(disk, "4m", [os.path.join(BIN, "telematicsd"), "--config", str(conf)]),
                                  stderr=open(rig.tmp / "daemon.log", "a"))
    frames = sum(1 for _ in open(log))
    assert wait_until(lambda: rig.status().get("bus.frames") == str(frames), timeout=120)
    assert wait_until(lambda: rig.status().get("outbox.waiting.alarm") == "3", timeout=60), rig.status()
    st = rig.status()
    assert st["outbox.diskLow"] == "true"
    assert int(st["outbox.evicted.event"]) > 10_000
    assert "outbox.evicted.alarm" not in st and "outbox.error" not in st
    assert "the disk holding the outbox is nearly full" in (rig.tmp / "daemon.log").read_text()
    assert rig.daemon.poll() is None
    # The link comes back: what was kept arrives, the alarms first, with no gap.
    rig.start_broker()
    assert wait_until(lambda: sum(e["type"] == "alarmTriggered" for e in rig.events()) == 3, timeout=60)
    assert rig.events()[0]["type"] == "alarmTriggered"
    assert wait_until(lambda: rig.status().get("outbox.waiting.event") is None, timeout=120)
    assert rig.gaps()["gaps"] == []


def test_privacy_offline_sends_nothing_and_keeps_nothing_until_the_user_allows_it_again(rig):
    log, conf = rig.start_live_daemon()

    def door(open_):
        with open(log, "a") as f:
            f.write(f"({time.time():.6f}) can0 583#{1 if open_ else 0:02X}000000\n")

    def privacy(*mode):
        return rig.tcuctl("privacy", *mode).stdout.strip()
    assert wait_until(lambda: rig.connection() == {"online": True})
    door(False)
    door(True)
    assert wait_until(lambda: len(door_events(rig)) == 1)
    assert privacy("offline") == "offline"
    # The link says goodbye and stays down; what happens meanwhile is neither sent nor kept.
    assert wait_until(lambda: rig.connection() == {"online": False})
    door(False)
    door(True)
    assert wait_until(lambda: int(rig.status().get("outbox.withheldByPrivacy", "0")) >= 2)
    assert rig.status()["outbox.backend.connected"] == "false"
    # The choice survives a restart.
    rig.daemon.terminate()
    rig.daemon.wait(timeout=10)
    rig.run_daemon(conf)
    assert wait_until(lambda: rig.status().get("privacy") == "offline")
    assert privacy("share") == "shareMyPosition"
    allowed_at = time.time() * 1000
    assert wait_until(lambda: rig.connection() == {"online": True})
    door(False)  # the first reading after the restart: state, not an event
    door(True)
    assert wait_until(lambda: len(door_events(rig)) == 2)
    events = door_events(rig)
    # The first opening, and the one after sharing was allowed again; none from the offline time.
    assert [e["type"] for e in events] == ["opened", "opened"] and events[1]["capturedAt"] >= allowed_at
    assert rig.gaps()["gaps"] == []


def test_the_portal_cli_signs_up_adds_the_car_and_gives_a_pairing_code(tmp_path):
    db = str(tmp_path / "portal.db")

    def cli(*args, input=""):
        return subprocess.run([os.path.join(BIN, "tcu-backend"), *args, "--db", db], capture_output=True, text=True, input=input)
    assert cli("user", "add", "ana@example.com", input="correct horse\n4711\n").returncode == 0
    early = cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms")
    assert early.returncode == 65 and "(emailNotVerified)" in early.stderr
    assert cli("user", "verify", "ana@example.com").returncode == 0
    no_terms = cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE)
    assert no_terms.returncode == 65 and "(termsNotAccepted)" in no_terms.stderr
    old = cli("garage", "add", VIN, "--user", "ana@example.com", "--model", "Leon", "--built", "2019-12", "--country", "ES",
              "--accept-terms")
    assert old.returncode == 65 and "(modelNotSupported)" in old.stderr
    car = json.loads(cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    assert car["vin"] == VIN and len(car["pairingCode"]) == 8 and car["pairingCode"].isdigit()
    assert car["model"] == "Leon" and car["country"] == "ES" and not car["codeUsed"]
    assert [json.loads(l) for l in cli("garage", "list", "--user", "ana@example.com").stdout.splitlines()] == [car]
    assert cli("garage", "remove", VIN, "--user", "ana@example.com").returncode == 0
    again = json.loads(cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    assert again["pairingCode"] != car["pairingCode"]
    # Nothing secret is stored as typed.
    import sqlite3
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT hash, spin_hash FROM accounts").fetchone()
    assert "correct horse" not in row[0] and row[1] != "4711" and len(row[0]) == 64


def test_registration_with_the_pairing_code_end_to_end(rig):
    cli = rig.portal

    def register(code):
        return rig.tcuctl("register", code)
    assert cli("user", "add", "ana@example.com", input="correct horse\n4711\n").returncode == 0
    assert cli("user", "verify", "ana@example.com").returncode == 0
    car = json.loads(cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    _, conf = rig.start_car()
    assert rig.status()["registration.status"] == "notStarted"
    # Input is checked in the car: nothing else than 8 digits is sent.
    bad = register("1234")
    assert bad.returncode != 0 and "8 digits" in bad.stderr
    # Two wrong codes: each refused by the backend with its advice.
    wrong = "11111111" if car["pairingCode"] != "11111111" else "22222222"
    for _ in range(2):
        r = register(wrong)
        assert r.returncode == 75 and "codeUnknown" in r.stderr and "remove the car from the garage" in r.stderr
    # The right code: the account holder becomes the primary user.
    ok = register(car["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    assert "registration.status = completed" in ok.stdout and "registration.user = ana@example.com" in ok.stdout
    assert "registration.role = primary" in ok.stdout
    assert json.loads(cli("garage", "list", "--user", "ana@example.com").stdout)["codeUsed"] is True
    again = register(car["pairingCode"])
    assert again.returncode == 75 and "codeUsed" in again.stderr
    # The licence: the 12-month trial, renewed from the car for 2 years of Navi.
    trial = json.loads(cli("licence", "show", VIN).stdout)
    assert trial["package"] == "trial" and trial["licenceExpiresAt"] > time.time() * 1000 + 364 * 86_400_000
    renewed = rig.tcuctl("licence", "--renew", "--package", "navi", "--years", "2")
    assert renewed.returncode == 0, renewed.stderr
    assert "price = 225 EUR" in renewed.stdout and "onlineNavigation" in renewed.stdout
    shown = json.loads(cli("licence", "show", VIN).stdout)
    assert shown["package"] == "navi" and shown["licenceExpiresAt"] == trial["licenceExpiresAt"] + 2 * 365 * 86_400_000
    assert rig.status()["registration.licenceExpiresAt"] == str(shown["licenceExpiresAt"])
    # Kept across a restart.
    rig.daemon.terminate()
    rig.daemon.wait(timeout=10)
    rig.run_daemon(conf)
    assert wait_until(lambda: rig.status().get("registration.status") == "completed")
    # Without a connection the car says so at once.
    rig.stop_broker()
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "false", timeout=20)
    t0 = time.monotonic()
    offline = register(car["pairingCode"])
    assert offline.returncode == 75 and "noConnection" in offline.stderr and "data connection" in offline.stderr
    assert time.monotonic() - t0 < 2
    # No secret in any log (the daemon's, the backend's): not the pairing code, not the password.
    logs = list(rig.tmp.glob("*.log"))
    assert any("registered" in l.read_text() for l in logs)
    for log in logs:
        text = log.read_text()
        assert car["pairingCode"] not in text and "correct horse" not in text, log


def capabilities(rig):
    return json.loads(rig.tcuctl("status", "--json").stdout)["capabilities"]


def test_an_expired_licence_stops_remote_services_never_the_ecall_injected_clock(rig):
    # The backend's clock 395 days behind: the car registers "13 months ago", so its 12-month
    # trial ended a month ago by the car's own clock.
    rig.restart_backend(clock_offset_days=-395)

    def past(*args, input=""):
        return rig.portal(*args, "--clock-offset-days=-395", input=input)
    past("user", "add", "ana@example.com", input="correct horse\n4711\n")
    past("user", "verify", "ana@example.com")
    car = json.loads(past("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    # No eCall network here: the test call must not hold up the stop.
    rig.start_car("[ecall]\nshutdown-grace-ms = 0\n")
    # Before registration: only the safety services.
    before = capabilities(rig)
    assert before["emergencyCall"]["isEnabled"] and before["breakdownCall"]["isEnabled"]
    assert before["remoteLockUnlock"]["statusCodes"] == [2003]
    ok = rig.tcuctl("register", car["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    expired = capabilities(rig)
    for service in ["remoteLockUnlock", "vehicleStatus", "parkingPosition", "alerts"]:
        assert expired[service] == {"id": service, "isEnabled": False, "expirationDate": expired[service]["expirationDate"],
                                    "statusCodes": [2002]}
        assert expired[service]["expirationDate"] < time.time() * 1000
    assert expired["emergencyCall"]["isEnabled"] and expired["breakdownCall"]["isEnabled"]
    # The backend hears the codes in the car's state, and the portal shows the enrolment inactive.
    assert wait_until(lambda: rig.state()["blocks"].get("capabilities", {}).get("values", {})
                      .get("remoteLockUnlock", {}).get("statusCodes") == [2002])
    assert json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)["enrolment"] == "inactive"
    # The eCall does not ask the licence: a test call is taken (test_ecall.py calls a PSAP with
    # no account, licence or backend at all).
    assert rig.tcuctl("ecall", "test").returncode == 0
    # Renewed from the car: the remote services are back, on the backend too.
    renewed = rig.tcuctl("licence", "--renew", "--package", "radio", "--years", "1")
    assert renewed.returncode == 0, renewed.stderr
    assert capabilities(rig)["remoteLockUnlock"]["statusCodes"] == []
    assert wait_until(lambda: rig.state()["blocks"]["capabilities"]["values"]["remoteLockUnlock"]["isEnabled"])
    # "Use my position": the parking position says why it is off.
    assert rig.tcuctl("privacy", "use").returncode == 0
    assert capabilities(rig)["parkingPosition"]["statusCodes"] == [1013]


def test_a_car_whose_licence_expired_registers_again_only_after_a_renewal(rig):
    past_days = -395
    rig.restart_backend(clock_offset_days=past_days)
    rig.portal("user", "add", "ana@example.com", f"--clock-offset-days={past_days}", input="correct horse\n4711\n")
    rig.portal("user", "verify", "ana@example.com")
    car = json.loads(rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms",
                                f"--clock-offset-days={past_days}").stdout)
    rig.start_car()
    assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
    # A factory reset, then today (the backend's clock right again) the owner adds the car anew.
    assert rig.tcuctl("reset", "--yes").returncode == 0
    assert wait_until(lambda: "outbox.dataDeletionConfirmedAt" in rig.status(), timeout=30)
    rig.restart_backend()
    again = json.loads(rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    refused = rig.tcuctl("register", again["pairingCode"])
    assert refused.returncode == 75 and "licenceInvalid" in refused.stderr and "licence" in refused.stderr
    assert json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)["enrolment"] == "started"
    # No second trial: the owner renews in the portal, then the same code works.
    assert rig.portal("licence", "renew", VIN, "--package", "navi", "--years", "1").returncode == 0
    ok = rig.tcuctl("register", again["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    assert "onlineNavigation" in ok.stdout
    assert json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)["enrolment"] == "completed"


def test_roles_from_the_portal_cli(rig):
    car = rig.add_car()
    for who in ["ben@example.com", "cleo@example.com"]:
        rig.portal("user", "add", who, input="correct horse\n1234\n")
        rig.portal("user", "verify", who)
    rig.start_car()
    assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
    assert rig.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "ben@example.com", "--role", "secondary").returncode == 0
    assert rig.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "cleo@example.com", "--role", "guest").returncode == 0
    users = [json.loads(l) for l in rig.portal("garage", "users", VIN).stdout.splitlines()]
    assert users == [{"user": "ana@example.com", "role": "primary"}, {"user": "cleo@example.com", "role": "guest"},
                     {"user": "ben@example.com", "role": "secondary"}]
    refused = rig.portal("garage", "share", VIN, "--user", "ben@example.com", "--with", "cleo@example.com", "--role", "secondary")
    assert refused.returncode != 0 and "insufficientRights" in refused.stderr


def test_wrong_codes_lock_registration_in_the_car(rig):
    rig.start_car()

    def register(code):
        return rig.tcuctl("register", code)
    for code in ("11111111", "22222222", "33333333"):
        assert "codeUnknown" in register(code).stderr
    locked = register("44444444")
    assert locked.returncode == 75 and "locked" in locked.stderr and "try again in" in locked.stderr
    assert rig.status()["registration.wrongCodes"] == "3"
    # The backend saw three requests only: the fourth never left the car.
    assert (rig.tmp / "backend.log").read_text().count("registration of VSSZZZKLZNR012345 refused") == 3


class Terminal:
    """tcuctl menu in a real terminal (tmux): keys typed, the screen read back."""

    def __init__(self, rig):
        self.session = f"tcu-menu-{os.getpid()}-{time.monotonic_ns()}"
        # The pane stays a while after the menu ends, so that its last words can be read.
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "120", "-y", "60",
                        f"{os.path.join(BIN, 'tcuctl')} menu --socket {rig.tmp}/ctl.sock; sleep 30"], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def type_(self, text):
        subprocess.run(["tmux", "send-keys", "-t", self.session, text, "Enter"], check=True)

    def shows(self, text):
        assert wait_until(lambda: text in self.screen(), timeout=15), self.screen()

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def test_the_menu_as_a_person_uses_it_in_a_terminal(rig):
    code = rig.add_car()["pairingCode"]
    rig.start_car()
    term = Terminal(rig)
    shows, type_ = term.shows, term.type_
    try:
        shows("== Settings")
        type_("7")
        shows("Choose one of the numbers shown.")
        type_("1")
        shows("Registration: notStarted")
        type_("1")
        shows("State: notStarted")
        type_("1")
        shows("Pairing code from the portal (8 digits; 0 to go back)")
        type_("12ab")
        shows("The code is 8 digits, nothing else.")
        type_(code)
        shows("Registered. Primary user: ana@example.com")
        shows("Primary user: ana@example.com")
        assert rig.status()["registration.status"] == "completed"
        type_("0")
        shows("Registration: completed")
        type_("2")
        shows("Privacy: Share my position")
        type_("3")
        shows("Privacy: Offline")
        assert wait_until(lambda: rig.status().get("privacy") == "offline")
        type_("0")
        type_("3")
        shows("Licence valid until")
        type_("0")
        type_("4")
        shows("Delete user / restore factory settings")
        type_("1")
        shows("Type YES to go on")
        type_("no")
        shows("Nothing was deleted.")
        assert rig.status()["registration.status"] == "completed"
        type_("1")
        type_("YES")
        shows("Factory settings restored.")
        assert wait_until(lambda: rig.status().get("registration.status") == "notStarted")
        type_("0")
        type_("0")
        type_("0")
        shows("Goodbye.")
    finally:
        term.close()


def test_the_activation_assistant_registers_the_car_without_the_portal(rig):
    """The seed's other path, from the car alone: create the account, verify the address (the
    link in the e-mail: here the portal's command), log in, accept the terms, done."""
    rig.start_car()

    def assistant(*args, input=""):
        return rig.tcuctl("assistant", *args, input=input)
    weak = assistant("create-account", "--email", "ana@example.com", input="short\n4711\n")
    assert weak.returncode == 75 and "weakPassword" in weak.stderr and "10 characters" in weak.stderr
    made = assistant("create-account", "--email", "ana@example.com", input="correct horse\n4711\n")
    assert made.returncode == 0 and "account = ana@example.com" in made.stdout and "Open the link" in made.stdout
    early = assistant("add-car", "--email", "ana@example.com", "--accept-terms", input="correct horse\n")
    assert early.returncode == 75 and "emailNotVerified" in early.stderr
    assert rig.portal("user", "verify", "ana@example.com").returncode == 0
    no_terms = assistant("add-car", "--email", "ana@example.com", input="correct horse\n")
    assert no_terms.returncode == 75 and "termsNotAccepted" in no_terms.stderr
    wrong = assistant("add-car", "--email", "ana@example.com", "--accept-terms", input="wrong horse!\n")
    assert wrong.returncode == 75 and "wrongPassword" in wrong.stderr
    ok = assistant("add-car", "--email", "ana@example.com", "--accept-terms", input="correct horse\n")
    assert ok.returncode == 0, ok.stderr
    assert "registration.status = completed" in ok.stdout and "registration.role = primary" in ok.stdout
    car = json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)
    assert car["vin"] == VIN and car["codeUsed"] and car["enrolment"] == "completed"
    for log in rig.tmp.glob("*.log"):
        assert "correct horse" not in log.read_text() and car["pairingCode"] not in log.read_text(), log


def test_passwords_and_spins_come_on_standard_input_never_as_arguments(rig):
    # As arguments, every local user would read them in ps (issue 14, finding 17).
    for tool, args in [(rig.portal, ("user", "add", "ana@example.com", "--password", "correct horse", "--spin", "4711")),
                       (rig.tcuctl, ("assistant", "create-account", "--email", "ana@example.com", "--password", "correct horse"))]:
        r = tool(*args)
        assert r.returncode == 64 and "Unknown option '--password'" in r.stderr, r.stderr
    # No input: a clear error, nothing created.
    r = rig.portal("user", "add", "ana@example.com")
    assert r.returncode == 64 and "password: nothing on standard input" in r.stderr, r.stderr
    r = rig.portal("user", "add", "ana@example.com", input="correct horse\n")
    assert r.returncode == 64 and "s-pin (4 digits): nothing on standard input" in r.stderr, r.stderr
    # One per line from a pipe: the account is created (test_app_api logs in with that password).
    assert rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n").returncode == 0
    again = rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    assert again.returncode != 0 and "accountExists" in again.stderr, again.stderr


def test_the_activation_assistant_in_the_menu(rig):
    rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    rig.start_car()
    term = Terminal(rig)
    shows, type_ = term.shows, term.type_
    try:
        shows("== Settings")
        for key, screen in [("1", "== Settings › Online services"), ("1", "== Online services › Registration"),
                            ("2", "== Registration › Activation assistant"), ("2", "E-mail address")]:
            type_(key)
            shows(screen)
        # Creating an account that exists: refused, with the portal's reason.
        type_("ana@example.com")
        shows("Password (at least 10 characters)")
        type_("correct horse")
        shows("S-PIN for remote functions (4 digits)")
        type_("47")
        shows("The S-PIN is 4 digits.")
        # Secrets are typed with the echo off: the screen never shows them.
        assert "correct horse" not in term.screen() and "47\n" not in term.screen(), term.screen()
        type_("4711")
        shows("The account was not created (accountExists)")
        # Log in before the address is verified, then after.
        type_("1")
        shows("E-mail address")
        type_("ana@example.com")
        type_("correct horse")
        shows("== Activation assistant › Terms")
        type_("1")
        shows("Registration failed (emailNotVerified)")
        assert rig.portal("user", "verify", "ana@example.com").returncode == 0
        type_("1")
        type_("ana@example.com")
        type_("correct horse")
        shows("Privacy policy")
        type_("1")
        shows("Registered. Primary user: ana@example.com")
        assert rig.status()["registration.status"] == "completed"
        shows("State: completed")
    finally:
        term.close()


def test_a_factory_reset_deletes_the_users_data_in_the_car_and_in_the_backend(rig):
    import sqlite3
    cli, tcuctl = rig.portal, rig.tcuctl
    code = rig.add_car()["pairingCode"]
    files = {name: rig.tmp / f"{name}.json" for name in ("registration", "parking", "settings")}
    files["parking"].write_text('{"latitude":41.4745,"longitude":1.9305,"fixTime":1764000000000,"parkedAt":1764000005000}\n')
    log, _ = rig.start_live_daemon(f"[registration]\nfile = {files['registration']}\n"
                                   f"[gnss]\ngpsd = 127.0.0.1:{free_port()}\nparking-file = {files['parking']}\n")
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "true")
    assert tcuctl("register", code).returncode == 0
    assert tcuctl("privacy", "use").returncode == 0
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#00000000\n({time.time():.6f}) can0 583#01000000\n")
    assert wait_until(lambda: len(door_events(rig)) == 1 and rig.state()["blocks"])
    # The link goes down; more happens: it waits in the car.
    rig.stop_broker()
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#00000000\n")
    assert wait_until(lambda: rig.outbox_waiting() >= 1)
    assert all(p.exists() for p in files.values())
    refused = tcuctl("reset")
    assert refused.returncode != 0 and "--yes" in refused.stderr
    done = tcuctl("reset", "--yes")
    assert done.returncode == 0, done.stderr
    # In the car: the files are gone and the outbox holds only the request to the backend.
    assert not any(p.exists() for p in files.values())
    with sqlite3.connect(rig.tmp / "outbox.db") as db:
        rows = db.execute("SELECT stream, payload FROM messages").fetchall()
    assert [(s, json.loads(p)["type"]) for s, p in rows] == [("requests", "deleteMyData")]
    st = rig.status()
    assert st["registration.status"] == "notStarted" and st["parking"] == "none" and st["privacy"] == "shareMyPosition"
    # The link returns: the backend deletes the car's data and confirms.
    rig.start_broker()
    assert wait_until(lambda: "outbox.dataDeletionConfirmedAt" in rig.status(), timeout=30)
    assert door_events(rig) == [] and rig.state()["blocks"] == {}
    assert cli("garage", "list", "--user", "ana@example.com").stdout == ""
    assert rig.gaps()["gaps"] == []
    assert "deleted the data of VSSZZZKLZNR012345" in (rig.tmp / "backend.log").read_text()


def test_numbers_out_of_range_from_mqtt_are_refused_and_the_backend_goes_on(rig):
    """Issue 14, finding 4: one message with 1e300 where an integer belongs once killed the backend."""
    def pub(topic, body):
        subprocess.run(["mosquitto_pub", *rig.mqtt(VIN), "-q", "1", "-t", topic, "-m", body], check=True)
    pub(f"vehicles/{VIN}/events", '{"id":"a","seq":1e300,"type":"opened"}')
    pub(f"vehicles/{VIN}/state", '{"id":"b","seq":1,"type":"state","block":"doors","capturedAt":1e300,"values":{}}')
    pub(f"vehicles/{VIN}/licence/request", '{"requestId":"r1","package":"navi","years":1e300}')
    pub(f"vehicles/{VIN}/licence/request", '{"requestId":"r2","package":"navi","years":-1e300}')
    pub(f"vehicles/{VIN}/events", '{"id":"c","seq":1,"type":"opened"}')
    # The good message after the bad ones is stored; the bad ones are refused with the field named.
    assert wait_until(lambda: [e["id"] for e in rig.events()] == ["c"])
    assert rig.backend.poll() is None
    log = (rig.tmp / "backend.log").read_text()
    assert '"seq" must be a whole number' in log and '"capturedAt" must be milliseconds' in log


def test_slow_control_clients_neither_stall_the_daemon_nor_starve_tcuctl(rig):
    """Issue 14, finding 12: 20 clients sending a byte a second once held the control socket."""
    rig.start_live_daemon()
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "true")
    clients = []
    for _ in range(20):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(str(rig.tmp / "ctl.sock"))
        c.send(b"{")
        clients.append(c)
    try:
        # Each is cut at the whole request's deadline (2 s); tcuctl is answered, or told the
        # socket is busy, at once, and answered once the slow ones are gone.
        started = time.monotonic()
        assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "true", timeout=10)
        assert time.monotonic() - started < 6
        for c in clients:
            c.settimeout(5)
            try:
                c.send(b" ")
                c.recv(100)
            except OSError:
                pass
    finally:
        for c in clients:
            c.close()
    assert "stuck" not in (rig.tmp / "daemon.log").read_text()


def test_a_registration_answer_without_the_backends_signature_is_refused(rig):
    """Issue 14, finding 3: a client answering the car's registration request (here with the
    backend's broker identity, as a broker that lets it through would) cannot register the car
    to its own account with its own command key: the answer is not signed with the backend's
    key, and the car takes nothing of it."""
    import threading
    code = rig.add_car()["pairingCode"]
    rig.backend.terminate()
    rig.backend.wait(timeout=10)
    rig.start_car()
    forged = []

    def answer_it():
        req = subprocess.run(["mosquitto_sub", *rig.mqtt(), "-C", "1", "-W", "20", "-t", f"vehicles/{VIN}/registration/request"],
                             capture_output=True, text=True).stdout
        request_id = json.loads(req)["requestId"]
        for signature in [None, "00" * 64]:
            body = {"requestId": request_id, "ok": True, "user": "mallory@example.com", "role": "primary",
                    "services": ["remoteLockUnlock"], "licenceExpiresAt": 1900000000000, "commandKey": "11" * 32}
            if signature:
                body["signature"] = signature
            subprocess.run(["mosquitto_pub", *rig.mqtt(), "-q", "1", "-t", f"vehicles/{VIN}/registration/response",
                            "-m", json.dumps(body)], check=True)
            forged.append(body)
    t = threading.Thread(target=answer_it)
    t.start()
    # The subscriber is in place before the car asks (the broker's log says so).
    assert wait_until(lambda: f" vehicles/{VIN}/registration/request" in (rig.tmp / "mosquitto.log").read_text())
    r = rig.tcuctl("register", code)
    t.join(timeout=30)
    assert forged and r.returncode != 0 and "answerNotAuthentic" in (r.stdout + r.stderr), r.stdout + r.stderr
    st = rig.status()
    assert st.get("registration.status") != "completed" and "mallory" not in json.dumps(st)


def test_a_flood_of_account_requests_from_a_car_is_rate_limited(rig):
    """Issue 14, finding 11: sixty createAccount requests once made sixty accounts and stalled
    the backend's MQTT thread behind the password hashing."""
    sub = subprocess.Popen(["mosquitto_sub", *rig.mqtt(VIN), "-C", "8", "-W", "60", "-t", f"vehicles/{VIN}/account/response"],
                           stdout=subprocess.PIPE, text=True)
    assert wait_until(lambda: f" vehicles/{VIN}/account/response" in (rig.tmp / "mosquitto.log").read_text())
    for i in range(8):
        body = {"requestId": f"a{i}", "action": "createAccount", "email": f"flood{i}@example.com",
                "password": "correct horse", "spin": "1234"}
        subprocess.run(["mosquitto_pub", *rig.mqtt(VIN), "-q", "1", "-t", f"vehicles/{VIN}/account/request", "-m", json.dumps(body)],
                       check=True)
    answers = [json.loads(l) for l in sub.communicate(timeout=90)[0].splitlines()]
    assert [a.get("error") == "rateLimited" for a in answers].count(True) == 3, answers
    assert sum(a["ok"] for a in answers) == 5
