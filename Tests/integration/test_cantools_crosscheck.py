"""Cross-checks the unit's DBC parser and signal codec against cantools, the DBC tool most
backends use: thousands of random frames over random DBC layouts (Intel and Motorola, signed,
scaled, float, multiplexed, 11- and 29-bit) and over the project's own DBC and traces.

Decode: `tcuctl can decode` must give the same physical values and value-table names as
cantools' decode_message. Encode: `tcuctl can encode` must give the same bytes as cantools'
encode_message for the same physical values.
"""
import json
import math
import os
import random
import subprocess

import cantools
import pytest

from support import BIN, DBC, ROOT

TCUCTL = os.path.join(BIN, "tcuctl")


def sawtooth(linear_msb):
    return (linear_msb // 8) * 8 + (7 - linear_msb % 8)


def random_signal(rng, name, free, nbits, mux=""):
    """Places one random signal in the free bits; returns its SG_ line or None."""
    for _ in range(50):
        kind = rng.random()
        if kind < 0.08:
            length, vtype = rng.choice([(32, 1), (64, 2)]), None
            length, vtype = length
        else:
            length, vtype = rng.choice([1, 1, 2, 3, 4, 7, 8, 10, 12, 16, 20, 24, 31, 32, 40, 52, 63, 64]), 0
        if length > nbits:
            continue
        order = rng.choice([0, 1])
        lin = rng.randrange(0, nbits - length + 1)
        if order == 1:
            bits = range(lin, lin + length)  # LSB-first numbering
            start = lin
        else:
            bits = [sawtooth(b) for b in range(lin, lin + length)]  # MSB-first stream → DBC bit numbers
            start = sawtooth(lin)
        if not all(b in free for b in bits):
            continue
        for b in bits:
            free.discard(b)
        signed = "-" if (vtype == 0 and length > 1 and rng.random() < 0.4) else "+"
        if vtype:
            signed = "-"
        factor = rng.choice([1, 1, 0.5, 0.1, 0.01, 0.25, 2, 10, 0.03125, 1e-05])
        offset = rng.choice([0, 0, 0, -40, 100, -0.5, 3.25])
        line = f' SG_ {name}{(" " + mux) if mux else ""} : {start}|{length}@{order}{signed} ({factor},{offset}) [0|0] "u" Vector__XXX'
        return line, vtype
    return None, None


def random_dbc(rng, index):
    lines = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: ECU", ""]
    valtypes, vals = [], []
    used_ids = set()
    for m in range(6):
        extended = rng.random() < 0.3
        while True:
            fid = rng.randrange(0, 0x1FFFFFFF) if extended else rng.randrange(0, 0x800)
            if (fid, extended) not in used_ids:
                used_ids.add((fid, extended))
                break
        dbc_id = fid | 0x80000000 if extended else fid
        length = 8
        lines.append(f"BO_ {dbc_id} M{index}_{m}: {length} ECU")
        free = set(range(64))
        multiplexed = rng.random() < 0.25
        n = 0
        if multiplexed:
            start = rng.choice([0, 8, 56])
            for b in range(start, start + 2):
                free.discard(b)
            lines.append(f' SG_ S{index}_{m}_mux M : {start}|2@1+ (1,0) [0|0] "" Vector__XXX')
        for k in range(rng.randrange(1, 7)):
            line, vtype = random_signal(rng, f"S{index}_{m}_{k}", free, 64)
            if line:
                lines.append(line)
                n += 1
                if vtype:
                    valtypes.append((dbc_id, f"S{index}_{m}_{k}", vtype))
                elif rng.random() < 0.3:
                    vals.append((dbc_id, f"S{index}_{m}_{k}"))
        if multiplexed:
            # Pages share the bits that the plain signals left free.
            for page in range(3):
                page_free = set(free)
                for k in range(rng.randrange(1, 4)):
                    line, vtype = random_signal(rng, f"S{index}_{m}_p{page}_{k}", page_free, 64, f"m{page}")
                    if line:
                        lines.append(line)
                        if vtype:
                            valtypes.append((dbc_id, f"S{index}_{m}_p{page}_{k}", vtype))
        lines.append("")
    for dbc_id, name, vtype in valtypes:
        lines.append(f"SIG_VALTYPE_ {dbc_id} {name} : {vtype};")
    for dbc_id, name in vals:
        lines.append(f'VAL_ {dbc_id} {name} 0 "Zero" 1 "One" 3 "Three" -1 "MinusOne" ;')
    return "\n".join(lines) + "\n"


def random_payload(rng, msg):
    """Random bytes; the multiplexer (always Intel here) set to an existing page, since an
    unknown page is a decode error in cantools; floats kept finite, since JSON has no NaN."""
    mux = next((s for s in msg.signals if s.is_multiplexer), None)
    for _ in range(100):
        data = bytearray(rng.getrandbits(8) for _ in range(msg.length))
        if mux is not None:
            page = rng.randrange(0, 3)
            for k in range(mux.length):
                byte, bit = divmod(mux.start + k, 8)
                data[byte] = (data[byte] & ~(1 << bit)) | (((page >> k) & 1) << bit)
        values = msg.decode(bytes(data), decode_choices=False)
        if all(not isinstance(v, float) or math.isfinite(v) for v in values.values()):
            return bytes(data)
    raise AssertionError("no finite payload found")


def run_decode(dbc_path, log_path):
    out = subprocess.run([TCUCTL, "can", "decode", "--dbc", dbc_path, log_path],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return b is None
    if abs(a) >= 2**53 or abs(b) >= 2**53:
        return math.isclose(a, b, rel_tol=1e-12)
    return float(a) == float(b)


def write_log(path, frames):
    with open(path, "w") as f:
        for i, (msg, data) in enumerate(frames):
            ident = f"{msg.frame_id:08X}" if msg.is_extended_frame else f"{msg.frame_id:03X}"
            f.write(f"({1700000000 + i // 1000}.{i % 1000:06d}) vcan0 {ident}#{data.hex().upper()}\n")


def check_decode(db, dbc_path, frames, tmp_path):
    log = tmp_path / "frames.log"
    write_log(log, frames)
    ours = run_decode(dbc_path, str(log))
    assert len(ours) == len(frames)
    compared = 0
    for (msg, data), line in zip(frames, ours):
        assert line["message"] == msg.name
        theirs = msg.decode(data, decode_choices=False)
        choices = msg.decode(data, decode_choices=True)
        assert set(line["signals"]) == set(theirs), (msg.name, data.hex(), line, theirs)
        for name, value in theirs.items():
            assert same(value, line["signals"][name]), (msg.name, name, data.hex(), value, line["signals"][name])
            compared += 1
            label = choices[name]
            if isinstance(label, cantools.database.namedsignalvalue.NamedSignalValue):
                assert line["labels"].get(name) == label.name
            else:
                assert name not in line["labels"]
    return ours, compared


def check_encode(db, dbc_path, frames, decoded):
    requests, expected = [], []
    for (msg, data), line in zip(frames, decoded):
        values = line["signals"]
        # Doubles carry 53 bits: compare encodes where the raw value fits them exactly.
        if any(s.length > 52 and not s.is_float for s in msg.signals if s.name in values):
            continue
        if any(v is None for v in values.values()):
            continue
        requests.append(json.dumps({"message": msg.name, "signals": values}))
        expected.append(msg.encode(values, strict=False, padding=False))
    out = subprocess.run([TCUCTL, "can", "encode", "--dbc", dbc_path], input="\n".join(requests) + "\n",
                         check=True, capture_output=True, text=True).stdout.split()
    assert len(out) == len(expected)
    for text, want in zip(out, expected):
        got = bytes.fromhex(text.split("#", 1)[1])
        assert got == want, (text, want.hex())
    return len(expected)


def test_random_layouts_decode_and_encode_like_cantools(tmp_path):
    rng = random.Random(20261127)
    total_frames = total_signals = total_encoded = 0
    for index in range(12):
        text = random_dbc(rng, index)
        dbc_path = tmp_path / f"random{index}.dbc"
        dbc_path.write_text(text)
        db = cantools.database.load_string(text, strict=False)
        frames = [(msg, random_payload(rng, msg)) for msg in db.messages for _ in range(60)]
        decoded, compared = check_decode(db, str(dbc_path), frames, tmp_path)
        total_encoded += check_encode(db, str(dbc_path), frames, decoded)
        total_frames += len(frames)
        total_signals += compared
    assert total_frames >= 4000
    print(f"{total_frames} frames, {total_signals} signal values, {total_encoded} encodes agree with cantools")


def test_project_dbc_and_traces_decode_like_cantools(tmp_path):
    db = cantools.database.load_file(DBC, strict=True)
    rng = random.Random(7)
    frames = [(msg, random_payload(rng, msg)) for msg in db.messages for _ in range(200)]
    decoded, _ = check_decode(db, DBC, frames, tmp_path)
    # Random payloads break the DBC's ranges; the encode check uses the recorded traces.
    for trace in ("drive.log", "alarm.log", "crash.log"):
        path = os.path.join(ROOT, "hw", "traces", trace)
        ours = run_decode(DBC, path)
        recorded = []
        with open(path) as f:
            for line in f:
                ident, data = line.split()[2].split("#")
                msg = db.get_message_by_frame_id(int(ident, 16))
                recorded.append((msg, bytes.fromhex(data)))
        assert len(ours) == len(recorded)
        for (msg, data), line in zip(recorded, ours):
            theirs = msg.decode(data, decode_choices=False)
            assert {k: float(v) for k, v in theirs.items()} == {k: float(v) for k, v in line["signals"].items()}
        check_encode(db, DBC, recorded, ours)


def test_malformed_log_line_is_reported_with_its_line_and_the_rest_decoded(tmp_path):
    log = tmp_path / "bad.log"
    log.write_text("(1700000000.000000) vcan0 3C0#00020000\n"
                   "(1700000000.010000) vcan0 3C0#0002ZZ00\n"
                   "(1700000000.020000) vcan0 3C0#00000000\n")
    r = subprocess.run([TCUCTL, "can", "decode", "--dbc", DBC, str(log)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{log}:2:" in r.stderr and "not a hex digit" in r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["signals"]["Terminal_15"] for x in lines] == [1, 0]


EXPORTED = os.path.join(ROOT, "Tests", "integration", "data", "exported.dbc")


def test_a_real_world_export_loads_and_decodes_like_cantools_with_warnings_for_what_it_skips(tmp_path):
    """Issue 14: what CANdb++ exports contain and cantools accepts (a node list over several
    lines, Vector's pseudo-message and its comment, comments, attributes, transmitters and
    multiplexer ranges left behind for removed messages and signals) loads here too; each
    left-behind entry is a warning naming its line, and the frames decode as cantools decodes them."""
    db = cantools.database.load_file(EXPORTED, strict=True)
    assert [n.name for n in db.nodes] == ["Gateway", "Body_ECU", "Diag_Tester"]
    rng = random.Random(11)
    frames = [(msg, random_payload(rng, msg)) for msg in db.messages for _ in range(300)]
    check_decode(db, EXPORTED, frames, tmp_path)
    r = subprocess.run([TCUCTL, "can", "decode", "--dbc", EXPORTED, "/dev/null"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    prefix = f"tcuctl: warning: {EXPORTED}:"
    assert all(line.startswith(prefix) for line in r.stderr.splitlines()), r.stderr
    warned = [line[len(prefix):].split(":")[0] for line in r.stderr.splitlines()]
    assert warned == ["59", "66", "67", "78", "80", "83"], r.stderr


def test_what_cantools_refuses_is_refused_with_the_line(tmp_path):
    """A bare `m` indicator, value descriptions or a value type for a signal that does not
    exist: broken for cantools too; here an error names the line and what was expected."""
    head = 'VERSION ""\nBU_: A\nBO_ 100 M: 8 A\n SG_ Mux M : 0|8@1+ (1,0) [0|255] "" A\n'
    cases = [(head + ' SG_ S m : 8|8@1+ (1,0) [0|255] "" A\n', ":5:", "found 'm'"),
             (head + 'VAL_ 100 Nope 1 "x" ;\n', ":5:", "has no signal 'Nope'"),
             (head + "SIG_VALTYPE_ 100 Nope : 1;\n", ":5:", "has no signal 'Nope'")]
    for text, line, message in cases:
        path = tmp_path / "broken.dbc"
        path.write_text(text)
        with pytest.raises(Exception):
            cantools.database.load_file(str(path), strict=False)
        r = subprocess.run([TCUCTL, "can", "decode", "--dbc", str(path), "/dev/null"], capture_output=True, text=True)
        assert r.returncode == 65 and f"{path}{line}" in r.stderr and message in r.stderr, r.stderr
