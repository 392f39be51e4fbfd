"""The durable link end to end: the daemon's outbox publishes over a real mosquitto broker to
the real tcu-backend, which stores every message once, in order, and finds gaps in the sequence;
outages, restarts, kills, dead links, a small disk and privacy offline lose nothing."""
import json
import os
import random
import socket
import subprocess
import time


from support import BIN, ROOT, VIN, wait_until
from support import expected as expected_in
from rig import door_events


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
    """Whether every `block.rest.of.key = value` of an .expected file is the backend's state (the
    file's bus counters, VIN and event-only blocks, crash and buttons, are not state blocks)."""
    for key, value in want.items():
        block, *rest = key.split(".")
        if block in ("bus", "vehicle", "crash", "buttons"):
            continue
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


def burst_log(path, frames=400, period_ms=20):
    """A candump log in which the front left door opens and closes every frame: frames - 1
    events, spread over frames × period of replay time."""
    t0 = 1764000000.0
    with open(path, "w") as f:
        for i in range(frames):
            f.write(f"({t0 + i * period_ms / 1000:.6f}) can0 583#{i % 2:02X}000000\n")
    return frames - 1


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


def test_a_backend_that_dies_before_storing_a_message_gets_it_again(rig):
    """The backend ends (fault injection) after a message arrived and before it is stored: the
    message was not acknowledged, so the broker gives it again to the restarted backend.
    (libmosquitto acknowledges before the handler unless told otherwise: then this one is lost.)"""
    rig.restart_backend(env={"TCU_BACKEND_FAULT_EXIT_ON_MESSAGE": "30"})
    count = burst_log(rig.tmp / "burst.log")
    rig.start_daemon(rig.tmp / "burst.log", replay="original")
    assert rig.backend.wait(timeout=60) == 70
    assert "fault injection: ending before storing message 30" in (rig.tmp / "backend.log").read_text()
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
