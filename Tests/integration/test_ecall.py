"""The eCall end to end: the real daemon (a recorded crash on its CAN source, or tcuctl)
against the real tcu-psap, scenario by scenario. Timers are shortened in the daemon's
configuration; the tests poll for what they wait for and never sleep for timing."""
import fcntl
import json
import os
import socket
import struct
import subprocess
import termios
import time

import pytest

from support import BIN, ROOT, DaemonConfig, ecall_status, free_port, wait_until

CRASH = os.path.join(ROOT, "hw", "traces", "crash.log")
DRIVE = os.path.join(ROOT, "hw", "traces", "drive.log")


class Bench:
    def __init__(self, tmp_path, scenario="", ecall="", log=CRASH, start_psap=True, journal=None, stderr_pipe=False,
                 replay="fast"):
        self.tmp = tmp_path
        self.port = free_port()
        self.psap_log = tmp_path / "psap.log"
        (tmp_path / "scenario.conf").write_text(scenario)
        self.psap = None
        if start_psap:
            self.start_psap()
        self.ecall_conf = ecall
        self.journal = journal or tmp_path / "ecall.journal"
        self.stderr_pipe = stderr_pipe
        self.replay = replay
        self.start_daemon(log)

    def start_daemon(self, log):
        conf = self.tmp / "telematicsd.conf"
        c = (DaemonConfig(self.tmp).set("can", source=f"candump:{log}", replay=self.replay)
             .set("ecall", link=f"127.0.0.1:{self.port}", journal=self.journal))
        # Stops at once unless a test is about stopping during a call.
        if "shutdown-grace-ms" not in self.ecall_conf:
            c.set("ecall", shutdown_grace_ms=0)
        # The test's own [ecall] lines, as they stand in the file.
        conf.write_text(c.text() + self.ecall_conf)
        if self.stderr_pipe:
            # A one-page pipe that nobody reads: the daemon's log stalls almost at once.
            r, w = os.pipe()
            fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ
            self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)], stderr=w)
            os.close(w)
            self.stderr = os.fdopen(r, "rb")
        else:
            self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                           stderr=open(self.tmp / "daemon.log", "a"))

    def kill_daemon(self):
        self.daemon.kill()
        self.daemon.wait(timeout=10)

    def start_psap(self):
        self.psap = subprocess.Popen([os.path.join(BIN, "tcu-psap"), "--listen", f"127.0.0.1:{self.port}",
                                      "--scenario", str(self.tmp / "scenario.conf"), "--log", str(self.psap_log)])
        # The network must be there before the car starts, or its first attempt finds none.
        assert wait_until(lambda: self.events("listening"))

    def events(self, kind=None):
        if not self.psap_log.exists():
            return []
        out = [json.loads(l) for l in self.psap_log.read_text().splitlines() if l.strip()]
        return [e for e in out if kind is None or e["event"] == kind]

    def received(self, type_):
        return [e["message"] for e in self.events("received") if e["message"]["type"] == type_]

    def ecall(self):
        return ecall_status(self.tmp)

    def last_call(self):
        e = self.ecall()
        return e.get("lastCall") if e else None

    def tcuctl(self, *args):
        return subprocess.run([os.path.join(BIN, "tcuctl"), *args, "--socket", f"{self.tmp}/ctl.sock"],
                              capture_output=True, text=True)

    def close(self):
        self.daemon.terminate()
        self.daemon.wait(timeout=10)
        if self.psap:
            self.psap.terminate()
            self.psap.wait(timeout=10)


