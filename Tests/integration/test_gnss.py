"""GNSS end to end: a real gpsd (Debian's) fed with the recorded NMEA traces of hw/gnss/ over
UDP, telematicsd reading it through libgps, and the CAN bus written by the test (a candump log
the daemon follows as it grows)."""
import os
import signal
import socket
import subprocess
import time

import pytest

from support import BIN, DBC, ROOT, DaemonConfig, Gpsd, free_port, listening, wait_until, terminate
from support import expected as expected_in

GNSS = os.path.join(ROOT, "hw", "gnss")
IGNITION_ON = "3C0#00030000"
IGNITION_OFF = "3C0#00000000"


def epochs(name):
    """The trace's reports grouped by second (each second starts with its RMC)."""
    with open(os.path.join(GNSS, f"{name}.nmea"), newline="") as f:
        lines = [l for l in f.read().split("\r\n") if l]
    groups = []
    for line in lines:
        if line.startswith("$GPRMC") or not groups:
            groups.append([])
        groups[-1].append(line)
    return groups


def expected(name):
    return expected_in("gnss", name)


class Rig:
    def __init__(self, tmp):
        self.tmp = tmp
        self.gpsd = Gpsd(tmp)
        self.gpsd_port, self.udp_port = self.gpsd.port, self.gpsd.udp_port
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.can_log = tmp / "bus.log"
        self.can_log.write_text("")
        self.daemon = None
        self.ecall_link = free_port()

    def start_gpsd(self):
        self.gpsd.start()

    def gpsd_up(self):
        return listening(self.gpsd_port)

    def stop_gpsd(self):
        self.gpsd.stop()

    def start_daemon(self):
        conf = (DaemonConfig(self.tmp)
                .set("can", source=f"candump:{self.can_log}", replay="fast", follow=True, transmit_status=False)
                .set("ecall", link=f"127.0.0.1:{self.ecall_link}", shutdown_grace_ms=0)
                .set("gnss", gpsd=f"127.0.0.1:{self.gpsd_port}", parking_file=f"{self.tmp}/parking.json")
                .set("privacy", settings_file=f"{self.tmp}/settings.json")
                .set("registration", file=f"{self.tmp}/registration.json").write())
        self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                       stderr=open(self.tmp / "daemon.log", "a"))
        assert wait_until(lambda: self.status().get("gnss.connected") == "true"), self.status()

    def stop_daemon(self):
        self.daemon.send_signal(signal.SIGTERM)
        assert self.daemon.wait(timeout=20) == 0

    def can(self, frame):
        with open(self.can_log, "a") as f:
            f.write(f"({time.time():.6f}) can0 {frame}\n")

    def status(self):
        r = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--socket", f"{self.tmp}/ctl.sock"],
                           capture_output=True, text=True)
        return dict(l.split(" = ", 1) for l in r.stdout.splitlines() if " = " in l)

    def reports(self):
        return int(self.status().get("gnss.reports", "0"))

    def feed(self, groups):
        """Sends each second of the trace and waits until the daemon has gpsd's report of it."""
        for group in groups:
            before = self.reports()
            self.udp.sendto(("\r\n".join(group) + "\r\n").encode(), ("127.0.0.1", self.udp_port))
            assert wait_until(lambda: self.reports() > before, timeout=10), f"no report for {group[0]}"

    def drive_and_park(self):
        """Ignition on, the recorded drive through gpsd, ignition off: the car is parked."""
        self.can(IGNITION_ON)
        assert wait_until(lambda: self.status().get("ignition.on") == "true")
        self.feed(epochs("drive-park"))
        self.can(IGNITION_OFF)
        assert wait_until(lambda: self.status().get("parking.latitude"))

    def close(self):
        terminate(self.daemon)
        self.gpsd.stop()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def assert_expected(rig, name):
    st = rig.status()
    for key, want in expected(name).items():
        assert st.get(key) == want, f"{name}: {key} = {st.get(key)}, expected {want}"


@pytest.mark.parametrize("trace", ["drive-park", "tunnel", "standstill-noise", "cold-start", "jump"])
def test_a_recorded_trace_through_gpsd_ends_in_the_expected_state(rig, trace):
    rig.start_daemon()
    rig.feed(epochs(trace))
    assert_expected(rig, trace)


