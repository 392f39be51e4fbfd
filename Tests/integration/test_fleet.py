"""A fleet in one process (tcu-fleet) against the real broker (mutual TLS, each car only its own
topics) and the real tcu-backend: every car connects with its own certificate, every message is
stored once with no gap in any car's numbers, a broker restart and a stopped fleet lose nothing,
a crash dials, and a wrong fleet file is refused before any car starts."""
import json
import os
import shutil
import signal
import subprocess
import sys

from support import BIN, ROOT, free_port, wait_until, terminate

FLEET = """
[fleet]
cars = {cars}
first-serial = 1
seed = 5
shards = {shards}
[models]
leon = 50
ibiza = 30
mii-electric = 20
[countries]
ES = 60
FI = 40
[licences]
active = 90
unregistered = 10
[privacy]
shareMyPosition = 80
useMyPosition = 15
offline = 5
[scenarios]
crash = {crash}
theft = 3
button = 3
window-seconds = 4
[behaviour]
driving-interval-ms = 500
trips-per-hour = 30
"""


def fleet_file(tmp, cars=120, shards=1, crash=0, name="fleet.conf"):
    path = tmp / name
    path.write_text(FLEET.format(cars=cars, shards=shards, crash=crash))
    return path


def fleet(rig, conf, *extra, outbox=None):
    """tcu-fleet run on `conf` against the rig's broker; its figures are JSON lines on stdout."""
    return subprocess.Popen([os.path.join(BIN, "tcu-fleet"), "run", str(conf), "--broker", f"127.0.0.1:{rig.port}",
                             "--ca", f"{rig.pki}/ca.pem", "--issuer-certificate", f"{rig.pki}/ca.pem",
                             "--issuer-key", f"{rig.pki}/ca.key", "--outbox", str(outbox or rig.tmp / "fleet.db"), *extra],
                            stdout=subprocess.PIPE, stderr=open(rig.tmp / "fleet.log", "a"), text=True)


def figures(process):
    """The fleet's last figures line after it ended."""
    out, _ = process.communicate(timeout=120)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    assert lines, out
    return json.loads(lines[-1])


def summary(rig):
    return json.loads(rig.portal("summary").stdout)


def check(conf):
    return subprocess.run([os.path.join(BIN, "tcu-fleet"), "check", str(conf)], capture_output=True, text=True)


def settled(rig, stored):
    """The backend holds `stored` messages (it stores what the broker forwards, a little later)."""
    return wait_until(lambda: summary(rig)["messages"] == stored, timeout=60)


def test_every_car_of_a_fleet_reaches_the_backend_with_no_gap(rig):
    conf = fleet_file(rig.tmp)
    f = figures(fleet(rig, conf, "--seconds", "8"))
    # Every car that may connect (not "offline") did, once, with its own certificate.
    plan = check(conf).stdout
    offline = int(next(l for l in plan.splitlines() if "privacy offline" in l).split(": ")[1])
    assert f["connectAttempts"] == 120 - offline and f["lost"] == 0 and f["reconnects"] == 0
    assert f["stored"] > 500 and f["acknowledged"] == f["stored"] and f["waiting"] == 0
    assert settled(rig, f["stored"])
    s = summary(rig)
    assert s["carsWithGaps"] == [] and s["duplicatesRemoved"] == 0
    # Unregistered and offline cars sent nothing; every other car did.
    unregistered = int(next(l for l in plan.splitlines() if "licence unregistered" in l).split(": ")[1])
    assert 120 - offline - unregistered <= s["cars"] <= 120 - max(offline, unregistered)
    # The messages are the unit's: numbered per car from 1, each naming its car.
    vins = subprocess.run([os.path.join(BIN, "tcu-fleet"), "vins", str(conf)], capture_output=True, text=True).stdout.split()
    assert len(vins) == len(set(vins)) == 120
    sent = [(vin, [json.loads(l) for l in rig.portal("events", vin).stdout.splitlines()]) for vin in vins[:20]]
    assert any(events for _, events in sent)
    for vin, events in sent:
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(e["vin"] == vin for e in events)