@pytest.fixture
def bench(tmp_path):
    made = []

    def make(**kw):
        b = Bench(tmp_path, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_crash_on_can_places_an_automatic_ecall_with_a_correct_msd(bench):
    b = bench()
    call = wait_until(b.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"] and call["kind"] == "automatic"
    assert b.received("dial")[0]["number"] == "112"
    msd = b.events("msd")[0]["decoded"]
    assert msd["control"]["automaticActivation"] and not msd["control"]["testCall"]
    assert msd["vehicleIdentificationNumber"] == "VSSZZZKLZNR012345"
    assert msd["vehiclePropulsionStorageType"]["gasolineTankPresent"]
    assert msd["numberOfOccupants"] == 2
    # No GNSS: the position is unknown and not trusted, the direction unknown.
    assert msd["vehicleLocation"]["unknown"] and not msd["control"]["positionCanBeTrusted"]
    assert msd["vehicleDirection"] == "unknown"
    assert b.ecall()["phase"] == "callbackWindow"


def test_busy_then_answered_redials(bench):
    b = bench(scenario="attempts = busy, noAnswer, answered\n", ecall="redial-interval-ms = 100\n")
    call = wait_until(b.last_call)
    assert call["attempts"] == 3 and call["msdAcknowledged"]
    assert [d["call"] for d in b.received("dial")] == [1, 2, 3]


def test_a_call_cleared_or_dropped_before_it_was_answered_is_redialled(bench):
    # An independent network peer (not tcu-psap) that clears the first attempt while the unit
    # is still dialling and drops the second: each is a failed set-up, redialled, not an
    # emergency call ended by the PSAP (it used to end the eCall with no MSD and no redial).
    b = bench(start_psap=False, ecall="redial-interval-ms = 100\n")
    dials = []
    with socket.create_server(("127.0.0.1", b.port)) as server:
        server.settimeout(60)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(60)
            lines = conn.makefile("r")
            while len(dials) < 3:
                m = json.loads(lines.readline())
                if m["type"] != "dial":
                    continue
                dials.append(m)
                reply = {1: "cleared", 2: "dropped"}.get(len(dials), "cleared")
                conn.sendall((json.dumps({"type": reply, "call": m["call"]}) + "\n").encode())
    assert [d["call"] for d in dials] == [1, 2, 3] and all(d["number"] == "112" for d in dials)
    assert b.last_call() is None  # no call has ended: it is still being placed


def test_drop_during_msd_transfer_redials_within_120_s(bench):
    b = bench(scenario="drop-on-msd = 1\n")
    call = wait_until(b.last_call)
    assert call["attempts"] == 2 and call["msdAcknowledged"]
    msds = b.events("msd")
    assert len(msds) == 2
    dials = [e for e in b.events("received") if e["message"]["type"] == "dial"]
    assert dials[1]["t"] - dials[0]["t"] < 120_000


def test_psap_asks_for_the_msd_again(bench):
    b = bench(scenario="request-again = 2\nrequest-again-delay-ms = 50\n")
    call = wait_until(b.last_call)
    msds = [e["decoded"] for e in b.events("msd")]
    assert [m["messageIdentifier"] for m in msds] == [1, 2, 3]
    assert len({m["timestamp"] for m in msds}) == 1
    assert call["lastMessageIdentifier"] == 3


@pytest.mark.parametrize("scenario, ecall, failure", [
    ("send-msd = never\nhang-up-after-ms = 1500\n", "t5-ms = 300\n", "noSendMSD"),
    ("ll-ack = false\nal-ack = false\nhang-up-after-ms = 1500\n", "t7-ms = 300\n", "noLowerLayerAck"),
    ("al-ack = false\nhang-up-after-ms = 1500\n", "t6-ms = 300\n", "noApplicationAck"),
])
def test_t5_t6_t7_expiry_switches_to_voice(bench, tmp_path, scenario, ecall, failure):
    b = bench(scenario=scenario, ecall=ecall)
    call = wait_until(b.last_call)
    assert not call["msdAcknowledged"] and call["ending"] == "clearedByRemote"
    log = (tmp_path / "daemon.log").read_text()
    assert f"eCall voice ecall.msdFailure={failure}" in log


def test_al_ack_clear_down_ends_the_call(bench):
    b = bench(scenario="al-ack-clear-down = true\n")
    call = wait_until(b.last_call)
    assert call["ending"] == "clearedByALACK" and call["msdAcknowledged"]
    assert wait_until(lambda: b.received("hangup"))


def test_t2_ends_a_call_nobody_clears(bench):
    b = bench(scenario="hang-up-after-ms = -1\n", ecall="t2-ms = 1500\n")
    call = wait_until(b.last_call)
    assert call["ending"] == "t2Expired"
    assert wait_until(lambda: b.received("hangup"))


def test_the_psap_calls_back_within_t9_and_the_unit_answers(bench):
    b = bench(scenario="callback-after-ms = 200\ncallback-hang-up-after-ms = 300\nrequest-again = 0\n")
    assert wait_until(lambda: b.received("answer"))
    assert wait_until(lambda: b.ecall()["phase"] == "callbackWindow" and len(b.events("sent")) > 6)


def test_a_test_call_goes_to_the_test_number_with_testcall_set(bench):
    b = bench(log=DRIVE, ecall="test-number = 0800-ECALL-TEST\n")
    assert wait_until(lambda: b.ecall() is not None)
    assert b.tcuctl("ecall", "test").returncode == 0
    call = wait_until(b.last_call)
    assert call["kind"] == "test"
    assert b.received("dial")[0]["number"] == "0800-ECALL-TEST"
    assert b.events("msd")[0]["decoded"]["control"]["testCall"] is True


def test_an_automatic_call_cannot_be_cancelled(bench):
    b = bench(scenario="answer-delay-ms = 3000\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "dialling")
    r = b.tcuctl("ecall", "cancel")
    assert r.returncode != 0 and "automaticCallCannotBeCancelled" in r.stderr


def test_no_network_then_network_the_call_goes_through(bench):
    b = bench(start_psap=False, ecall="redial-interval-ms = 200\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") in ("redialWait", "dialling"))
    b.start_psap()
    call = wait_until(b.last_call)
    assert call["msdAcknowledged"] and call["attempts"] >= 2


def _sos_log(tmp_path):
    """The SOS button pressed once on an otherwise quiet bus."""
    log = tmp_path / "sos.log"
    log.write_text("(1764000000.000000) can0 5C1#0000\n(1764000000.100000) can0 5C1#0100\n"
                   "(1764000000.200000) can0 5C1#0000\n")
    return str(log)


def test_sos_button_waits_t1_and_a_cancel_in_time_stops_it(bench, tmp_path):
    b = bench(log=_sos_log(tmp_path), ecall="t1-ms = 3000\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "manualPending")
    assert b.tcuctl("ecall", "cancel").returncode == 0
    assert wait_until(lambda: b.ecall()["phase"] == "idle")
    assert b.received("dial") == []


def _ignition_log(tmp_path, with_airbag):
    lines = ["(1764000000.000000) can0 3C0#00030000"]
    if with_airbag:
        lines.append("(1764000000.010000) can0 040#0000000000000000")
    path = tmp_path / "ignition.log"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_self_test_at_ignition_on_passes_with_network_and_crash_signal(bench, tmp_path):
    b = bench(log=_ignition_log(tmp_path, with_airbag=True))
    want = {"networkAccess": "passed", "crashSignal": "passed", "gnss": "notFitted"}
    # The link may attach a moment after the first check; the result must settle to a pass.
    assert wait_until(lambda: (b.ecall() or {}).get("selfTest") == want)
    assert b.ecall()["warning"] is False


def test_self_test_failure_raises_the_warning_lamp_while_it_lasts(bench, tmp_path):
    b = bench(log=_ignition_log(tmp_path, with_airbag=False), start_psap=False)
    st = wait_until(lambda: (b.ecall() or {}).get("selfTest"))
    assert st["networkAccess"] == "failed" and st["crashSignal"] == "failed"
    assert b.ecall()["warning"] is True
    log = (tmp_path / "daemon.log").read_text()
    assert "eCall self-test failed ecall.selfTest.failed=networkAccess,crashSignal" in log


def _quiet_log(tmp_path):
    path = tmp_path / "quiet.log"
    path.write_text("(1764000000.000000) can0 3C0#00000000\n")
    return str(path)


def test_a_crash_of_the_daemon_mid_call_is_resumed_from_the_journal(bench, tmp_path):
    b = bench(scenario="hang-up-after-ms = -1\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "voice")
    assert wait_until(lambda: b.journal.exists() and "stage = inCall" in b.journal.read_text())
    b.kill_daemon()
    # Restarted (as systemd would) on a bus where the crash is over: it redials at once.
    b.start_daemon(_quiet_log(tmp_path))
    assert wait_until(lambda: len(b.received("dial")) == 2)
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "voice")
    log = (tmp_path / "daemon.log").read_text()
    assert "resuming the eCall after a restart ecall.attempts=1 ecall.kind=automatic ecall.stage=inCall" in log
    # The MSD was acknowledged before: the reconnected call is in pull mode, no new INITIATION.
    assert len(b.received("initiation")) == 1


def test_the_callback_window_survives_a_restart_and_the_journal_goes_when_it_ends(bench, tmp_path):
    b = bench(scenario="hang-up-after-ms = 100\ncallback-after-ms = 3000\n", ecall="t9-ms = 6000\n")
    assert wait_until(lambda: b.journal.exists() and "stage = callbackWindow" in b.journal.read_text())
    b.kill_daemon()
    b.start_daemon(_quiet_log(tmp_path))
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "callbackWindow")
    assert wait_until(lambda: b.received("answer"))
    # T9 runs out: idle, and the journal is gone.
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "idle")
    assert wait_until(lambda: not b.journal.exists())


def test_a_journal_older_than_13_hours_is_deleted_at_start(bench, tmp_path):
    journal = tmp_path / "ecall.journal"
    old = int(time.time()) - 14 * 3600
    journal.write_text(f"stage = callbackWindow\nkind = automatic\nnumber = 112\nattempts = 1\n"
                       f"msd-timestamp = {old}\nstarted-at = {old}\nwritten-at = {old}\ncleared-at = {old}\n")
    b = bench(log=_quiet_log(tmp_path))
    assert wait_until(lambda: not journal.exists())
    assert b.ecall()["phase"] == "idle"
    assert "eCall journal older than 13 h deleted" in (tmp_path / "daemon.log").read_text()


def _thread_wait_channel(pid, name):
    """The kernel function the process's thread `name` sleeps in (/proc's wchan)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                with open(f"/proc/{pid}/task/{tid}/wchan") as w:
                    return w.read()
    raise AssertionError(f"no thread named {name} in process {pid}")


def test_the_ecall_goes_through_while_log_disk_and_menu_are_blocked(bench, tmp_path):
    """stderr is a pipe nobody reads (the log stalls at once at trace level), the journal's
    folder does not exist (the disk refuses every write), and tcuctl clients hold the control
    socket without ever sending (a busy menu): the crash still gives a call with its MSD."""
    ctl = f"{tmp_path}/ctl.sock"
    holders = []

    def hold_menu():
        while len(holders) < 10:  # within the listen backlog: connects never block
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(ctl)
            except OSError:
                s.close()
                return False
            holders.append(s)
        return True

    # 3000 speed changes in the first second (each a debug log line: about 400 KB for a
    # 4 KiB pipe), then the crash one second later, at the recorded timing.
    flood = tmp_path / "flood.log"
    lines = [f"(1764000000.{i * 300:06d}) can0 0FD#00{(i % 250):02X}{(i // 250):02X}0000000000" for i in range(3000)]
    lines += [f"(1764000001.{i:06d}) can0 040#0000000000000000" for i in range(3)]
    lines += [f"(1764000002.{i:06d}) can0 040#00{0x07:02X}000000000000" for i in range(3)]
    flood.write_text("\n".join(lines) + "\n")
    b = bench(log=str(flood), journal="/proc/tcu-none/ecall.journal", stderr_pipe=True, replay="original",
              scenario="hang-up-after-ms = 300\n", ecall="\n[log]\nlevel = debug\n")
    wait_until(hold_menu, timeout=10)
    msds = wait_until(lambda: b.events("msd"))
    assert msds and msds[0]["decoded"]["control"]["automaticActivation"]
    # The log was stalled: nobody reads its one-page pipe, and the log's writer thread sleeps
    # in the kernel's pipe write, while the flood a second earlier gave the daemon far more to
    # write (checked below). (How full the pipe is says less: a batch larger than the one
    # page slot blocks with the slot partly filled.)
    unread = struct.unpack("i", fcntl.ioctl(b.stderr.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    assert unread > 0
    assert "pipe_write" in _thread_wait_channel(b.daemon.pid, "log-writer")
    assert wait_until(lambda: [m for m in b.events("sent") if m["message"]["type"] == "cleared"])
    for s in holders:
        s.close()
    call = wait_until(b.last_call)
    assert call["msdAcknowledged"] and call["ending"] == "clearedByRemote"
    b.daemon.terminate()
    err = b.stderr.read()
    b.daemon.wait(timeout=10)
    assert len(err) > 100_000
    assert b"cannot write the eCall journal; the call goes on without it" in err


def test_the_ecall_report_goes_to_the_outbox_at_the_highest_priority(bench, tmp_path):
    import sqlite3
    # A registered car (as tcuctl register leaves it; the handshake is tested with the backend).
    (tmp_path / "registration.json").write_text('{"status":"completed","user":"ana@example.com","role":"primary"}')
    b = bench(ecall=f"\n[registration]\nfile = {tmp_path}/registration.json\n")
    assert wait_until(b.last_call)

    def report():
        try:
            with sqlite3.connect(tmp_path / "outbox.db") as db:
                return db.execute("SELECT priority, stream, payload FROM messages WHERE stream = 'ecall'").fetchall()
        except sqlite3.Error:
            return None
    rows = wait_until(report)
    priority, stream, payload = rows[0]
    body = json.loads(payload)
    assert priority == 0 and body["type"] == "eCallReport" and body["kind"] == "automatic"
    assert body["vin"] == "VSSZZZKLZNR012345" and body["msdAcknowledged"] is True
    # The report holds the call's facts, never a position.
    assert "latitude" not in payload and "position" not in payload


def test_the_ecall_goes_through_while_the_outbox_is_stalled_and_the_backend_link_hangs(bench, tmp_path):
    """Another process holds the outbox database locked (every commit waits out its busy
    timeout and fails) and the broker accepts the connection but never answers: the crash
    10 s into the recording still gives a call placed on time, with its MSD."""
    import sqlite3
    import threading
    lock = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    lock.execute("CREATE TABLE held(x)")
    hung = socket.create_server(("127.0.0.1", 0))
    held = []

    def hold_connections():
        # Takes the daemon's connections and never answers, until the test closes the socket.
        try:
            for _ in range(100):
                held.append(hung.accept())
        except OSError:
            pass
    threading.Thread(target=hold_connections, daemon=True).start()
    try:
        b = bench(replay="original", ecall=f"\n[backend]\nbroker = 127.0.0.1:{hung.getsockname()[1]}\nkeepalive-s = 60\n")
        msd = wait_until(lambda: b.events("msd"), timeout=40)
        assert msd and msd[0]["decoded"]["control"]["automaticActivation"]
        hello = b.events("received")[0]["t"]
        dial = next(e["t"] for e in b.events("received") if e["message"]["type"] == "dial")
        # The crash is 10.0 s after the first frame; the unit connected to the network at its start.
        assert dial - hello < 10_500, (hello, dial)
        call = wait_until(b.last_call, timeout=30)
        assert call["msdAcknowledged"]
        st = b.tcuctl("status").stdout
        assert "outbox.error" in st and "outbox.backend.connected = false" in st
        assert held, "the daemon never reached the hung broker"
    finally:
        lock.close()
        hung.close()


def test_the_ecall_works_with_privacy_offline_and_no_registration_and_its_report_stays_in_the_car(bench, tmp_path):
    """No account, no registration, no licence (none exists in the car), privacy at its
    strictest: the legal eCall still calls and sends its MSD; nothing goes to the backend."""
    b = bench(ecall="\n[privacy]\nmode = offline\n")
    call = wait_until(b.last_call)
    assert call["msdAcknowledged"] and call["ending"] == "clearedByRemote"
    msd = b.events("msd")[0]["decoded"]
    assert msd["control"]["automaticActivation"]
    st = b.tcuctl("status").stdout
    assert "privacy = offline" in st
    # Nothing was the car's to send: never registered, no consent (the state of the crash log).
    assert wait_until(lambda: "outbox.withheldBeforeRegistration" in b.tcuctl("status").stdout)
    assert "outbox.waiting.ecall" not in b.tcuctl("status").stdout


def test_an_unregistered_car_keeps_its_ecall_report(bench, tmp_path):
    b = bench(ecall=f"\n[registration]\nfile = {tmp_path}/registration.json\n")
    call = wait_until(b.last_call)
    assert call["msdAcknowledged"]
    assert wait_until(lambda: "the eCall report stays in the car: it is not registered" in (tmp_path / "daemon.log").read_text())
    assert "outbox.waiting.ecall" not in b.tcuctl("status").stdout


def test_sigterm_during_an_ecall_lets_the_call_finish_then_stops(bench, tmp_path):
    import signal as sig
    b = bench(scenario="hang-up-after-ms = 3000\n", ecall="shutdown-grace-ms = 30000\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "voice")
    b.daemon.send_signal(sig.SIGTERM)
    assert wait_until(lambda: "stopping once the eCall in progress ends" in (tmp_path / "daemon.log").read_text())
    # Still on the call until the PSAP clears it, then a clean exit.
    assert b.daemon.poll() is None
    assert b.daemon.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "the eCall ended; stopping" in log and "eCall ended" in log
    assert [m for m in b.events("sent") if m["message"]["type"] == "cleared"]


def test_a_second_sigterm_stops_during_the_call_and_the_journal_keeps_it(bench, tmp_path):
    import signal as sig
    b = bench(scenario="hang-up-after-ms = 120000\n", ecall="shutdown-grace-ms = 60000\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "voice")
    b.daemon.send_signal(sig.SIGTERM)
    assert wait_until(lambda: "stopping once the eCall in progress ends" in (tmp_path / "daemon.log").read_text())
    b.daemon.send_signal(sig.SIGTERM)
    assert b.daemon.wait(timeout=20) == 0
    assert "stopping during the eCall: the journal lets the next start resume it" in (tmp_path / "daemon.log").read_text()
    assert (tmp_path / "ecall.journal").exists()


def test_the_menu_cancels_an_sos_call_in_its_window(bench, tmp_path):
    """The SOS button pressed, and the occupant cancels from the head unit's menu (tmux)."""
    b = bench(log=_sos_log(tmp_path), ecall="t1-ms = 60000\n")
    assert wait_until(lambda: (b.ecall() or {}).get("phase") == "manualPending")
    session = f"tcu-sos-{os.getpid()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    f"{os.path.join(BIN, 'tcuctl')} menu --socket {tmp_path}/ctl.sock; sleep 30"], check=True)
    try:
        def screen():
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        assert wait_until(lambda: "4) Cancel the emergency call" in screen()), screen()
        subprocess.run(["tmux", "send-keys", "-t", session, "4", "Enter"], check=True)
        assert wait_until(lambda: "The emergency call is cancelled." in screen()), screen()
        assert wait_until(lambda: b.ecall()["phase"] == "idle")
        assert b.received("dial") == []
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
