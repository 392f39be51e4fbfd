"""Registration, licences, roles and the factory reset, end to end: the portal's command line,
the pairing code typed in the car's menu (in a real terminal), the activation assistant."""
import datetime
import json
import os
import subprocess
import time


from support import BIN, PROFILE, VIN, App, Terminal, free_port, wait_until
from rig import door_events


def plus_years(ms, years):
    """The same UTC day and time `years` later; from 29 February, 1 March (never a day short)."""
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    try:
        later = t.replace(year=t.year + years)
    except ValueError:
        later = t.replace(year=t.year + years, day=28) + datetime.timedelta(days=1)
    return int(later.timestamp()) * 1000 + ms % 1000


def test_the_portal_cli_signs_up_adds_the_car_and_gives_a_pairing_code(tmp_path):
    db = str(tmp_path / "portal.db")

    def cli(*args, input=""):
        return subprocess.run([os.path.join(BIN, "tcu-backend"), *args, "--db", db], capture_output=True, text=True, input=input)
    assert cli("user", "add", "ana@example.com", input="correct horse\n4711\n").returncode == 0
    early = cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms")
    assert early.returncode == 65 and "(emailNotVerified)" in early.stderr
    assert cli("user", "verify", "ana@example.com").returncode == 0
    no_terms = cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE)
    assert no_terms.returncode == 65 and "(termsNotAccepted)" in no_terms.stderr
    old = cli("garage", "add", VIN, "--user", "ana@example.com", "--model", "Leon", "--built", "2019-12", "--country", "ES",
              "--accept-terms")
    assert old.returncode == 65 and "(modelNotSupported)" in old.stderr
    car = json.loads(cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    assert car["vin"] == VIN and len(car["pairingCode"]) == 8 and car["pairingCode"].isdigit()
    assert car["model"] == "Leon" and car["country"] == "ES" and not car["codeUsed"]
    assert [json.loads(l) for l in cli("garage", "list", "--user", "ana@example.com").stdout.splitlines()] == [car]
    assert cli("garage", "remove", VIN, "--user", "ana@example.com").returncode == 0
    again = json.loads(cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    assert again["pairingCode"] != car["pairingCode"]
    # Nothing secret is stored as typed.
    import sqlite3
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT hash, spin_hash FROM accounts").fetchone()
    assert "correct horse" not in row[0] and row[1] != "4711" and len(row[0]) == 64


def test_registration_with_the_pairing_code_end_to_end(rig):
    cli = rig.portal

    def register(code):
        return rig.tcuctl("register", code)
    assert cli("user", "add", "ana@example.com", input="correct horse\n4711\n").returncode == 0
    assert cli("user", "verify", "ana@example.com").returncode == 0
    car = json.loads(cli("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    _, conf = rig.start_car()
    assert rig.status()["registration.status"] == "notStarted"
    # Input is checked in the car: nothing else than 8 digits is sent.
    bad = register("1234")
    assert bad.returncode != 0 and "8 digits" in bad.stderr
    # Two wrong codes: each refused by the backend with its advice.
    wrong = "11111111" if car["pairingCode"] != "11111111" else "22222222"
    for _ in range(2):
        r = register(wrong)
        assert r.returncode == 75 and "codeUnknown" in r.stderr and "remove the car from the garage" in r.stderr
    # The right code: the account holder becomes the primary user.
    ok = register(car["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    assert "registration.status = completed" in ok.stdout and "registration.user = ana@example.com" in ok.stdout
    assert "registration.role = primary" in ok.stdout
    assert json.loads(cli("garage", "list", "--user", "ana@example.com").stdout)["codeUsed"] is True
    again = register(car["pairingCode"])
    assert again.returncode == 75 and "codeUsed" in again.stderr
    # The licence: the trial, 12 calendar months with the Navi set (the car has navigation),
    # renewed from the car for 2 years of Navi.
    trial = json.loads(cli("licence", "show", VIN).stdout)
    assert trial["package"] == "trial-navi" and "onlineNavigation" in trial["services"]
    assert trial["licenceExpiresAt"] >= plus_years(int(time.time() * 1000) - 60_000, 1)
    renewed = rig.tcuctl("licence", "--renew", "--package", "navi", "--years", "2")
    assert renewed.returncode == 0, renewed.stderr
    assert "price = 225 EUR" in renewed.stdout and "onlineNavigation" in renewed.stdout
    shown = json.loads(cli("licence", "show", VIN).stdout)
    assert shown["package"] == "navi" and shown["licenceExpiresAt"] == plus_years(trial["licenceExpiresAt"], 2)
    assert rig.status()["registration.licenceExpiresAt"] == str(shown["licenceExpiresAt"])
    # Kept across a restart.
    rig.daemon.terminate()
    rig.daemon.wait(timeout=10)
    rig.run_daemon(conf)
    assert wait_until(lambda: rig.status().get("registration.status") == "completed")
    # Without a connection the car says so at once.
    rig.stop_broker()
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "false", timeout=20)
    t0 = time.monotonic()
    offline = register(car["pairingCode"])
    assert offline.returncode == 75 and "noConnection" in offline.stderr and "data connection" in offline.stderr
    assert time.monotonic() - t0 < 2
    # No secret in any log (the daemon's, the backend's): not the pairing code, not the password.
    logs = list(rig.tmp.glob("*.log"))
    assert any("registered" in l.read_text() for l in logs)
    for log in logs:
        text = log.read_text()
        assert car["pairingCode"] not in text and "correct horse" not in text, log


def capabilities(rig):
    return json.loads(rig.tcuctl("status", "--json").stdout)["capabilities"]


def test_nothing_leaves_the_car_for_the_backend_before_it_is_registered(rig):
    """The product page: without registration only the eCall the law requires works, and the
    data is used only with the customer's consent. A car never registered, on a connected
    link, sends the backend nothing: not its state, not a door opening, not a theft alarm;
    registered, the whole state goes at once and the next door opening follows."""
    code = rig.add_car()["pairingCode"]
    log, _ = rig.start_car()
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#00000000\n({time.time():.6f}) can0 583#01000000\n"
                f"({time.time():.6f}) can0 5A0#01000000\n({time.time():.6f}) can0 5A0#03000000\n")
    assert wait_until(lambda: int(rig.status().get("outbox.withheldBeforeRegistration", "0")) >= 3)
    st = rig.status()
    assert st["outbox.backend.connected"] == "true" and st["outbox.committed"] == "0"
    assert rig.events() == [] and rig.state()["blocks"] == {}
    assert rig.tcuctl("register", code).returncode == 0
    # Registered: the state at once (doors, the alarm's block, the services' status)...
    assert wait_until(lambda: {"doors", "capabilities"} <= set(rig.state()["blocks"]))
    # ...and what happens from now on.
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#00000000\n")
    assert wait_until(lambda: [e["type"] for e in door_events(rig)] == ["closed"])
    # What was held back before stays unsent: it was not the car's to send then.
    assert not [e for e in rig.events() if e.get("type") == "alarmTriggered"]


def test_an_expired_licence_stops_remote_services_never_the_ecall_injected_clock(rig):
    # The backend's clock 395 days behind: the car registers "13 months ago", so its 12-month
    # trial ended a month ago by the car's own clock.
    rig.restart_backend(clock_offset_days=-395)

    def past(*args, input=""):
        return rig.portal(*args, "--clock-offset-days=-395", input=input)
    past("user", "add", "ana@example.com", input="correct horse\n4711\n")
    past("user", "verify", "ana@example.com")
    car = json.loads(past("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    # No eCall network here: the test call must not hold up the stop.
    log, _ = rig.start_car("[ecall]\nshutdown-grace-ms = 0\n")
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#01000000\n")
    # Before registration: only the eCall the law requires.
    before = capabilities(rig)
    assert before["emergencyCall"]["isEnabled"]
    assert before["breakdownCall"]["statusCodes"] == [2003] and before["remoteLockUnlock"]["statusCodes"] == [2003]
    ok = rig.tcuctl("register", car["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    expired = capabilities(rig)
    for service in ["remoteLockUnlock", "vehicleStatus", "parkingPosition", "alerts", "breakdownCall"]:
        assert expired[service] == {"id": service, "isEnabled": False, "expirationDate": expired[service]["expirationDate"],
                                    "statusCodes": [2002]}
        assert expired[service]["expirationDate"] < time.time() * 1000
    assert expired["emergencyCall"]["isEnabled"]
    # The backend hears the codes in the car's state, and the portal shows the enrolment inactive.
    assert wait_until(lambda: rig.state()["blocks"].get("capabilities", {}).get("values", {})
                      .get("remoteLockUnlock", {}).get("statusCodes") == [2002])
    assert json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)["enrolment"] == "inactive"
    # The services stopped: the car's state does not go (only the services' status did), and
    # the app is refused the status it would show.
    assert wait_until(lambda: int(rig.status().get("outbox.withheldByLicence", "0")) >= 1)
    assert set(rig.state()["blocks"]) == {"capabilities"}
    # The backend on today's clock (it ran 395 days behind): the licence ended a month ago.
    http = free_port()
    rig.restart_backend(extra=["--http", f"127.0.0.1:{http}"])
    app = App(http)
    app.login("ana@example.com")
    status, body = app.call("GET", f"/vehicles/{VIN}/status")
    assert status == 403 and body["error"] == "licenceExpired"
    assert app.call("GET", f"/vehicles/{VIN}/capabilities")[0] == 200
    # The eCall does not ask the licence: a test call is taken (test_ecall.py calls a PSAP with
    # no account, licence or backend at all).
    assert rig.tcuctl("ecall", "test").returncode == 0
    # Renewed from the car: the remote services are back, on the backend too.
    renewed = rig.tcuctl("licence", "--renew", "--package", "radio", "--years", "1")
    assert renewed.returncode == 0, renewed.stderr
    assert capabilities(rig)["remoteLockUnlock"]["statusCodes"] == []
    assert wait_until(lambda: rig.state()["blocks"]["capabilities"]["values"]["remoteLockUnlock"]["isEnabled"])
    # The state goes again, at once, and the app reads it.
    assert wait_until(lambda: "doors" in rig.state()["blocks"])
    assert app.call("GET", f"/vehicles/{VIN}/status")[0] == 200
    # "Use my position": the parking position says why it is off.
    assert rig.tcuctl("privacy", "use").returncode == 0
    assert capabilities(rig)["parkingPosition"]["statusCodes"] == [1013]


def test_a_car_whose_licence_expired_registers_again_only_after_a_renewal(rig):
    past_days = -395
    rig.restart_backend(clock_offset_days=past_days)
    rig.portal("user", "add", "ana@example.com", f"--clock-offset-days={past_days}", input="correct horse\n4711\n")
    rig.portal("user", "verify", "ana@example.com")
    car = json.loads(rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms",
                                f"--clock-offset-days={past_days}").stdout)
    rig.start_car()
    assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
    # A factory reset, then today (the backend's clock right again) the owner adds the car anew.
    assert rig.tcuctl("reset", "--yes").returncode == 0
    assert wait_until(lambda: "outbox.dataDeletionConfirmedAt" in rig.status(), timeout=30)
    rig.restart_backend()
    again = json.loads(rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)
    refused = rig.tcuctl("register", again["pairingCode"])
    assert refused.returncode == 75 and "licenceInvalid" in refused.stderr and "licence" in refused.stderr
    assert json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)["enrolment"] == "started"
    # No second trial: the owner renews in the portal, then the same code works.
    assert rig.portal("licence", "renew", VIN, "--package", "navi", "--years", "1").returncode == 0
    ok = rig.tcuctl("register", again["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    assert "onlineNavigation" in ok.stdout
    assert json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)["enrolment"] == "completed"


def test_roles_from_the_portal_cli(rig):
    car = rig.add_car()
    for who in ["ben@example.com", "cleo@example.com"]:
        rig.portal("user", "add", who, input="correct horse\n1234\n")
        rig.portal("user", "verify", who)
    rig.start_car()
    assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
    assert rig.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "ben@example.com", "--role", "secondary").returncode == 0
    assert rig.portal("garage", "share", VIN, "--user", "ana@example.com", "--with", "cleo@example.com", "--role", "guest").returncode == 0
    users = [json.loads(l) for l in rig.portal("garage", "users", VIN).stdout.splitlines()]
    assert users == [{"user": "ana@example.com", "role": "primary"}, {"user": "cleo@example.com", "role": "guest"},
                     {"user": "ben@example.com", "role": "secondary"}]
    refused = rig.portal("garage", "share", VIN, "--user", "ben@example.com", "--with", "cleo@example.com", "--role", "secondary")
    assert refused.returncode != 0 and "insufficientRights" in refused.stderr


def test_wrong_codes_lock_registration_in_the_car(rig):
    rig.start_car()

    def register(code):
        return rig.tcuctl("register", code)
    for code in ("11111111", "22222222", "33333333"):
        assert "codeUnknown" in register(code).stderr
    locked = register("44444444")
    assert locked.returncode == 75 and "locked" in locked.stderr and "try again in" in locked.stderr
    assert rig.status()["registration.wrongCodes"] == "3"
    # The backend saw three requests only: the fourth never left the car.
    assert (rig.tmp / "backend.log").read_text().count("registration of VSSZZZKLZNR012345 refused") == 3


def test_the_menu_as_a_person_uses_it_in_a_terminal(rig):
    code = rig.add_car()["pairingCode"]
    rig.start_car()
    term = Terminal(rig)
    shows, type_ = term.shows, term.type_
    try:
        shows("== Settings")
        type_("7")
        shows("Choose one of the numbers shown.")
        type_("1")
        shows("Registration: notStarted")
        type_("1")
        shows("State: notStarted")
        type_("1")
        shows("Pairing code from the portal (8 digits; 0 to go back)")
        type_("12ab")
        shows("The code is 8 digits, nothing else.")
        type_(code)
        shows("Registered. Primary user: ana@example.com")
        shows("Primary user: ana@example.com")
        assert rig.status()["registration.status"] == "completed"
        type_("0")
        shows("Registration: completed")
        type_("2")
        shows("Privacy: Share my position")
        type_("3")
        shows("Privacy: Offline")
        assert wait_until(lambda: rig.status().get("privacy") == "offline")
        type_("0")
        type_("3")
        shows("Licence valid until")
        type_("0")
        type_("0")
        # The User screen is at the menu's top, as the product page names it.
        shows("3) User")
        type_("3")
        shows("== User")
        shows("Delete user / restore factory settings")
        type_("1")
        shows("Type YES to go on")
        type_("no")
        shows("Nothing was deleted.")
        assert rig.status()["registration.status"] == "completed"
        type_("1")
        type_("YES")
        shows("Factory settings restored.")
        assert wait_until(lambda: rig.status().get("registration.status") == "notStarted")
        type_("0")
        type_("0")
        shows("Goodbye.")
    finally:
        term.close()


def test_the_activation_assistant_registers_the_car_without_the_portal(rig):
    """The seed's other path, from the car alone: create the account, verify the address (the
    link in the e-mail: here the portal's command), log in, accept the terms, done."""
    rig.start_car()

    def assistant(*args, input=""):
        return rig.tcuctl("assistant", *args, input=input)
    weak = assistant("create-account", "--email", "ana@example.com", input="short\n4711\n")
    assert weak.returncode == 75 and "weakPassword" in weak.stderr and "10 characters" in weak.stderr
    made = assistant("create-account", "--email", "ana@example.com", input="correct horse\n4711\n")
    assert made.returncode == 0 and "account = ana@example.com" in made.stdout and "Open the link" in made.stdout
    early = assistant("add-car", "--email", "ana@example.com", "--accept-terms", input="correct horse\n")
    assert early.returncode == 75 and "emailNotVerified" in early.stderr
    assert rig.portal("user", "verify", "ana@example.com").returncode == 0
    no_terms = assistant("add-car", "--email", "ana@example.com", input="correct horse\n")
    assert no_terms.returncode == 75 and "termsNotAccepted" in no_terms.stderr
    wrong = assistant("add-car", "--email", "ana@example.com", "--accept-terms", input="wrong horse!\n")
    assert wrong.returncode == 75 and "wrongPassword" in wrong.stderr
    ok = assistant("add-car", "--email", "ana@example.com", "--accept-terms", input="correct horse\n")
    assert ok.returncode == 0, ok.stderr
    assert "registration.status = completed" in ok.stdout and "registration.role = primary" in ok.stdout
    car = json.loads(rig.portal("garage", "list", "--user", "ana@example.com").stdout)
    assert car["vin"] == VIN and car["codeUsed"] and car["enrolment"] == "completed"
    for log in rig.tmp.glob("*.log"):
        assert "correct horse" not in log.read_text() and car["pairingCode"] not in log.read_text(), log


def test_passwords_and_spins_come_on_standard_input_never_as_arguments(rig):
    # As arguments, every local user would read them in ps (issue 14, finding 17).
    for tool, args in [(rig.portal, ("user", "add", "ana@example.com", "--password", "correct horse", "--spin", "4711")),
                       (rig.tcuctl, ("assistant", "create-account", "--email", "ana@example.com", "--password", "correct horse"))]:
        r = tool(*args)
        assert r.returncode == 64 and "Unknown option '--password'" in r.stderr, r.stderr
    # No input: a clear error, nothing created.
    r = rig.portal("user", "add", "ana@example.com")
    assert r.returncode == 64 and "password: nothing on standard input" in r.stderr, r.stderr
    r = rig.portal("user", "add", "ana@example.com", input="correct horse\n")
    assert r.returncode == 64 and "s-pin (4 digits): nothing on standard input" in r.stderr, r.stderr
    # One per line from a pipe: the account is created (test_app_api logs in with that password).
    assert rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n").returncode == 0
    again = rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    assert again.returncode != 0 and "accountExists" in again.stderr, again.stderr


def test_the_activation_assistant_in_the_menu(rig):
    rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    rig.start_car()
    term = Terminal(rig)
    shows, type_ = term.shows, term.type_
    try:
        shows("== Settings")
        for key, screen in [("1", "== Settings › Online services"), ("1", "== Online services › Registration"),
                            ("2", "== Registration › Activation assistant"), ("2", "E-mail address")]:
            type_(key)
            shows(screen)
        # Creating an account that exists: refused, with the portal's reason.
        type_("ana@example.com")
        shows("Password (at least 10 characters)")
        type_("correct horse")
        shows("S-PIN for remote functions (4 digits)")
        type_("47")
        shows("The S-PIN is 4 digits.")
        # Secrets are typed with the echo off: the screen never shows them.
        assert "correct horse" not in term.screen() and "47\n" not in term.screen(), term.screen()
        type_("4711")
        shows("The account was not created (accountExists)")
        # Log in before the address is verified, then after.
        type_("1")
        shows("E-mail address")
        type_("ana@example.com")
        type_("correct horse")
        shows("== Activation assistant › Terms")
        type_("1")
        shows("Registration failed (emailNotVerified)")
        assert rig.portal("user", "verify", "ana@example.com").returncode == 0
        type_("1")
        type_("ana@example.com")
        type_("correct horse")
        shows("Privacy policy")
        type_("1")
        shows("Registered. Primary user: ana@example.com")
        assert rig.status()["registration.status"] == "completed"
        shows("State: completed")
    finally:
        term.close()


def test_a_factory_reset_deletes_the_users_data_in_the_car_and_in_the_backend(rig):
    import sqlite3
    cli, tcuctl = rig.portal, rig.tcuctl
    code = rig.add_car()["pairingCode"]
    files = {name: rig.tmp / f"{name}.json" for name in ("registration", "parking", "settings")}
    files["parking"].write_text('{"latitude":41.4745,"longitude":1.9305,"fixTime":1764000000000,"parkedAt":1764000005000}\n')
    log, _ = rig.start_live_daemon(registered=False, extra=f"[registration]\nfile = {files['registration']}\n"
                                   f"[gnss]\ngpsd = 127.0.0.1:{free_port()}\nparking-file = {files['parking']}\n")
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "true")
    assert tcuctl("register", code).returncode == 0
    assert tcuctl("privacy", "use").returncode == 0
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#00000000\n({time.time():.6f}) can0 583#01000000\n")
    assert wait_until(lambda: len(door_events(rig)) == 1 and rig.state()["blocks"])
    # A remote command from the owner: the backend keeps its request, with her address.
    flash = cli("command", VIN, "flash", "--user", "ana@example.com", *rig.broker_args(), "--wait-s", "0")
    assert '"action":"flash"' in flash.stdout, flash.stdout + flash.stderr
    # The link goes down; more happens: it waits in the car.
    rig.stop_broker()
    with open(log, "a") as f:
        f.write(f"({time.time():.6f}) can0 583#00000000\n")
    assert wait_until(lambda: rig.outbox_waiting() >= 1)
    assert all(p.exists() for p in files.values())
    refused = tcuctl("reset")
    assert refused.returncode != 0 and "--yes" in refused.stderr
    done = tcuctl("reset", "--yes")
    assert done.returncode == 0, done.stderr
    # In the car: the files are gone and the outbox holds only the request to the backend.
    assert not any(p.exists() for p in files.values())
    with sqlite3.connect(rig.tmp / "outbox.db") as db:
        rows = db.execute("SELECT stream, payload FROM messages").fetchall()
    assert [(s, json.loads(p)["type"]) for s, p in rows] == [("requests", "deleteMyData")]
    st = rig.status()
    assert st["registration.status"] == "notStarted" and st["parking"] == "none" and st["privacy"] == "shareMyPosition"
    # The link returns: the backend deletes the car's data and confirms.
    rig.start_broker()
    assert wait_until(lambda: "outbox.dataDeletionConfirmedAt" in rig.status(), timeout=30)
    assert door_events(rig) == [] and rig.state()["blocks"] == {}
    assert cli("garage", "list", "--user", "ana@example.com").stdout == ""
    assert rig.gaps()["gaps"] == []
    assert "deleted the data of VSSZZZKLZNR012345" in (rig.tmp / "backend.log").read_text()
    # Every table of the backend, every row: nothing ties the car to its owner any more. Two
    # rows about the car alone stay: its licence (the service period belongs to the vehicle,
    # the product page says, and outlives an owner) and the sequence number the deletion had.
    with sqlite3.connect(rig.tmp / "backend.db") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        naming = {}
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                text = " ".join(str(v) for v in row)
                if VIN in text:
                    naming.setdefault(table, []).append(text)
                if "ana@example.com" in text:
                    assert table == "accounts", (table, text)  # her account is hers to delete
    assert set(naming) <= {"licences", "resets"}, naming
