"""The simulated car (tcu-car) end to end, with the unit and real peers around it: a theft
attempt reaches the backend as an alarm; the car drives a route, feeds a real gpsd with its
NMEA, crashes, and the automatic eCall carries the route's position in its MSD; the scenario
library's traces match their golden files; bad input gets a clear error and the car goes on."""
import glob
import json
import os
import socket
import subprocess

from support import BIN, DBC, ROOT, DaemonConfig, SimCar, free_port, listening, terminate, wait_until
from rig import Rig


def test_a_theft_attempt_reaches_the_backend_as_an_alarm(tmp_path):
    rig = Rig(tmp_path)
    try:
        code = rig.add_car()["pairingCode"]
        car = rig.start_sim_car()
        assert rig.tcuctl("register", code).returncode == 0
        car.do("lock", "keyFob")
        assert car.status()["alarm"]["armed"]
        # A locked door forced open at night.
        assert "alarm: triggered (door)" in " ".join(car.do("door", "open", "frontLeft"))
        assert wait_until(lambda: any(e["type"] == "alarmTriggered" for e in rig.events()))
        # The hazard lights flash while the siren sounds; the unit sees it on the bus.
        assert car.status()["lights"]["hazard"]
        assert wait_until(lambda: rig.status().get("alarm.triggered") == "true")
    finally:
        rig.close()


def test_a_crash_on_a_driven_route_places_the_ecall_with_the_routes_position(tmp_path, gpsd, psap, sim_car, daemon_config):
    network = psap()
    bus = tmp_path / "bus"
    # Barcelona, Gran Via eastward: the car starts at the first point.
    car = sim_car(bus, "--gpsd-udp", f"127.0.0.1:{gpsd.udp_port}", "--start", "41.38740,2.16860", "--heading", "75")
    conf = (daemon_config
            .set("can", source=f"logbus:{bus}", transmit_status=False)
            .set("ecall", link=f"127.0.0.1:{network.port}", shutdown_grace_ms=0)
            .set("gnss", gpsd=f"127.0.0.1:{gpsd.port}", parking_file=f"{tmp_path}/parking.json")
            .set("privacy", settings_file=f"{tmp_path}/settings.json").write())
    daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)], stderr=open(tmp_path / "daemon.log", "a"))
    try:
        def unit():
            r = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--socket", f"{tmp_path}/ctl.sock"], capture_output=True, text=True)
            return dict(l.split(" = ", 1) for l in r.stdout.splitlines() if " = " in l)
        assert wait_until(lambda: unit().get("gnss.connected") == "true")
        car.do("seat", "driver", "occupied", "belted")
        car.do("seat", "passenger", "occupied", "belted")
        car.do("engine", "start")
        car.do("drive", "to", "41.39300,2.19500", "speed", "50")
        car.wait("speed", ">", "45")
        # Driving: the unit's speed from the bus and gpsd's fixes agree; three trusted fixes.
        assert wait_until(lambda: unit().get("gnss.trusted") == "true" and unit().get("ecall.recentPositions") == "3", timeout=20)
        speed = float(unit()["driving.speed"].split()[0])
        assert 40 < speed <= 50.5
        where = car.status()["position"]
        car.do("crash", "front", "severity", "3")
        msd = wait_until(lambda: network.events("msd"), timeout=30)[0]["decoded"]
        assert msd["control"]["automaticActivation"] and msd["control"]["positionCanBeTrusted"]
        location = msd["vehicleLocation"]
        # Within a couple of seconds' driving (about 30 m, 1.5 arc seconds) of where the car was.
        assert abs(location["positionLatitude"] / 3_600_000 - where["latitude"]) < 0.0005
        assert abs(location["positionLongitude"] / 3_600_000 - where["longitude"]) < 0.0005
        # Heading east-north-east: the direction in steps of 2°.
        assert 30 <= msd["vehicleDirection"] <= 40
        assert msd["numberOfOccupants"] == 2
        status = car.status()
        assert status["airbag"]["deployed"] and status["driving"]["speedKmh"] == 0
    finally:
        terminate(daemon)


def test_the_scenario_library_matches_its_golden_files():
    files = sorted(glob.glob(os.path.join(ROOT, "hw", "scenarios", "*.scn")))
    assert len(files) >= 8
    r = subprocess.run([os.path.join(BIN, "tcu-car"), "scenario", "check", "--dbc", DBC, *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(files)} passed, 0 failed" in r.stdout


def test_bad_scenarios_routes_and_commands_get_a_clear_error_and_the_car_goes_on(tmp_path):
    bad = tmp_path / "bad.scn"
    bad.write_text("name bad\nat 0s: lock\nat 5s: door open frontMiddle\n")
    r = subprocess.run([os.path.join(BIN, "tcu-car"), "scenario", "play", "--dbc", DBC, str(bad)], capture_output=True, text=True)
    assert r.returncode == 65 and f"{bad}:3:18: expected a door (frontLeft, frontRight, rearLeft, rearRight, hood, trunk), found 'frontMiddle'" in r.stderr
    bad.write_text("at 1e300s: lock\n")
    r = subprocess.run([os.path.join(BIN, "tcu-car"), "scenario", "play", "--dbc", DBC, str(bad)], capture_output=True, text=True)
    assert r.returncode == 65 and f"{bad}:1:4: expected a duration" in r.stderr
    route = tmp_path / "route.txt"
    route.write_text("41.38,2.16\n41.39,north\n")
    bad.write_text(f"at 0s: engine start\nat 1s: route {route}\n")
    r = subprocess.run([os.path.join(BIN, "tcu-car"), "scenario", "play", "--dbc", DBC, str(bad)], capture_output=True, text=True)
    assert r.returncode == 65 and f"{route}:2: expected LAT,LON in degrees, found '41.39,north'" in r.stderr
    car = SimCar(tmp_path, tmp_path / "bus")
    try:
        for words, message in [(["crash", "--front", "--severity", "9"], "a crash severity must be from 1.0 to 4.0, found 9"),
                               (["drive", "to", "91,0"], "expected a destination as LAT,LON in degrees, found '91,0'"),
                               (["fly"], "unknown command 'fly'"),
                               (["lock", "now"], "expected a lock source (keyFob, keyless, doorHandle, telematics, autoLock), found 'now'")]:
            r = car.run("do", *words)
            assert r.returncode == 1 and message in r.stderr, r.stderr
        # Refused by the car, not by the grammar: locking with a door open.
        car.do("door", "open", "rearLeft")
        r = car.run("do", "lock")
        assert r.returncode == 1 and "refused: doorOpen" in r.stderr
        # The car kept running and lost nothing.
        assert car.status()["doors"]["rearLeft"] == "open"
        car.do("close", "all")
        car.do("lock")
        assert car.status()["locks"]["central"] == "locked"
    finally:
        car.close()
