"""NG-eCall (EN 17184, RFC 8147) end to end: the real daemon, a recorded crash on its CAN source,
its SIP user agent (libre) against SIPp (Debian's sip-tester) playing the PSAP, one scenario
per behaviour (Tests/integration/sip/*.xml). Each scenario checks what the unit sent (the
request URI, Call-Info, the content types, the dialog) and fails SIPp's exit status otherwise;
tcpdump records the datagrams on the loopback so that the MSD the PSAP received is compared byte
for byte with what the unit built (SIPp's own traces stop at the first NUL byte, and real MSDs
hold them). Timers are shortened in the daemon's configuration; the tests poll for what they
wait for and never sleep for timing."""
import json
import os
import socket
import struct
import subprocess

import pytest

from support import BIN, ROOT, DaemonConfig, ecall_status, free_port, wait_until

CRASH = os.path.join(ROOT, "hw", "traces", "crash.log")
SCENARIOS = os.path.join(ROOT, "Tests", "integration", "sip")
VIN = "VSSZZZKLZNR012345"


class Sipp:
    """SIPp playing one scenario for one call, in the foreground of its own process."""

    def __init__(self, tmp, name, scenario, port, keys=None, hold_ms=300, remote=None, rtp_port=None):
        self.log = tmp / f"{name}-logs.log"
        self.errors = tmp / f"{name}-errors.log"
        keys = dict(keys or {})
        keys.setdefault("rtp_port", str(rtp_port or free_port(socket.SOCK_DGRAM)))
        args = ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-i", "127.0.0.1", "-p", str(port), "-m", "1",
                "-d", str(hold_ms), "-timeout", "60s", "-timeout_error", "-nostdin",
                "-trace_logs", "-log_file", str(self.log), "-trace_err", "-error_file", str(self.errors)]
        for k, v in keys.items():
            args += ["-key", k, v]
        if remote:
            args.append(remote)
        # In the test's directory: a scenario's files (voice.ulaw) are found there.
        self.proc = subprocess.Popen(args, stdout=open(tmp / f"{name}.out", "a"), stderr=subprocess.STDOUT, cwd=tmp)

    def passed(self, timeout=60):
        """SIPp's verdict: 0 when the call went through the scenario, every check true."""
        return self.proc.wait(timeout=timeout) == 0

    def lines(self):
        return self.log.read_text().splitlines() if self.log.exists() else []

    def why(self):
        return self.errors.read_text(errors="replace") if self.errors.exists() else "(no SIPp error log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Capture:
    """tcpdump on the loopback, UDP to or from one port; `datagrams()` reads what it wrote."""

    def __init__(self, tmp, port):
        self.path = tmp / f"sip-{port}.pcap"
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-w", str(self.path), "udp", "port", str(port)],
                                     stderr=subprocess.PIPE, text=True)
        # tcpdump says it listens before the first packet can be missed.
        line = self.proc.stderr.readline()
        assert "listening on" in line, line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def datagrams(self):
        """The UDP payloads, in order (the loopback's link layer is Ethernet's)."""
        data = self.path.read_bytes()
        magic = struct.unpack("<I", data[:4])[0]
        order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        link = struct.unpack(order + "I", data[20:24])[0]
        assert link == 1, f"unexpected link type {link}"
        out, i = [], 24
        while i + 16 <= len(data):
            _, _, caplen, _ = struct.unpack(order + "IIII", data[i:i + 16])
            frame = data[i + 16:i + 16 + caplen]
            i += 16 + caplen
            if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:
                continue
            out.append(ip[ihl + 8:])
        return out


def sip_messages(datagrams):
    """Each datagram as (start line, headers as (name, value) pairs, body bytes)."""
    out = []
    for d in datagrams:
        head, sep, body = d.partition(b"\r\n\r\n")
        if not sep:
            continue
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
        out.append((lines[0], headers, body))
    return out


def header(headers, name):
    return next((v for n, v in headers if n.lower() == name.lower()), None)


