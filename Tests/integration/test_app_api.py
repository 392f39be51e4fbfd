"""The backend's HTTP API for apps (docs/openapi.yaml), end to end: an app logs in, reads the
car's status, parking position and capabilities, verifies the S-PIN for a security token and
locks the car; the command goes over MQTT to telematicsd, onto the CAN bus, the simulated car
(tcu-car) answers, and the request ends successful. Each remote action (lock, unlock, honk and
flash, climatisation) is confirmed from the app's HTTP call to the car's frame and back.
Quotas, throttling, roles."""
import json
import time

import pytest

from support import VIN, App, free_port, wait_until
from rig import Rig


@pytest.fixture
def api(tmp_path):
    rig = serving(Rig(tmp_path))
    yield rig
    rig.close()


def serving(rig):
    """A registered car (Ana primary, Ben secondary), simulated by tcu-car, and the backend
    serving the API with small limits: 6 reads a day, 4 actions an hour."""
    code = rig.add_car()["pairingCode"]
    rig.http = free_port()
    rig.restart_backend(extra=["--http", f"127.0.0.1:{rig.http}", "--daily-read-quota", "6", "--actions-per-hour", "4"])
    rig.start_sim_car("[remote]\nconfirm-timeout-ms = 3000\n")
    assert rig.tcuctl("register", code).returncode == 0
    rig.portal("user", "add", "ben@example.com", input="correct horse\n1234\n")
    rig.portal("user", "verify", "ben@example.com")
    assert rig.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "ben@example.com", "--role", "secondary").returncode == 0
    # Locked with the key fob before the owner walked away.
    rig.car.do("lock", "keyFob")
    assert wait_until(lambda: rig.state()["blocks"].get("locks", {}).get("values", {}).get("central") == "Locked"
                      and "capabilities" in rig.state()["blocks"])
    return rig


def test_a_changed_password_must_be_typed_again_on_every_device(api):
    """The FAQ: after a password change in the portal the new password is needed for every
    service of the app. Two devices logged in, one with a security token; the password changed
    from the portal (another process on the same database): both are refused at once, the
    token too; the old password no longer logs in, the new one does."""
    phone, tablet = App(api.http), App(api.http)
    assert phone.login("ana@example.com")[0] == 200 and tablet.login("ana@example.com")[0] == 200
    token = phone.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "4711"})[1]["securityToken"]
    changed = api.portal("user", "password", "ana@example.com", input="correct horse\nbattery staple!\n")
    assert changed.returncode == 0, changed.stderr
    for device in (phone, tablet):
        status, body = device.call("GET", "/vehicles")
        assert status == 401 and body["error"] == "sessionRevoked"
    assert phone.login("ana@example.com")[1]["error"] == "wrongPassword"
    assert phone.login("ana@example.com", "battery staple!")[0] == 200
    status, body = phone.call("POST", f"/vehicles/{VIN}/actions/flash", {"securityToken": token})
    assert status == 403 and body["error"] == "invalidSecurityToken"
    # And from the app itself: the current password, then a new one; every session ends, this one too.
    status, body = phone.call("POST", "/account/password", {"password": "wrong", "newPassword": "another horse"})
    assert status == 401 and body["error"] == "wrongPassword"
    assert phone.call("POST", "/account/password", {"password": "battery staple!", "newPassword": "another horse"})[0] == 204
    assert phone.call("GET", "/vehicles")[0] == 401
    assert phone.login("ana@example.com", "another horse")[0] == 200


