"""telematicsd as a systemd service: the notify protocol against a test listener (READY,
STATUS, WATCHDOG at half the interval and only while the loops turn, STOPPING), reload on
SIGHUP with a valid and an invalid file, the unit checked by systemd-analyze."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from support import BIN, ROOT, DaemonConfig, terminate, wait_until

DAEMON = os.path.join(BIN, "telematicsd")
TCUCTL = os.path.join(BIN, "tcuctl")
WATCHDOG_S = 2.0  # the test's WatchdogSec: pings every second


def write_config(tmp_path, **extra):
    c = (DaemonConfig(tmp_path)
         .set("can", source=f"candump:{ROOT}/hw/traces/drive.log", loop=True, transmit_status=False)
         .set("control", fault_injection=True)
         .set("log", level=extra.get("level", "info"))
         .set("backend", state_interval_ms=extra.get("interval", 1000))
         .set("ecall", shutdown_grace_ms=0))
    path = tmp_path / "telematicsd.conf"
    # `more`: further lines as they stand in the file (a section of their own).
    path.write_text(c.text() + "".join(l + "\n" for l in extra.get("more", [])))
    return str(path)


class Listener:
    """What systemd would hear on NOTIFY_SOCKET: each datagram with its arrival time."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages = []  # (monotonic time, {key: value})

    def poll(self):
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return
        fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.messages.append((time.monotonic(), fields))

    def wait_for(self, predicate, timeout=20, since=0):
        """The first message received (from the `since`-th on) for which predicate holds."""
        deadline = time.monotonic() + timeout
        seen = since
        while time.monotonic() < deadline:
            for _, m in self.messages[seen:]:
                if predicate(m):
                    return m
            seen = len(self.messages)
            self.poll()
        return None

    def pings(self):
        return [t for t, m in self.messages if m.get("WATCHDOG") == "1"]

    def close(self):
        self.sock.close()


def start(conf, address, watchdog_pid=None, watchdog=True):
    env = dict(os.environ, NOTIFY_SOCKET=address)
    if watchdog:
        env["WATCHDOG_USEC"] = str(int(WATCHDOG_S * 1_000_000))
    if watchdog_pid is not None:
        env["WATCHDOG_PID"] = str(watchdog_pid)
    return subprocess.Popen([DAEMON, "--config", conf], env=env, stderr=subprocess.PIPE, text=True)


def control(tmp_path, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(f"{tmp_path}/ctl.sock")
        s.sendall((json.dumps(request) + "\n").encode())
        return json.loads(s.makefile().readline())


@pytest.fixture
def listener(tmp_path):
    l = Listener(str(tmp_path / "notify.sock"))
    yield l
    l.close()


def stop(daemon):
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=30)
    return daemon.returncode, err


def test_ready_status_watchdog_at_half_the_interval_and_stopping(tmp_path, listener):
    daemon = start(write_config(tmp_path), str(tmp_path / "notify.sock"))
    try:
        ready = listener.wait_for(lambda m: m.get("READY") == "1")
        assert ready, "no READY=1"
        assert "CAN" in ready["STATUS"] and "outbox" in ready["STATUS"] and "eCall idle" in ready["STATUS"]
        # The control socket answers once ready was said.
        assert control(tmp_path, {"command": "ping"})["ok"]
        assert listener.wait_for(lambda m: False, timeout=5.5) is None  # gather five seconds of pings
        pings = listener.pings()
        assert len(pings) >= 4
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # Half of WATCHDOG_USEC, measured on a loaded 2-core machine: never late enough to let
        # systemd's timer expire (2 s), and not a flood either.
        assert all(0.8 <= g <= 1.5 for g in gaps), gaps
        health = control(tmp_path, {"command": "status"})["health"]
        assert health["ready"] and health["systemd"] and health["stalledLoops"] == [] and health["watchdogMs"] == 2000
    finally:
        code, err = stop(daemon)
    assert code == 0, err
    assert listener.wait_for(lambda m: m.get("STOPPING") == "1", timeout=5), "no STOPPING=1"


def test_abstract_notify_socket(tmp_path):
    name = f"tcu-test-{os.getpid()}-{time.monotonic_ns()}"
    l = Listener("\0" + name)
    try:
        daemon = start(write_config(tmp_path), "@" + name, watchdog=False)
        try:
            assert l.wait_for(lambda m: m.get("READY") == "1"), "no READY=1 on the abstract socket"
        finally:
            stop(daemon)
    finally:
        l.close()


