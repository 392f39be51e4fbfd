#!/bin/bash
# The packages' checks inside the Debian 12 guest hw/bench/systemd-guest boots, run by systemd
# itself (tcu-checks.service) once the system is up. Each check prints "ok: WHAT" or
# "FAIL: WHAT" into OUT/checks.log; OUT/rc is 0 when every one passed.
#
# Usage (in the guest): systemd-checks.sh OUT
out=${1:-/mnt/out}
exec >>"$out/checks.log" 2>&1
failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
# Polls a condition until a deadline (the guest runs under emulation: generous deadlines).
within() { local s=$1; shift; local end=$((SECONDS + s)); until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.5; done; }
prop() { systemctl show -p "$1" --value telematicsd.service; }
journal_has() { journalctl -u telematicsd.service --no-pager -o cat | grep -qF -- "$1"; }
finish() { echo "checks: $failures failed"; echo "$failures" > "$out/rc"; sync; exit 0; }
VIN=VSSZZZKLZNR012345
state=/var/lib/telematicsd

echo "checks: $(uname -r), $(systemctl --version | head -1)"
check "systemd is PID 1" [ "$(cat /proc/1/comm)" = systemd ]

# --- Installation of the previous version: the last hand-made package (hw/bench/previous-deb),
# one package `telematicsd` with every tool; the car runs on it first, then it is upgraded.
# (The guest has no network: apt takes the packages' dependencies from what is installed.
# The conffile options are unattended-upgrades' own: keep what the administrator changed.)
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" </dev/null
}
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
previous=$(dpkg-deb -f /opt/tcu/previous/telematicsd_*.deb Version)
new=$(dpkg-deb -f /opt/tcu/new/telematicsd_*.deb Version)
echo "checks: the previous version $previous, the new $new"
check "the previous version ($previous) installs with apt" apt_install /opt/tcu/previous/telematicsd_*.deb
check "sysusers made the service's user, home its state directory, no login" \
  bash -c "getent passwd telematicsd | grep -q ':/var/lib/telematicsd:/usr/sbin/nologin$'"
check "the unit is installed, not enabled and not started (its configuration names the car first)" \
  bash -c '[ "$(systemctl is-enabled telematicsd.service)" = disabled ] && ! systemctl is-active --quiet telematicsd.service'

# --- The CAN links from systemd-networkd ---------------------------------------------------
cp /usr/share/telematicsd/systemd-networkd/80-* /etc/systemd/network/
# A stand-in for the car's can0: a vcan the shipped 80-can0.network then configures.
printf '[NetDev]\nName=can0\nKind=vcan\n' > /etc/systemd/network/79-can0-stand-in.netdev
check "systemd-networkd starts" systemctl enable --now systemd-networkd.service
link_up() { ip -br link show "$1" 2>/dev/null | grep -q 'UP'; }
check "vcan0 is made and brought up by systemd-networkd from the shipped .netdev and .network" within 60 link_up vcan0
check "the can0 stand-in is brought up by the shipped 80-can0.network" within 60 link_up can0
networkctl list --no-pager

# --- The configuration, a registered car ---------------------------------------------------
conf=/etc/telematicsd/telematicsd.conf
sed -i -e 's/^# *fault-injection = false/fault-injection = true/' -e 's/^shutdown-grace-ms = .*/shutdown-grace-ms = 60000/' "$conf"
grep -q '^fault-injection = true' "$conf" || fail "the configuration takes fault-injection"
install -d -o telematicsd -g telematicsd -m 750 "$state"
printf '%s' '{"status":"completed","user":"ana@example.com","role":"primary","services":["vehicleStatus","parkingPosition","alerts","breakdownCall","serviceScheduling"],"licenceExpiresAt":4102444800000}' \
  > "$state/registration.json"
chown telematicsd:telematicsd "$state/registration.json"
chmod 600 "$state/registration.json"

# --- The car on the previous version: a backlog in the outbox, an eCall journal ------------------
check "the previous version runs, enabled" systemctl enable --now telematicsd.service
# The car's doors on can0 while no broker is configured.
for i in $(seq 1 40); do cansend can0 "583#0$((i % 2))000000" || break; done
# The outbox as its owner reads it (a file root touched would keep the daemon out of it).
outbox() { runuser -u telematicsd -- sqlite3 "$state/outbox.db" "$1"; }
waiting() { [ "$(outbox 'SELECT count(*) FROM messages' 2>/dev/null || echo 0)" -ge 40 ]; }
check "the door events wait in the outbox (no broker)" within 60 waiting
# A test eCall the PSAP (the previous package's tcu-psap) clears down after two seconds.
printf 'hang-up-after-ms = 2000\n' > /root/psap-short.conf
tcu-psap --listen 127.0.0.1:5061 --scenario /root/psap-short.conf --log /root/psap-short.log &
psap=$!
within 30 grep -q listening /root/psap-short.log || fail "the previous tcu-psap listens"
check "a test eCall on the previous version" tcuctl ecall test
journal_written() { [ -s "$state/ecall.journal" ] && tcuctl ecall status 2>/dev/null | grep -q 'phase = callbackWindow'; }
check "the call ends and its eCall journal stays" within 120 journal_written
kill $psap 2>/dev/null