def test_the_trust_flag_follows_the_trace_through_a_tunnel(rig):
    rig.start_daemon()
    groups = epochs("tunnel")
    rig.feed(groups[:20])
    assert rig.status()["gnss.trusted"] == "true"
    rig.feed(groups[20:24])  # HDOP 12 at the entrance: about 230 m
    st = rig.status()
    assert st["gnss.trusted"] == "false" and float(st["gnss.error95"]) > 150
    rig.feed(groups[24:36])  # no fix
    st = rig.status()
    assert st["gnss.fix"] == "none" and st["gnss.fixLosses"] == "1"
    rig.feed(groups[36:])
    assert rig.status()["gnss.trusted"] == "true"


def test_a_fix_goes_stale_when_reports_stop(rig):
    rig.start_daemon()
    rig.feed(epochs("drive-park")[:5])
    assert rig.status()["gnss.fix"] == "3D"
    assert wait_until(lambda: rig.status()["gnss.fix"] == "stale", timeout=15)
    assert rig.status()["gnss.trusted"] == "false"


def test_the_parking_position_is_taken_at_ignition_off_and_survives_a_restart(rig):
    rig.start_daemon()
    rig.can(IGNITION_ON)
    assert wait_until(lambda: rig.status().get("ignition.on") == "true")
    rig.feed(epochs("drive-park"))
    # While the car is in use there is no parking position.
    assert rig.status()["parking"] == "none"
    rig.can(IGNITION_OFF)
    lat, lon = (float(x) for x in open(os.path.join(GNSS, "drive-park.position")).read().split())
    st = wait_until(lambda: (s := rig.status()).get("parking.latitude") and s)
    assert abs(float(st["parking.latitude"]) - lat) < 1e-5 and abs(float(st["parking.longitude"]) - lon) < 1e-5
    assert int(st["parking.fixTime"]) == 1764000054000  # the last fix of the trace
    rig.stop_daemon()
    rig.start_daemon()
    again = rig.status()
    assert again["parking.latitude"] == st["parking.latitude"] and again["parking.parkedAt"] == st["parking.parkedAt"]
    # Driving again: no parking position, and the file is gone.
    rig.can(IGNITION_ON)
    assert wait_until(lambda: rig.status().get("parking") == "none")
    assert not os.path.exists(rig.tmp / "parking.json")


def test_gpsd_killed_and_restarted_mid_drive_is_survived(rig):
    rig.start_daemon()
    groups = epochs("drive-park")
    rig.feed(groups[:20])
    rig.gpsd.proc.kill()
    rig.gpsd.proc.wait()
    assert wait_until(lambda: rig.status().get("gnss.connected") == "false", timeout=15)
    assert rig.status()["gnss.outages"] == "1" and "gnss.lastError" in rig.status()
    rig.start_gpsd()
    assert wait_until(lambda: rig.status().get("gnss.connected") == "true", timeout=15)
    rig.feed(groups[20:])
    assert_expected(rig, "drive-park")
    assert "no gpsd: no position until it is back" in (rig.tmp / "daemon.log").read_text()
    assert "gpsd is back" in (rig.tmp / "daemon.log").read_text()


def nmea_degrees(field, hemisphere):
    head = 2 if hemisphere in "NS" else 3
    value = int(field[:head]) + float(field[head:]) / 60
    return -value if hemisphere in "SW" else value