def test_a_watchdog_meant_for_another_process_is_not_fed(tmp_path, listener):
    daemon = start(write_config(tmp_path), str(tmp_path / "notify.sock"), watchdog_pid=1)
    try:
        assert listener.wait_for(lambda m: m.get("READY") == "1")
        # Ready, and status lines, but never a ping: WATCHDOG_PID names another process.
        assert listener.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=2.5) is None
    finally:
        stop(daemon)


@pytest.mark.parametrize("loop", ["can-reader", "outbox", "ecall", "control"])
def test_the_watchdog_stops_when_a_loop_hangs(tmp_path, listener, loop):
    daemon = start(write_config(tmp_path), str(tmp_path / "notify.sock"))
    try:
        assert listener.wait_for(lambda m: m.get("READY") == "1")
        assert listener.wait_for(lambda m: m.get("WATCHDOG") == "1")
        assert control(tmp_path, {"command": "fault", "hang": loop})["ok"]
        stuck = listener.wait_for(lambda m: "Stuck" in m.get("STATUS", ""), timeout=10)
        assert stuck and loop in stuck["STATUS"]
        # From then on no ping: over 1.5 watchdog intervals systemd would have restarted the unit.
        after = len(listener.messages)
        assert listener.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=WATCHDOG_S * 1.5, since=after) is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            _, err = daemon.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            _, err = daemon.communicate()
    assert "a main loop is stuck" in err and loop in err


def test_fault_injection_is_refused_unless_configured(tmp_path, listener):
    conf = write_config(tmp_path)
    text = open(conf).read().replace("fault-injection = true", "fault-injection = false")
    open(conf, "w").write(text)
    daemon = start(conf, str(tmp_path / "notify.sock"))
    try:
        assert listener.wait_for(lambda m: m.get("READY") == "1")
        r = control(tmp_path, {"command": "fault", "hang": "outbox"})
        assert not r["ok"] and "fault-injection" in r["error"]
    finally:
        stop(daemon)


def test_reload_applies_a_valid_file_and_keeps_the_old_one_when_invalid(tmp_path, listener):
    conf = write_config(tmp_path, level="info", interval=1000)
    daemon = start(conf, str(tmp_path / "notify.sock"))
    try:
        assert listener.wait_for(lambda m: m.get("READY") == "1")
        running = control(tmp_path, {"command": "status"})["configuration"]
        assert running == {"log.level": "info", "backend.state-interval-ms": 1000, "backend.state-heartbeat-s": 900}
        # A valid file: the log level and the state interval change at once; the outbox path
        # needs a restart, and the log says so.
        write_config(tmp_path, level="debug", interval=250, more=["[gnss]", "max-age-ms = 2000"])
        text = open(conf).read().replace(f"path = {tmp_path}/outbox.db", f"path = {tmp_path}/other.db")
        open(conf, "w").write(text)
        seen = len(listener.messages)
        daemon.send_signal(signal.SIGHUP)
        assert listener.wait_for(lambda m: m.get("RELOADING") == "1", since=seen)
        assert listener.wait_for(lambda m: m.get("READY") == "1", since=seen)
        running = control(tmp_path, {"command": "status"})["configuration"]
        assert running["log.level"] == "debug" and running["backend.state-interval-ms"] == 250
        # An invalid file: refused with the key named, the running configuration untouched.
        open(conf, "w").write(text.replace("level = debug", "level = loud"))
        seen = len(listener.messages)
        daemon.send_signal(signal.SIGHUP)
        refused = listener.wait_for(lambda m: "Reload refused" in m.get("STATUS", ""), since=seen)
        assert refused and "log.level" in refused["STATUS"] and refused.get("READY") == "1"
        assert control(tmp_path, {"command": "status"})["configuration"] == running
        health = control(tmp_path, {"command": "status"})["health"]
        assert health["reloads"] == 2 and "log.level" in health["lastReloadError"]
    finally:
        code, err = stop(daemon)
    assert code == 0
    assert re.search(r"configuration reloaded .*config.changed=.*log.level", err)
    assert re.search(r"changes that take effect at the next restart config.sections=\"?outbox,gnss", err), err
    assert re.search(r"reload refused.*log.level: expected one of", err)