def test_an_app_logs_in_reads_the_car_and_locks_it(api):
    app = App(api.http)
    assert app.call("GET", f"/vehicles/{VIN}/status")[0] == 401
    status, body = app.login("ana@example.com", "wrong horse!")
    assert status == 401 and body["error"] == "wrongPassword"
    assert app.login("ana@example.com")[0] == 200
    assert app.call("GET", "/vehicles") == (200, {"vehicles": [{"vin": VIN, "role": "primary"}]})
    status, car = app.call("GET", f"/vehicles/{VIN}/status")
    assert status == 200 and car["blocks"]["locks"]["values"]["central"] == "Locked"
    assert car["blocks"]["locks"]["capturedAt"] <= car["blocks"]["locks"]["receivedAt"]
    status, caps = app.call("GET", f"/vehicles/{VIN}/capabilities")
    assert status == 200 and caps["role"] == "primary" and caps["capabilities"]["remoteLockUnlock"]["isEnabled"]
    # No parking position yet; then the car in use (null): "no content"; then parked.
    assert app.call("GET", f"/vehicles/{VIN}/parkingposition")[0] == 404
    # Locking needs the S-PIN: a wrong one says the tries left; the right one gives a security token.
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/lock", {})
    assert status == 403 and body["error"] == "spinRequired"
    status, body = app.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "1111"})
    assert status == 403 and body["error"] == "wrongSPIN" and body["remainingTries"] == 2
    status, body = app.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "4711"})
    assert status == 200 and body["expiresInS"] == 300
    token = body["securityToken"]
    # A real car takes seconds to answer: long enough to see the request pending.
    api.car.do("answer-delay", "2s")
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/unlock", {"securityToken": token})
    assert status == 202 and body["status"] == "queued"
    request = body["requestId"]
    # One request per type at a time.
    assert app.call("POST", f"/vehicles/{VIN}/actions/unlock", {"securityToken": token})[1]["error"] == "requestPending"
    assert wait_until(lambda: app.call("GET", f"/vehicles/{VIN}/requests/{request}")[1]["status"] == "successful")
    assert api.car.requests() == ["unit request unlock"]
    assert api.car.status()["locks"] == {"central": "unlocked", "source": "telematics"}
    # Three reads so far (status, capabilities, parking position; following a request is free):
    # three more spend the daily quota of 6, and the seventh is refused until tomorrow.
    for _ in range(3):
        assert app.call("GET", f"/vehicles/{VIN}/status")[0] == 200
    status, body = app.call("GET", f"/vehicles/{VIN}/status")
    assert status == 429 and body["error"] == "quotaExceeded" and 0 < body["retryAfterS"] <= 86_400


def test_every_remote_action_is_confirmed_by_the_car_from_the_app_and_back(api):
    """Lock, unlock, honk and flash, climatisation start and stop: each from the app's HTTP call
    through the backend, the broker and the unit onto the bus, done by the simulated car (its
    Door_Status, Light_Status and Climate_Status frames), and back to the app as successful."""
    app = App(api.http)
    app.login("ana@example.com")
    api.car.do("outside-temperature", "-4")
    api.car.do("cabin-temperature", "-3")

    def act(action, body=None):
        token = app.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "4711"})[1]["securityToken"]
        status, reply = app.call("POST", f"/vehicles/{VIN}/actions/{action}", dict(body or {}, securityToken=token))
        assert status == 202, reply
        return wait_until(lambda: app.call("GET", f"/vehicles/{VIN}/requests/{reply['requestId']}")[1]
                          if app.call("GET", f"/vehicles/{VIN}/requests/{reply['requestId']}")[1]["status"] in ("successful", "failed", "timedOut")
                          else None)
    # Unlocking is the first test's; four actions fill this car's hourly budget.
    assert act("lock")["status"] == "successful"
    assert api.car.status()["locks"] == {"central": "locked", "source": "telematics"}
    assert act("honkandflash")["status"] == "successful"
    lights = api.car.status()["lights"]
    assert lights["hazard"] and lights["honk"]
    assert act("climatisation-start", {"targetTemperature": 22})["status"] == "successful"
    climate = api.car.status()["climate"]
    assert climate["remote"] and climate["state"] == "heating" and climate["target"] == 22
    # The cabin warms (the car's clock is real: a few tenths of a degree in seconds).
    cabin = climate["cabin"]
    api.car.wait("cabin", ">", str(cabin + 0.1), timeout="30s")
    assert wait_until(lambda: api.state()["blocks"].get("climate", {}).get("values", {}).get("climatisation") == "Heating")
    assert act("climatisation-stop")["status"] == "successful"
    assert api.car.status()["climate"]["remote"] is False
    assert api.car.requests() == ["unit request lock", "unit request honk 10 s",
                                  "unit request clima-start 22.0 °C 30 min",
                                  "unit request clima-stop: remote climatisation stopped"]


