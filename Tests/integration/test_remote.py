"""Remote commands end to end: tcu-backend (as an app would ask it) → MQTT → telematicsd →
the request frame on the CAN bus → a body controller played by the test answers with the
status frame → the result back to the backend. And every refusal: wrong S-PIN and its lock,
a replayed, expired, forged or misrouted command, an expired licence, a user who is not the
primary user, privacy offline, no confirmation, a car that cannot (ignition on)."""
import json
import os
import subprocess
import threading
import time

import pytest

from support import BIN, PROFILE, VIN, wait_until
from test_backend import Rig


class BodyController:
    """Plays the body control module on the car's CAN: reads the frames the unit transmits
    (its candump transmit log), checks each body request's checksum, and answers a lock or
    unlock with the Door_Status frame that shows it done (unless told to stay silent)."""

    def __init__(self, rig, log):
        self.rig, self.log, self.transmitted = rig, log, rig.tmp / "transmitted.log"
        self.requests, self.answer, self.ignition_on = [], True, False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def write(self, frame):
        with open(self.log, "a") as f:
            f.write(f"({time.time():.6f}) can0 {frame}\n")

    def run(self):
        seen = 0
        while not self.stop.is_set():
            if self.ignition_on:
                self.write("3C0#00030000")  # Terminal_Status: key in, ignition on (every 20 ms)
            lines = self.transmitted.read_text().splitlines() if self.transmitted.exists() else []
            for line in lines[seen:]:
                ident, data = line.split()[2].split("#")
                if ident != "5F1":
                    continue
                b = bytes.fromhex(data)
                self.requests.append({"request": b[0] & 0x0F, "counter": b[0] >> 4, "checksumOk": b[3] == b[0] ^ b[1] ^ b[2]})
                if self.answer and b[0] & 0x0F in (1, 2):
                    # Central_Lock_State Locked (1) or Unlocked (0), Lock_Source Telematics (4).
                    self.write("583#003F2100" if b[0] & 0x0F == 1 else "583#00002000")
            seen = len(lines)
            time.sleep(0.02)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.fixture
def car(tmp_path):
    """A registered car with its body controller; Ana is its primary user (S-PIN 4711)."""
    rig = Rig(tmp_path)
    code = rig.add_car()["pairingCode"]
    log, _ = rig.start_car(f"[can]\ntransmit-log = {rig.tmp}/transmitted.log\n[remote]\nconfirm-timeout-ms = 1500\n"
                           "wake-ups-per-day = 2\n")
    assert rig.tcuctl("register", code).returncode == 0
    body = BodyController(rig, log)
    rig.body = body
    yield rig
    body.close()
    rig.close()


def command(rig, action, *args, spin="4711", user="ana@example.com", wait=20):
    extra = ["--spin", spin] if spin else []
    r = rig.portal("command", VIN, action, "--user", user, *extra, *args, "--broker", f"127.0.0.1:{rig.port}", "--wait-s", str(wait))
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    return r, (lines[0]["request"] if lines else None), (lines[1] if len(lines) > 1 else None)


def results(rig, command_id):
    return [(e["status"], e.get("cause")) for e in rig.events() if e.get("type") == "commandResult" and e.get("commandId") == command_id]


def publish(rig, body):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(rig.port), "-q", "1", "-t", f"vehicles/{VIN}/commands",
                    "-m", json.dumps(body)], check=True)


def test_lock_and_unlock_reach_the_can_bus_and_come_back_confirmed(car):
    r, request, status = command(car, "lock")
    assert r.returncode == 0, r.stdout + r.stderr
    assert status == {"id": request["id"], "action": "lock", "status": "successful"}
    assert car.body.requests[0] == {"request": 1, "counter": 1, "checksumOk": True}
    assert results(car, request["id"]) == [("inProgress", None), ("successful", None)]
    assert wait_until(lambda: car.state()["blocks"].get("locks", {}).get("values", {}).get("central") == "Locked")
    r, request, status = command(car, "unlock")
    assert status["status"] == "successful" and car.body.requests[1]["request"] == 2
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
    assert car.body.requests == []


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
    assert [q["request"] for q in car.body.requests] == [1]


