#!/usr/bin/env bash
# The checks of the vcan bench, run where vcan0 can exist (the host, or the qemu guest that
# hw/bench/vcan-bench boots). Starts telematicsd on vcan0, drives the bus with can-utils
# (cansend, canplayer of the recorded logs), reads the state the daemon reports through
# tcuctl, and watches what it transmits with candump; then the simulated car (tcu-car) on the
# same vcan0, watched by candump: its cyclic frames, and a remote lock end to end through
# tcu-backend and mosquitto that the car's body controller confirms.
#
# Usage: vcan-checks.sh BIN_DIR OUT_DIR     Prints "N passed, N failed"; exit 0 when none failed.
set -uo pipefail

bin=$1
out=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
passed=0
failed=0
iface=vcan0

log() { echo "vcan-checks: $*"; }
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "not ok - $1${2:+: $2}"; }

# Waits until a command succeeds, polling; fails after TIMEOUT seconds (the guest is slow).
wait_for() {
  local timeout=$1; shift
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# The value of a dotted key in the daemon's state ("unavailable (last X)" when stale).
state() { "$bin/tcuctl" status --socket "$work/ctl.sock" --key "$1" 2>/dev/null | sed 's/^[^=]*= //'; }
state_is() { [ "$(state "$1")" = "$2" ]; }
bus_is() { [ "$("$bin/tcuctl" status --socket "$work/ctl.sock" | sed -n "s/^bus\.$1 = //p")" = "$2" ]; }

# The value the daemon has for a key, fresh or last known.
value_is() { local v; v=$(state "$1"); [ "$v" = "$2" ] || [ "$v" = "unavailable (last $2)" ]; }
check_value() {
  local name=$1 key=$2 want=$3 timeout=${4:-20}
  if wait_for "$timeout" value_is "$key" "$want"; then ok "$name"; else bad "$name" "$key is '$(state "$key")', expected '$want'"; fi
}

check_state() {
  local name=$1 key=$2 want=$3 timeout=${4:-20}
  if wait_for "$timeout" state_is "$key" "$want"; then ok "$name"; else bad "$name" "$key is '$(state "$key")', expected '$want'"; fi
}

if ! ip link show "$iface" >/dev/null 2>&1; then
  # MTU 72: the virtual bus carries CAN FD frames too.
  ip link add dev "$iface" type vcan && ip link set "$iface" mtu 72 && ip link set up "$iface" \
    || { bad "create $iface"; echo "$passed passed, $failed failed"; exit 1; }
fi
fd_capable=$([ "$(cat /sys/class/net/$iface/mtu)" = 72 ] && echo yes || echo no)
ok "$iface is up ($(uname -r))"

cat > "$work/telematicsd.conf" <<CONF
[can]
source = socketcan:$iface
dbc = $root/hw/vehicle.dbc
silence-timeout-ms = 1500
transmit-log = $work/transmitted.log
[vehicle]
profile = $root/hw/vehicle-profile.conf
[control]
socket = $work/ctl.sock
[outbox]
path = $work/outbox.db
[ecall]
journal = $work/ecall.journal
# No network for the eCall on this bench: a stop need not wait for the crash trace's call.
shutdown-grace-ms = 0
[log]
level = info
CONF

# Watch for the unit's own status frame before it starts, so the first one is not missed.
candump -L -n 1 -T 20000 "$iface,5F0:7FF" > "$work/status-frame.log" 2>&1 &
candump_pid=$!

"$bin/telematicsd" --config "$work/telematicsd.conf" > "$out/telematicsd.log" 2>&1 &
daemon=$!
if wait_for 30 "$bin/tcuctl" status --socket "$work/ctl.sock"; then
  ok "telematicsd started on $iface and answers tcuctl"
else
  bad "telematicsd started on $iface" "$(tail -5 "$out/telematicsd.log")"
fi

wait "$candump_pid"
if grep -Eq "$iface 5F0#[0-9A-F]{8}" "$work/status-frame.log"; then
  ok "candump sees the status frame the daemon transmits ($(awk '{print $3}' "$work/status-frame.log"))"
else
  bad "candump sees the status frame" "$(cat "$work/status-frame.log")"
fi

cansend "$iface" 3C0#00030000
check_value "cansend ignition on → ignition.on" ignition.on true 20
check_value "cansend ignition on → ignition.keyPresent" ignition.keyPresent true 20
# One frame and no more: after 3 cycle times (300 ms) the value is no longer trusted.
check_state "a value whose message stops arriving becomes unavailable" ignition.on "unavailable (last true)" 20
cansend "$iface" 583#01000000
check_value "cansend door open → doors.frontLeft.open" doors.frontLeft.open true 20
cansend "$iface" 3C0#00
if wait_for 20 bus_is truncated 1; then ok "a frame shorter than its DBC length is counted as truncated"; else bad "truncated frame counted"; fi
if wait_for 20 grep -q "CAN frame shorter than its DBC message.*can.id=0x3C0" "$out/telematicsd.log"; then
  ok "the short frame is logged with its identifier and lengths"
else
  bad "the short frame is logged"
fi
# An identifier the DBC does not have, then a known frame behind it: when the known one
# has arrived, the unknown one would have too.
cansend "$iface" 7AB#0102
cansend "$iface" 583#00000000
check_value "cansend door closed → doors.frontLeft.open" doors.frontLeft.open false 20
if bus_is unknownId 0; then ok "the kernel filter keeps identifiers the DBC does not have away"; else bad "kernel filter" "unknownId is not 0"; fi

if [ "$fd_capable" = yes ]; then
  # A CAN FD frame (bit rate switch set) carrying the terminal status: ignition on again.
  cansend "$iface" 3C0##100030000
  check_value "a CAN FD frame is received and decoded (ignition.on)" ignition.on true 20
  cansend "$iface" 3C0##100000000
  check_value "a CAN FD frame is received and decoded (ignition.on off)" ignition.on false 20
else
  log "$iface has MTU 16: CAN FD not checked"
fi
# An error frame (controller problem class) as a controller would report it; vcan passes
# it through like any frame, so the daemon's error-frame path sees it.
cansend "$iface" 20000004#0004000000000000
if wait_for 20 bus_is errorFrames 1; then ok "an error frame is received and counted"; else bad "error frame counted" "errorFrames is not 1"; fi

candump -L -T 30000 "$iface,5F1:7FF" > "$work/body-frame.log" 2>&1 &
candump_pid=$!
# candump has no readiness signal: send until it has seen one, rather than guess a delay.
send_lock() {
  sent=$("$bin/tcuctl" can send --socket "$work/ctl.sock" TCU_Body_Request Body_Request=1 Body_Request_Counter=1)
  grep -q "$iface 5F1#11000000" "$work/body-frame.log"
}
sent=
wait_for 30 send_lock
kill "$candump_pid" 2>/dev/null; wait "$candump_pid" 2>/dev/null
if grep -q "$iface 5F1#11000000" "$work/body-frame.log" && [ "$sent" = "5F1#11000000" ]; then
  ok "tcuctl can send: candump sees TCU_Body_Request lock (5F1#11000000)"
else
  bad "tcuctl can send seen by candump" "sent '$sent', candump '$(cat "$work/body-frame.log")'"
fi

# The recorded scenarios (recorded on can0), replayed onto vcan0 at their recorded timing.
log "canplayer: hw/traces/drive.log (candump -L records the bus meanwhile)"
candump -L "$iface" > "$work/recorded.log" 2>/dev/null &
recorder=$!
# candump has no readiness signal: a frame the DBC does not have (the daemon's kernel filter
# keeps it away) is sent until the recorder has it, so that the replay's first frames are not lost.
recording() { cansend "$iface" 7AC#00; grep -q " $iface 7AC#00" "$work/recorded.log"; }
wait_for 30 recording
canplayer -I "$root/hw/traces/drive.log" "$iface=can0"
check_state "drive: the car ends locked (locks.central)" locks.central "unavailable (last Locked)" 20
check_state "drive: the alarm ends armed" alarm.armed "unavailable (last true)" 20
check_state "drive: the odometer advanced from 23816 to 23817 km" cluster.odometer "unavailable (last 23817)" 20
if wait_for 20 bus_is activity silent; then ok "drive: the bus is reported silent after the car sleeps"; else bad "bus silent after the drive"; fi
kill "$recorder" 2>/dev/null; wait "$recorder" 2>/dev/null
recorded=$(grep -v " $iface 5F0#" "$work/recorded.log" | grep -vc " $iface 7AC#" || true)
if "$bin/tcuctl" can decode --dbc "$root/hw/vehicle.dbc" "$work/recorded.log" > "$work/recorded.json" \
   && [ "$(wc -l < "$work/recorded.json")" = "$(wc -l < "$work/recorded.log")" ] \
   && [ "$recorded" = "$(wc -l < "$root/hw/traces/drive.log")" ]; then
  ok "tcuctl can decode reads candump's own log of the replay ($(wc -l < "$work/recorded.log") frames)"
else
  bad "tcuctl can decode reads candump's log" "$recorded drive frames recorded, $(wc -l < "$work/recorded.json") decoded"
fi

log "canplayer: hw/traces/alarm.log"
canplayer -I "$root/hw/traces/alarm.log" "$iface=can0"
check_state "alarm: alarm.triggered" alarm.triggered "unavailable (last true)" 20
check_state "alarm: alarm.source" alarm.source "unavailable (last Door)" 20
check_state "alarm: doors.rearRight.open" doors.rearRight.open "unavailable (last true)" 20

log "canplayer: hw/traces/crash.log"
canplayer -I "$root/hw/traces/crash.log" "$iface=can0"
check_state "crash: crash.detected" crash.detected "unavailable (last true)" 20
check_state "crash: crash.severity" crash.severity "unavailable (last Severe)" 20
check_state "crash: occupancy.passenger" occupancy.passenger "unavailable (last true)" 20

frames=$("$bin/tcuctl" status --socket "$work/ctl.sock" | sed -n 's/^bus\.frames = //p')
drops=$("$bin/tcuctl" status --socket "$work/ctl.sock" | sed -n 's/^bus\.kernelDrops = //p')
expected=$(( $(wc -l < "$root/hw/traces/drive.log") + $(wc -l < "$root/hw/traces/alarm.log") + $(wc -l < "$root/hw/traces/crash.log") + 4 + $([ "$fd_capable" = yes ] && echo 2 || echo 0) + 1 ))
if [ "$frames" = "$expected" ] && [ "$drops" = 0 ]; then
  ok "every frame played reached the daemon ($frames frames, 0 dropped by the kernel)"
else
  bad "every frame reached the daemon" "$frames frames of $expected, $drops dropped"
fi

kill -TERM "$daemon"
if wait "$daemon"; then ok "SIGTERM stops the daemon cleanly (exit 0)"; else bad "SIGTERM stops the daemon" "exit $?"; fi
grep -q "telematicsd stopped" "$out/telematicsd.log" && ok "the daemon logged its stop" || bad "the daemon logged its stop"

# The other direction: the daemon's own transmit log, written by its candump writer,
# replayed by canplayer.
cp "$work/transmitted.log" "$out/transmitted.log"
candump -L -T 30000 "$iface,5F1:7FF" > "$work/replayed.log" 2>&1 &
watcher=$!
replay_tx() { canplayer -t -I "$work/transmitted.log" && grep -q "$iface 5F1#11000000" "$work/replayed.log"; }
if wait_for 30 replay_tx; then
  ok "canplayer replays the daemon's transmit log ($(wc -l < "$work/transmitted.log") frames)"
else
  bad "canplayer replays the daemon's transmit log" "$(head -3 "$work/transmitted.log")"
fi
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null

# The simulated car on the real bus, as candump sees it: every cyclic message at its cycle,
# with its counter and checksum.
log "the simulated car on $iface"
"$bin/tcu-car" run --bus "socketcan:$iface" --dbc "$root/hw/vehicle.dbc" --control "$work/car.sock" --sleep-after 10m \
  > "$out/tcu-car.log" 2>&1 &
car=$!
# (Up to two minutes: a debug build in an emulated guest has taken over 30 s to start while
# the host was busy.)
wait_for 120 test -S "$work/car.sock" || bad "tcu-car starts on $iface" "$(tail -3 "$out/tcu-car.log")"
timeout 4 candump -t d -n 400 "$iface,040:7FF" > "$work/airbag.log" 2>/dev/null
cycle=$(python3 - "$work/airbag.log" <<'PY'
import statistics, sys
gaps, sums = [], 0
for line in open(sys.argv[1]):
    f = line.split()
    gaps.append(float(f[0].strip("()")) * 1000)
    data = bytes.fromhex("".join(f[4:]))
    sums += data[7] == data[0] ^ data[1] ^ data[2] ^ data[3] ^ data[4] ^ data[5] ^ data[6]
gaps = gaps[1:]
print("%d %.1f %d" % (len(gaps), statistics.median(gaps) if gaps else 0, sums))
PY
)
read -r n median sums <<< "$cycle"
if [ "${n:-0}" -ge 100 ] && python3 -c "import sys; sys.exit(not 18 <= float('$median') <= 22)" && [ "$sums" -eq $((n + 1)) ]; then
  ok "the car sends Airbag_01 every $median ms (median of $n gaps, GenMsgCycleTime 20) with right checksums"
else
  bad "Airbag_01 at its cycle" "$n gaps, median $median ms, $sums right checksums"
fi

# A remote lock end to end on the real bus: an app's request through tcu-backend and a
# mosquitto broker to the daemon, which verifies it and sends TCU_Body_Request on vcan0; the
# simulated car's body controller locks and answers with Door_Status (source Telematics), and
# the result goes back to the backend.
log "remote lock over MQTT and $iface"
port=$(( 20000 + RANDOM % 20000 ))
vin=$(sed -n 's/^vin *= *//p' "$root/hw/vehicle-profile.conf")
# The broker as docs/operations.md sets it up: mutual TLS and the ACL (hw/broker/pki).
"$root/hw/broker/pki" "$work/pki" "$port" "$vin"
mosquitto -c "$work/pki/mosquitto.conf" > "$out/mosquitto.log" 2>&1 &
broker=$!
backend_db="$work/backend.db"
http=$(( port + 1 ))
"$bin/tcu-backend" serve --broker "127.0.0.1:$port" --tls-ca "$work/pki/ca.pem" --tls-cert "$work/pki/tcu-backend.pem" \
  --tls-key "$work/pki/tcu-backend.key" --http "127.0.0.1:$http" --db "$backend_db" > "$out/backend.log" 2>&1 &
backend=$!
printf '%s\n' 'correct horse' 4711 | "$bin/tcu-backend" user add ana@example.com --db "$backend_db" >/dev/null
"$bin/tcu-backend" user verify ana@example.com --db "$backend_db" >/dev/null
code=$("$bin/tcu-backend" garage add "$vin" --user ana@example.com --profile "$root/hw/vehicle-profile.conf" --accept-terms \
  --db "$backend_db" | python3 -c 'import json, sys; print(json.load(sys.stdin)["pairingCode"])')
# (Notices only: logging each of the simulated car's value changes costs the one emulated CPU
# more than everything else this daemon does.)
sed -e "s#^path = .*#path = $work/remote-outbox.db#" -e "s#^socket = .*#socket = $work/remote.sock#" \
  -e "s#^journal = .*#journal = $work/remote-ecall.journal#" -e "s#^level = .*#level = notice#" "$work/telematicsd.conf" > "$work/remote.conf"
# Under software emulation a TLS handshake and the loops are many times slower than native: a
# keepalive of two minutes keeps a busy guest from taking its own slowness for a dead link.
printf '[backend]\nbroker = 127.0.0.1:%s\nkeepalive-s = 120\ntls-ca = %s/pki/ca.pem\ntls-cert = %s/pki/%s.pem\ntls-key = %s/pki/%s.key\nanswer-key = %s\n[registration]\nfile = %s/registration.json\n[remote]\nconfirm-timeout-ms = 20000\n' \
  "$port" "$work" "$work" "$vin" "$work" "$vin" "$("$bin/tcu-backend" keys --db "$backend_db")" "$work" >> "$work/remote.conf"
"$bin/telematicsd" --config "$work/remote.conf" > "$out/telematicsd-remote.log" 2>&1 &
daemon=$!
connected() { "$bin/tcuctl" status --socket "$work/remote.sock" | grep -q 'outbox.backend.connected = true'; }
if wait_for 150 connected && registered=$("$bin/tcuctl" register "$code" --socket "$work/remote.sock" 2>&1); then
  ok "the car registers with the backend over MQTT"
else
  bad "the car registers" "code '$code': ${registered:-not connected}; $("$bin/tcuctl" status --socket "$work/remote.sock" 2>&1 | grep -E '^outbox\.backend' | tr '\n' ' ')"
fi
# candump watches the unit's body requests on the bus.
( candump -L "$iface,5F1:7FF" | while read -r _ _ frame; do echo "$frame" >> "$work/body-requests.log"; done ) &
controller=$!
# The app's side, through the backend's HTTP API: log in, the S-PIN's security token, lock,
# then follow the request until the car has answered.
result=$(python3 - "$http" "$vin" <<'APP' 2>&1
import json, sys, time, urllib.request
base, vin, token = f"http://127.0.0.1:{sys.argv[1]}/v1", sys.argv[2], None
def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    # (An S-PIN or password check is 600 000 PBKDF2 rounds: in a debug build under emulation, a minute or more.)
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read() or b"null")
token = call("POST", "/login", {"email": "ana@example.com", "password": "correct horse"})["token"]
security = call("POST", f"/vehicles/{vin}/spin/verify", {"spin": "4711"})["securityToken"]
request = call("POST", f"/vehicles/{vin}/actions/lock", {"securityToken": security})["requestId"]
deadline = time.monotonic() + 90
status = call("GET", f"/vehicles/{vin}/requests/{request}")
while status["status"] not in ("successful", "failed") and time.monotonic() < deadline:
    time.sleep(0.2)
    status = call("GET", f"/vehicles/{vin}/requests/{request}")
print(json.dumps(status))
APP
)
if echo "$result" | grep -q '"status": "successful"'; then
  ok "remote lock: app → HTTP → backend → MQTT → daemon → $iface → simulated car → confirmed → app ($(head -1 "$work/body-requests.log"))"
else
  bad "remote lock confirmed" "$result; body requests: $(cat "$work/body-requests.log" 2>/dev/null)"
fi
if grep -Eq '^5F1#[0-9A-F]1[0-9A-F]{6}$' "$work/body-requests.log" \
   && python3 -c 'import sys; b = bytes.fromhex(sys.argv[1].split("#")[1]); sys.exit(b[3] != b[0] ^ b[1] ^ b[2])' "$(head -1 "$work/body-requests.log")"; then
  ok "the lock request on $iface carries its rolling counter and XOR checksum"
else
  bad "the lock request's checksum" "$(head -1 "$work/body-requests.log")"
fi
locks=$("$bin/tcu-car" status --control "$work/car.sock" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["locks"])')
if [ "$locks" = "{'central': 'locked', 'source': 'telematics'}" ]; then
  ok "the simulated car is locked by Telematics"
else
  bad "the simulated car's locks" "$locks"
fi
kill "$controller" 2>/dev/null; pkill -f "candump -L $iface,5F1:7FF" 2>/dev/null; wait "$controller" 2>/dev/null
for p in "$daemon" "$backend" "$broker" "$car"; do kill -TERM "$p" 2>/dev/null; done; wait "$daemon" "$backend" "$broker" "$car" 2>/dev/null

rm -rf "$work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
