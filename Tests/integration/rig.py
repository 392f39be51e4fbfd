"""The backend rig the end-to-end tests share: a real mosquitto with mutual TLS, the real
tcu-backend, and the daemon (with the simulated car where a test needs one), all on loopback
in the test's own folder. conftest.py makes it the `rig` fixture."""
import json
import os
import signal
import subprocess

from support import BIN, PROFILE, REGISTERED, VIN, DaemonConfig, SimCar, free_port, listening, pki, tls_args, wait_until, terminate


class Rig:
    def __init__(self, tmp, database=None):
        """`database`: a Postgres (support.py) for the backend to store in; by default its SQLite file."""
        self.tmp = tmp
        self.db = database.url if database else str(tmp / "backend.db")
        self.db_env = database.env if database else {}
        self.port = free_port()
        (tmp / "broker").mkdir()
        # Mutual TLS and the ACL, as docs/operations.md sets a broker up: no anonymous client.
        self.pki = pki(tmp / "pki", self.port)
        (tmp / "mosquitto.conf").write_text(
            (self.pki / "mosquitto.conf").read_text() +
            f"max_queued_messages 1000000\npersistence true\npersistence_location {tmp}/broker/\nautosave_interval 1\n"
            f"log_dest file {tmp}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n")
        self.broker = None
        self.start_broker()
        # The backend's subscription must exist before cars publish.
        self.start_backend()
        # The backend's public key, installed in the car: the answers it acts on are signed.
        self.answer_key = self.portal("keys").stdout.strip()
        self.daemon = None

    def backend_ready(self, connections):
        log = self.tmp / "backend.log"
        return log.exists() and log.read_text().count("connected to") >= connections

    def start_broker(self):
        self.broker = subprocess.Popen(["mosquitto", "-c", str(self.tmp / "mosquitto.conf")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self.broker_up)

    def broker_up(self):
        return listening(self.port)

    def stop_broker(self):
        self.broker.send_signal(signal.SIGTERM)
        self.broker.wait(timeout=10)

    def daemon_config(self, log, replay="fast", broker_port=None, keepalive=5, outbox=None, follow=False, bus=None,
                      registered=True):
        """The daemon's configuration; `registered`: the car already registered (a registration
        file as the handshake leaves it), otherwise the test registers it or adds its own."""
        c = DaemonConfig(self.tmp)
        if bus:
            c.set("can", source=f"logbus:{bus}")
        else:
            c.set("can", source=f"candump:{log}", replay=replay, follow=follow)
        c.set("can", transmit_status=False)
        c.set("outbox", path=outbox or self.tmp / "outbox.db")
        c.set("ecall", link=f"127.0.0.1:{free_port()}")
        c.set("backend", broker=f"127.0.0.1:{broker_port or self.port}", tls_ca=f"{self.pki}/ca.pem",
              tls_cert=f"{self.pki}/{VIN}.pem", tls_key=f"{self.pki}/{VIN}.key", answer_key=self.answer_key, keepalive_s=keepalive)
        c.set("privacy", settings_file=f"{self.tmp}/settings.json")
        if registered:
            (self.tmp / "registered.json").write_text(REGISTERED)
            c.set("registration", file=f"{self.tmp}/registered.json")
        c.write()
        return self.tmp / "telematicsd.conf"

    def start_daemon(self, log, replay="fast", **options):
        conf = self.daemon_config(log, replay, **options)
        self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                       stderr=open(self.tmp / "daemon.log", "a"))

    def start_live_daemon(self, extra="", registered=True):
        """telematicsd on a CAN log the test writes to as it goes (`follow`), with `extra`
        configuration appended; returns the log and the configuration file."""
        log = self.tmp / "live.log"
        log.write_text("")
        conf = self.daemon_config(log, follow=True, registered=registered)
        conf.write_text(conf.read_text() + extra)
        self.run_daemon(conf)
        return log, conf

    def start_sim_car(self, extra="", car_args=()):
        """The simulated car (tcu-car) and the daemon on their software bus, the daemon registered-
        ready (a registration file, `extra` configuration) and connected; returns the car."""
        bus = self.tmp / "bus"
        self.car = SimCar(self.tmp, bus, *car_args)
        conf = self.daemon_config(None, bus=bus, registered=False)
        conf.write_text(conf.read_text() + f"[registration]\nfile = {self.tmp}/registration.json\n" + extra)
        self.run_daemon(conf)
        assert wait_until(lambda: self.status().get("outbox.backend.connected") == "true")
        return self.car

    def start_car(self, extra=""):
        """The live daemon with a registration file (and `extra` configuration), connected to the
        broker; returns the CAN log and the configuration file."""
        log, conf = self.start_live_daemon(f"[registration]\nfile = {self.tmp}/registration.json\n" + extra, registered=False)
        assert wait_until(lambda: self.status().get("outbox.backend.connected") == "true")
        return log, conf

    def run_daemon(self, conf):
        self.daemon = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)],
                                       stderr=open(self.tmp / "daemon.log", "a"))

    def portal(self, *args, input=""):
        """tcu-backend on the backend's database: its queries and the portal's commands.
        `input` is its standard input: the secrets it reads (a password, an S-PIN), one per line."""
        return subprocess.run([os.path.join(BIN, "tcu-backend"), *args, "--db", self.db],
                              capture_output=True, text=True, input=input, env={**os.environ, **self.db_env})

    def tcuctl(self, *args, input=""):
        return subprocess.run([os.path.join(BIN, "tcuctl"), *args, "--socket", f"{self.tmp}/ctl.sock"], capture_output=True, text=True,
                              input=input)

    def add_car(self):
        """Ana signs up, verifies her address and adds the car: the car's entry, with its pairing code."""
        self.portal("user", "add", "ana@example.com", input="correct horse\n4711\n")
        self.portal("user", "verify", "ana@example.com")
        return json.loads(self.portal("garage", "add", VIN, "--user", "ana@example.com", "--profile", PROFILE, "--accept-terms").stdout)

    def start_backend(self, clock_offset_days=0, extra=(), env=None):
        log = self.tmp / "backend.log"
        connections = log.read_text().count("connected to") + 1 if log.exists() else 1
        self.backend = subprocess.Popen([os.path.join(BIN, "tcu-backend"), "serve", *self.broker_args(),
                                         "--db", self.db, f"--clock-offset-days={clock_offset_days}", *extra],
                                        stderr=open(log, "a"), env={**os.environ, **self.db_env, **(env or {})})
        assert wait_until(lambda: self.backend_ready(connections))
        # Its HTTP side too, when it serves one: the broker's connection may come first.
        if "--http" in extra:
            port = int(extra[list(extra).index("--http") + 1].rsplit(":", 1)[1])
            assert wait_until(lambda: listening(port)), "tcu-backend's HTTP side did not start"

    def broker_args(self):
        """tcu-backend's options for the broker, with the backend's own identity."""
        return ["--broker", f"127.0.0.1:{self.port}", *tls_args(self.pki, "tcu-backend", kind="backend")]

    def mqtt(self, identity="tcu-backend"):
        """mosquitto_pub/sub's options for the broker, as IDENTITY (a VIN, or tcu-backend)."""
        return ["-h", "127.0.0.1", "-p", str(self.port), *tls_args(self.pki, identity)]

    def restart_backend(self, clock_offset_days=0, extra=(), env=None):
        self.backend.terminate()
        self.backend.wait(timeout=10)
        self.start_backend(clock_offset_days, extra, env)

    def status(self):
        r = subprocess.run([os.path.join(BIN, "tcuctl"), "status", "--socket", f"{self.tmp}/ctl.sock"], capture_output=True, text=True)
        return dict(l.split(" = ", 1) for l in r.stdout.splitlines() if " = " in l)

    def state(self):
        return json.loads(self.backend_cli("state", VIN))

    def backend_cli(self, *args):
        return self.portal(*args).stdout

    def events(self):
        return [json.loads(l) for l in self.backend_cli("events", VIN).splitlines() if l.strip()]

    def gaps(self):
        return json.loads(self.backend_cli("gaps", VIN))

    def connection(self):
        out = self.backend_cli("connection", VIN).strip()
        return None if out in ("", "null") else json.loads(out)

    def outbox_waiting(self):
        import sqlite3
        try:
            with sqlite3.connect(self.tmp / "outbox.db") as db:
                return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        except sqlite3.OperationalError:
            return 0  # not created yet

    def close(self):
        if getattr(self, "car", None):
            self.car.close()
        terminate(self.daemon, self.backend, self.broker)


def door_events(rig):
    """The front left door's events as the backend stored them."""
    return [e for e in rig.events() if e.get("quantity") == "doors.frontLeft.open"]
