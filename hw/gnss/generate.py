#!/usr/bin/env python3
"""Writes the NMEA traces of hw/gnss/ (RMC, GGA and GSA once a second, valid checksums) and
the state telematicsd must report after each, fed through gpsd.

    python3 hw/gnss/generate.py          (rewrites the *.nmea and *.expected files here)

Positions are around Martorell (41.4745 N, 1.9305 E). The random noise is seeded: the
output is the same on every run.
"""
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
START = 1764000000  # 2025-11-24 16:00:00 UTC, the CAN traces' epoch
LAT0, LON0 = 41.4745, 1.9305
M_PER_DEG_LAT = 111_320.0


def checksum(body):
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def sentence(body):
    return f"${body}*{checksum(body)}"


def nmea_angle(value, lat):
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    value = abs(value)
    deg = int(value)
    minutes = (value - deg) * 60
    return (f"{deg:02d}{minutes:07.4f}" if lat else f"{deg:03d}{minutes:07.4f}"), hemi


def gsv(sats):
    """The satellites in view (GSV, four a sentence): elevation, azimuth and signal made up."""
    total = max(1, (sats + 3) // 4)
    out = []
    for n in range(total):
        fields = [f"GPGSV,{total},{n + 1},{sats:02d}"]
        for prn in range(n * 4 + 1, min(sats, n * 4 + 4) + 1):
            fields.append(f"{prn:02d},{(prn * 37) % 80 + 5:02d},{(prn * 71) % 360:03d},{30 + prn % 20:02d}")
        out.append(sentence(",".join(fields)))
    return out


def epoch(t, fix, lat=None, lon=None, speed_ms=0.0, course=0.0, sats=9, hdop=0.9, alt=120.0):
    """One second of reports: RMC, GGA, GSA, GSV."""
    import time as _t
    tm = _t.gmtime(t)
    hms = f"{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}.00"
    dmy = f"{tm.tm_mday:02d}{tm.tm_mon:02d}{tm.tm_year % 100:02d}"
    if fix:
        la, ns = nmea_angle(lat, True)
        lo, ew = nmea_angle(lon, False)
        knots = speed_ms / 0.514444
        rmc = f"GPRMC,{hms},A,{la},{ns},{lo},{ew},{knots:.2f},{course:.1f},{dmy},,,A"
        gga = f"GPGGA,{hms},{la},{ns},{lo},{ew},1,{sats:02d},{hdop:.1f},{alt:.1f},M,49.6,M,,"
        prns = ",".join(f"{p:02d}" for p in range(1, sats + 1)) + "," * (12 - sats)
        gsa = f"GPGSA,A,3,{prns},{hdop * 1.6:.1f},{hdop:.1f},{hdop * 1.3:.1f}"
    else:
        rmc = f"GPRMC,{hms},V,,,,,,,{dmy},,,N"
        gga = f"GPGGA,{hms},,,,,0,{sats:02d},,,,,,,"
        gsa = "GPGSA,A,1,,,,,,,,,,,,,,,"
    return [sentence(rmc), sentence(gga), sentence(gsa)] + gsv(sats)


def move(lat, lon, meters, course):
    rad = math.radians(course)
    dlat = meters * math.cos(rad) / M_PER_DEG_LAT
    dlon = meters * math.sin(rad) / (M_PER_DEG_LAT * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def drive(seconds, lat, lon, t, out, course=75.0, top=13.9, accelerate=5, brake=5, hdop=0.9):
    """Drives `seconds` at up to `top` m/s along `course`; returns the end position and time."""
    for i in range(seconds):
        if i < accelerate:
            v = top * (i + 1) / accelerate
        elif i >= seconds - brake:
            v = top * (seconds - i - 1) / brake
        else:
            v = top
        lat, lon = move(lat, lon, v, course)
        out += epoch(t, True, lat, lon, v, course, hdop=hdop)
        t += 1
    return lat, lon, t


def stand(seconds, lat, lon, t, out, rng=None):
    for _ in range(seconds):
        if rng:
            # A receiver standing still: a few metres of wander, a tiny speed, a random course.
            la, lo = move(lat, lon, rng.uniform(0, 3), rng.uniform(0, 360))
            out += epoch(t, True, la, lo, rng.uniform(0.05, 0.4), rng.uniform(0, 360))
        else:
            out += epoch(t, True, lat, lon, 0.0, 0.0)
        t += 1
    return t


def write(name, lines, expected, comment):
    with open(os.path.join(HERE, f"{name}.nmea"), "w") as f:
        f.write("\r\n".join(lines) + "\r\n")
    with open(os.path.join(HERE, f"{name}.expected"), "w") as f:
        f.write(f"# What tcuctl status reports after hw/gnss/{name}.nmea went through gpsd: {comment}\n")
        for k, v in expected.items():
            f.write(f"{k} = {v}\n")


def main():
    # A drive that ends parked: 5 s standing, 40 s of driving, 10 s parked.
    out = []
    t = stand(5, LAT0, LON0, START, out)
    lat, lon, t = drive(40, LAT0, LON0, t, out)
    t = stand(10, lat, lon, t, out)
    write("drive-park", out, {"gnss.fix": "3D", "gnss.trusted": "true", "gnss.moving": "false", "gnss.fixLosses": "0",
                              "gnss.jumps": "0", "gnss.satellites": "9"},
          f"55 s, parked at {lat:.6f}, {lon:.6f} (drive-park.position)")
    with open(os.path.join(HERE, "drive-park.position"), "w") as f:
        f.write(f"{lat:.6f} {lon:.6f}\n")

    # A tunnel: 20 s of driving, 4 s of a poor fix at the entrance (HDOP 12: about 230 m, not
    # to be trusted), 12 s without a fix, then the fix comes back.
    out = []
    lat, lon, t = drive(20, LAT0, LON0, START, out, brake=0)
    lat, lon, t = drive(4, lat, lon, t, out, accelerate=0, brake=0, hdop=12.0)
    for _ in range(12):
        lat, lon = move(lat, lon, 13.9, 75.0)
        out += epoch(t, False, sats=2)
        t += 1
    lat, lon, t = drive(15, lat, lon, t, out, accelerate=0)
    write("tunnel", out, {"gnss.fix": "3D", "gnss.trusted": "true", "gnss.fixLosses": "1", "gnss.jumps": "0"},
          "untrusted for 4 s, the fix lost once for 12 s, then back")

    # Noise while standing: 40 s parked, the position wandering by a few metres.
    out = []
    stand(40, LAT0, LON0, START, out, rng=random.Random(7))
    write("standstill-noise", out, {"gnss.fix": "3D", "gnss.trusted": "true", "gnss.moving": "false", "gnss.jumps": "0"},
          "no direction from a car standing still")

    # A cold start: 30 s without a fix, few satellites.
    out = []
    for i in range(30):
        out += epoch(START + i, False, sats=min(3, i // 8))
    write("cold-start", out, {"gnss.fix": "none", "gnss.trusted": "false", "gnss.fixes": "0"},
          "never a fix")

    # An impossible jump: 20 s of driving, one fix 50 km away, then back on the road.
    out = []
    lat, lon, t = drive(20, LAT0, LON0, START, out, brake=0)
    far_lat, far_lon = move(lat, lon, 50_000, 0.0)
    lat, lon = move(lat, lon, 13.9, 75.0)
    out += epoch(t, True, far_lat, far_lon, 13.9, 75.0)
    t += 1
    lat, lon, t = drive(10, lat, lon, t, out, accelerate=0)
    write("jump", out, {"gnss.fix": "3D", "gnss.trusted": "true", "gnss.jumps": "1"},
          "one fix 50 km off the road is flagged and not used")


if __name__ == "__main__":
    main()