def test_a_crash_sends_the_last_fixes_in_the_msd_and_none_is_readable_before(rig):
    import json
    psap_port = free_port()
    psap_log = rig.tmp / "psap.log"
    (rig.tmp / "scenario.conf").write_text("")
    psap = subprocess.Popen([os.path.join(BIN, "tcu-psap"), "--listen", f"127.0.0.1:{psap_port}",
                             "--scenario", str(rig.tmp / "scenario.conf"), "--log", str(psap_log)])
    try:
        def events(kind):
            if not psap_log.exists():
                return []
            return [e for e in (json.loads(l) for l in psap_log.read_text().splitlines() if l.strip()) if e["event"] == kind]
        assert wait_until(lambda: events("listening"))
        rig.ecall_link = psap_port
        rig.start_daemon()
        groups = epochs("drive-park")
        rig.feed(groups[:30])  # driving east-north-east (75°) at 50 km/h
        st = rig.status()
        assert st["gnss.trusted"] == "true" and st["ecall.recentPositions"] == "3"
        rmc = groups[29][0].split(",")
        lat, lon = nmea_degrees(rmc[3], rmc[4]), nmea_degrees(rmc[5], rmc[6])
        # Before a trigger the positions are not readable from outside: a count, no coordinates.
        full = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--json", "--socket", f"{rig.tmp}/ctl.sock"],
                              capture_output=True, text=True).stdout
        assert "41.47" not in full and str(round(lat * 3_600_000))[:6] not in full
        rig.can("040#0015000000000000")  # Airbag_01: crash detected, front, severity 2
        msd = wait_until(lambda: events("msd"))[0]["decoded"]
        assert msd["control"]["automaticActivation"] and msd["control"]["positionCanBeTrusted"]
        location = msd["vehicleLocation"]
        assert abs(location["positionLatitude"] - lat * 3_600_000) < 10
        assert abs(location["positionLongitude"] - lon * 3_600_000) < 10
        assert msd["vehicleDirection"] == 38  # 75° in steps of 2°
        # N1: where the car was 1 to 3 s before (the fix before the current one), N2: 3 s before
        # N1; west-south-west, at 5.8 (east) and 1.2 (north) units of 100 mas a second.
        n1, n2 = msd["recentVehicleLocationN1"], msd["recentVehicleLocationN2"]
        assert -19 <= n1["longitudeDelta"] <= -5 and -5 <= n1["latitudeDelta"] <= -1, n1
        assert -19 <= n2["longitudeDelta"] <= -16 and -5 <= n2["latitudeDelta"] <= -2, n2
    finally:
        psap.terminate()
        psap.wait(timeout=10)


def registered(rig, services=("parkingPosition",), licence_left_ms=86_400_000):
    """The car as a registration leaves it (tcuctl register is tested with the backend)."""
    import json
    (rig.tmp / "registration.json").write_text(json.dumps({
        "status": "completed", "user": "ana@example.com", "role": "primary", "services": list(services),
        "licenceExpiresAt": int(time.time() * 1000) + licence_left_ms}))


def parking_messages(rig):
    import json
    import sqlite3
    try:
        with sqlite3.connect(rig.tmp / "outbox.db") as db:
            return [(json.loads(p)["values"], c) for p, c in
                    db.execute("SELECT payload, carries_position FROM messages WHERE coalesce_key = 'state.parking'")]
    except sqlite3.Error:
        return []


@pytest.mark.parametrize("case", ["not registered", "licence expired"])
def test_no_parking_position_leaves_the_car_without_a_valid_licence(rig, case):
    if case == "licence expired":
        registered(rig, licence_left_ms=-1)
    rig.start_daemon()
    rig.drive_and_park()
    # The car keeps it (it is the car's own data), the backend is not told: never registered,
    # nothing is kept for the backend at all; with the licence run out, its services stop.
    counter = "outbox.withheldBeforeRegistration" if case == "not registered" else "outbox.withheldByLicence"
    assert wait_until(lambda: int(rig.status().get(counter, "0")) > 0)
    assert rig.status()["parking.latitude"]
    assert parking_messages(rig) == []


def test_use_my_position_keeps_the_parking_position_in_the_car(rig):
    registered(rig)
    rig.start_daemon()
    rig.drive_and_park()
    # Shared: the position waits in the outbox (no broker here), marked as a position.
    assert wait_until(lambda: any(v and c for v, c in parking_messages(rig)))
    r = subprocess.run([os.path.join(BIN, "tcuctl"), "privacy", "use", "--socket", f"{rig.tmp}/ctl.sock"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "useMyPosition"
    # The car still knows where it is parked; the backend is told nothing: the unsent position
    # is deleted and the parking block says none.
    assert rig.status()["parking.latitude"]
    assert wait_until(lambda: parking_messages(rig) == [(None, 0)]), parking_messages(rig)
    bad = subprocess.run([os.path.join(BIN, "tcuctl"), "privacy", "nobody", "--socket", f"{rig.tmp}/ctl.sock"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "expected share, use or offline" in bad.stderr
