#!/usr/bin/env bash
# redis-benchmark PUBLISH against ringcast (one shard) and redis-server, in
# alternating rounds: server CPU per request (from /proc/PID/stat over the
# run, which does not depend on whether the client keeps up), requests/s,
# and redis-benchmark's own CPU share. Servers on core 0; redis-benchmark
# and the subscriber (`ringcast-bench subscribe`, which counts messages
# without printing them) on core 1.
#
#   bench/resp-publish.sh [ROUNDS] [SIDE...]
#
# SIDE: ringcast, redis, ceiling (bench's bare io_uring RESP server: the
# kernel's cost of the same reads and writes, plus a parse), or PATH=LABEL
# for another ringcast binary (A/B); default: ringcast redis ceiling. Cases: pipelined -P 16 with one subscriber,
# pipelined without, unpipelined with one. Every subscriber's message
# count is checked against the requests sent (nothing may be lost).
# Needs redis-benchmark, redis-cli and redis-server (Debian redis-tools,
# redis-server). N=requests per case (default 2,000,000; unpipelined N/8).
# MD=FILE also writes the medians as a Markdown table, each ringcast side
# against redis-server (the matrix's resp-publish section).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
SIDES=("$@")
[ ${#SIDES[@]} -eq 0 ] && SIDES=(ringcast redis ceiling)
N=${N:-2000000}
# Below the ephemeral range sysctl/ sets (10000-65535): a port the load of
# an earlier scenario left in TIME_WAIT as a client's cannot be bound.
PORT=${PORT:-6390}
BIN=${BIN:-target/release/ringcast}
BENCH_BIN=${BENCH_BIN:-target/release/ringcast-bench}
[ -x "$BIN" ] && [ -x "$BENCH_BIN" ] || cargo build --release --quiet --workspace
HZ=$(getconf CLK_TCK)
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; pkill -f "subscribe --addr 127.0.0.1:$PORT" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# ringcast gets the subscriber budget redis-server has by default
# (client-output-buffer-limit pubsub: 32 MB hard): the subscriber shares
# its core with redis-benchmark and may lag a pipelined publisher by more
# than ringcast's default outbound_limit (1 MiB).
RC_FLAGS=(--outbound-limit 33554432)
start() {
  case $1 in
    redis) taskset -c 0 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null 2>&1 & ;;
    ceiling) taskset -c 0 "$BENCH_BIN" ceiling --protocol resp --listen "127.0.0.1:$PORT" >"$work/ceiling.log" 2>&1 & ;;
    ringcast) taskset -c 0 "$BIN" serve --shards 1 --cores 0 --resp "127.0.0.1:$PORT" --ws 127.0.0.1:0 --admin 127.0.0.1:0 --log warn "${RC_FLAGS[@]}" >"$work/server.log" 2>&1 & ;;
    *=*) taskset -c 0 "${1%%=*}" serve --shards 1 --cores 0 --resp "127.0.0.1:$PORT" --ws 127.0.0.1:0 --admin 127.0.0.1:0 --log warn "${RC_FLAGS[@]}" >"$work/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "server $1 did not start:" >&2; cat "$work/"*.log >&2; exit 1
}

# An io_uring server's listener can outlive its process for a moment (the
# ring is torn down after exit, with the accept it had in flight): the next
# side waits for the port.
stop() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
  for _ in $(seq 100); do [ -z "$(ss -Htln "sport = :$PORT")" ] && return; sleep 0.05; done
}