def parts(content_type, body):
    """The parts of a multipart/mixed body: (headers, bytes) each, bytes untouched."""
    boundary = next(p.split("=", 1)[1].strip('"') for p in content_type.split(";")[1:] if p.strip().lower().startswith("boundary="))
    delimiter = b"--" + boundary.encode()
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    assert first.startswith(delimiter), body[:80]
    chunks[0] = first[len(delimiter):]
    out = []
    for c in chunks:
        if c.startswith(b"--"):
            break
        c = c[2:] if c.startswith(b"\r\n") else c
        h, _, content = c.partition(b"\r\n\r\n")
        hs = [tuple(x.strip() for x in l.split(":", 1)) for l in h.decode().split("\r\n") if ":" in l]
        out.append((hs, content))
    return out


class Kamailio:
    """Kamailio as the emergency routing proxy (sip/kamailio.cfg) in front of the PSAP."""

    def __init__(self, tmp, port, psap_port):
        self.log = tmp / "kamailio.log"
        self.proc = subprocess.Popen(["kamailio", "-f", os.path.join(SCENARIOS, "kamailio.cfg"), "-DD", "-E", "-m", "32",
                                      "-w", str(tmp), "-P", str(tmp / "kamailio.pid"),
                                      "-A", f"LISTEN=udp:127.0.0.1:{port}", "-A", f'PSAP="sip:127.0.0.1:{psap_port}"'],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        assert wait_until(lambda: "main(): processes" in self.log.read_text()), self.log.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Unit:
    """telematicsd replaying the recorded crash, its eCall on NG-eCall through `proxy`."""

    def __init__(self, tmp, proxy_port, extra="", probe_ms=0, transport="ng"):
        self.tmp = tmp
        self.sip_port = free_port(socket.SOCK_DGRAM)
        conf = tmp / "telematicsd.conf"
        c = (DaemonConfig(tmp).set("can", source=f"candump:{CRASH}", replay="fast")
             .set("ecall", transport=transport, sip_proxy=f"sip:127.0.0.1:{proxy_port}", sip_local=f"127.0.0.1:{self.sip_port}",
                  sip_probe_interval_ms=probe_ms, shutdown_grace_ms=0, redial_interval_ms=1000))
        # `extra`: more [ecall] lines as they stand in the file.
        conf.write_text(c.text() + extra)
        self.log = tmp / "daemon.log"
        self.proc = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(conf)], stderr=open(self.log, "a"))

    def ecall(self):
        return ecall_status(self.tmp)

    def last_call(self):
        e = self.ecall()
        return e.get("lastCall") if e else None

    def log_text(self):
        return self.log.read_text()

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def ng(tmp_path):
    """Makes the peers of one test and stops them after it."""
    made = []

    class Make:
        @staticmethod
        def sipp(*a, **kw):
            s = Sipp(tmp_path, *a, **kw)
            made.append(s)
            return s

        @staticmethod
        def capture(port):
            c = Capture(tmp_path, port)
            made.append(c)
            return c

        @staticmethod
        def unit(proxy_port, extra="", **kw):
            u = Unit(tmp_path, proxy_port, extra, **kw)
            made.append(u)
            return u

        @staticmethod
        def kamailio(port, psap_port):
            k = Kamailio(tmp_path, port, psap_port)
            made.append(k)
            return k

    yield Make
    for m in reversed(made):
        (m.close if isinstance(m, Unit) else m.stop)()


