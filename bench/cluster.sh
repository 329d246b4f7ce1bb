#!/usr/bin/env bash
# Cluster mode side by side: ringcast on two nodes sharing rooms through one
# Redis, socket.io on two nodes with @socket.io/redis-adapter on the same
# Redis, and a single ringcast node (and a single socket.io process) for
# reference, in one run, sides alternating round by round, then medians.
#
#   bench/cluster.sh [ROUNDS]          # default 3 rounds; about 2.5 min a round on 2 cores
#
# The fan-out shape is fanout-50k's (10,000 members in 100 rooms of 100, 1,000
# publishers, 100-byte data), at a fixed delivery rate. Every room's members
# and publishers are spread evenly over the two nodes (the generator's
# --addr A,B), so half of every room's deliveries come from a publish made on
# the other node. Every server-side process (both nodes and Redis) is pinned
# to the server cores, the generator to the others, as in run-matrix.sh.
#
# Each side gets a fresh redis-server (bench/peers/redis.conf: no
# persistence) on loopback, started before its nodes and stopped after them.
# Figures per run: deliveries/s, latency, the nodes' CPU summed per delivery,
# and Redis's CPU (/proc/PID/stat utime + stime over the measured window) per
# published message; Redis's INFO commandstats is kept beside each record.
#
# Environment:
#   RATE        deliveries/s offered (default 20000; see bench/README.md for why not 50k)
#   DURATION    measured seconds per run (default 20: Redis's CPU is read in
#               10 ms clock ticks, and 4,000 messages at 20k deliveries/s
#               put one tick at 2.5 µs per message)
#   SIDES       sides in the order of the first round; later rounds rotate it
#               (default "rc-cluster sio-cluster rc-single sio-single")
#   CLUSTER_DIR where records, logs and the table go (default: a temp dir)
#   RINGCAST_BIN, BENCH_BIN   binaries (default: target/release/ of this checkout)
#   SERVER_FLAGS  extra ringcast serve flags for both ringcast sides
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
ROUNDS=${1:-3}
RATE=${RATE:-20000}
DURATION=${DURATION:-20}
SIDES=${SIDES:-rc-cluster sio-cluster rc-single sio-single}
CLUSTER_DIR=${CLUSTER_DIR:-$(mktemp -d)}
export LOG_DIR=$CLUSTER_DIR/logs
mkdir -p "$LOG_DIR"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
BENCH_BIN=${BENCH_BIN:-$TARGET_DIR/release/ringcast-bench}
RINGCAST_BIN=${RINGCAST_BIN:-$TARGET_DIR/release/ringcast}
[[ -x $BENCH_BIN ]] || (cd "$REPO_DIR" && cargo build --release -q -p ringcast-bench)
[[ -x $RINGCAST_BIN ]] || (cd "$REPO_DIR" && cargo build --release -q --bin ringcast)
command -v redis-server >/dev/null || { echo "redis-server is needed (Debian: redis-server)" >&2; exit 1; }
if [[ ! -d $BENCH_DIR/peers/node_modules/@socket.io/redis-adapter ]]; then
  echo "installing node peers (npm)"
  (cd "$BENCH_DIR/peers" && npm ci --no-audit --no-fund --loglevel=error)
fi
((ROUNDS >= 1 && ROUNDS <= 20)) || { echo "ROUNDS must be 1..20" >&2; exit 2; }

NCPU=$(nproc)
HALF=$(((NCPU + 1) / 2))
SERVER_CORES=0-$((HALF - 1))
GEN_CORES=$(seq -s, "$HALF" $((NCPU - 1)))
((NCPU < 2)) && GEN_CORES=0
((NCPU == 2)) && SERVER_CORES=0

GEN_ARGS=(--connections 10000 --rooms 100 --publishers 1000 --size 100
  --delivery-rate "$RATE" --warmup 3 --duration "$DURATION" --drain 10
  --connect-timeout 60 --cores "$GEN_CORES" --server-cores "$SERVER_CORES" --shards 1)

