#!/usr/bin/env bash
# A/B: one scenario against two ringcast binaries, alternating A and B in
# the same run so both see the same machine, then the median of each.
#
#   bench/ab.sh A_BIN B_BIN SCENARIO [ROUNDS] [-- extra ringcast-bench run args]
#
# SCENARIO is fanout-50k, idle, seed-3000, cross-shard, join-storm or
# resp-idle (the shapes of run-matrix.sh). Rounds default to 3. Prints one
# line per run and the medians of the scenario's headline figures; records
# go to $AB_DIR (default: a temp dir). Environment: SHARDS (default 1),
# SERVER_FLAGS (extra flags for both servers, e.g. "--history 0").
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
A=$1 B=$2 SCEN=$3 ROUNDS=${4:-3}
shift $(($# < 4 ? $# : 4))
[[ ${1:-} == -- ]] && shift
EXTRA=("$@")
SHARDS=${SHARDS:-1}
AB_DIR=${AB_DIR:-$(mktemp -d)}
export LOG_DIR=$AB_DIR/logs
mkdir -p "$LOG_DIR"
BENCH_BIN=${BENCH_BIN:-$REPO_DIR/target/release/ringcast-bench}
[[ -x $BENCH_BIN ]] || cargo build --release -q -p ringcast-bench

target=ringcast-ws
case $SCEN in
  fanout-50k) args="--connections 10000 --rooms 100 --publishers 1000 --size 100 --delivery-rate 50000 --warmup 3 --duration 10 --drain 10" ;;
  seed-3000) args="--connections 3000 --rooms 100 --publishers 3000 --rate 3000 --size 100 --warmup 3 --duration 10 --drain 10" ;;
  idle) args="--connections 18000 --rooms 0 --idle --duration 3 --sources 2 --connect-rate 10000" ;;
  resp-idle) target=ringcast-resp; args="--connections 18000 --rooms 0 --idle --duration 3 --sources 2 --connect-rate 10000" ;;
  join-storm) args="--connections 5000 --rooms 1 --publishers 10 --size 100 --delivery-rate 5000 --warmup 1 --duration 2 --drain 5 --connect-rate 0 --max-connecting 2000" ;;
  cross-shard) args="--connections 5000 --rooms 50 --publishers 500 --size 100 --delivery-rate 20000 --warmup 2 --duration 8 --drain 5" ;;
  *) echo "unknown scenario $SCEN" >&2; exit 2 ;;
esac

NCPU=$(nproc)
SERVER_CORES=0
GEN_CORES=$(seq -s, 1 $((NCPU - 1)))
((NCPU > 1)) || GEN_CORES=0
((SHARDS > 1)) && SERVER_CORES=0-$((NCPU - 1))

# shellcheck source=peers/servers.sh
source "$BENCH_DIR/peers/servers.sh"
trap stop_target EXIT

for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=$A
    [[ $side == B ]] && bin=$B
    RINGCAST_BIN=$bin
    out=$AB_DIR/$SCEN-$side-$r.json
    # shellcheck disable=SC2086
    if [[ -n ${SERVER_FLAGS:-} ]]; then
      RINGCAST_BIN_WRAP=$AB_DIR/wrap-$side.sh
      printf '#!/bin/sh\nexec %q "$@" %s\n' "$bin" "$SERVER_FLAGS" >"$RINGCAST_BIN_WRAP"
      chmod +x "$RINGCAST_BIN_WRAP"
      RINGCAST_BIN=$RINGCAST_BIN_WRAP
    fi
    start_target "$target" "$SHARDS" "$SERVER_CORES" || { echo "$side: server did not start" >&2; exit 1; }
    # shellcheck disable=SC2086
    "$BENCH_BIN" run --target "$target" --addr "$SERVER_ADDR" --scenario "$SCEN" \
      --server-pid "$SERVER_PID" --server-cores "$SERVER_CORES" --cores "$GEN_CORES" \
      --shards "$SHARDS" $args "${EXTRA[@]}" --out "$out" --quiet || echo "$side run $r failed" >&2
    stop_target
    python3 - "$out" "$side" "$r" <<'EOF'
import json, sys
rec = json.load(open(sys.argv[1]))
keys = ["server_cpu_us_per_delivery", "p50_ms", "p99_ms", "lost", "rss_per_conn_bytes", "steal_pct", "deliveries_per_s"]
print(sys.argv[2], sys.argv[3], " ".join(f"{k}={rec.get(k)}" for k in keys if rec.get(k) is not None))
EOF
  done
done

python3 - "$AB_DIR" "$SCEN" <<'EOF'
import glob, json, statistics, sys
d, scen = sys.argv[1], sys.argv[2]
keys = ["server_cpu_us_per_delivery", "p50_ms", "p99_ms", "rss_per_conn_bytes", "lost", "steal_pct"]
for side in "AB":
    recs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/{scen}-{side}-*.json"))]
    out = []
    for k in keys:
        vals = [r[k] for r in recs if isinstance(r.get(k), (int, float))]
        if vals:
            out.append(f"{k}={statistics.median(vals):.4g}")
    print(f"median {side} ({len(recs)} runs):", " ".join(out))
EOF
