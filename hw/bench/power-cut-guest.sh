#!/usr/bin/env bash
# Inside the power-cut guest (hw/bench/power-cut), with the virtual disk on /run/tcu/disk.
#   write:  telematicsd takes a burst of door events from a CAN log into its outbox on the
#           disk, and this script prints "power-cut: stored N" each time the daemon reports N
#           events committed, until the host pulls the plug.
#   verify: after the cut, telematicsd opens the same outbox (SQLite recovers the WAL) and
#           reports what it holds; then the file is checked: integrity, and the events are the
#           log's first M door changes, in order, with none missing.
# Usage: power-cut-guest.sh BIN OUT write|verify
set -uo pipefail
bin=$1
out=$2
phase=$3
disk=/run/tcu/disk
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)

# write: 6000 frames, one every 10 ms: the front left door opens and closes (5999 events in
# 60 s). verify: one frame of the terminals, no door event.
if [ "$phase" = write ]; then
  awk 'BEGIN { for (i = 0; i < 6000; i++) printf "(%.6f) can0 583#%02X000000\n", 1764000000 + i * 0.01, i % 2 }' > "$work/burst.log"
else
  echo "(1764000000.000000) can0 3C0#00000000" > "$work/burst.log"
fi
cat > "$work/telematicsd.conf" <<CONF
[can]
source = candump:$work/burst.log
dbc = $root/hw/vehicle.dbc
replay = original
transmit-status = false
[vehicle]
profile = $root/hw/vehicle-profile.conf
[control]
socket = $work/ctl.sock
[outbox]
path = $disk/outbox.db
[ecall]
journal = $disk/ecall.journal
link = 127.0.0.1:5999
[registration]
file = $work/registration.json
CONF
# A registered car (its owner accepted the terms): before that nothing is queued for the backend.
echo '{"status":"completed","user":"ana@example.com","role":"primary","services":["vehicleStatus","alerts"],"licenceExpiresAt":4102444800000}' \
  > "$work/registration.json"

events() { "$bin/tcuctl" status --socket "$work/ctl.sock" 2>/dev/null | sed -n 's/^outbox.waiting.event = //p'; }

"$bin/telematicsd" --config "$work/telematicsd.conf" 2> "$out/daemon-$phase.log" &
daemon=$!
case "$phase" in
write)
  while kill -0 "$daemon" 2>/dev/null; do
    n=$(events)
    [ -n "$n" ] && echo "power-cut: stored $n"
    sleep 0.2
  done
  echo "power-cut: the daemon ended before the power was cut"
  exit 1
  ;;
verify)
  n=
  for _ in $(seq 1 100); do
    n=$(events)
    [ -n "$n" ] && break
    sleep 0.2
  done
  kill -TERM "$daemon"
  wait "$daemon"
  echo "power-cut: the daemon reopened the outbox with ${n:-no} events waiting"
  python3 - "$disk/outbox.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print("power-cut: integrity", db.execute("PRAGMA integrity_check").fetchone()[0])
rows = [json.loads(p) for (p,) in db.execute("SELECT payload FROM messages WHERE stream = 'events' ORDER BY position")]
door = [r for r in rows if r.get("quantity") == "doors.frontLeft.open"]
# Event i (1-based) is frame i of the log: captured at 10 ms steps, opened when i is odd.
t0 = door[0]["capturedAt"] - 10 if door else 0
contiguous = all(r["capturedAt"] == t0 + 10 * (i + 1) and r["type"] == ("opened" if (i + 1) % 2 else "closed")
                 for i, r in enumerate(door)) and (not door or door[0]["type"] == "opened")
print("power-cut: recovered", len(door))
print("power-cut: contiguous", "yes" if contiguous else "no")
PY
  ;;
esac