# --- Upgrade with a registered car, a backlog and an eCall journal ----------------------------
# The messages that must all arrive: events (a state block waiting may be replaced by a newer one).
ids() { outbox 'SELECT id FROM messages WHERE coalesce_key IS NULL ORDER BY id'; }
ids > /root/ids.before
echo "checks: $(wc -l < /root/ids.before) events waiting in the outbox before the upgrade"
check "there is a backlog of events to keep" [ -s /root/ids.before ]
sha() { sha256sum "$state/registration.json" "$state/ecall.journal" | cut -d' ' -f1; }
sha > /root/sha.before
kept() { ids | comm -23 /root/ids.before - | (! grep -q .); }
unchanged() { sha | cmp -s - /root/sha.before; }
registered() { tcuctl status | grep -q 'registration.status = completed'; }
pid=$(prop MainPID)
check "the new version installs over the previous one with apt (telematicsd and tcu-psap)" \
  apt_install /opt/tcu/new/telematicsd_*.deb /opt/tcu/new/tcu-psap_*.deb
check "the installed telematicsd is the new version" [ "$(version telematicsd)" = "$new" ]
check "the upgrade restarted the service with the new binary" \
  bash -c "[ \"\$(systemctl show -p MainPID --value telematicsd.service)\" != $pid ] && systemctl is-active --quiet telematicsd.service"
check "the upgrade kept every message waiting in the outbox" kept
check "the registration and the eCall journal are still there, unchanged" unchanged
check "the car is still registered" within 30 registered
check "the administrator's configuration is kept (dpkg's conffile)" grep -q '^fault-injection = true' "$conf"
check "tcu-psap's file moved to its own package (Replaces)" bash -c "dpkg -S /usr/bin/tcu-psap | grep -q '^tcu-psap:'"
check "the tools of no installed package went with the previous one" [ ! -e /usr/bin/tcu-backend ]

# --- The new version under systemd: enable --now, READY, STATUS, the user, the journal ---------
systemctl disable --now telematicsd.service
check "systemctl enable --now returns once the daemon said READY (Type=notify)" systemctl enable --now telematicsd.service
check "the service is active" systemctl is-active --quiet telematicsd.service
status=$(prop StatusText)
echo "checks: STATUS=$status"
check "the daemon's STATUS line reaches systemd" [ -n "$status" ]
pid=$(prop MainPID)
runs_as_its_user() { [ "$pid" -gt 0 ] && [ "$(awk '/^Uid:/ {print $2}' /proc/$pid/status)" = "$(id -u telematicsd)" ]; }
check "the daemon runs as the telematicsd user" runs_as_its_user
check "StateDirectory= gave it /var/lib/telematicsd, its own" [ "$(stat -c %U:%a $state)" = "telematicsd:750" ]
check "the journal has the daemon's records with their fields (VEHICLE_VIN, CAN_SOURCE)" \
  bash -c "journalctl -u telematicsd.service -o verbose --no-pager | grep -q 'VEHICLE_VIN=$VIN' &&
           journalctl -u telematicsd.service -o verbose --no-pager | grep -q 'CAN_SOURCE=socketcan:can0'"
check "the journal says it started, at notice priority" \
  bash -c "journalctl -u telematicsd.service -p notice --no-pager -o cat | grep -q 'telematicsd started'"

# --- reload ---------------------------------------------------------------------------------
sed -i 's/^level = info/level = debug/' "$conf"
check "systemctl reload applies a changed log level" systemctl reload telematicsd.service
check "the reload is in the journal" within 30 journal_has "configuration reloaded"
cp "$conf" /root/good.conf
echo "this is not a key" >> "$conf"
systemctl reload telematicsd.service
check "a broken file is refused and said so" within 30 journal_has "reload refused: the configuration is invalid"
check "the service runs on after a broken file" systemctl is-active --quiet telematicsd.service
check "the same process ran through both reloads" [ "$(prop MainPID)" = "$pid" ]
cp /root/good.conf "$conf"
systemctl reload telematicsd.service

# --- The watchdog ---------------------------------------------------------------------------
restarts=$(prop NRestarts)
check "a main loop made to hang (tcuctl fault)" tcuctl fault --hang outbox
restarted() { [ "$(prop NRestarts)" -gt "$restarts" ] && systemctl is-active --quiet telematicsd.service; }
check "the watchdog restarts the hung daemon" within 120 restarted
check "systemd says why: the watchdog's timeout" \
  bash -c "journalctl -u telematicsd.service --no-pager | grep -q 'Watchdog timeout'"