# run SIDE CASE: prints "side case us_per_req req_per_s client_cpu lost"
run() {
  local side=$1 case=$2 n=$N pipe=16 subs=1
  case $case in
    pipelined) ;;
    pipelined-nosub) subs=0 ;;
    unpipelined) pipe=1; n=$((N / 8)) ;;
  esac
  start "$side"
  local sub_out=$work/sub
  : > "$sub_out"
  local sub_pid=
  if [ $subs -eq 1 ]; then
    # Counts without printing each message: redis-cli writing every one to
    # a file cannot keep up past ~550k/s on the core it shares with
    # redis-benchmark, and a fast enough server then closes it as a slow
    # consumer (see bench/src/subscriber.rs).
    taskset -c 1 "$BENCH_BIN" subscribe --addr "127.0.0.1:$PORT" --channel bench --count "$n" > "$sub_out" &
    sub_pid=$!
    for _ in $(seq 100); do grep -q subscribed "$sub_out" && break; sleep 0.02; done
  fi
  local before t0 after t1 out
  before=$(cpu_ticks "$server_pid")
  t0=$(date +%s.%N)
  out=$( { /usr/bin/time -f "%U %S" taskset -c 1 redis-benchmark -p "$PORT" -c 50 -P "$pipe" -n "$n" -q PUBLISH bench hello 2>&1 >/dev/null | tail -1; } 2>&1 )
  t1=$(date +%s.%N)
  after=$(cpu_ticks "$server_pid")
  local lost=0
  if [ $subs -eq 1 ]; then
    # Every message reaches the subscriber: it exits once it has all, or
    # after 10 s with nothing, or when the server closes it.
    wait "$sub_pid"
    local got
    got=$(tail -1 "$sub_out" | awk '{print $1}')
    lost=$(( n - ${got:-0} ))
    [ "$lost" -eq 0 ] || echo "subscriber: $(tail -1 "$sub_out")" >&2
  fi
  stop
  local client=${out##*$'\n'}
  awk -v side="${side##*=}" -v case="$case" -v n="$n" -v b="$before" -v a="$after" -v hz="$HZ" \
      -v t0="$t0" -v t1="$t1" -v client="$client" -v lost="$lost" 'BEGIN {
    split(client, c, " "); wall = t1 - t0
    printf "%-14s %-16s %7.2f us/req %10.0f req/s  client %3.0f%% of a core  lost %d\n",
      side, case, (a - b) / hz * 1e6 / n, n / wall, (c[1] + c[2]) / wall * 100, lost
  }'
}

for round in $(seq "$ROUNDS"); do
  for case in pipelined pipelined-nosub unpipelined; do
    # Each round starts one side later, so no side always runs first.
    for k in $(seq 0 $((${#SIDES[@]} - 1))); do
      run "${SIDES[$(((k + round - 1) % ${#SIDES[@]}))]}" "$case"
    done
  done
done | tee "$work/all"
echo
echo "medians of $ROUNDS rounds:"
python3 - "$work/all" "$ROUNDS" "${MD:-}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 12:
        continue
    rows.setdefault((f[0], f[1]), []).append((float(f[2]), float(f[4]), float(f[7].rstrip("%")), int(f[-1])))
med = lambda v, i: statistics.median(x[i] for x in v)
for (side, case), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"{side:<14} {case:<16} {med(v, 0):7.2f} us/req {med(v, 1):10.0f} req/s")
if sys.argv[3]:
    goal = {"pipelined": 0.67, "pipelined-nosub": 0.67, "unpipelined": 0.8}
    what = {"pipelined": "-P 16, one subscriber", "pipelined-nosub": "-P 16, no subscriber",
            "unpipelined": "-P 1, one subscriber"}
    with open(sys.argv[3], "w") as out:
        out.write(f"redis-benchmark `-c 50 PUBLISH`, one ringcast shard and redis-server each pinned to core 0, "
                  f"redis-benchmark and the subscriber on core 1; medians of {sys.argv[2]} rounds, sides alternating. "
                  "Server CPU per request is from /proc/PID/stat over the run; *client* is redis-benchmark's own share "
                  "of its core; *lost* counts messages the subscriber did not get, over every round. *ceiling* is "
                  "bench's bare io_uring RESP server (a parse, the same reads and writes, nothing else): a goal the "
                  "ceiling misses too is beyond what this kernel allows.\n\n")
        out.write("| case | server | µs/request | requests/s | client CPU | lost | vs redis-server | goal | met |\n")
        out.write("|---|---|---:|---:|---:|---:|---:|---:|:-:|\n")
        for case in goal:
            base = rows.get(("redis", case))
            bare = rows.get(("ceiling", case))
            ceiling = med(bare, 0) / med(base, 0) if base and bare else None
            for (side, c), v in sorted(rows.items()):
                if c != case:
                    continue
                ratio = med(v, 0) / med(base, 0) if base and side != "redis" else None
                if ratio is None:
                    met = ""
                elif side == "ceiling":
                    met = "reference"
                elif ratio <= goal[case]:
                    met = "yes"
                elif ceiling is not None and ceiling > goal[case]:
                    met = f"no; the ceiling misses it too ({ceiling:.2f}×)"
                else:
                    met = "**no**"
                cells = [what[case], side, f"{med(v, 0):.2f}", f"{med(v, 1):,.0f}", f"{med(v, 2):.0f}%",
                         str(sum(x[3] for x in v)), f"{ratio:.2f}×" if ratio else "–",
                         f"≤ {goal[case]}×" if ratio and side != "ceiling" else "", met]
                out.write("| " + " | ".join(cells) + " |\n")
PY
