"""The web portal (MySEAT) in a real browser: Debian's Chromium, headless, driven by Selenium
through Debian's chromium-driver, against the real tcu-backend, a real SMTP server (aiosmtpd)
and the real car (telematicsd with the simulated car on its bus), as a person goes: sign up,
open the mail, add the car, type the code in `tcuctl menu`, see the car registered, lock it
with the S-PIN and see the simulated car confirm it, and the alert arrive live. The forms are
filled from the keyboard (tab and enter), as a person without a mouse does. Every step leaves a
screenshot in .build/artefacts/web-portal (TCU_ARTEFACTS to change it)."""
import os
import re
import shutil

import pytest

from support import PROFILE, ROOT, VIN, MailSink, Terminal, free_port, wait_until
from rig import Rig

# Selenium comes with `make deps` (PY_PACKAGES), the browser and its driver from Debian.
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

# While one page gives way to the next, reading it fails for a moment (an element gone, a node
# no longer in the document): the waits take that as "not yet".
PAGE_CHANGING = (WebDriverException,)
ARTEFACTS = os.environ.get("TCU_ARTEFACTS", os.path.join(ROOT, ".build", "artefacts"))


@pytest.fixture
def portal(tmp_path):
    """The backend with its HTTP server (the app API and the portal) and its mail going to a
    real SMTP server; the broker; no car yet."""
    sink = MailSink()
    rig = Rig(tmp_path)
    rig.http = free_port()
    rig.restart_backend(extra=["--http", f"127.0.0.1:{rig.http}", "--smtp", f"smtp://127.0.0.1:{sink.port}",
                               "--public-url", f"http://127.0.0.1:{rig.http}"])
    yield rig, sink
    rig.close()
    sink.close()


class Browser:
    """Headless Chromium with a screenshot after each named step."""

    def __init__(self, name, base):
        assert shutil.which("chromium") and shutil.which("chromedriver"), "chromium and chromium-driver come with `make deps`"
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400", "--disable-gpu",
                    "--no-first-run", "--disable-background-networking", "--disable-extensions"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")), options=options)
        self.driver.set_page_load_timeout(120)
        self.base, self.folder, self.step = base, os.path.join(ARTEFACTS, name), 0
        shutil.rmtree(self.folder, ignore_errors=True)
        os.makedirs(self.folder)

    def open(self, path):
        self.driver.get(self.base + path)

    def shot(self, what):
        self.step += 1
        self.driver.save_screenshot(os.path.join(self.folder, f"{self.step:02d}-{what}.png"))

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self):
        return self.find("main").text

    def text_now(self):
        """The page's text for a failure's message (whatever the page is doing)."""
        try:
            return self.text()
        except WebDriverException as e:
            return f"(the page could not be read: {e.msg})"

    def shows(self, text, timeout=30):
        # (A page being replaced by the next one's has no elements to read for a moment.)
        assert wait_until(lambda: text in self.text(), timeout=timeout, ignoring=PAGE_CHANGING), self.text_now()

    def keyboard(self, first, *keys):
        """Focus `first` and type: strings go into the focused field, Keys move or press."""
        self.driver.execute_script("arguments[0].focus()", self.find(first))
        chain = webdriver.ActionChains(self.driver)
        for k in keys:
            chain.send_keys(k)
        chain.perform()

    def close(self):
        self.driver.quit()


def link_in(mail):
    return re.search(r"http://\S+token=[0-9a-f]+", mail.get_payload(decode=True).decode()).group(0)


