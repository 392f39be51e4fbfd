#!/usr/bin/env bash
# The simulated car against can-utils' cangen on vcan0, where vcan0 can exist (the host, or the
# qemu guest that hw/bench/car-bench boots): the CPU each costs sending the same frame rate
# (the car: every message of the DBC at its cycle; cangen: one identifier at the same total
# rate), from /proc/PID/task/*/schedstat (nanoseconds on the CPU), and the jitter that candump
# -t a sees (|gap - cycle| of the car's 20 ms messages; of cangen's frames at its gap). Rounds
# interleave the two; the figures are medians. Writes OUT/car-bench.txt (key=value lines).
#
# Usage: car-cangen.sh BIN_DIR OUT_DIR [SECONDS_PER_ROUND] [ROUNDS]
set -uo pipefail
bin=$1
out=$2
secs=${3:-10}
rounds=${4:-5}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
iface=vcan0
if ! ip link show "$iface" >/dev/null 2>&1; then
  ip link add dev "$iface" type vcan && ip link set up "$iface" || { echo "car-bench: cannot create $iface"; exit 1; }
fi

# Nanoseconds on the CPU of every thread of a process (the car's loop is not its main thread).
oncpu() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'; }

# run_round NAME COMMAND...: starts it, lets it settle, then for SECS seconds records every
# frame with candump -t a; prints "cpu_ns frames" and leaves the frames in $work/NAME.log.
run_round() {
  local name=$1; shift
  "$@" > "$work/$name.out" 2>&1 &
  local pid=$!
  # Settle: the car's first second (every message due at once) is not its steady state.
  sleep 2
  local c0; c0=$(oncpu "$pid")
  timeout "$secs" candump -t a "$iface" > "$work/$name.log" 2>/dev/null
  local c1; c1=$(oncpu "$pid")
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  echo "$((c1 - c0)) $(wc -l < "$work/$name.log")"
}

# The jitter of a cyclic identifier in a candump -t a log: |gap - cycle| in ms, p50 and p99.
jitter() {
  python3 - "$@" <<'PY'
import statistics, sys
path, cycle = sys.argv[1], float(sys.argv[2])
ids = sys.argv[3].split(",")
last, dev = {}, []
for line in open(path):
    f = line.split()
    t, ident = float(f[0].strip("()")), f[2]
    if ident in ids:
        if ident in last:
            dev.append(abs((t - last[ident]) * 1000 - cycle))
        last[ident] = t
dev.sort()
p = lambda q: dev[min(len(dev) - 1, int(q * len(dev)))] if dev else float("nan")
print("%.3f %.3f %d" % (p(0.5), p(0.99), len(dev)))
PY
}

car_cpu=(); gen_cpu=(); car_j=(); gen_j=(); car_rate=
for r in $(seq 1 "$rounds"); do
  # (No process substitution: the guest's chroot has no /dev/fd.)
  run_round car "$bin/tcu-car" run --bus "socketcan:$iface" --dbc "$root/hw/vehicle.dbc" \
    --control "$work/car.sock" --sleep-after 1h > "$work/round"
  read -r cpu frames < "$work/round"
  car_cpu+=("$cpu")
  # The rate from candump's own times (its start-up under emulation eats into the window).
  car_rate=$(awk '{gsub(/[()]/, "", $1); if (!first) first = $1; last = $1; n++} END {printf "%.1f", (n - 1) / (last - first)}' "$work/car.log")
  car_j+=("$(jitter "$work/car.log" 20 040,0FD)")
  gap=$(python3 -c "print('%.3f' % (1000 / $car_rate))")
  run_round cangen cangen "$iface" -g "$gap" -I 040 -L 8 -D i > "$work/round"
  read -r cpu frames < "$work/round"
  gen_cpu+=("$cpu")
  gen_j+=("$(jitter "$work/cangen.log" "$gap" 040)")
  echo "car-bench: round $r: car ${car_cpu[-1]} ns on the CPU, $car_rate frames/s, jitter p50/p99 ${car_j[-1]}; cangen ${gen_cpu[-1]} ns at a $gap ms gap, jitter ${gen_j[-1]}"
done

python3 - "$out/car-bench.txt" "$secs" "$car_rate" "$gap" "${car_cpu[*]}" "${gen_cpu[*]}" "${car_j[*]}" "${gen_j[*]}" <<'PY'
import statistics, sys
path, secs, rate, gap = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
car, gen = [int(x) for x in sys.argv[5].split()], [int(x) for x in sys.argv[6].split()]
cj = [float(x) for x in sys.argv[7].split()]
gj = [float(x) for x in sys.argv[8].split()]
# jitter triples (p50 p99 n) flattened
cp99, gp99 = cj[1::3], gj[1::3]
cp50, gp50 = cj[0::3], gj[0::3]
ratios = [c / g for c, g in zip(car, gen) if g > 0]
lines = {
    "frames_per_s": rate, "cangen_gap_ms": gap, "rounds": len(car), "seconds": secs,
    "car_cpu_percent": "%.2f" % (statistics.median(car) / secs / 1e7),
    "cangen_cpu_percent": "%.2f" % (statistics.median(gen) / secs / 1e7),
    "cpu_ratio_median": "%.2f" % statistics.median(ratios) if ratios else "nan",
    "car_jitter_p50_ms": "%.3f" % statistics.median(cp50), "car_jitter_p99_ms": "%.3f" % statistics.median(cp99),
    "cangen_jitter_p50_ms": "%.3f" % statistics.median(gp50), "cangen_jitter_p99_ms": "%.3f" % statistics.median(gp99),
}
with open(path, "w") as f:
    for k, v in lines.items():
        f.write("%s=%s\n" % (k, v))
        print("car-bench: %s=%s" % (k, v))
PY
echo 0 > "$out/rc"
rm -rf "$work"