def test_a_broker_restart_in_the_middle_loses_nothing_and_every_car_comes_back(rig):
    conf = fleet_file(rig.tmp, cars=100)
    connecting = 100 - int(next(l for l in check(conf).stdout.splitlines() if "privacy offline" in l).split(": ")[1])
    p = fleet(rig, conf, "--seconds", "16")
    # Every car that may connect is up (the fleet's own figures, a line a second; a car still
    # ramping up would meet the broker only after its restart), then the broker goes for two seconds.
    for line in p.stdout:
        if json.loads(line)["connected"] == connecting:
            break
    rig.stop_broker()
    subprocess.run(["sleep", "2"])
    rig.start_broker()
    f = figures(p)
    assert f["lost"] >= connecting, f
    assert f["reconnects"] == connecting and f["connected"] == 0, f  # (after the goodbyes)
    assert f["waiting"] == 0 and f["acknowledged"] == f["stored"]
    assert settled(rig, f["stored"])
    assert summary(rig)["carsWithGaps"] == []


def test_a_fleet_stopped_while_the_broker_is_away_sends_what_it_kept_on_its_next_run(rig):
    conf = fleet_file(rig.tmp, cars=60)
    rig.stop_broker()
    p = fleet(rig, conf)
    subprocess.run(["sleep", "4"])
    p.send_signal(signal.SIGTERM)
    kept = figures(p)
    assert kept["stored"] > 0 and kept["published"] == 0 and kept["waiting"] == kept["stored"]
    rig.start_broker()
    # The same file, the same outbox: what waited goes first, then the new messages.
    again = figures(fleet(rig, conf, "--seconds", "6"))
    assert again["waiting"] == 0
    assert settled(rig, kept["stored"] + again["stored"])
    assert summary(rig)["carsWithGaps"] == []
    # Another fleet on that outbox is refused: its cars are not the file's.
    other = fleet_file(rig.tmp, cars=61, name="other.conf")
    r = fleet(rig, other, "--seconds", "1")
    r.communicate(timeout=30)
    assert r.returncode == 69
    assert "was written for another fleet or shard" in (rig.tmp / "fleet.log").read_text()


def test_a_crash_in_the_fleet_dials_and_the_call_is_reported(rig):
    conf = fleet_file(rig.tmp, cars=100, crash=5)
    f = figures(fleet(rig, conf, "--seconds", "8"))
    assert f["dials"] == 5
    assert len([k for k in ("p50", "p99", "max") if k in f["crashToDialUs"]]) == 3
    assert settled(rig, f["stored"])
    # The registered ones' reports reached the backend (the unregistered' stay in the car).
    reports = 0
    for vin in subprocess.run([os.path.join(BIN, "tcu-fleet"), "vins", str(conf)], capture_output=True, text=True).stdout.split():
        reports += sum(1 for l in rig.portal("events", vin).stdout.splitlines() if json.loads(l).get("type") == "eCallReport")
    assert 1 <= reports <= 5


BAD = [
    ("[fleet]\ncars = 10\n[models]\ngolf = 100\n", "fleet.conf:4: models.golf: unknown model"),
    ("[fleet]\ncars = 10\n[models]\nleon = 60\nibiza = 30\n", "fleet.conf:4: [models]: the shares add up to 90 %, not 100 %"),
    ("[fleet]\ncars = 10\nshard-ranges = 1-6, 5-10\n", "fleet.conf:3: fleet.shard-ranges: shard 1: serials 5-10 overlap shard 0's 1-6"),
    ("[fleet]\ncars = 10\n[privacy]\nshareMyPosition = 1e300\n", "fleet.conf:4: privacy.shareMyPosition: expected a percentage"),
]


