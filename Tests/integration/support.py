"""What the integration tests share: where the project's files and binaries are, free loopback
ports, and waiting for a condition (polling, never sleeping for timing)."""
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(os.environ.get("TCUCTL", os.path.join(ROOT, ".build", "debug", "tcuctl")))
DBC = os.path.join(ROOT, "hw", "vehicle.dbc")
PROFILE = os.path.join(ROOT, "hw", "vehicle-profile.conf")
VIN = "VSSZZZKLZNR012345"
# A registration file as the handshake leaves it: the owner registered the car and accepted the
# terms, its licence running. Before registration nothing leaves the car for the backend
# (docs/protocol.md, "Consent first").
REGISTERED = ('{"status":"completed","user":"ana@example.com","role":"primary","services":'
              '["vehicleStatus","parkingPosition","alerts","breakdownCall","serviceScheduling"],"licenceExpiresAt":4102444800000}')


class DaemonConfig:
    """telematicsd's configuration file for a test, built by section instead of as text: it starts
    with what every test's daemon needs (the DBC, the vehicle profile, and its control socket,
    outbox and eCall journal in the test's folder) and each test sets what it is about. Keys are written as Python names (`transmit_status`) or as the
    file's (`"transmit-status"`); None removes a key.

        conf = DaemonConfig(tmp_path).set("can", source=f"candump:{log}", replay="fast").write()
    """

    def __init__(self, folder):
        self.folder = folder
        self.sections = {
            "can": {"dbc": DBC},
            "vehicle": {"profile": PROFILE},
            "control": {"socket": f"{folder}/ctl.sock"},
            "outbox": {"path": f"{folder}/outbox.db"},
            "ecall": {"journal": f"{folder}/ecall.journal"},
        }

    def set(self, section, **keys):
        values = self.sections.setdefault(section, {})
        for name, value in keys.items():
            name = name.replace("_", "-")
            if value is None:
                values.pop(name, None)
            else:
                values[name] = "true" if value is True else "false" if value is False else value
        return self

    def registered(self):
        """A registered car (its owner accepted the terms): the registration file the handshake leaves."""
        (self.folder / "registration.json").write_text(REGISTERED)
        return self.set("registration", file=f"{self.folder}/registration.json")

    def text(self):
        return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for name, keys in self.sections.items())

    def write(self, name="telematicsd.conf"):
        """Writes the file into the test's folder; its path."""
        path = self.folder / name
        path.write_text(self.text())
        return str(path)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something accepts TCP connections on this loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_until(predicate, timeout=30, ignoring=()):
    """The predicate's first true value, or None when `timeout` seconds passed without one. The
    exceptions in `ignoring` (a status query while the daemon starts) count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ignoring:
            value = None
        if value:
            return value
        time.sleep(0.02)
    return None


def terminate(*processes):
    """Stops the processes that are still running (SIGTERM) and waits for each."""
    for p in processes:
        if p and p.poll() is None:
            p.terminate()
            p.wait(timeout=10)


def ecall_status(folder):
    """The daemon's eCall status (`tcuctl status --json`, its control socket in `folder`), None
    while it does not answer."""
    r = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--json", "--socket", f"{folder}/ctl.sock"],
                       capture_output=True, text=True)
    return json.loads(r.stdout)["ecall"] if r.returncode == 0 else None


class Gpsd:
    """A real gpsd reading NMEA from a UDP port (where a receiver, or the simulated car, sends it)
    and serving its clients on `port`; it can be stopped and started again on the same ports."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.proc = None
        self.start()

    def start(self):
        # -N foreground, -n read the feed without waiting for a client, -S the client port.
        self.proc = subprocess.Popen(["gpsd", "-N", "-n", "-S", str(self.port), f"udp://127.0.0.1:{self.udp_port}"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.folder / "gpsd.log", "a"))
        assert wait_until(lambda: listening(self.port)), "gpsd did not start"

    def stop(self):
        terminate(self.proc)


class Psap:
    """tcu-psap, the circuit-switched PSAP and network simulator, playing `scenario` (its keys,
    docs/ecall.md) on `port`; `events()` reads its log."""

    def __init__(self, folder, scenario="", port=None):
        self.port = port or free_port()
        self.log = folder / f"psap-{self.port}.log"
        (folder / f"psap-{self.port}.conf").write_text(scenario)
        self.proc = subprocess.Popen([os.path.join(BIN, "tcu-psap"), "--listen", f"127.0.0.1:{self.port}",
                                      "--scenario", str(folder / f"psap-{self.port}.conf"), "--log", str(self.log)])
        # The network must be there before the car starts, or its first attempt finds none.
        assert wait_until(lambda: self.events("listening")), "tcu-psap did not start"

    def events(self, kind=None):
        if not self.log.exists():
            return []
        out = [json.loads(l) for l in self.log.read_text().splitlines() if l.strip()]
        return [e for e in out if kind is None or e["event"] == kind]

    def stop(self):
        terminate(self.proc)


OTHER_VIN = "VSSZZZKLZNR099999"