def test_a_person_signs_up_adds_the_car_registers_it_in_the_menu_and_locks_it_from_the_portal(portal):
    rig, sink = portal
    web = Browser("a-person-s-path", f"http://127.0.0.1:{rig.http}")
    term = None
    try:
        # The portal's address leads to the log-in; the way to an account is a link.
        web.open("/")
        web.shows("E-mail address, user name or mobile number")
        web.shot("log-in")
        web.find("a[href='/signup']").click()
        # The sign-up form from the keyboard: the tab key goes field by field, enter sends.
        web.keyboard("#email", "ana@example.com", Keys.TAB, "ana", Keys.TAB, "+34 600 111 222", Keys.TAB, "correct horse", Keys.TAB, "4711")
        web.shot("sign-up")
        web.keyboard("#spin", Keys.ENTER)
        web.shows("Check your mail")
        web.shot("check-your-mail")

        # The mail, from the SMTP server; its link opens the portal's page.
        mail = wait_until(lambda: sink.mails_to("ana@example.com"), timeout=60)[0]
        web.driver.get(link_in(mail))
        web.shows("ana@example.com is verified")
        web.shot("verified")
        web.find("#next").click()
        web.keyboard("#login", "ana", Keys.TAB, "correct horse", Keys.ENTER)
        web.shows("No car yet")
        web.shot("empty-garage")

        # A car of the wrong age is refused with the field named; the form keeps what was typed.
        Select(web.find("#model")).select_by_visible_text("Leon")
        Select(web.find("#country")).select_by_value("ES")
        web.find("#vin").send_keys(VIN)
        web.find("#built").send_keys("2019-12")
        web.find("#acceptTerms").click()
        web.find("#add-car").click()
        web.shows("a Leon built in 2019-12 is not compatible")
        assert web.find("#vin").get_attribute("value") == VIN
        web.shot("refused-too-old")
        web.find("#built").clear()
        web.find("#built").send_keys("2021-11")
        web.find("#acceptTerms").click()
        web.find("#add-car").click()
        web.shows("Pairing code")
        code = web.find("#pairing-code").text
        assert re.fullmatch(r"\d{8}", code)
        web.shot("pairing-code")

        # In the car: Settings → Online services → Registration, the code typed in the menu.
        rig.start_sim_car()
        term = Terminal(rig)
        term.shows("== Settings")
        term.type_("1")
        term.shows("Registration: notStarted")
        term.type_("1")
        term.type_("1")
        term.shows("Pairing code from the portal")
        term.type_(code)
        term.shows("Registered. Primary user: ana@example.com")

        # The portal sees the car registered, and its status once it reports.
        web.open(f"/garage/{VIN}")
        web.shows("Registration: completed")
        assert wait_until(lambda: (web.driver.refresh(), all(
            part in web.find("#summary").text for part in ("Locks", "Doors", "Windows", "Lights", "Climatisation")))[1],
            timeout=60, ignoring=PAGE_CHANGING), web.text_now()
        summary = web.find("#summary").text
        assert "Locks\nUnlocked" in summary and "Doors\nall closed" in summary and "Climatisation\nOff" in summary, summary
        assert "Licence" in web.text() and "Share my position" in web.find("#privacy").text
        web.shot("registered")

        # Live alerts: the garage page open in one tab, the lock sent from another.
        web.open("/garage")
        garage = web.driver.current_window_handle
        web.driver.switch_to.new_window("tab")
        web.open(f"/garage/{VIN}")
        # A wrong S-PIN first: refused, with the tries left; nothing reaches the car.
        web.keyboard("#spin", "1111")
        web.find("#lock").click()
        web.shows("tries left")
        web.shot("wrong-spin")
        assert rig.car.requests() == []
        web.keyboard("#spin", "4711")
        web.find("#lock").click()
        web.shows("successful", timeout=120)
        web.shot("locked")
        web.find("a[href='/garage/%s']" % VIN).click()
        assert wait_until(lambda: (web.driver.refresh(), "Locks\nLocked" in web.find("#summary").text)[1], timeout=60, ignoring=PAGE_CHANGING), web.text_now()
        assert rig.car.requests() == ["unit request lock"]
        assert rig.car.status()["locks"] == {"central": "locked", "source": "telematics"}
        web.driver.switch_to.window(garage)
        alerts = lambda: web.find("#alerts").text  # noqa: E731
        assert wait_until(lambda: "commandResult" in alerts() and "locked" in alerts(), timeout=60, ignoring=PAGE_CHANGING), alerts()
        web.shot("live-alerts")
    finally:
        if term:
            term.close()
        web.close()