def msd_decoded(hex_msd):
    r = subprocess.run([os.path.join(BIN, "tcuctl"), "msd", "decode", hex_msd], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def test_the_psap_takes_the_call_acknowledges_the_msd_and_clears_down(ng):
    port = free_port(socket.SOCK_DGRAM)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.settimeout(10)
    cap = ng.capture(port)
    psap = ng.sipp("accept", "psap-accept.xml", port, keys={"ack": "true"}, hold_ms=1500, rtp_port=rtp.getsockname()[1])
    unit = ng.unit(port)
    assert psap.passed(), psap.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"] and call["kind"] == "automatic"
    assert call["attempts"] == 1 and call["lastMessageIdentifier"] == 1
    # SIPp checked the INVITE: the service URN, Call-Info's cid, the multipart body's two parts.
    seen = [l for l in psap.lines() if "INVITE ruri=" in l][0]
    assert "ruri=INVITE urn:service:sos.ecall.automatic SIP/2.0" in seen and "recv-info=EmergencyCallData.eCall.MSD" in seen
    # The voice stream existed: G.711 µ-law RTP from the unit to the address in the PSAP's SDP.
    packet, _ = rtp.recvfrom(2048)
    assert packet[0] >> 6 == 2 and packet[1] & 0x7F == 0 and len(packet) == 12 + 160
    rtp.close()
    # On the wire: the MSD part of the INVITE is byte for byte the MSD the unit built.
    cap.stop()
    messages = sip_messages(cap.datagrams())
    invite = next(m for m in messages if m[0].startswith("INVITE "))
    _, headers, body = invite
    assert header(headers, "Call-Info").startswith("<cid:") and header(headers, "Content-Type").startswith("multipart/mixed")
    ps = parts(header(headers, "Content-Type"), body)
    types = [header(h, "Content-Type") for h, _ in ps]
    assert types == ["application/sdp", "application/EmergencyCallData.eCall.MSD"]
    cid = header(ps[1][0], "Content-ID").strip("<>")
    assert header(headers, "Call-Info") == f"<cid:{cid}>;purpose=EmergencyCallData.eCall.MSD"
    msd = ps[1][1]
    assert b"\x00" in msd, "a real MSD holds NUL bytes"
    assert msd.hex().upper() == unit.ecall()["lastMSD"]
    decoded = msd_decoded(msd.hex())
    assert decoded["vehicleIdentificationNumber"] == VIN and decoded["control"]["automaticActivation"]
    assert decoded["messageIdentifier"] == 1
    # The dialog: 180, 200 (with the acknowledgement), ACK, the PSAP's BYE and the unit's 200.
    starts = [m[0] for m in messages]
    assert any(s.startswith("SIP/2.0 200") for s in starts) and any(s.startswith("ACK ") for s in starts)
    assert any(s.startswith("BYE ") for s in starts)
    assert "MSD sent with the call's set-up" in unit.log_text()


def test_a_negative_acknowledgement_leaves_the_msd_unconfirmed_and_the_call_goes_on(ng):
    port = free_port(socket.SOCK_DGRAM)
    psap = ng.sipp("nack", "psap-accept.xml", port, keys={"ack": "false"}, hold_ms=1500)
    unit = ng.unit(port, "t6-ms = 300\n")
    assert psap.passed(), psap.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and not call["msdAcknowledged"]
    log = unit.log_text()
    assert "the PSAP's acknowledgement of the MSD is negative" in log
    # The call went to voice when T6 ran out, as EN 16062 says for a missing AL-ACK.
    assert "msdFailure=noApplicationAck" in log


def test_the_psap_asks_for_a_new_msd_and_gets_it_in_an_info(ng):
    port = free_port(socket.SOCK_DGRAM)
    cap = ng.capture(port)
    psap = ng.sipp("send-data", "psap-send-data.xml", port, keys={"ack": "true"}, hold_ms=300)
    unit = ng.unit(port)
    assert psap.passed(), psap.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"] and call["lastMessageIdentifier"] == 2
    assert any("INFO package=EmergencyCallData.eCall.MSD" in l for l in psap.lines())
    cap.stop()
    infos = [m for m in sip_messages(cap.datagrams()) if m[0].startswith("INFO sip:psap")]
    assert len(infos) == 1
    _, headers, body = infos[0]
    assert header(headers, "Info-Package") == "EmergencyCallData.eCall.MSD"
    (ph, msd), = parts(header(headers, "Content-Type"), body)
    assert header(ph, "Content-Type") == "application/EmergencyCallData.eCall.MSD"
    decoded = msd_decoded(msd.hex())
    # A re-sent MSD: identifier 2, the first one's timestamp.
    assert decoded["messageIdentifier"] == 2 and msd.hex().upper() == unit.ecall()["lastMSD"]


@pytest.mark.parametrize("scenario,code,reason", [("psap-busy.xml", 486, "Busy Here"), ("psap-no-answer.xml", 480, "Temporarily Unavailable"),
                                                  ("psap-unavailable.xml", 503, "Service Unavailable")])
def test_a_refused_invite_is_a_failed_set_up_and_is_redialled(ng, scenario, code, reason):
    port = free_port(socket.SOCK_DGRAM)
    refuse = ng.sipp("reject", scenario, port)
    unit = ng.unit(port)
    assert refuse.passed(), refuse.why()
    # The next attempt finds a PSAP that takes it.
    accept = ng.sipp("accept", "psap-accept.xml", port, keys={"ack": "true"})
    assert accept.passed(), accept.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"] and call["attempts"] >= 2
    assert f"the eCall's INVITE was refused: {code} {reason}" in unit.log_text()


def test_a_dialog_that_is_gone_mid_call_is_a_drop_and_the_unit_redials(ng):
    port = free_port(socket.SOCK_DGRAM)
    gone = ng.sipp("gone", "psap-dialog-gone.xml", port, keys={"ack": "true"})
    unit = ng.unit(port, "drop-redial-interval-ms = 500\n")
    assert gone.passed(), gone.why()
    # The PSAP had acknowledged the MSD: the redial carries none (the scenario checks it).
    back = ng.sipp("reconnect", "psap-reconnect.xml", port)
    assert back.passed(), back.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["attempts"] >= 2 and call["msdAcknowledged"]
    assert "the call dropped" in unit.log_text()


def test_the_psap_calls_back_inside_the_window_and_the_unit_answers(ng):
    port = free_port(socket.SOCK_DGRAM)
    psap = ng.sipp("accept", "psap-accept.xml", port, keys={"ack": "true"})
    unit = ng.unit(port)
    assert psap.passed(), psap.why()
    assert wait_until(unit.last_call)
    assert unit.ecall()["phase"] == "callbackWindow"
    back = ng.sipp("callback", "psap-callback.xml", free_port(socket.SOCK_DGRAM), hold_ms=500,
                   remote=f"127.0.0.1:{unit.sip_port}")
    assert back.passed(), back.why()
    assert any(l.startswith("ANSWER m=audio") for l in back.lines())
    log = unit.log_text()
    assert "the PSAP calls back" in log
    # After the call-back the window goes on.
    assert wait_until(lambda: unit.ecall()["phase"] == "callbackWindow")


def test_a_call_back_outside_the_window_is_refused(ng):
    port = free_port(socket.SOCK_DGRAM)
    # No crash: the unit is idle, with no call-back window open.
    unit = ng.unit(port)
    unit.close()
    drive = os.path.join(ROOT, "hw", "traces", "drive.log")
    conf = (unit.tmp / "telematicsd.conf").read_text().replace(CRASH, drive)
    (unit.tmp / "telematicsd.conf").write_text(conf)
    unit.proc = subprocess.Popen([os.path.join(BIN, "telematicsd"), "--config", str(unit.tmp / "telematicsd.conf")],
                                 stderr=open(unit.log, "a"))
    assert wait_until(lambda: (unit.ecall() or {}).get("linkAttached"))
    back = ng.sipp("callback", "psap-callback.xml", free_port(socket.SOCK_DGRAM), remote=f"127.0.0.1:{unit.sip_port}")
    assert not back.passed(), "the unit answered a call-back outside its window"
    assert wait_until(lambda: "outside the call-back window: refused (480)" in unit.log_text())


def test_through_kamailio_routing_the_ecall_urn_to_the_psap(ng):
    proxy, psap_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    cap = ng.capture(psap_port)
    psap = ng.sipp("accept", "psap-accept.xml", psap_port, keys={"ack": "true"})
    kamailio = ng.kamailio(proxy, psap_port)
    # The unit asks the proxy whether the network is there (OPTIONS), as an IMS unit would.
    unit = ng.unit(proxy, probe_ms=500)
    assert psap.passed(), psap.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"]
    assert "eCall INVITE urn:service:sos.ecall.automatic from sip:VSSZZZKLZNR012345@ecall.invalid routed" in kamailio.log.read_text()
    cap.stop()
    _, headers, body = next(m for m in sip_messages(cap.datagrams()) if m[0].startswith("INVITE "))
    # It came through the proxy (two Vias, a Record-Route), the MSD unchanged.
    assert sum(1 for n, _ in headers if n.lower() == "via") == 2 and header(headers, "Record-Route")
    (_, sdp), (_, msd) = parts(header(headers, "Content-Type"), body)
    assert msd.hex().upper() == unit.ecall()["lastMSD"]


def test_ng_first_uses_the_circuit_switched_link_when_ims_does_not_answer(ng, psap):
    # No SIP proxy listens: the OPTIONS probes go unanswered, the unit is attached by its
    # circuit-switched link alone (to tcu-psap), and the eCall goes that way.
    network = psap()
    unit = ng.unit(free_port(socket.SOCK_DGRAM), f"link = 127.0.0.1:{network.port}\n", probe_ms=200, transport="ng-first")
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"]
    assert any(e["message"]["type"] == "dial" for e in network.events("received"))

def test_bad_sip_is_refused_with_a_log_line_and_the_call_goes_on(ng):
    port = free_port(socket.SOCK_DGRAM)
    psap = ng.sipp("bad-info", "psap-bad-info.xml", port, keys={"ack": "true"}, hold_ms=500)
    unit = ng.unit(port)
    # The INFO with a body that is not a control block gets 415 (the scenario checks it).
    assert psap.passed(), psap.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"]
    assert "an INFO of type 'text/plain' without a control block: refused (415)" in unit.log_text()
    # Garbage on the unit's SIP port: libre refuses it and says so on standard error (its
    # own line, not the daemon's format: libre writes its decode errors there itself).
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.sendto(b"NOT SIP AT ALL\r\nX\r\n\r\n", ("127.0.0.1", unit.sip_port))
    junk.close()
    assert wait_until(lambda: "sip: msg decode err: Bad message" in unit.log_text()), unit.log_text()
    assert unit.proc.poll() is None


def test_tcu_psap_plays_the_ng_ecall_psap_with_its_scenario_keys(ng, tmp_path):
    """tcu-psap --sip: the project's own PSAP on libre, with the scenario keys of the
    circuit-switched simulator: the MSD from the INVITE and from an INFO, each decoded; the
    acknowledgements; the clear-down; the call-back, answered by the unit."""
    port = free_port(socket.SOCK_DGRAM)
    psap, events = tcu_psap_sip(tmp_path, port, "request-again = 1\nhang-up-after-ms = 300\ncallback-after-ms = 200\n")
    try:
        # The unit asks the PSAP (standing for the network) with OPTIONS whether it is there.
        unit = ng.unit(port, probe_ms=500)
        assert wait_until(lambda: any(e["message"]["type"] == "answer" for e in events("received")))
        invite = events("received")[0]["message"]
        assert invite["type"] == "invite" and invite["uri"] == "urn:service:sos.ecall.automatic"
        first, second = events("msd")[:2]
        assert first["referencedByCallInfo"] and first["messageIdentifier"] == 1 and second["messageIdentifier"] == 2
        assert first["decoded"]["vehicleIdentificationNumber"] == VIN
        # The same timestamp in both, the second one sent in an INFO when the PSAP asked.
        assert first["decoded"]["timestamp"] == second["decoded"]["timestamp"]
        assert second["hex"] == unit.ecall()["lastMSD"]
        call = unit.last_call()
        assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"] and call["lastMessageIdentifier"] == 2
        assert "the PSAP calls back" in unit.log_text()
    finally:
        psap.terminate()
        psap.wait(timeout=10)
    assert psap.returncode == 0


def test_the_acknowledgement_may_come_later_in_an_info(ng):
    port = free_port(socket.SOCK_DGRAM)
    psap = ng.sipp("late-ack", "psap-late-ack.xml", port, hold_ms=300)
    unit = ng.unit(port, "t6-ms = 10000\n")
    assert psap.passed(), psap.why()
    call = wait_until(unit.last_call)
    # The 200 OK held no acknowledgement (said in the log); the INFO's is the AL-ACK.
    assert call["ending"] == "clearedByRemote" and call["msdAcknowledged"]
    log = unit.log_text()
    assert "the PSAP's answer holds no acknowledgement of the MSD" in log and "msdFailure=none" in log


def write_voice_pcap(path, seconds):
    """A capture of G.711 µ-law RTP (silence, 20 ms a packet) for SIPp's play_pcap_audio,
    which sends its packets, timed as captured, to the unit's media address."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(int(seconds * 50)):
        rtp = struct.pack("!BBHII", 0x80, 0, i, i * 160, 0x5EA7C0DE) + bytes([0xFF]) * 160
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = bytes(12) + b"\x08\x00" + ip
        usec = i * 20_000
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def test_a_psap_gone_silent_is_a_drop_the_unit_ends_the_dead_dialog_and_redials(ng, tmp_path):
    """A lost bearer sends no BYE: the voice stops. SIPp talks (G.711 RTP replayed from a pcap) and
    then goes silent; the unit finds the silence after sip-media-timeout-ms, sends its BYE on
    the dead dialog and redials; the next PSAP takes the call."""
    port = free_port(socket.SOCK_DGRAM)
    write_voice_pcap(tmp_path / "voice.pcap", seconds=1.5)
    lost = ng.sipp("lost", "psap-voice-lost.xml", port, keys={"ack": "true"})
    unit = ng.unit(port, "sip-media-timeout-ms = 700\ndrop-redial-interval-ms = 500\n")
    assert lost.passed(), lost.why()
    back = ng.sipp("reconnect", "psap-reconnect.xml", port)
    assert back.passed(), back.why()
    call = wait_until(unit.last_call)
    assert call["ending"] == "clearedByRemote" and call["attempts"] >= 2 and call["msdAcknowledged"]
    assert "no voice from the PSAP for 700 ms: the call dropped" in unit.log_text()


def tcu_psap_sip(tmp_path, port, scenario):
    """tcu-psap --sip with a scenario; returns the process and a reader of its log's events."""
    (tmp_path / "scenario.conf").write_text(scenario)
    log = tmp_path / "psap-sip.log"
    proc = subprocess.Popen([os.path.join(BIN, "tcu-psap"), "--sip", f"127.0.0.1:{port}",
                             "--scenario", str(tmp_path / "scenario.conf"), "--log", str(log)])

    def events(kind):
        if not log.exists():
            return []
        return [e for e in (json.loads(l) for l in log.read_text().splitlines() if l.strip()) if e["event"] == kind]

    assert wait_until(lambda: events("listening")), "tcu-psap did not start"
    return proc, events


def test_tcu_psap_drops_the_call_on_the_msd_and_the_unit_redials_with_it(ng, tmp_path):
    """tcu-psap --sip drops the call on the INVITE's MSD as a lost bearer does (it answers
    without acknowledging, then no more voice, no BYE); the unit finds the silence, redials
    with the MSD again (it was never acknowledged), and the second call goes through."""
    port = free_port(socket.SOCK_DGRAM)
    psap, events = tcu_psap_sip(tmp_path, port, "drop-on-msd = 1\nhang-up-after-ms = 300\n")
    try:
        unit = ng.unit(port, "sip-media-timeout-ms = 500\ndrop-redial-interval-ms = 300\n")
        call = wait_until(unit.last_call)
        assert call["ending"] == "clearedByRemote" and call["attempts"] == 2 and call["msdAcknowledged"]
        assert [e["call"] for e in events("dropped")] == [1]
        assert [e["call"] for e in events("msd")] == [1, 2]
        assert "no voice from the PSAP for 500 ms: the call dropped" in unit.log_text()
    finally:
        psap.terminate()
        psap.wait(timeout=10)
    assert psap.returncode == 0


def test_tcu_psap_drops_every_call_after_the_answer_and_the_unit_redials_each_time(ng, tmp_path):
    """drop-after-answer-ms drops each call it answers, as on the circuit-switched link: the
    unit redials after each silent drop, within EN 16062's window."""
    port = free_port(socket.SOCK_DGRAM)
    psap, events = tcu_psap_sip(tmp_path, port, "drop-after-answer-ms = 200\n")
    try:
        unit = ng.unit(port, "sip-media-timeout-ms = 400\ndrop-redial-interval-ms = 200\n")
        assert wait_until(lambda: len(events("dropped")) >= 3)
        invites = [e for e in events("received") if e["message"]["type"] == "invite"]
        assert len(invites) >= 3
        # Each drop ends with the unit's BYE on the dead dialog before its next INVITE.
        byes = [e["message"]["call"] for e in events("received") if e["message"]["type"] == "bye"]
        assert byes[:2] == [1, 2]
        assert unit.log_text().count("no voice from the PSAP for 400 ms: the call dropped") >= 2
        assert unit.ecall()["phase"] != "idle"
    finally:
        psap.terminate()
        psap.wait(timeout=10)
    assert psap.returncode == 0