def test_parking_position_is_no_content_while_the_car_is_in_use(api):
    app = App(api.http)
    app.login("ana@example.com")

    def car_says(values):
        body = {"id": f"p-{time.monotonic_ns()}", "vin": VIN, "type": "state", "block": "parking",
                "capturedAt": int(time.time() * 1000), "values": values}
        import subprocess
        subprocess.run(["mosquitto_pub", *api.mqtt(VIN), "-q", "1", "-t", f"vehicles/{VIN}/state",
                        "-m", json.dumps(body)], check=True)
    car_says(None)
    assert wait_until(lambda: app.call("GET", f"/vehicles/{VIN}/parkingposition")[0] == 204)
    car_says({"latitude": 41.4756, "longitude": 1.9361, "fixTime": 1764000054000, "parkedAt": 1764000060000})
    assert wait_until(lambda: app.call("GET", f"/vehicles/{VIN}/parkingposition")[1] == {
        "latitude": 41.4756, "longitude": 1.9361, "fixTime": 1764000054000, "parkedAt": 1764000060000})


def test_actions_are_throttled_per_car(api):
    app = App(api.http)
    app.login("ana@example.com")
    token = app.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "4711"})[1]["securityToken"]
    for action in ["lock", "unlock", "flash", "honkandflash"]:
        status, body = app.call("POST", f"/vehicles/{VIN}/actions/{action}", {"securityToken": token})
        assert status == 202, body
        assert wait_until(lambda: app.call("GET", f"/vehicles/{VIN}/requests/{body['requestId']}")[1]["status"]
                          in ("successful", "failed"))
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/lock", {"securityToken": token})
    assert status == 429 and body["error"] == "throttled" and 0 < body["retryAfterS"] <= 3600


def test_a_secondary_user_reads_but_has_no_remote_functions(api):
    app = App(api.http)
    app.login("ben@example.com")
    assert app.call("GET", "/vehicles")[1] == {"vehicles": [{"vin": VIN, "role": "secondary"}]}
    assert app.call("GET", f"/vehicles/{VIN}/status")[0] == 200
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/honkandflash", {})
    assert status == 403 and body["error"] == "insufficientRights"
    # A security token is bound to its user and car.
    ana = App(api.http)
    ana.login("ana@example.com")
    token = ana.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "4711"})[1]["securityToken"]
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/unlock", {"securityToken": token})
    assert status == 403 and body["error"] == "invalidSecurityToken"
    assert api.car.requests() == []


def test_bad_requests_get_a_clear_error(api):
    app = App(api.http)
    assert app.call("POST", "/login", raw=b"{not json")[1]["error"] == "badRequest"
    app.login("ana@example.com")
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/climatisation-start", {"targetTemperature": 31})
    assert status == 400 and body["error"] == "invalidTemperature"
    status, body = app.call("POST", f"/vehicles/{VIN}/actions/selfdestruct", {})
    assert status == 404 and "lock" in body["message"]
    assert app.call("GET", "/vehicles/VSSZZZKLZNR099999/status")[1]["error"] == "insufficientRights"
    assert app.call("GET", f"/vehicles/{VIN}/requests/nope")[1]["error"] == "unknownRequest"


def test_the_openapi_file_names_every_action_and_path():
    import os
    import re
    from support import ROOT
    text = open(os.path.join(ROOT, "docs", "openapi.yaml")).read()
    actions = re.search(r"enum: \[(lock, [^\]]+)\]", text).group(1).split(", ")
    assert actions == ["lock", "unlock", "honkandflash", "flash", "climatisation-start", "climatisation-stop", "wakeup"]
    for path in ["/login:", "/vehicles:", "/vehicles/{vin}/status:", "/vehicles/{vin}/parkingposition:",
                 "/vehicles/{vin}/capabilities:", "/vehicles/{vin}/spin/verify:", "/vehicles/{vin}/actions/{action}:",
                 "/vehicles/{vin}/requests/{id}:"]:
        assert f"\n  {path}" in text, path


