"""tcuctl msd: the PSAP tester's tool, on the standard's vectors."""
import json
import os
import subprocess

from support import BIN

TCUCTL = os.path.join(BIN, "tcuctl")
EXAMPLE = "0324101A01C614A2873C52ABA870010010089AF166285C59A4C86408FE29C16C01054010F010"
V2 = "02251C0680E30A51439E2955D43800800437F80A3105669023F8A71166932185B004150043C040"


def tcuctl(*args, stdin=None):
    return subprocess.run([TCUCTL, "msd", *args], input=stdin, capture_output=True, text=True)


def test_decode_prints_every_field_and_encode_gives_the_same_bytes_back():
    r = tcuctl("decode", EXAMPLE)
    assert r.returncode == 0, r.stderr
    msd = json.loads(r.stdout)
    assert msd["vehicleIdentificationNumber"] == "ECALLEXAMPLE02020"
    assert msd["control"] == {"automaticActivation": True, "testCall": False, "positionCanBeTrusted": True,
                              "vehicleType": "passengerVehicleClassM1"}
    assert msd["vehicleLocation"]["positionLatitude"] == 187996428
    assert msd["recentVehicleLocationN2"] == {"latitudeDelta": 0, "longitudeDelta": 30}
    assert msd["numberOfOccupants"] == 2 and msd["timestamp"] == 1579992331
    again = tcuctl("encode", stdin=r.stdout)
    assert again.returncode == 0 and again.stdout.strip() == EXAMPLE


def test_decode_reads_version_2():
    msd = json.loads(tcuctl("decode", V2).stdout)
    assert msd["msdVersion"] == 2 and msd["vehicleIdentificationNumber"] == "ECALLEXAMPLE02013"


def test_encode_from_flags():
    r = tcuctl("encode", "--vin", "ECALLEXAMPLE02020", "--automatic", "--trusted",
               "--propulsion", "gasolineTankPresent,electricEnergyStorage", "--timestamp", "1579992331",
               "--latitude", "52.22123", "--longitude", "5.2387", "--direction", "45",
               "--n1", "0,10", "--n2", "0,30", "--occupants", "2")
    assert r.returncode == 0 and r.stdout.strip() == EXAMPLE


def test_errors_name_the_field():
    r = tcuctl("encode", "--vin", "ECALLEXAMPLE02020", "--timestamp", "1", "--latitude", "1", "--longitude", "1",
               "--direction", "200")
    assert r.returncode == 65 and "vehicleDirection" in r.stderr and "180-254" in r.stderr
    r = tcuctl("decode", "01" + EXAMPLE[2:])
    assert r.returncode == 65 and "msdVersion" in r.stderr
    r = tcuctl("decode", EXAMPLE[:-2])
    assert r.returncode == 65 and "msd length" in r.stderr
    r = tcuctl("encode", stdin='{"control": {}, "vehicleIdentificationNumber": "ECALLEXAMPLE02020", '
                               '"timestamp": 1, "vehicleLocation": {"unknown": true}}')
    assert r.returncode == 65 and "control.automaticActivation" in r.stderr