def test_an_expired_licence_refuses_remote_commands(tmp_path):
    rig = Rig(tmp_path)
    try:
        # Registered with the backend's clock 395 days behind: the trial ended a month ago.
        rig.restart_backend(clock_offset_days=-395)
        for args in [("user", "add", "ana@example.com", "--password", "correct horse", "--spin", "4711"),
                     ("user", "verify", "ana@example.com")]:
            rig.portal(*args, "--clock-offset-days=-395")
        car = json.loads(rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms",
                                    "--clock-offset-days=-395").stdout)
        rig.start_car()
        assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
        rig.restart_backend()
        r, request, status = command(rig, "lock")
        assert status == {"id": request["id"], "action": "lock", "status": "failed", "cause": "licenceExpired"}
    finally:
        rig.close()


def test_only_the_primary_user_has_remote_functions(car):
    car.portal("user", "add", "ben@example.com", "--password", "correct horse", "--spin", "1234")
    car.portal("user", "verify", "ben@example.com")
    assert car.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "ben@example.com", "--role", "secondary").returncode == 0
    r, _, _ = command(car, "lock", spin="1234", user="ben@example.com")
    assert r.returncode != 0 and "insufficientRights" in r.stderr
    r, _, _ = command(car, "lock", spin="1234", user="eve@example.com")
    assert r.returncode != 0 and "insufficientRights" in r.stderr
    assert car.body.requests == []


def test_no_confirmation_from_the_body_controller_fails_the_command(car):
    car.body.answer = False
    r, request, status = command(car, "lock")
    assert status == {"id": request["id"], "action": "lock", "status": "failed", "cause": "noConfirmation"}
    assert len(car.body.requests) == 1
    # One request per type at a time; this one is over, so another may go.
    car.body.answer = True
    assert command(car, "lock")[2]["status"] == "successful"


def test_a_car_with_its_ignition_on_does_not_lock(car):
    car.body.ignition_on = True
    assert wait_until(lambda: car.status().get("ignition.on") == "true")
    r, request, status = command(car, "lock")
    assert status["status"] == "failed" and status["cause"] == "ignitionOn"
    assert car.body.requests == []


def test_privacy_offline_lets_no_command_in(car):
    assert car.tcuctl("privacy", "offline").returncode == 0
    assert wait_until(lambda: car.status().get("outbox.backend.connected") == "false")
    r, request, status = command(car, "lock", "--ttl-s=2", wait=5)
    assert status == {"id": request["id"], "action": "lock", "status": "timedOut"}
    assert car.body.requests == []


def test_climatisation_checks_the_temperature_before_anything_is_sent(car):
    for bad in ["15.5", "30.5", "21.3"]:
        r, _, _ = command(car, "climatisationStart", f"--temperature={bad}", spin=None)
        assert r.returncode != 0 and "invalidTemperature" in r.stderr


def test_the_service_buttons_send_their_requests(car):
    def press(bit):
        # The cluster's odometer (page 0) and service page (1), then the button pressed and released.
        for frame in ["6B2#00095D0000000000", "6B2#017800DC05000000", "5C1#0000", f"5C1#{1 << bit:02X}00", "5C1#0000"]:
            car.body.write(frame)

    def requests(kind):
        return [e for e in car.events() if e.get("type") == kind]
    press(1)
    assert wait_until(lambda: requests("serviceRequest"))
    breakdown = requests("serviceRequest")[0]
    # No GNSS on this car: the request goes with "position": null.
    assert breakdown["service"] == "breakdown" and breakdown["odometer"] == 23817 and breakdown["position"] is None
    press(3)
    assert wait_until(lambda: requests("maintenanceRequest"))
    due = requests("maintenanceRequest")[0]
    assert due["odometer"] == 23817 and due["serviceDue"]["inspectionDays"] == 120 and due["serviceDue"]["inspectionDistance"] == 15000
    press(2)
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
    assert car.body.requests == []
