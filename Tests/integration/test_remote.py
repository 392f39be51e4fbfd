"""Remote commands end to end: tcu-backend (as an app would ask it) → MQTT → telematicsd →
the request frame on the CAN bus → the simulated car (tcu-car) answers with its status frames
→ the result back to the backend. And every refusal: wrong S-PIN and its lock,
a replayed, expired, forged or misrouted command, an expired licence, a user who is not the
primary user, privacy offline, no confirmation, a car that cannot (ignition on)."""
import json
import subprocess
import time

import pytest

from support import PROFILE, VIN, wait_until
from rig import Rig


@pytest.fixture
def car(tmp_path):
    """A registered car, simulated by tcu-car; Ana is its primary user (S-PIN 4711)."""
    rig = Rig(tmp_path)
    code = rig.add_car()["pairingCode"]
    rig.start_sim_car("[remote]\nconfirm-timeout-ms = 3000\nwake-ups-per-day = 2\n")
    assert rig.tcuctl("register", code).returncode == 0
    yield rig
    rig.close()


def command(rig, action, *args, spin="4711", user="ana@example.com", wait=20):
    # The S-PIN comes on standard input (none: the input ends at once).
    r = rig.portal("command", VIN, action, "--user", user, *args, *rig.broker_args(), "--wait-s", str(wait),
                   input=f"{spin}\n" if spin else "")
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    return r, (lines[0]["request"] if lines else None), (lines[1] if len(lines) > 1 else None)


def results(rig, command_id):
    return [(e["status"], e.get("cause")) for e in rig.events() if e.get("type") == "commandResult" and e.get("commandId") == command_id]


def publish(rig, body):
    # As the backend's identity: the car's own checks, behind a broker that lets it through.
    subprocess.run(["mosquitto_pub", *rig.mqtt("tcu-backend"), "-q", "1", "-t", f"vehicles/{VIN}/commands",
                    "-m", json.dumps(body)], check=True)


def test_lock_and_unlock_reach_the_can_bus_and_come_back_confirmed(car):
    r, request, status = command(car, "lock")
    assert r.returncode == 0, r.stdout + r.stderr
    assert status == {"id": request["id"], "action": "lock", "status": "successful"}
    # The car took the request: its checksum and counter were right, and it locked for Telematics.
    assert car.car.requests() == ["unit request lock"]
    assert car.car.status()["locks"] == {"central": "locked", "source": "telematics"}
    assert results(car, request["id"]) == [("inProgress", None), ("successful", None)]
    assert wait_until(lambda: car.state()["blocks"].get("locks", {}).get("values", {}).get("central") == "Locked")
    r, request, status = command(car, "unlock")
    assert status["status"] == "successful" and car.car.requests()[1] == "unit request unlock"
    # The request's history is the backend's too; its own commands (back through vehicles/#)
    # are not taken for the car's messages.
    assert json.loads(car.portal("command-status", request["id"]).stdout)["status"] == "successful"
    assert all(e.get("type") for e in car.events())


def test_a_wrong_spin_says_the_tries_left_then_locks(car):
    for left in ["2 tries left", "1 try left"]:
        r, _, _ = command(car, "unlock", spin="1111")
        assert r.returncode != 0 and "wrongSPIN" in r.stderr and left in r.stderr
    r, _, _ = command(car, "unlock", spin="1111")
    assert "spinLocked" in r.stderr and "30 s" in r.stderr
    # Even the right S-PIN waits for the lock to pass; nothing reached the car.
    r, _, _ = command(car, "unlock")
    assert "spinLocked" in r.stderr
    assert car.car.requests() == []


def test_replayed_forged_misrouted_and_expired_commands_run_nothing(car):
    r, lock, status = command(car, "lock")
    assert status["status"] == "successful"
    # The same command again (recorded off the air): the counter was used.
    publish(car, lock)
    # Forged: the action changed after signing.
    forged = dict(lock, id="forged-1", action="unlock", counter=lock["counter"] + 10)
    publish(car, forged)
    # Misrouted: signed for another car.
    other = dict(lock, id="other-1", vin="VSSZZZKLZNR099999", counter=lock["counter"] + 20)
    publish(car, other)
    # Expired before it arrived: the backend signed it with a validity already over.
    r, expired, status = command(car, "honkAndFlash", "--ttl-s=-1", spin=None, wait=3)
    assert status["status"] == "failed" and status.get("cause") == "expired"
    assert wait_until(lambda: results(car, lock["id"])[-1:] == [("failed", "replayed")])
    assert results(car, "forged-1") == [("failed", "badSignature")]
    # A command for another car is not this car's to answer: no result at all.
    assert results(car, "other-1") == []
    assert car.car.requests() == ["unit request lock"]


def test_an_expired_licence_refuses_remote_commands(tmp_path):
    rig = Rig(tmp_path)
    try:
        # Registered with the backend's clock 395 days behind: the trial ended a month ago.
        rig.restart_backend(clock_offset_days=-395)
        rig.portal("user", "add", "ana@example.com", "--clock-offset-days=-395", input="correct horse\n4711\n")
        rig.portal("user", "verify", "ana@example.com", "--clock-offset-days=-395")
        car = json.loads(rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms",
                                    "--clock-offset-days=-395").stdout)
        rig.start_car()
        assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
        rig.restart_backend()
        # The backend refuses it first (the services stop until the licence is renewed); the car
        # would refuse it too (RemoteExecution's table test): nothing is signed or sent.
        r, request, status = command(rig, "lock")
        assert r.returncode != 0 and "licenceExpired" in r.stderr and request is None
        assert not [e for e in rig.events() if e.get("type") == "commandResult"]
    finally:
        rig.close()