def test_a_nameless_query_parameter_is_ignored_not_a_crash(api):
    """Issue 14, finding 1: `?=` (and `?a=1&=&b=2`) once killed tcu-backend, HTTP and MQTT both."""
    app = App(api.http)
    for query in ["?=", "?a=1&=&b=2", "?&&=x&"]:
        assert app.call("GET", "/vehicles" + query)[0] == 401
    app.login("ana@example.com")
    assert app.call("GET", "/vehicles?=")[0] == 200
    assert api.backend.poll() is None
    # MQTT ingestion goes on: the car's state still arrives.
    api.car.do("window", "frontLeft", "40")
    assert wait_until(lambda: api.state()["blocks"].get("windows", {}).get("values", {}).get("frontLeft") == 40)


def test_concurrent_spin_guesses_cannot_pass_the_lock(api):
    """Issue 14, finding 5: 24 guesses at once, the right one among them: each try is counted
    before it is checked, so at most the three free ones are checked at all."""
    import threading
    app = App(api.http)
    app.login("ana@example.com")
    results = []

    def guess(spin):
        results.append(app.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": spin}))
    threads = [threading.Thread(target=guess, args=("1111",)) for _ in range(23)] + [threading.Thread(target=guess, args=("4711",))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checked = [r for r in results if r[0] == 200 or r[1].get("error") == "wrongSPIN"]
    locked = [r for r in results if r[1].get("error") == "spinLocked"]
    assert len(checked) <= 3 and len(checked) + len(locked) == 24, results


def test_a_huge_unknown_address_is_refused_and_stores_nothing(api):
    """Issue 14, finding 10: log-ins with 60 KB made-up addresses once grew the database."""
    import os
    size = os.path.getsize(api.tmp / "backend.db")
    app = App(api.http)
    for i in range(50):
        status, body = app.login(f"{i}{'x' * 60_000}@example.com", "wrong horse!")
        assert status in (400, 401) and body["error"] == "invalidEmail", body
    assert os.path.getsize(api.tmp / "backend.db") < size + 200_000


def test_a_burst_of_idle_connections_waits_its_turn_and_the_idle_ones_are_cut(api):
    """Issue 14, finding 18: a connection per thread with no cap once ran out of files. Beyond
    64 connections the server accepts no more: a new client waits in the listen queue. A
    connection that sends no request is closed at the head's 5 s deadline, and then the
    waiting client is answered; the backend never stops."""
    import socket
    idle = [socket.create_connection(("127.0.0.1", api.http)) for _ in range(70)]
    try:
        status, body = App(api.http, timeout=30).call("GET", "/vehicles")
        assert status == 401 and body["error"] == "unauthorized"
        for s in idle:
            s.settimeout(20)
            assert s.recv(1) == b"", "an idle connection was left open"
    finally:
        for s in idle:
            s.close()
    assert api.backend.poll() is None


def raw_request(port, head, body=b"", timeout=10):
    """One connection: sends the head and the body as given; returns the socket."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head.replace(b"\n", b"\r\n") + b"\r\n" + body)
    return s


def read_response(s):
    """Reads one HTTP/1.1 response (Content-Length framed): (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += s.recv(4096)
    return int(lines[0].split()[1]), headers, rest[:length]


def test_one_connection_carries_many_requests_and_a_slow_body_is_cut(api):
    """Keep-alive: three requests on one connection, each answered on it. A body that has not
    arrived 5 s after its head closes the connection (a client sending a byte a second holds
    nothing); a body over 64 KiB is refused with 413 before it is read."""
    s = raw_request(api.http, b"GET /v1/vehicles HTTP/1.1\nHost: x\n")
    for _ in range(2):
        status, _, body = read_response(s)
        assert status == 401 and json.loads(body)["error"] == "unauthorized"
        s.sendall(b"GET /v1/vehicles HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[0] == 401
    s.close()

    slow = raw_request(api.http, b"POST /v1/login HTTP/1.1\nHost: x\nContent-Length: 100\n", b'{"email"', timeout=20)
    started = time.monotonic()
    assert slow.recv(4096) == b"", "a body that never completes was waited for"
    assert time.monotonic() - started < 15

    big = raw_request(api.http, b"POST /v1/login HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 70000\n",
                      b"x" * 70000)
    status, _, body = read_response(big)
    assert status == 413 and json.loads(body)["error"] == "bodyTooLarge"
    big.close()
    assert api.backend.poll() is None


def test_a_stop_answers_the_request_in_progress_first(api):
    """Graceful shutdown: SIGTERM while a log-in's body is still on its way; the request is
    answered (200, a session), then the backend exits 0. The log-in's head travels pipelined
    behind a first request, in the same packet: once the first is answered, the server has
    read the second's head and is waiting for its body."""
    import signal
    body = json.dumps({"email": "ana@example.com", "password": "correct horse"}).encode()
    s = raw_request(api.http, b"GET /v1/vehicles HTTP/1.1\nHost: x\n\n"
                    b"POST /v1/login HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: %d\n" % len(body),
                    body[:10], timeout=30)
    assert read_response(s)[0] == 401
    api.backend.send_signal(signal.SIGTERM)
    s.sendall(body[10:])
    status, _, answer = read_response(s)
    assert status == 200 and "token" in json.loads(answer)
    assert api.backend.wait(timeout=30) == 0


class AlertStream:
    """An app's live alerts: GET /v1/alerts/stream, Server-Sent Events read as they come."""

    def __init__(self, port, token, last_id=None):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", "/v1/alerts/stream", headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200 and self.response.getheader("Content-Type") == "text/event-stream"

    def next(self, kind=None, timeout=60):
        """The next event (of this kind): {"id", "event", "data"}; comments and others skipped;
        an assertion after `timeout` seconds without one (the keep-alive comments come every
        15 s and would otherwise keep the wait going for ever)."""
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"no {kind or 'alert'} within {timeout} s"
            event = {}
            while True:
                line = self.response.fp.readline().decode()
                assert line, "the stream ended"
                line = line.rstrip("\n")
                if not line:
                    break
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                event[name] = value
            if "data" in event and (kind is None or event["event"] == kind):
                event["data"] = json.loads(event["data"])
                return event

    def close(self):
        self.conn.close()


def test_alerts_reach_the_app_live_and_a_reconnecting_app_misses_nothing(api):
    """Alerts pushed to apps (issue 16): Ana's app follows the live stream; the car is
    unlocked with its key, locked from the app (the command's result is an alert too), then a
    door is forced while the app is away: on reconnecting with Last-Event-ID it gets exactly
    what it missed, the theft alarm among them. The history over GET holds the same, for Ben
    (secondary user) too; a stranger's session sees none."""
    ana = App(api.http)
    ana.login("ana@example.com")
    stream = AlertStream(api.http, ana.token)
    api.car.do("unlock", "keyFob")
    first = stream.next("unlocked")
    assert first["data"]["vin"] == VIN and int(first["id"]) == first["data"]["id"]
    security = ana.call("POST", f"/vehicles/{VIN}/spin/verify", {"spin": "4711"})[1]["securityToken"]
    request = ana.call("POST", f"/vehicles/{VIN}/actions/lock", {"securityToken": security})[1]["requestId"]
    # The car's lock event and the command's result travel on two streams: either may come first.
    got = {}
    while not {"commandResult", "locked"} <= got.keys():
        e = stream.next()
        got[e["event"]] = e
    result = got["commandResult"]
    assert result["data"]["commandId"] == request and result["data"]["status"] == "successful"
    seen = max(int(got["commandResult"]["id"]), int(got["locked"]["id"]))
    stream.close()

    # Away: a forced door sets the alarm off.
    assert "alarm: triggered (door)" in " ".join(api.car.do("door", "open", "frontLeft"))
    assert wait_until(lambda: any(a["kind"] == "theftAlarm" for a in ana.call("GET", "/alerts")[1]["alerts"]))
    again = AlertStream(api.http, ana.token, last_id=seen)
    missed = again.next()
    assert int(missed["id"]) > seen
    kinds = [missed["event"]]
    while "theftAlarm" not in kinds:
        kinds.append(again.next()["event"])
    again.close()

    status, history = ana.call("GET", "/alerts?after=0&limit=500")
    assert status == 200 and [a["id"] for a in history["alerts"]] == sorted(a["id"] for a in history["alerts"])
    assert {"unlocked", "commandResult", "locked", "theftAlarm"} <= {a["kind"] for a in history["alerts"]}
    assert history["last"] == history["alerts"][-1]["id"]
    page = ana.call("GET", f"/alerts?after={seen}&limit=1")[1]
    assert len(page["alerts"]) == 1 and page["alerts"][0]["id"] > seen
    ben = App(api.http)
    ben.login("ben@example.com")
    assert [a["id"] for a in ben.call("GET", "/alerts?limit=500")[1]["alerts"]] == [a["id"] for a in history["alerts"]]
    api.portal("user", "add", "eve@example.com", input="correct horse\n1234\n")
    api.portal("user", "verify", "eve@example.com")
    eve = App(api.http)
    eve.login("eve@example.com")
    assert eve.call("GET", "/alerts")[1] == {"alerts": [], "last": 0}
    for bad in ("/alerts?after=-1", "/alerts?after=1e300", "/alerts?limit=0", "/alerts?limit=x"):
        status, body = ana.call("GET", bad)
        assert status == 400 and body["error"] == "badRequest", bad


def test_a_licence_about_to_run_out_is_an_alert_once(api):
    """The licence's end is announced 30 days before (an assumption: the page does not say
    when), once: the backend's clock moved 340 days on, near the trial's 12 months."""
    api.restart_backend(clock_offset_days=340, extra=["--http", f"127.0.0.1:{api.http}"])
    ana = App(api.http)
    ana.login("ana@example.com")
    assert wait_until(lambda: any(a["kind"] == "licenceExpiring" for a in ana.call("GET", "/alerts")[1]["alerts"]))
    notices = [a for a in ana.call("GET", "/alerts")[1]["alerts"] if a["kind"] == "licenceExpiring"]
    assert len(notices) == 1 and 0 < notices[0]["daysLeft"] <= 30
    api.restart_backend(clock_offset_days=341, extra=["--http", f"127.0.0.1:{api.http}"])
    ana.login("ana@example.com")
    assert [a for a in ana.call("GET", "/alerts")[1]["alerts"] if a["kind"] == "licenceExpiring"] == notices


def test_the_garage_shows_the_registered_car_its_licence_and_privacy_and_the_owner_renews_and_shares(api):
    """The garage over HTTP for a registered car: enrolment completed, the licence (the trial),
    the privacy level the car reports; the primary user renews (the page's prices) and shares
    with a guest; a secondary user can do neither."""
    ana, ben = App(api.http), App(api.http)
    ana.login("ana@example.com")
    ben.login("ben@example.com")
    cars = ana.call("GET", "/garage")[1]["cars"]
    assert len(cars) == 1 and cars[0]["vin"] == VIN and cars[0]["enrolment"] == "completed"
    assert cars[0]["licence"]["package"].startswith("trial") and cars[0]["privacy"] == "shareMyPosition"
    status, licence = ana.call("POST", f"/garage/{VIN}/licence", {"package": "navi", "years": 2})
    assert status == 200 and licence["package"] == "navi" and licence["priceEUR"] == 225
    assert ana.call("GET", f"/garage/{VIN}/licence")[1]["licenceExpiresAt"] == licence["licenceExpiresAt"]
    for bad in ({"package": "navi", "years": 3}, {"package": "gold", "years": 1}, {"package": "navi", "years": 1e300}):
        status, body = ana.call("POST", f"/garage/{VIN}/licence", bad)
        assert status == 400, bad
    assert ben.call("POST", f"/garage/{VIN}/licence", {"package": "radio", "years": 1})[1]["error"] == "insufficientRights"
    assert ben.call("GET", "/garage")[1] == {"cars": []}
    api.portal("user", "add", "cleo@example.com", input="correct horse\n1234\n")
    api.portal("user", "verify", "cleo@example.com")
    assert ana.call("POST", f"/garage/{VIN}/users", {"email": "cleo@example.com", "role": "guest"})[0] == 201
    assert ben.call("POST", f"/garage/{VIN}/users", {"email": "cleo@example.com", "role": "secondary"})[0] == 403
    users = ana.call("GET", f"/garage/{VIN}/users")[1]["users"]
    assert {"user": "cleo@example.com", "role": "guest"} in users and users[0] == {"user": "ana@example.com", "role": "primary"}
    assert ana.call("POST", f"/garage/{VIN}/users", {"email": "nobody@example.com", "role": "guest"})[0] == 404