check "the daemon said which loop was stuck" within 5 journal_has "a main loop is stuck"
check "a new process after the restart" [ "$(prop MainPID)" != "$pid" ]

# --- A stop during an eCall -------------------------------------------------------------------
printf 'hang-up-after-ms = 8000\n' > /root/psap.conf
tcu-psap --listen 127.0.0.1:5061 --scenario /root/psap.conf --log /root/psap.log &
psap=$!
within 30 grep -q listening /root/psap.log || fail "tcu-psap listens"
check "a test eCall is placed" tcuctl ecall test
in_voice() { tcuctl ecall status 2>/dev/null | grep -q 'phase = voice'; }
check "the call reaches its voice phase" within 120 in_voice
t0=$SECONDS
check "systemctl stop returns" systemctl stop telematicsd.service
took=$((SECONDS - t0))
echo "checks: the stop took ${took} s"
check "the stop waited for the call in progress" journal_has "stopping once the eCall in progress ends"
check "the call ended, then the daemon stopped" journal_has "the eCall ended; stopping"
check "the stop stayed within the unit's stop timeout (no kill)" [ "$(prop Result)" = success ]
check "the eCall journal is kept for the call-back window" [ -s "$state/ecall.journal" ]
kill $psap 2>/dev/null

# --- The exposure, live and offline ---------------------------------------------------------
systemctl start telematicsd.service
systemd-analyze security telematicsd.service --no-pager > /root/live.txt 2>&1
systemd-analyze security --offline=true /lib/systemd/system/telematicsd.service --no-pager > /root/offline.txt 2>&1
exposure() { sed -n 's/.*Overall exposure level for telematicsd.service: \([0-9.]*\).*/\1/p' "$1"; }
live=$(exposure /root/live.txt)
offline=$(exposure /root/offline.txt)
echo "checks: exposure live $live, offline $offline; where they differ:"
diff <(grep -E '^[✓✗ ]' /root/offline.txt) <(grep -E '^[✓✗ ]' /root/live.txt) | grep '^[<>]'
same_exposure() { [ -n "$live" ] && [ "$live" = "$offline" ] && awk -v e="$live" 'BEGIN { exit !(e <= 2.0) }'; }
check "systemd-analyze security gives the same exposure live as offline, at most 2.0" same_exposure
echo "$live $offline" > "$out/exposure"

# --- The outbox's schema migrates (a file as version 1 wrote it) -----------------------------
systemctl stop telematicsd.service
outbox 'ALTER TABLE messages DROP COLUMN carries_position; PRAGMA user_version = 1;'
check "the outbox is put back to version 1" [ "$(outbox 'PRAGMA user_version')" = 1 ]
systemctl start telematicsd.service
migrated() { [ "$(outbox 'PRAGMA user_version')" = 2 ]; }
check "a version-1 outbox is migrated to version 2 when the new daemon opens it" within 30 migrated
check "the migration kept every message" kept

# --- Downgrade --------------------------------------------------------------------------------
# The previous package holds tcu-psap's file: apt takes tcu-psap away (its Breaks).
check "a downgrade to the previous version works (the same outbox schema)" apt_install /opt/tcu/previous/telematicsd_*.deb
downgraded() { [ "$(version telematicsd)" = "$previous" ] && ! dpkg -l tcu-psap 2>/dev/null | grep -q '^ii'; }
check "the downgrade took tcu-psap away (the previous package holds its tool)" downgraded
check "the previous version runs on the same data" within 30 registered
check "the downgrade kept every message" kept
apt_install /opt/tcu/new/telematicsd_*.deb /opt/tcu/new/tcu-psap_*.deb >/dev/null

# --- Remove, then purge ---------------------------------------------------------------------
check "apt remove" bash -c "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q telematicsd </dev/null"
check "removing stops the service and takes the binaries" \
  bash -c "! systemctl is-active --quiet telematicsd.service && [ ! -e /usr/bin/telematicsd ]"
kept_data() { [ -f "$conf" ] && [ -f "$state/outbox.db" ] && [ -f "$state/registration.json" ]; }
check "removing keeps the configuration and the car's data" kept_data
check "apt purge" bash -c "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q telematicsd tcu-psap </dev/null"
all_gone() { [ ! -e /etc/telematicsd ] && [ ! -e "$state" ]; }
check "purging deletes the configuration and everything the unit stored" all_gone
check "nothing of the package is left but its user" \
  bash -c "! dpkg -l telematicsd 2>/dev/null | grep -q '^[ir]' && [ ! -e /lib/systemd/system/telematicsd.service ] && getent passwd telematicsd >/dev/null"
finish