def test_the_account_page_lists_devices_changes_the_password_and_deletes_the_data(portal):
    rig, sink = portal
    rig.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
    rig.portal("user", "verify", "ana@example.com")
    rig.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms")
    web = Browser("the-account-page", f"http://127.0.0.1:{rig.http}")
    try:
        web.open("/login")
        # The idle time chosen by typing in the list, the button reached with the tab key.
        web.keyboard("#login", "ana@example.com", Keys.TAB, "correct horse", Keys.TAB, "5", Keys.TAB, Keys.ENTER)
        web.shows(VIN)
        web.find("a[href='/account']").click()
        web.shows("Signed-in devices")
        assert "this device" in web.find("#sessions").text and "5 minutes" in web.find("#sessions").text
        web.shot("account")
        # A wrong current password: refused, and still signed in.
        web.keyboard("#current", "wrong horse!", Keys.TAB, "another horse", Keys.ENTER)
        web.shows("the e-mail address or the password is wrong")
        assert "Signed-in devices" in web.text()
        web.shot("wrong-password")
        # Delete my data: the password again; then the account and the car are gone from the server.
        web.find("#delete-password").send_keys("correct horse")
        web.find("#confirm-delete").click()
        web.find("#delete-account").click()
        web.shows("Your account and your data are deleted.")
        web.shot("deleted")
        assert rig.portal("garage", "list", "--user", "ana@example.com").stdout.strip() == ""
        web.keyboard("#login", "ana@example.com", Keys.TAB, "correct horse", Keys.ENTER)
        web.shows("the e-mail address or the password is wrong")
    finally:
        web.close()


def test_the_car_page_renews_the_licence_shares_the_car_and_removes_it(portal):
    rig, sink = portal
    code = rig.add_car()["pairingCode"]
    rig.portal("user", "add", "ben@example.com", input="correct horse\n1234\n")
    rig.portal("user", "verify", "ben@example.com")
    rig.start_sim_car()
    assert rig.tcuctl("register", code).returncode == 0
    web = Browser("the-car-page", f"http://127.0.0.1:{rig.http}")
    try:
        web.open("/login")
        web.keyboard("#login", "ana@example.com", Keys.TAB, "correct horse", Keys.ENTER)
        web.shows(VIN)
        web.open(f"/garage/{VIN}")
        web.shows("Registration: completed")
        assert "trial-navi" in web.find("#licence").text
        # Navi for two years, at the page's price.
        web.find("input[name='offer'][value='navi-2']").click()
        web.find("#renew").click()
        web.shows("The licence is renewed.")
        assert web.find("#licence").text.startswith("navi, until")
        web.shot("renewed")
        # Shared with Ben as a secondary user; an unknown account is refused with the reason.
        web.find("#share-email").send_keys("nobody@example.com")
        web.find("#share").click()
        web.shows("nobody@example.com")
        assert "nobody@example.com" in web.find("#error").text, web.text_now()
        web.shot("share-refused")
        web.find("#share-email").send_keys("ben@example.com")
        web.find("#share").click()
        web.shows("The car is shared.")
        assert "ben@example.com (secondary)" in web.find("#users").text
        web.shot("shared")
        # Ben sees the car, without the remote functions.
        ben = Browser("the-car-page-ben", f"http://127.0.0.1:{rig.http}")
        try:
            ben.open("/login")
            ben.keyboard("#login", "ben@example.com", Keys.TAB, "correct horse", Keys.ENTER)
            ben.shows(VIN)
            assert "secondary" in ben.find("#cars").text
            ben.open(f"/garage/{VIN}")
            ben.shows("my role: secondary")
            assert "Remote functions" not in ben.text()
        finally:
            ben.close()
        # Removed: the garage is empty again.
        web.find("#remove").click()
        web.shows("The car is removed from your garage.")
        web.shows("No car yet")
        web.shot("removed")
    finally:
        web.close()