def test_without_systemd_nothing_is_sent_and_the_daemon_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    daemon = subprocess.Popen([DAEMON, "--config", write_config(tmp_path)], env=env, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: os.path.exists(f"{tmp_path}/ctl.sock") and control(tmp_path, {"command": "status"})["health"]["ready"])
        status = control(tmp_path, {"command": "status"})
        assert status["health"]["systemd"] is False
        # The eCall's loop on its own thread under SCHED_FIFO 10; refused, it says so.
        if os.geteuid() == 0:
            assert status["ecall"]["scheduling"] == "SCHED_FIFO 10"
        else:
            assert status["ecall"]["scheduling"].startswith("normal (SCHED_FIFO 10 refused")
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0


def test_a_stop_asked_while_the_daemon_starts_waits_and_is_graceful(tmp_path):
    # SIGTERM the moment the control socket appears, before the services run: before, the
    # signal could come before the daemon handled it and end it on the spot (-15).
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    daemon = subprocess.Popen([DAEMON, "--config", write_config(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Watched closely (a millisecond) to come in before the services start.
        deadline = time.monotonic() + 30
        while not os.path.exists(f"{tmp_path}/ctl.sock") and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        terminate(daemon)
    assert daemon.returncode == 0, err
    assert "telematicsd stopped" in err
    assert not os.path.exists(f"{tmp_path}/ctl.sock")


# The unit file, as systemd 252 reads it (no running systemd needed).

@pytest.fixture
def unit(tmp_path):
    text = open(os.path.join(ROOT, "systemd", "telematicsd.service")).read().replace("@BINDIR@", BIN)
    path = tmp_path / "telematicsd.service"
    path.write_text(text)
    return str(path)


def test_unit_verifies_clean(unit):
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Unknown keys are only warnings for verify: none may appear.
    assert "Unknown" not in r.stderr and "ignoring" not in r.stderr, r.stderr


def test_unit_exposure_is_at_most_2(unit):
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", unit],  # in tenths
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    exposure = float(re.search(r"Overall exposure level for telematicsd.service: ([0-9.]+)", r.stdout).group(1))
    assert exposure <= 2.0


def test_unit_is_a_notify_service_with_watchdog_reload_and_its_own_user(unit):
    text = open(unit).read()
    for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "User=telematicsd", "StateDirectory=telematicsd",
                 "ConfigurationDirectory=telematicsd", "ExecReload=/bin/kill -HUP $MAINPID", "CapabilityBoundingSet=\n"]:
        assert line in text, line


def journal_fields(datagram):
    """journald's native protocol: KEY=value lines, or KEY, newline, 64-bit length, value."""
    fields, i = {}, 0
    while i < len(datagram):
        end = datagram.index(b"\n", i)
        line = datagram[i:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = end + 1
        else:
            key, size = line, int.from_bytes(datagram[end + 1:end + 9], "little")
            value = datagram[end + 9:end + 9 + size]
            i = end + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


def test_under_systemd_records_go_to_the_journal_with_their_metadata_as_fields(tmp_path):
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(tmp_path / "journal.sock"))
    journal.settimeout(0.05)
    stderr = open(tmp_path / "stderr", "w")
    st = os.fstat(stderr.fileno())
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", TELEMATICSD_JOURNAL_SOCKET=str(tmp_path / "journal.sock"))
    daemon = subprocess.Popen([DAEMON, "--config", write_config(tmp_path)], env=env, stderr=stderr)
    records = []

    def started():
        try:
            records.append(journal_fields(journal.recv(65536)))
        except socket.timeout:
            pass
        return next((r for r in records if r["MESSAGE"] == "telematicsd started"), None)
    try:
        r = wait_until(started)
        assert r, records
        assert r["PRIORITY"] == "5" and r["SYSLOG_IDENTIFIER"] == "telematicsd"
        assert r["VEHICLE_VIN"] == "VSSZZZKLZNR012345" and r["CAN_SOURCE"].startswith("candump:")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        journal.close()
    # Nothing went to stderr as well: each record once, where journald reads it best.
    assert "telematicsd started" not in (tmp_path / "stderr").read_text()