def test_a_wrong_fleet_file_is_refused_before_any_car_starts(rig):
    for text, message in BAD:
        conf = rig.tmp / "fleet.conf"
        conf.write_text(text)
        for args in (["check", str(conf)], ["run", str(conf), "--ca", "x", "--issuer-certificate", "x", "--issuer-key", "x", "--outbox", "x"]):
            r = subprocess.run([os.path.join(BIN, "tcu-fleet"), *args], capture_output=True, text=True)
            assert r.returncode == 65 and message in r.stderr, (args, r.stderr)
        assert not os.path.exists("x")
    # A shard the file does not have.
    conf = fleet_file(rig.tmp, cars=10, shards=2)
    r = subprocess.run([os.path.join(BIN, "tcu-fleet"), "vins", str(conf), "--shard", "2"], capture_output=True, text=True)
    assert r.returncode == 64 and "has 2 shard(s) (0-1); there is no shard 2" in r.stderr
    r = subprocess.run([os.path.join(BIN, "tcu-fleet"), "vins", str(conf)], capture_output=True, text=True,
                       env={**os.environ, "JOB_COMPLETION_INDEX": "1"})
    assert [v[-6:] for v in r.stdout.split()] == ["000006", "000007", "000008", "000009", "000010"]
    # An issuing key that is not the certificate's.
    r = fleet(rig, conf, "--seconds", "1")
    r.communicate(timeout=30)
    assert r.returncode == 0
    bad = subprocess.run([os.path.join(BIN, "tcu-fleet"), "run", str(conf), "--ca", f"{rig.pki}/ca.pem",
                          "--issuer-certificate", f"{rig.pki}/ca.pem", "--issuer-key", f"{rig.pki}/broker.key",
                          "--outbox", str(rig.tmp / "x.db")], capture_output=True, text=True)
    assert bad.returncode == 69 and "does not belong to" in bad.stderr
    # Trajectories that are not SUMO's geographic floating car data.
    for text, message in [
        ('<fcd-export>\n<timestep time="0">\n<vehicle id="a" x="500.0" y="60.5" speed="1"/>\n</timestep>\n</fcd-export>\n',
         "fcd.xml:3: vehicle a at x=500.0 y=60.5 speed=1.0: expected longitude, latitude (--fcd-output.geo) and m/s"),
        ('<fcd-export>\n<timestep time="0">\n<vehicle id="a" x="26.9"/>\n</timestep>\n</fcd-export>\n', "fcd.xml:3: <vehicle> needs id, x, y and speed"),
        ('<fcd-export>\n<timestep time="soon">\n</timestep>\n</fcd-export>\n', "fcd.xml:2: <timestep> needs a time in seconds"),
        ('<fcd-export>\n<timestep time="0">\n<vehicle id="a" x="26.9" y="60.5" speed="1">\n</fcd-export>\n', "fcd.xml: not well-formed XML"),
        ("", "fcd.xml: not well-formed XML"),
        ("<fcd-export/>", "no <timestep> with a <vehicle>"),
    ]:
        (rig.tmp / "fcd.xml").write_text(text)
        r = subprocess.run([os.path.join(BIN, "tcu-fleet"), "run", str(conf), "--ca", f"{rig.pki}/ca.pem",
                            "--issuer-certificate", f"{rig.pki}/ca.pem", "--issuer-key", f"{rig.pki}/ca.key",
                            "--outbox", str(rig.tmp / "y.db"), "--trajectories", str(rig.tmp / "fcd.xml")], capture_output=True, text=True)
        assert r.returncode == 69 and message in r.stderr, (text, r.stderr)


# --- The Kubernetes manifests, and the same sharding here ------------------------------------

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "kubernetes")


def manifests():
    import yaml
    docs = []
    for name in sorted(os.listdir(DEPLOY)):
        if name.endswith(".yaml"):
            with open(os.path.join(DEPLOY, name)) as f:
                docs += [(name, d) for d in yaml.safe_load_all(f) if d]
    return docs


