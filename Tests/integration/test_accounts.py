"""Accounts over the app API (issue 16; docs/openapi.yaml): a sign-up whose verification e-mail
is really sent over SMTP to a real SMTP server (aiosmtpd, started by the test) and whose link
is followed; log-in by e-mail, user name or mobile number; a forgotten password reset by mail;
sessions listed and revoked; the customer-service contacts the FAQ gives. Bad input names the
field and stores nothing."""
import json
import re
import sqlite3
import urllib.error
import urllib.request

import pytest

from support import App, MailSink, free_port, wait_until
from rig import Rig

SUPPORT = "seatdigitalsupport@seat.es"


@pytest.fixture
def portal(tmp_path):
    sink = MailSink()
    rig = Rig(tmp_path)
    rig.http = free_port()
    rig.restart_backend(extra=["--http", f"127.0.0.1:{rig.http}", "--smtp", f"smtp://127.0.0.1:{sink.port}",
                               "--mail-from", "no-reply@connect.example", "--public-url", f"http://127.0.0.1:{rig.http}"])
    yield rig, sink
    rig.close()
    sink.close()


def link_in(mail):
    body = mail.get_payload(decode=True).decode()
    return re.search(r"http://\S+token=[0-9a-f]+", body).group(0)


def open_link(url):
    """The mailed link as a person's browser opens it: the portal's page (HTML)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sign_up(app, **fields):
    body = {"email": "carla@example.com", "password": "correct horse", "spin": "2468", **fields}
    return app.call("POST", "/accounts", body)


def accounts(rig):
    with sqlite3.connect(rig.tmp / "backend.db") as db:
        return db.execute("SELECT count(*) FROM accounts").fetchone()[0]


def test_a_sign_up_is_verified_from_the_mail_and_logs_in_by_email_user_name_or_mobile(portal):
    rig, sink = portal
    app = App(rig.http)
    status, body = sign_up(app, email="Carla@Example.com", userName="Carla_M", mobile="+34 600 111 222")
    assert status == 201, body
    assert body == {"email": "carla@example.com", "userName": "carla_m", "mobile": "+34600111222", "verified": False}
    # Not verified yet: the log-in says so, and where to turn if no mail comes (the FAQ).
    status, body = app.call("POST", "/login", {"login": "carla_m", "password": "correct horse"})
    assert status == 401 and body["error"] == "emailNotVerified" and SUPPORT in body["message"]

    mails = wait_until(lambda: sink.mails_to("carla@example.com"))
    assert len(mails) == 1 and mails[0]["To"] == "carla@example.com" and mails[0]["From"] == "no-reply@connect.example"
    assert "verify" in mails[0]["Subject"].lower()
    # The link opens the portal's page, which verifies the address; a second time it is used up.
    assert link_in(mails[0]).startswith(f"http://127.0.0.1:{rig.http}/verify?token=")
    status, page = open_link(link_in(mails[0]))
    assert status == 200 and "carla@example.com is verified" in page
    status, page = open_link(link_in(mails[0]))
    assert status == 400 and "the link was used already or has expired" in page

    for login in ("carla@example.com", "CARLA_M", "+34600111222", "+34 600 111 222"):
        phone = App(rig.http)
        status, body = phone.call("POST", "/login", {"login": login, "password": "correct horse"})
        assert status == 200 and body["token"], login
    assert App(rig.http).call("POST", "/login", {"login": "nobody", "password": "correct horse"})[1]["error"] == "wrongPassword"


def test_a_sign_up_with_bad_or_taken_fields_names_the_field_and_stores_nothing(portal):
    rig, sink = portal
    app = App(rig.http)
    assert sign_up(app, userName="carla", mobile="+34600111222")[0] == 201
    before = accounts(rig)
    cases = [
        ({"email": "not-an-address"}, 400, "invalidEmail"),
        ({"password": "short"}, 400, "weakPassword"),
        ({"spin": "12a4"}, 400, "invalidSPIN"),
        ({"email": "x@example.com", "userName": "a b"}, 400, "invalidUserName"),
        ({"email": "x@example.com", "userName": "+34600"}, 400, "invalidUserName"),
        ({"email": "x@example.com", "mobile": "12"}, 400, "invalidMobile"),
        ({"email": "x@example.com", "mobile": "+1" + "9" * 40}, 400, "invalidMobile"),
        ({}, 409, "accountExists"),
        ({"email": "x@example.com", "userName": "CARLA"}, 409, "userNameTaken"),
        ({"email": "x@example.com", "mobile": "+34 600 111 222"}, 409, "mobileTaken"),
    ]
    for fields, want_status, want_error in cases:
        status, body = sign_up(app, **fields)
        assert (status, body["error"]) == (want_status, want_error), fields
    for raw in (b"{", b"[]", b'{"email": 5}'):
        status, body = app.call("POST", "/accounts", raw=raw)
        assert status == 400 and body["error"] == "badRequest", raw
    assert accounts(rig) == before
    assert len(sink.mails_to("x@example.com")) == 0


def test_a_forgotten_password_is_reset_by_mail_and_every_session_ends(portal):
    rig, sink = portal
    app = App(rig.http)
    assert sign_up(app, userName="carla")[0] == 201
    assert open_link(link_in(wait_until(lambda: sink.mails_to("carla@example.com"))[0]))[0] == 200
    phone = App(rig.http)
    assert phone.call("POST", "/login", {"login": "carla", "password": "correct horse"})[0] == 200
    phone.token = phone.call("POST", "/login", {"login": "carla", "password": "correct horse"})[1]["token"]

    # The same answer whether or not the account exists: nothing to learn from it.
    assert app.call("POST", "/accounts/password-reset", {"login": "nobody@example.com"}) == (202, {"sent": True})
    assert app.call("POST", "/accounts/password-reset", {"login": "carla"}) == (202, {"sent": True})
    mail = wait_until(lambda: [m for m in sink.mails_to("carla@example.com") if "password" in m["Subject"].lower()])[0]
    token = re.search(r"token=([0-9a-f]+)", link_in(mail)).group(1)
    status, body = app.call("POST", "/accounts/password-reset/confirm", {"token": token, "newPassword": "short"})
    assert status == 400 and body["error"] == "weakPassword"
    assert app.call("POST", "/accounts/password-reset/confirm", {"token": token, "newPassword": "battery staple!"})[0] == 204
    status, body = phone.call("GET", "/vehicles")
    assert status == 401 and body["error"] == "sessionRevoked"
    assert app.call("POST", "/login", {"login": "carla", "password": "correct horse"})[1]["error"] == "wrongPassword"
    assert app.call("POST", "/login", {"login": "carla", "password": "battery staple!"})[0] == 200
    status, body = app.call("POST", "/accounts/password-reset/confirm", {"token": token, "newPassword": "another horse"})
    assert status == 400 and body["error"] == "invalidToken"
    assert sink.mails_to("nobody@example.com") == []


def test_sessions_are_listed_and_another_device_signed_out(portal):
    rig, sink = portal
    rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    rig.portal("user", "verify", "ana@example.com")
    phone, tablet = App(rig.http), App(rig.http)
    phone.login("ana@example.com")
    tablet.login("ana@example.com")
    status, body = phone.call("GET", "/account/sessions")
    assert status == 200 and len(body["sessions"]) == 2
    mine = [s for s in body["sessions"] if s["current"]]
    other = [s for s in body["sessions"] if not s["current"]]
    assert len(mine) == 1 and len(other) == 1 and all(phone.token not in json.dumps(s) for s in body["sessions"])
    assert phone.call("DELETE", f"/account/sessions/{other[0]['id']}")[0] == 204
    assert tablet.call("GET", "/vehicles")[0] == 401
    assert phone.call("GET", "/vehicles")[0] == 200
    assert phone.call("DELETE", "/account/sessions/unknown")[0] == 404


def test_the_customer_service_contacts_are_the_faqs(portal):
    rig, _ = portal
    status, body = App(rig.http).call("GET", "/support")
    assert status == 200 and body["email"] == SUPPORT and body["phone"] == "00800 4000 20 20"
    assert body["hours"] == "Monday to Friday, 9:00 to 17:00"


def test_a_car_is_added_to_the_garage_by_vin_for_its_pairing_code_and_removed(portal):
    """The garage over HTTP: add a car by VIN (the compatibility checks, the terms), get its
    8-digit pairing code, see it listed, refuse it twice, remove it."""
    rig, _ = portal
    rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    rig.portal("user", "verify", "ana@example.com")
    app = App(rig.http)
    app.login("ana@example.com")
    car = {"vin": "VSSZZZKLZNR012345", "model": "Leon", "built": "2021-11", "country": "ES", "acceptTerms": True}
    refusals = [
        ({**car, "vin": "WVWZZZ1JZXW000001"}, "invalidVIN"),
        ({**car, "vin": "VSSZZZKLZNR01234"}, "invalidVIN"),
        ({**car, "model": "Toledo"}, "modelNotSupported"),
        ({**car, "built": "2019-01"}, "modelNotSupported"),
        ({**car, "country": "US"}, "countryNotSupported"),
        ({**car, "acceptTerms": False}, "termsNotAccepted"),
    ]
    for body, error in refusals:
        status, answer = app.call("POST", "/garage", body)
        assert status == 400 and answer["error"] == error, (body, answer)
    assert app.call("POST", "/garage", {"vin": 5})[1]["error"] == "badRequest"
    assert app.call("GET", "/garage")[1] == {"cars": []}
    status, added = app.call("POST", "/garage", car)
    assert status == 201 and len(added["pairingCode"]) == 8 and added["pairingCode"].isdigit() and added["enrolment"] == "notStarted"
    assert app.call("POST", "/garage", car)[0] == 409
    assert [c["vin"] for c in app.call("GET", "/garage")[1]["cars"]] == [car["vin"]]
    assert app.call("DELETE", f"/garage/{car['vin']}")[0] == 204
    assert app.call("DELETE", f"/garage/{car['vin']}")[0] == 404
    assert app.call("GET", "/garage")[1] == {"cars": []}
