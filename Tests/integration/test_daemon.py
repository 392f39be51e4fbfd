"""The daemon and tcuctl as processes: configuration errors, exit codes, the recorded
scenarios replayed through a candump source, and what the binary links."""
import glob
import json
import os
import subprocess

import pytest

import support
from support import BIN, DBC, PROFILE, ROOT, DaemonConfig

DAEMON = os.path.join(BIN, "telematicsd")
TCUCTL = os.path.join(BIN, "tcuctl")


def config(tmp_path, source, **can):
    # A registered car (its owner accepted the terms): before that nothing is queued for the
    # backend. No network for the eCall here: a stop need not wait for the call.
    return (DaemonConfig(tmp_path).set("can", source=source, **can).registered()
            .set("ecall", shutdown_grace_ms=0).write())


def status(tmp_path):
    out = subprocess.run([TCUCTL, "status", "--socket", f"{tmp_path}/ctl.sock"], capture_output=True, text=True, check=True)
    return dict(l.split(" = ", 1) for l in out.stdout.splitlines())


def wait_until(predicate, timeout=20):
    """support.wait_until, with tcuctl's failures (the daemon not up yet) counting as not yet."""
    return support.wait_until(predicate, timeout, ignoring=(subprocess.CalledProcessError,))


@pytest.mark.parametrize("trace", sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "hw", "traces", "*.log"))))
def test_recorded_trace_ends_in_the_state_of_its_golden_file(trace):
    # hw/traces/golden replays the log at full speed and compares every state key, the VIN and
    # the bus's counters with NAME.expected (make golden rewrites them).
    r = subprocess.run([os.path.join(ROOT, "hw", "traces", "golden"), BIN, os.path.join(ROOT, "hw", "traces", f"{trace}.log")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 0 failed" in r.stdout
    values = dict(l.split(" = ", 1) for l in open(os.path.join(ROOT, "hw", "traces", f"{trace}.expected")).read().splitlines()
                  if l and not l.startswith("#"))
    assert values["vehicle.vin"] == "VSSZZZKLZNR012345" and values["bus.unknownId"] == "0" and values["bus.truncated"] == "0"


def test_state_changes_are_logged_with_structured_metadata(tmp_path):
    log = os.path.join(ROOT, "hw", "traces", "drive.log")
    conf = config(tmp_path, f"candump:{log}", replay="fast", exit_at_end="true", transmit_status="false")
    r = subprocess.run([DAEMON, "--config", conf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "INFO vehicle state changed vehicle.previous=Unlocked vehicle.quantity=locks.central vehicle.value=Locked" in r.stderr
    assert "NOTICE telematicsd started" in r.stderr and "vehicle.vin=VSSZZZKLZNR012345" in r.stderr


def test_under_journald_lines_carry_syslog_priorities(tmp_path):
    log = os.path.join(ROOT, "hw", "traces", "alarm.log")
    conf = config(tmp_path, f"candump:{log}", replay="fast", exit_at_end="true", transmit_status="false")
    r = subprocess.run([DAEMON, "--config", conf], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "JOURNAL_STREAM": "8:1234"})
    assert r.returncode == 0
    assert "<5>telematicsd started" in r.stderr
    assert "<6>vehicle state changed" in r.stderr


@pytest.mark.parametrize("body, code, message", [
    ("[can]\nsource = socketcan:vcan0\ndbc = {dbc}\nbitrate = 500000\n", 78, "telematicsd.conf:4: can.bitrate: unknown key"),
    ("[can]\nsource = tcp:1.2.3.4\ndbc = {dbc}\n[vehicle]\nprofile = {profile}\n", 78, "can.source: expected socketcan:IFACE"),
    ("[can]\nsource = socketcan:vcan0\ndbc = /nonexistent.dbc\n[vehicle]\nprofile = {profile}\n", 66, "cannot open /nonexistent.dbc"),
    ("[can]\nsource = socketcan:vcan0\ndbc = {profile}\n[vehicle]\nprofile = {profile}\n", 65, "vehicle-profile.conf:1:1: expected a DBC keyword"),
    ("[can]\nsource = socketcan:vcan0\ndbc = {dbc}\n[vehicle]\nprofile = {dbc}\n", 65, "vehicle.dbc:1:"),
])
def test_bad_configuration_gets_a_clear_error_and_exit_code(tmp_path, body, code, message):
    path = tmp_path / "telematicsd.conf"
    path.write_text(body.format(dbc=DBC, profile=PROFILE))
    r = subprocess.run([DAEMON, "--config", str(path), "--check-config"], capture_output=True, text=True)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("telematicsd: error: ")
    assert message in r.stderr, r.stderr


def test_check_config_accepts_a_good_file(tmp_path):
    conf = config(tmp_path, "socketcan:can0")
    r = subprocess.run([DAEMON, "--config", conf, "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0 and "OK (15 messages" in r.stdout and "VIN VSSZZZKLZNR012345" in r.stdout


def test_no_can_interface_gives_exit_69(tmp_path):
    conf = config(tmp_path, "socketcan:tcunone0")
    r = subprocess.run([DAEMON, "--config", conf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 69
    assert "tcunone0" in r.stderr or "CAN support" in r.stderr


def test_tcuctl_reports_a_missing_daemon(tmp_path):
    r = subprocess.run([TCUCTL, "status", "--socket", f"{tmp_path}/none.sock"], capture_output=True, text=True)
    assert r.returncode == 69 and "is telematicsd running?" in r.stderr


def test_tcuctl_encode_names_the_bad_signal():
    r = subprocess.run([TCUCTL, "can", "encode", "--dbc", DBC, "--missing-as-zero", "TCU_Clima_Request",
                        "Clima_Request=1", "Clima_Target_Temperature=31"], capture_output=True, text=True)
    assert r.returncode == 65 and "value 31.0 is outside 16.0...30.0" in r.stderr
    r = subprocess.run([TCUCTL, "can", "encode", "--dbc", DBC, "--missing-as-zero", "TCU_Clima_Request",
                        "Clima_Request=1", "Clima_Target_Temperature=22.5"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "5F2#010D0000"


@pytest.mark.parametrize("exe", ["telematicsd", "tcuctl", "tcu-car", "tcu-fleet"])
def test_every_command_has_help(exe):
    r = subprocess.run([os.path.join(BIN, exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "USAGE:" in r.stdout


def test_daemon_links_no_full_foundation():
    libs = subprocess.run(["ldd", DAEMON], capture_output=True, text=True, check=True).stdout
    assert "libFoundation.so" not in libs and "libFoundationNetworking" not in libs


def test_libgps_is_loaded_only_with_gnss_configured(tmp_path):
    # libgps brings libsystemd, dbus and libgcrypt: about 1 MB a unit without GNSS should not carry.
    libs = subprocess.run(["ldd", DAEMON], capture_output=True, text=True, check=True).stdout
    assert "libgps" not in libs and "libdbus" not in libs
    log = os.path.join(ROOT, "hw", "traces", "drive.log")
    daemon = subprocess.Popen([DAEMON, "--config", config(tmp_path, f"candump:{log}", transmit_status="false")],
                              stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: status(tmp_path))
        with open(f"/proc/{daemon.pid}/maps") as f:
            assert "libgps.so" not in f.read()
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


def test_vehicle_events_reach_the_outbox_alarms_at_alarm_priority(tmp_path):
    import sqlite3
    log = os.path.join(ROOT, "hw", "traces", "alarm.log")
    conf = config(tmp_path, f"candump:{log}", replay="fast", transmit_status="false")
    daemon = subprocess.Popen([DAEMON, "--config", conf], stderr=subprocess.DEVNULL)
    try:
        def rows():
            try:
                with sqlite3.connect(tmp_path / "outbox.db") as db:
                    return db.execute("SELECT priority, stream, payload FROM messages ORDER BY priority, position").fetchall()
            except sqlite3.Error:
                return None
        # The door opens before the alarm goes off: wait for both (under load the door's event
        # was once committed alone, and the test read the outbox before the alarm's).
        assert wait_until(lambda: (r := rows()) and {"opened", "alarmTriggered"} <= {json.loads(p)["type"] for _, _, p in r})
        found = rows()
        assert found[0][0] == 1 and found[0][1] == "alarms" and json.loads(found[0][2])["type"] == "alarmTriggered"
        door = [json.loads(p) for _, s, p in found if s == "events"]
        assert door[0]["quantity"] == "doors.rearRight.open" and door[0]["value"] is True
        # The status counts the outbox at most once a second.
        assert wait_until(lambda: status(tmp_path).get("outbox.waiting.alarm") == "1")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_a_damaged_outbox_is_moved_aside_and_the_daemon_runs(tmp_path):
    (tmp_path / "outbox.db").write_bytes(b"not a database at all" * 300)
    log = os.path.join(ROOT, "hw", "traces", "alarm.log")
    conf = config(tmp_path, f"candump:{log}", replay="fast", transmit_status="false")
    daemon = subprocess.Popen([DAEMON, "--config", conf], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: status(tmp_path).get("outbox.waiting.alarm") == "1")
        assert [p for p in os.listdir(tmp_path) if p.startswith("outbox.db.corrupt-")]
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=10)
    assert "the outbox database was damaged; moved aside, starting afresh" in err


@pytest.mark.parametrize("tool", ["tcuctl", "tcu-backend", "tcu-psap", "tcu-car", "tcu-fleet"])
def test_the_man_pages_cover_every_subcommand_and_option(tool):
    """docs/TOOL.1 is generated from --help (make man): it must not fall behind the tool."""
    page = open(os.path.join(ROOT, "docs", f"{tool}.1")).read()
    info = json.loads(subprocess.run([os.path.join(BIN, tool), "--experimental-dump-help"], capture_output=True, text=True,
                                     check=True).stdout)["command"]

    def walk(command):
        for sub in command.get("subcommands", []):
            if sub["commandName"] != "help":
                assert f"Em {sub['commandName']}" in page, f"{tool}.1 lacks the subcommand {sub['commandName']}: run make man"
                walk(sub)
        for arg in command.get("arguments", []):
            for name in arg.get("names", []):
                if name["kind"] == "long":
                    assert f"Fl -{name['name']}" in page, f"{tool}.1 lacks --{name['name']}: run make man"
    walk(info)