def test_the_kubernetes_manifests_are_valid_and_agree_with_the_fleet_file(tmp_path):
    # Kubernetes' own schemas (kubernetes-validate, offline), for the oldest version the
    # StatefulSet's pod-index label needs (1.28) and a current one.
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    files = [os.path.join(DEPLOY, n) for n in sorted(os.listdir(DEPLOY)) if n.endswith(".yaml")]
    for version in ("1.28.0", "1.32.0"):
        r = subprocess.run([validate, "--strict", "-k", version, *files], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    docs = dict(((d["kind"], name), d) for name, d in manifests())
    conf = tmp_path / "fleet.conf"
    conf.write_text(next(d for (k, _), d in docs.items() if k == "ConfigMap")["data"]["fleet.conf"])
    plan = check(conf)
    assert plan.returncode == 0, plan.stderr
    shards = len([l for l in plan.stdout.splitlines() if l.startswith("  shard ")])
    job = next(d for (k, _), d in docs.items() if k == "Job")
    sts = next(d for (k, _), d in docs.items() if k == "StatefulSet")
    # One pod a shard: the Job's completions and the StatefulSet's replicas are the file's shards.
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == sts["spec"]["replicas"] == shards
    for d in (job, sts):
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"][0] == "run" and not any("key=" in a and "PRIVATE" in a for a in c["args"])
        assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def netns(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def test_four_shards_in_four_network_namespaces_reach_the_backend_every_car_once(tmp_path):
    """The Job's pods, here: four shard processes, each in its own network namespace (its own
    host, on a veth link to the broker's namespace), started with the arguments and environment
    the manifest gives each pod (paths mapped to the test's folder, the fleet scaled down to 400
    cars and 10 s), reaching the broker by the manifest's name."""
    docs = dict(((d["kind"], name), d) for name, d in manifests())
    job = next(d for (k, _), d in docs.items() if k == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    broker_name, broker_port = env["TCU_FLEET_BROKER"].rsplit(":", 1)
    tag = str(os.getpid())[-5:]
    broker_ns = f"tcufb{tag}"
    shard_ns = [f"tcufs{i}{tag}" for i in range(job["spec"]["completions"])]
    made = []
    procs = []
    try:
        netns("netns", "add", broker_ns)
        made.append(broker_ns)
        netns("-n", broker_ns, "link", "set", "lo", "up")
        for i, ns in enumerate(shard_ns):
            netns("netns", "add", ns)
            made.append(ns)
            netns("-n", ns, "link", "set", "lo", "up")
            netns("link", "add", f"tfb{i}{tag}", "netns", broker_ns, "type", "veth", "peer", "name", f"tfs{i}{tag}", "netns", ns)
            netns("-n", broker_ns, "addr", "add", f"10.77.{i}.1/30", "dev", f"tfb{i}{tag}")
            netns("-n", broker_ns, "link", "set", f"tfb{i}{tag}", "up")
            netns("-n", ns, "addr", "add", f"10.77.{i}.2/30", "dev", f"tfs{i}{tag}")
            netns("-n", ns, "link", "set", f"tfs{i}{tag}", "up")
            # The pod's resolver: the manifest's broker name is this shard's link to the broker.
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as f:
                f.write(f"127.0.0.1 localhost\n10.77.{i}.1 {broker_name}\n")
        # The broker and the backend in their namespace; the broker's certificate names the manifest's host.
        pki_dir = tmp_path / "pki"
        subprocess.run([os.path.join(os.path.dirname(__file__), "..", "..", "hw", "broker", "pki"), str(pki_dir), broker_port],
                       check=True, env={**os.environ, "BROKER_NAMES": f"DNS:{broker_name}"}, stdout=subprocess.DEVNULL)
        conf_text = (pki_dir / "mosquitto.conf").read_text().replace(f"listener {broker_port} 127.0.0.1", f"listener {broker_port}")
        (tmp_path / "mosquitto.conf").write_text(conf_text + f"max_queued_messages 1000000\nlog_dest file {tmp_path}/mosquitto.log\n")
        procs.append(subprocess.Popen(["ip", "netns", "exec", broker_ns, "mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert wait_until(lambda: subprocess.run(["ip", "netns", "exec", broker_ns, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{broker_port}"],
                                                 capture_output=True).returncode == 0)
        db = tmp_path / "backend.db"
        procs.append(subprocess.Popen(["ip", "netns", "exec", broker_ns, os.path.join(BIN, "tcu-backend"), "serve",
                                       "--broker", f"127.0.0.1:{broker_port}", "--tls-ca", f"{pki_dir}/ca.pem",
                                       "--tls-cert", f"{pki_dir}/tcu-backend.pem", "--tls-key", f"{pki_dir}/tcu-backend.key",
                                       "--db", str(db)], stderr=open(tmp_path / "backend.log", "a")))
        assert wait_until(lambda: "connected to" in (tmp_path / "backend.log").read_text())
        # The ConfigMap's fleet file, scaled down.
        cm = next(d for (k, _), d in docs.items() if k == "ConfigMap")["data"]["fleet.conf"]
        conf = tmp_path / "fleet.conf"
        conf.write_text(cm.replace("cars = 40000", "cars = 400").replace("window-seconds = 3600", "window-seconds = 8"))
        paths = {"/etc/tcu-fleet/fleet.conf": str(conf), "/etc/tcu-fleet/broker/ca.pem": f"{pki_dir}/ca.pem",
                 "/etc/tcu-fleet/issuer/tls.crt": f"{pki_dir}/ca.pem", "/etc/tcu-fleet/issuer/tls.key": f"{pki_dir}/ca.key"}
        shards = []
        for i, ns in enumerate(shard_ns):
            (tmp_path / f"pod{i}").mkdir()
            args = []
            for a in container["args"]:
                for k, v in paths.items():
                    a = a.replace(k, v)
                a = a.replace("/var/lib/tcu-fleet", str(tmp_path / f"pod{i}"))
                args.append("--seconds=10" if a.startswith("--seconds=") else a)
            shards.append(subprocess.Popen(["ip", "netns", "exec", ns, os.path.join(BIN, "tcu-fleet"), *args],
                                           env={**os.environ, **env, "JOB_COMPLETION_INDEX": str(i)},
                                           stdout=subprocess.PIPE, stderr=open(tmp_path / f"pod{i}.log", "a"), text=True))
        results = [figures(p) for p in shards]
        for i, f in enumerate(results):
            assert f["cars"] == 100 and f["lost"] == 0 and f["waiting"] == 0, (i, f, (tmp_path / f"pod{i}.log").read_text())
        stored = sum(f["stored"] for f in results)

        def backend_summary():
            return json.loads(subprocess.run([os.path.join(BIN, "tcu-backend"), "summary", "--db", str(db)],
                                             capture_output=True, text=True).stdout)
        assert wait_until(lambda: backend_summary()["messages"] == stored, timeout=60)
        s = backend_summary()
        assert s["carsWithGaps"] == [] and s["duplicatesRemoved"] == 0
        # No VIN twice: the shards' VINs are the fleet's, each once.
        vins = [subprocess.run([os.path.join(BIN, "tcu-fleet"), "vins", str(conf), "--shard", str(i)], capture_output=True,
                               text=True).stdout.split() for i in range(len(shard_ns))]
        every = [v for shard in vins for v in shard]
        assert len(every) == len(set(every)) == 400
        # Each shard's cars connected from its own namespace: the broker saw four source addresses.
        log = (tmp_path / "mosquitto.log").read_text()
        assert {a for a in (f"10.77.{i}.2" for i in range(len(shard_ns))) if f"New connection from {a}:" in log} == \
            {f"10.77.{i}.2" for i in range(len(shard_ns))}
    finally:
        terminate(*procs)
        for ns in made:
            netns("netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


# --- SUMO's trajectories ----------------------------------------------------------------------

def sumo_trajectories(out):
    """40 short trips on the map's roads, departing in the first 10 s (hw/maps/build-fleet-trajectories)."""
    from test_navi import MAP
    subprocess.run([os.path.join(ROOT, "hw", "maps", "build-map"), MAP, sys.executable], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(ROOT, "hw", "maps", "build-fleet-trajectories"), MAP, str(out), "40", "10", "300"], check=True,
                   stdout=subprocess.DEVNULL)
    import xml.etree.ElementTree as ET
    tracks, order = {}, []
    for _, el in ET.iterparse(out / "fcd.xml"):
        if el.tag == "timestep":
            for v in el:
                if v.get("id") not in tracks:
                    order.append(v.get("id"))
                tracks.setdefault(v.get("id"), []).append((float(v.get("y")), float(v.get("x")), float(v.get("speed"))))
            el.clear()
    return [tracks[i] for i in order]


def test_the_cars_drive_sumo_s_trajectories(rig):
    """Each car drives its SUMO vehicle (in the order they first appear): a trip while the vehicle is
    in the network, the vehicle's speeds in the driving state, and where the vehicle left the
    network as the parking position."""
    tracks = sumo_trajectories(rig.tmp / "sumo")
    conf = rig.tmp / "fleet.conf"
    conf.write_text("[fleet]\ncars = 40\nseed = 3\n[behaviour]\ndriving-interval-ms = 500\n")
    f = figures(fleet(rig, conf, "--seconds", "30", "--trajectories", str(rig.tmp / "sumo" / "fcd.xml")))
    assert f["lost"] == 0 and f["waiting"] == 0
    assert settled(rig, f["stored"])
    vins = subprocess.run([os.path.join(BIN, "tcu-fleet"), "vins", str(conf)], capture_output=True, text=True).stdout.split()
    parked = 0
    for vin, track in zip(vins, tracks):
        events = [json.loads(l) for l in rig.portal("events", vin).stdout.splitlines()]
        speeds = [s * 3.6 for _, _, s in track]
        for e in events:
            if e.get("block") == "driving" and e["values"]["speed"] > 0:
                # (The car rounds to 0.1 km/h.)
                assert min(abs(e["values"]["speed"] - s) for s in speeds) <= 0.051, (vin, e["values"], speeds)
            if e.get("block") == "parking":
                parked += 1
                lat, lon, _ = track[-1]
                assert abs(e["values"]["latitude"] - lat) < 1e-6 and abs(e["values"]["longitude"] - lon) < 1e-6, (vin, e["values"], track[-1])
        # A trip began for every vehicle that entered the network while the fleet ran.
        assert any(e["type"] == "ignitionOn" for e in events), vin
    assert parked >= 5


def test_fleet_cars_register_with_their_pairing_codes_and_carry_out_their_owners_remote_commands(rig):
    """The remote-command scenario end to end: the fleet's registrable cars go into one owner's
    garage (tcu-backend garage import), each registers on its first connection with its pairing
    code (the real handshake: the backend's signed answer gives it its command key), the owner's
    app sends commands through the app API (login, S-PIN, the action), the broker brings each to
    its car, which verifies and carries it out, and the app sees each one's result."""
    http = free_port()
    rig.restart_backend(extra=["--http", f"127.0.0.1:{http}", "--actions-per-hour", "100"])
    conf = rig.tmp / "fleet.conf"
    # Most cars parked (two trips an hour), so that most commands can be carried out.
    conf.write_text(FLEET.format(cars=60, shards=1, crash=0).replace("button = 3\n", "button = 3\nremote-command = 50\n")
                    .replace("trips-per-hour = 30", "trips-per-hour = 2"))
    cars = subprocess.run([os.path.join(BIN, "tcu-fleet"), "cars", str(conf), "--registrable"], capture_output=True, text=True, check=True).stdout
    registrable = [json.loads(l)["vin"] for l in cars.splitlines()]
    assert 30 <= len(registrable) < 60
    rig.portal("user", "add", "fleet@example.com", input="fleet owner password\n2468\n")
    rig.portal("user", "verify", "fleet@example.com")
    imported = rig.portal("garage", "import", "--user", "fleet@example.com", "--accept-terms", input=cars)
    assert imported.returncode == 0, imported.stderr
    codes = rig.tmp / "codes.jsonl"
    codes.write_text(imported.stdout)
    assert sorted(json.loads(l)["vin"] for l in imported.stdout.splitlines()) == sorted(registrable)
    # Run again: the same cars, the same codes (an import can be repeated).
    assert rig.portal("garage", "import", "--user", "fleet@example.com", "--accept-terms", input=cars).stdout == imported.stdout
    credentials = rig.tmp / "owner"
    credentials.write_text("fleet@example.com\nfleet owner password\n2468\n")
    f = figures(fleet(rig, conf, "--seconds", "10", "--pairing-codes", str(codes), "--answer-key", rig.answer_key,
                      "--app-url", f"http://127.0.0.1:{http}", "--app-credentials", str(credentials)))
    # Every registrable car registered (its key from the backend's signed answer).
    assert f["registered"] == len(registrable) and f["registrationsRefused"] == 0, f
    enrolled = [json.loads(l) for l in rig.portal("garage", "list", "--user", "fleet@example.com").stdout.splitlines()]
    assert all(c["enrolment"] == "completed" and c["codeUsed"] for c in enrolled)
    # The owners asked; every command reached its car and ended with the car's result.
    app = f["app"]
    assert app["asked"] >= 10 and app["accepted"] == app["asked"], json.dumps(app)
    assert f["commands"] == app["accepted"]
    ended = app["successful"] + sum(app["failed"].values())
    assert ended == app["asked"] and app["timedOut"] == 0 and app["unfinished"] == 0, app
    assert app["successful"] >= 1 and set(app["failed"]) <= {"vehicleMoving", "ignitionOn"}, app
    # The results are the car's, stored by the backend with no gap.
    assert settled(rig, f["stored"])
    assert summary(rig)["carsWithGaps"] == []
    results = [json.loads(l) for vin in registrable for l in rig.portal("events", vin).stdout.splitlines()
               if json.loads(l).get("type") == "commandResult"]
    assert sum(1 for r in results if r["status"] == "successful") == app["successful"]
    # A second run: the cars kept their registration (no new handshake; the codes are used up).
    again = figures(fleet(rig, conf, "--seconds", "3", "--pairing-codes", str(codes), "--answer-key", rig.answer_key))
    assert again["registered"] == len(registrable) and again["registrationsRefused"] == 0, again