# shellcheck source=peers/servers.sh
source "$BENCH_DIR/peers/servers.sh"

PIDS=() # every process this script started and has not stopped yet

# Stops what this script started, newest first (the nodes before their
# Redis, so they do not log a lost connection), each within 5 s.
stop_all() {
  local k p i
  for ((k = ${#PIDS[@]} - 1; k >= 0; k--)); do
    p=${PIDS[$k]}
    kill "$p" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
  sleep 0.5
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# N consecutive ports from BASE on that nothing but TIME_WAIT holds.
free_run() {
  local n=$1 base=$((PORT_BASE + 100)) i k ok
  for i in $(seq 1 50); do
    ok=1
    for k in $(seq 0 $((n - 1))); do
      port_free $((base + k)) || { ok=0; break; }
    done
    ((ok)) && { echo "$base"; return 0; }
    base=$((base + n + 3))
  done
  echo "no $n free ports from $((PORT_BASE + 100))" >&2
  return 1
}

# wait_listening PORT PID: like servers.sh's wait_port, for a process of ours.
wait_listening() {
  local port=$1 pid=$2 i
  for i in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "pid $pid exited before listening on $port" >&2; return 1; }
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$port after 30 s" >&2
  return 1
}

start_redis() { # start_redis PORT LOG: sets REDIS_PID
  taskset -c "$SERVER_CORES" redis-server "$BENCH_DIR/peers/redis.conf" --port "$1" \
    --save '' --appendonly no --maxclients 1000 >"$2" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_listening "$1" "$REDIS_PID"
}

# Both nodes' Redis connections are up: 4 clients (2 per node) besides redis-cli.
wait_redis_clients() {
  local port=$1 want=$2 i n
  for i in $(seq 1 100); do
    n=$(redis-cli -p "$port" info clients | sed -n 's/^connected_clients:\([0-9]*\).*/\1/p')
    ((${n:-0} - 1 >= want)) && return 0
    sleep 0.1
  done
  echo "only $((${n:-1} - 1)) of $want node connections reached Redis" >&2
  return 1
}

start_ringcast() { # start_ringcast WS_PORT NAME LOG [cluster flags...]: appends to NODE_PIDS
  local port=$1 name=$2 log=$3
  shift 3
  # shellcheck disable=SC2086
  taskset -c "$SERVER_CORES" "$RINGCAST_BIN" serve --shards 1 \
    --ws "127.0.0.1:$port" --resp "127.0.0.1:$((port + 1))" --admin "127.0.0.1:$((port + 2))" \
    "$@" ${SERVER_FLAGS:-} >"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  NODE_PIDS+=("$pid")
  wait_listening "$port" "$pid"
}

start_sio() { # start_sio PORT LOG [REDIS_URL]: appends to NODE_PIDS
  PORT=$1 REDIS_URL=${3:-} taskset -c "$SERVER_CORES" node "$BENCH_DIR/peers/socketio-server.js" >"$2" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  NODE_PIDS+=("$pid")
  wait_listening "$1" "$pid"
}

# One run of one side; the record goes to $CLUSTER_DIR/cluster-SIDE-ROUND.json.
run_side() {
  local side=$1 r=$2 base target addrs redis_args=() rport
  local out=$CLUSTER_DIR/cluster-$side-$r.json log=$LOG_DIR/$side-$r
  NODE_PIDS=()
  REDIS_PID=
  base=$(free_run 8) || return 1
  rport=$base
  case $side in
    rc-cluster)
      target=ringcast-ws
      start_redis "$rport" "$log-redis.log" || return 1
      local url=redis://127.0.0.1:$rport
      start_ringcast $((base + 1)) a "$log-a.log" --cluster-redis "$url" --cluster-node-name a || return 1
      start_ringcast $((base + 4)) b "$log-b.log" --cluster-redis "$url" --cluster-node-name b || return 1
      wait_redis_clients "$rport" 4 || return 1
      addrs=127.0.0.1:$((base + 1)),127.0.0.1:$((base + 4))
      ;;
    sio-cluster)
      target=socketio
      start_redis "$rport" "$log-redis.log" || return 1
      local url=redis://127.0.0.1:$rport
      start_sio $((base + 1)) "$log-a.log" "$url" || return 1
      start_sio $((base + 4)) "$log-b.log" "$url" || return 1
      wait_redis_clients "$rport" 4 || return 1
      addrs=127.0.0.1:$((base + 1)),127.0.0.1:$((base + 4))
      ;;
    rc-single)
      target=ringcast-ws
      start_ringcast $((base + 1)) a "$log-a.log" || return 1
      addrs=127.0.0.1:$((base + 1))
      ;;
    sio-single)
      target=socketio
      start_sio $((base + 1)) "$log-a.log" || return 1
      addrs=127.0.0.1:$((base + 1))
      ;;
    *)
      echo "unknown side $side" >&2
      return 1
      ;;
  esac
  [[ -n $REDIS_PID ]] && redis_args=(--redis-pid "$REDIS_PID" --redis-addr "127.0.0.1:$rport")
  rm -f "$out"
  local pids
  pids=$(IFS=,; echo "${NODE_PIDS[*]}")
  local rc=0
  "$BENCH_BIN" run --target "$target" --addr "$addrs" --scenario cluster \
    --server-pid "$pids" "${redis_args[@]}" "${GEN_ARGS[@]}" --out "$out" --quiet \
    >"$log-gen.txt" 2>&1 || rc=$?
  if [[ $target == ringcast-ws ]]; then
    # The nodes' own counters (Redis errors, reconnects, gap fills, lost
    # messages) from their admin ports, before they stop.
    curl -s --max-time 2 "http://127.0.0.1:$((base + 3))/stats" >"$log-a-stats.json" 2>/dev/null || true
    [[ $side == rc-cluster ]] &&
      { curl -s --max-time 2 "http://127.0.0.1:$((base + 6))/stats" >"$log-b-stats.json" 2>/dev/null || true; }
  fi
  if [[ -n $REDIS_PID ]]; then
    redis-cli -p "$rport" info commandstats >"$log-commandstats.txt" 2>&1 || true
    redis-cli -p "$rport" info stats >"$log-stats.txt" 2>&1 || true
  fi
  stop_all
  ((rc == 0)) || { echo "$side round $r: generator failed (rc $rc), see $log-gen.txt" >&2; tail -5 "$log-gen.txt" >&2; }
  return 0
}