def test_only_the_primary_user_has_remote_functions(car):
    car.portal("user", "add", "ben@example.com", input="correct horse\n1234\n")
    car.portal("user", "verify", "ben@example.com")
    assert car.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "ben@example.com", "--role", "secondary").returncode == 0
    r, _, _ = command(car, "lock", spin="1234", user="ben@example.com")
    assert r.returncode != 0 and "insufficientRights" in r.stderr
    r, _, _ = command(car, "lock", spin="1234", user="eve@example.com")
    assert r.returncode != 0 and "insufficientRights" in r.stderr
    assert car.car.requests() == []


def test_no_confirmation_from_the_body_controller_fails_the_command(car):
    car.car.do("fault", "silent-body")
    r, request, status = command(car, "lock")
    assert status == {"id": request["id"], "action": "lock", "status": "failed", "cause": "noConfirmation"}
    assert car.car.requests() == ["unit request lock ignored (silent body controller)"]
    # One request per type at a time; this one is over, so another may go.
    car.car.do("fault", "clear")
    assert command(car, "lock")[2]["status"] == "successful"


def test_a_car_with_its_ignition_on_does_not_lock(car):
    car.car.do("ignition", "on")
    assert wait_until(lambda: car.status().get("ignition.on") == "true")
    r, request, status = command(car, "lock")
    assert status["status"] == "failed" and status["cause"] == "ignitionOn"
    assert car.car.requests() == []


def test_locking_from_the_app_with_a_door_left_open_fails_with_the_cause(car):
    car.car.do("door", "open", "rearLeft")
    assert wait_until(lambda: car.status().get("doors.rearLeft.open") == "true")
    r, request, status = command(car, "lock")
    assert status == {"id": request["id"], "action": "lock", "status": "failed", "cause": "doorOpen"}
    # The unit refused it before the bus: the car never saw a request.
    assert car.car.requests() == []
    car.car.do("door", "close", "rearLeft")
    assert wait_until(lambda: car.status().get("doors.rearLeft.open") == "false")
    assert command(car, "lock")[2]["status"] == "successful"


def test_privacy_offline_lets_no_command_in(car):
    assert car.tcuctl("privacy", "offline").returncode == 0
    assert wait_until(lambda: car.status().get("outbox.backend.connected") == "false")
    r, request, status = command(car, "lock", "--ttl-s=2", wait=5)
    assert status == {"id": request["id"], "action": "lock", "status": "timedOut"}
    assert car.car.requests() == []


def test_climatisation_checks_the_temperature_before_anything_is_sent(car):
    for bad in ["15.5", "30.5", "21.3"]:
        r, _, _ = command(car, "climatisationStart", f"--temperature={bad}", spin=None)
        assert r.returncode != 0 and "invalidTemperature" in r.stderr


def test_a_stale_counter_or_a_wrong_checksum_is_ignored_by_the_car(car):
    """The car's own rules (docs/vehicle-sim.md): a repeated counter or a wrong checksum in the
    unit's request frame is ignored, as a real body controller does."""
    bus = car.tmp / "bus" / "unit.log"
    with open(bus, "a") as f:
        # Lock with counter 5 and its checksum (0x51 ^ 0 ^ 0 = 0x51): done; the same frame again: stale.
        f.write(f"({time.time():.6f}) can0 5F1#51000051\n")
        f.write(f"({time.time():.6f}) can0 5F1#51000051\n")
        # Unlock, counter 6, with a wrong checksum.
        f.write(f"({time.time():.6f}) can0 5F1#620000FF\n")
    assert wait_until(lambda: len(car.car.requests()) == 3)
    assert car.car.requests() == ["unit request lock", "TCU_Body_Request ignored (stale counter 5)",
                                  "TCU_Body_Request ignored (wrong checksum)"]
    assert car.car.status()["locks"]["central"] == "locked"


def test_the_service_buttons_send_their_requests(car):
    def press(button):
        car.car.do("press", button)
    # The cluster shows its pages in turn: the unit knows the odometer and what is due first.
    assert wait_until(lambda: car.status().get("cluster.odometer", "").startswith("23817")
                      and car.status().get("service.inspectionDays", "").startswith("412"))

    def requests(kind):
        return [e for e in car.events() if e.get("type") == kind]
    press("breakdown")
    assert wait_until(lambda: requests("serviceRequest"))
    breakdown = requests("serviceRequest")[0]
    # No GNSS on this car: the request goes with "position": null.
    assert breakdown["service"] == "breakdown" and breakdown["odometer"] == 23817 and breakdown["position"] is None
    press("scheduling")
    assert wait_until(lambda: requests("maintenanceRequest"))
    due = requests("maintenanceRequest")[0]
    # The simulated car's cluster: inspection in 412 days or 18 400 km.
    assert due["odometer"] == 23817 and due["serviceDue"]["inspectionDays"] == 412 and due["serviceDue"]["inspectionDistance"] == 18400
    press("service")
    assert wait_until(lambda: len(requests("serviceRequest")) == 2)
    assert requests("serviceRequest")[1]["service"] == "customerService"


def test_wake_ups_are_limited_per_day_to_protect_the_battery(car):
    # Each wake-up sends every state block again (the app wants a fresh status).
    assert wait_until(lambda: "capabilities" in car.state()["blocks"])
    before = car.state()["blocks"]["capabilities"]["receivedAt"]
    for _ in range(2):
        r, request, status = command(car, "wakeUp", spin=None)
        assert status == {"id": request["id"], "action": "wakeUp", "status": "successful"}
    assert wait_until(lambda: car.state()["blocks"]["capabilities"]["receivedAt"] > before)
    r, request, status = command(car, "wakeUp", spin=None)
    assert status == {"id": request["id"], "action": "wakeUp", "status": "failed", "cause": "wakeUpBudgetExhausted"}
    assert car.car.requests() == []