class Postgres:
    """Debian's PostgreSQL server of the test's own (hw/postgres/cluster): a Unix socket in a
    new folder under /tmp (the server runs as the `postgres` user when the test is root, and
    must reach it), password authentication, the role and database `tcu`. `url` is what
    tcu-backend's --db takes; `env` carries libpq's password file (never a password in a URL)."""

    def __init__(self):
        import tempfile
        self.folder = tempfile.mkdtemp(prefix="tcu-pg-", dir="/tmp")
        self.script = os.path.join(ROOT, "hw", "postgres", "cluster")
        self.url = subprocess.run([self.script, "start", self.folder], check=True, capture_output=True, text=True).stdout.strip()
        self.env = {"PGPASSFILE": os.path.join(self.folder, "pgpass")}

    def sql(self, statement):
        """One statement through psql as the backend's role: its rows, tab-separated."""
        r = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", self.url], input=statement,
                           capture_output=True, text=True, env={**os.environ, **self.env})
        assert r.returncode == 0, r.stderr
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def stop(self):
        subprocess.run([self.script, "stop", self.folder], check=True)

    def start(self):
        """The same cluster's server again (after stop)."""
        subprocess.run([self.script, "start", self.folder], check=True, capture_output=True)

    def close(self):
        import shutil
        subprocess.run([self.script, "stop", self.folder], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def pki(folder, port):
    """The broker's certificates and ACL (hw/broker/pki): mutual TLS, each car reaching only its
    own topics, the backend (tcu-backend) every car's. Returns the folder."""
    import subprocess
    subprocess.run([os.path.join(ROOT, "hw", "broker", "pki"), str(folder), str(port), VIN, OTHER_VIN], check=True)
    return folder


def tls_args(folder, identity, kind="mosquitto"):
    """How a client proves who it is: mosquitto_pub/sub options, or tcu-backend's."""
    if kind == "mosquitto":
        return ["--cafile", f"{folder}/ca.pem", "--cert", f"{folder}/{identity}.pem", "--key", f"{folder}/{identity}.key"]
    return ["--tls-ca", f"{folder}/ca.pem", "--tls-cert", f"{folder}/{identity}.pem", "--tls-key", f"{folder}/{identity}.key"]


def expected(folder, name):
    """A recorded trace's expected end state: the `key = value` lines of FOLDER/NAME.expected."""
    with open(os.path.join(ROOT, "hw", folder, f"{name}.expected")) as f:
        return dict(l.split(" = ", 1) for l in (x.strip() for x in f) if l and not l.startswith("#"))


class SimCar:
    """The simulated car (tcu-car) on the software bus (`logbus:DIR`) the unit reads: it answers
    the unit's requests as a real car does, and the test drives it with `do`, as a person would."""

    def __init__(self, tmp, bus, *extra):
        import subprocess
        self.tmp, self.sock = tmp, f"{tmp}/car.sock"
        self.proc = subprocess.Popen([os.path.join(BIN, "tcu-car"), "run", "--bus", f"logbus:{bus}", "--dbc", DBC,
                                      "--control", self.sock, "--sleep-after", "1h", *extra],
                                     stdout=open(tmp / "tcu-car.out", "a"), stderr=subprocess.STDOUT)
        assert wait_until(lambda: os.path.exists(self.sock)), "tcu-car did not start"

    def run(self, *args, timeout=60):
        import subprocess
        return subprocess.run([os.path.join(BIN, "tcu-car"), args[0], "--control", self.sock, *args[1:]], capture_output=True,
                              text=True, timeout=timeout)

    def do(self, *words):
        """A live command; the car's events in reply (an error when the car refuses)."""
        r = self.run("do", *words)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    def status(self):
        import json
        r = self.run("status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait(self, *condition, timeout="20s"):
        r = self.run("wait", "--timeout", timeout, *condition)
        assert r.returncode == 0, f"{' '.join(condition)}: {r.stderr}"

    def events(self):
        return self.run("events").stdout.splitlines()

    def requests(self):
        """The unit's requests the car received (and whether it ignored them), in order."""
        return [e.split(": ", 1)[1] for e in self.events()
                if ("unit request" in e or "ignored (" in e) and (" body: " in e or " climate: " in e)]

    def close(self):
        terminate(self.proc)


class App:
    """What an app does with the API: JSON over HTTP with its session token."""

    def __init__(self, port, timeout=10):
        self.base, self.token, self.timeout = f"http://127.0.0.1:{port}/v1", None, timeout

    def call(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, (json.loads(text) if text else None)

    def login(self, email, password="correct horse"):
        status, body = self.call("POST", "/login", {"email": email, "password": password})
        if status == 200:
            self.token = body["token"]
        return status, body


class MailSink:
    """A real SMTP server (aiosmtpd) on loopback, started by the test: it keeps every message
    it receives, as the backend's mails would reach a person's mailbox."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        import email
        self.received = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def mails_to(self, address):
        return [m for _, to, m in self.received if address in to]

    def close(self):
        self.controller.stop()


class Terminal:
    """tcuctl menu in a real terminal (tmux): keys typed, the screen read back."""

    def __init__(self, rig):
        self.session = f"tcu-menu-{os.getpid()}-{time.monotonic_ns()}"
        # The pane stays a while after the menu ends, so that its last words can be read.
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "120", "-y", "60",
                        f"{os.path.join(BIN, 'tcuctl')} menu --socket {rig.tmp}/ctl.sock; sleep 30"], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def type_(self, text):
        subprocess.run(["tmux", "send-keys", "-t", self.session, text, "Enter"], check=True)

    def shows(self, text):
        assert wait_until(lambda: text in self.screen(), timeout=15), self.screen()

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)