SIDE_LIST=($SIDES)
N=${#SIDE_LIST[@]}
echo "cluster: $ROUNDS round(s) of ${SIDE_LIST[*]} at $RATE deliveries/s, ${DURATION}s windows;" \
  "server side on cores $SERVER_CORES, generator on $GEN_CORES; records in $CLUSTER_DIR"
for r in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((N - 1))); do
    side=${SIDE_LIST[$(((k + r - 1) % N))]}
    run_side "$side" "$r" || { echo "$side round $r: did not start" >&2; stop_all; }
    out=$CLUSTER_DIR/cluster-$side-$r.json
    [[ -e $out ]] || continue
    python3 - "$out" "$side" "$r" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<12} round {sys.argv[3]}: {r['deliveries_per_s']:.0f} del/s, p50 {r['p50_ms']:.2f} ms,"
      f" p99 {r['p99_ms']:.2f} ms, server {r['server_cpu_us_per_delivery']:.2f} us/del,"
      f" redis {r.get('redis_cpu_us_per_publish', 0):.1f} us/msg (schedstat {r.get('redis_sched_us_per_publish', 0):.1f}), lost {r['lost']} dup {r['duplicated']}"
      f" reord {r['reordered']} seq {r['seq_anomalies']}, other cpu {r['host_other_cpu_share']*100:.0f}%,"
      f" steal {r['steal_pct']:.1f}%", flush=True)
EOF
  done
done

python3 - "$CLUSTER_DIR" "$RATE" "$LOG_DIR" "${SIDE_LIST[@]}" <<'EOF' | tee "$CLUSTER_DIR/table.md"
import glob, json, re, statistics, sys
d, rate, logs, sides = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
names = {"rc-cluster": "ringcast cluster (2 nodes)", "sio-cluster": "socket.io + redis-adapter (2 nodes)",
         "rc-single": "ringcast, single node", "sio-single": "socket.io, single process"}
def med(v):
    return statistics.median(v) if v else float("nan")
print(f"{rate:.0f} deliveries/s offered; medians of the rounds (each round's value in brackets).\n")
print("| | rounds | deliveries/s | p50 ms | p99 ms | server CPU µs/delivery | Redis CPU µs/message | same, schedstat | lost / dup / reordered / seq |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
cmds = {}
for side in sides:
    files = sorted(glob.glob(f"{d}/cluster-{side}-*.json"), key=lambda f: int(re.findall(r"-(\d+)\.json$", f)[0]))
    recs = [json.load(open(f)) for f in files]
    if not recs:
        continue
    g = lambda k: [r.get(k, 0) for r in recs]
    each = lambda k, fmt: " / ".join(fmt.format(v) for v in g(k))
    redis = sched = "–"
    if any(r.get("redis_pid") for r in recs):
        redis = f"{med(g('redis_cpu_us_per_publish')):.1f} ({each('redis_cpu_us_per_publish', '{:.1f}')})"
        sched = f"{med(g('redis_sched_us_per_publish')):.1f} ({each('redis_sched_us_per_publish', '{:.1f}')})"
    bad = " / ".join(str(sum(g(k))) for k in ["lost", "duplicated", "reordered", "seq_anomalies"])
    print(f"| {names.get(side, side)} | {len(recs)} | {med(g('deliveries_per_s')):,.0f} | {med(g('p50_ms')):.2f} |"
          f" {med(g('p99_ms')):.2f} ({each('p99_ms', '{:.1f}')}) |"
          f" {med(g('server_cpu_us_per_delivery')):.2f} ({each('server_cpu_us_per_delivery', '{:.2f}')}) | {redis} | {sched} | {bad} |")
    # Redis commands in the measured window per published message (the
    # commands inside a Lua script count under their own names too).
    for r in recs:
        for c in r.get("redis_commands", []):
            cmds.setdefault(side, {}).setdefault(c["command"], []).append(
                (c["calls_per_publish"], c["usec_per_publish"]))
recs = [json.load(open(f)) for f in glob.glob(f"{d}/cluster-*.json")]
other = max((r.get("host_other_cpu_share", 0) for r in recs), default=0)
steal = max((r.get("steal_pct", 0) for r in recs), default=0)
print(f"\nOther processes on the host: up to {other * 100:.0f}% of a core in a measured window; steal up to {steal:.1f}%.")
counters = ["redis_errors", "redis_reconnects", "cluster_gap_fills", "cluster_position_fills",
            "cluster_epoch_changes", "cluster_messages_lost", "cluster_frames_dropped"]
for f in sorted(glob.glob(f"{logs}/rc-cluster-*-stats.json")):
    try:
        shards = json.load(open(f)).get("shards", [])
    except (OSError, ValueError):
        continue
    for k in counters:
        cmds.setdefault("counters", {}).setdefault(k, 0)
        cmds["counters"][k] += sum(int(s.get(k, 0) or 0) for s in shards)
c = cmds.pop("counters", None)
if c is not None:
    print("\nringcast cluster nodes' counters, summed over every node and round: "
          + ", ".join(f"{k} {v}" for k, v in c.items()))
for side, c in cmds.items():
    top = sorted(c.items(), key=lambda kv: -med([x[1] for x in kv[1]]))
    print(f"\nRedis commands per published message in the window, {names.get(side, side)} (medians; calls / Redis's own µs): "
          + ", ".join(f"{k} {med([x[0] for x in v]):.2f} calls / {med([x[1] for x in v]):.1f} µs"
                      for k, v in top if med([x[0] for x in v]) >= 0.01))
EOF
