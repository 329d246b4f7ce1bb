#!/usr/bin/env bash
# A/B: one scenario against two (or more) ringcast servers, alternating the
# sides in the same run so all of them see the same machine, then the median
# of each side.
#
#   bench/ab.sh A_BIN B_BIN SCENARIO [ROUNDS] [-- extra ringcast-bench run args]
#
# SCENARIO is fanout-50k, idle, storm, seed-3000, cross-shard, join-storm or
# resp-idle (the shapes of run-matrix.sh). Rounds default to 3. Prints one
# line per run and the medians of the scenario's headline figures; records
# go to $AB_DIR (default: a temp dir).
#
# Environment:
#   SHARDS               shard count (default 1)
#   SERVER_FLAGS         extra server flags for every side, e.g. "--history 0"
#   SIDES                the sides, in the order each round runs them
#                        (default "A B"; e.g. "A B C" for a third)
#   X_BIN                side X's server binary (A and B default to the
#                        arguments; the others to A_BIN)
#   X_SERVER_FLAGS       extra server flags for side X only
#   X_ARGS               extra ringcast-bench run args for side X only
#   X_LABEL              side X's name in the output (default X)
#
# Example: the same binary without tokens, with HS256 and with ES256 tokens
# (the generator makes every token before its first connect):
#
#   K=$PWD/tests/keys S=bench-secret-0123456789abcdef0123456789 \
#   SIDES="A B C" A_LABEL=none A_ARGS=--await-welcome \
#   B_LABEL=hs256 B_SERVER_FLAGS="--auth-mode jwt --auth-hmac-secret $S" \
#   B_ARGS="--token-hs256-secret $S" \
#   C_LABEL=es256 C_SERVER_FLAGS="--auth-mode jwt --auth-public-key-file $K/ec_pub.pem --auth-algorithms ES256" \
#   C_ARGS="--token-es256-key $K/ec.pem" \
#   bench/ab.sh target/release/ringcast target/release/ringcast storm 3
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
A=$1 B=$2 SCEN=$3 ROUNDS=${4:-3}
shift $(($# < 4 ? $# : 4))
[[ ${1:-} == -- ]] && shift
EXTRA=("$@")
SHARDS=${SHARDS:-1}
SIDES=${SIDES:-A B}
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
  storm) args="--connections 10000 --rooms 0 --idle --duration 1 --connect-rate 0 --max-connecting 2000" ;;
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

side_var() { # side_var SIDE NAME DEFAULT: the value of ${SIDE}_${NAME}
  local v="${1}_$2"
  printf '%s' "${!v:-$3}"
}

for r in $(seq 1 "$ROUNDS"); do
  for side in $SIDES; do
    case $side in
      A) bin=$(side_var A BIN "$A") ;;
      B) bin=$(side_var B BIN "$B") ;;
      *) bin=$(side_var "$side" BIN "$A") ;;
    esac
    flags="${SERVER_FLAGS:-} $(side_var "$side" SERVER_FLAGS "")"
    read -r -a side_args <<<"$(side_var "$side" ARGS "")"
    label=$(side_var "$side" LABEL "$side")
    RINGCAST_BIN=$bin
    out=$AB_DIR/$SCEN-$side-$r.json
    if [[ -n ${flags// /} ]]; then
      RINGCAST_BIN_WRAP=$AB_DIR/wrap-$side.sh
      printf '#!/bin/sh\nexec %q "$@" %s\n' "$bin" "$flags" >"$RINGCAST_BIN_WRAP"
      chmod +x "$RINGCAST_BIN_WRAP"
      RINGCAST_BIN=$RINGCAST_BIN_WRAP
    fi
    start_target "$target" "$SHARDS" "$SERVER_CORES" || { echo "$label: server did not start" >&2; exit 1; }
    rm -f "$out"
    # shellcheck disable=SC2086
    "$BENCH_BIN" run --target "$target" --addr "$SERVER_ADDR" --scenario "$SCEN" \
      --server-pid "$SERVER_PID" --server-cores "$SERVER_CORES" --cores "$GEN_CORES" \
      --shards "$SHARDS" $args "${side_args[@]}" "${EXTRA[@]}" --out "$out" --quiet || echo "$label run $r failed" >&2
    stop_target
    [[ -e $out ]] || continue
    python3 - "$out" "$label" "$r" <<'EOF'
import json, sys
rec = json.load(open(sys.argv[1]))
flat = dict(rec, **{f"connect.{k}": v for k, v in rec.get("connect", {}).items()})
keys = ["server_cpu_us_per_delivery", "p50_ms", "p99_ms", "lost", "rss_per_conn_bytes", "steal_pct",
        "host_other_cpu_share", "deliveries_per_s", "connect.per_s", "connect.errors",
        "connect.server_cpu_us_per_connect", "connect.generator_cpu_us_per_connect"]
if rec.get("mode") == "idle":
    keys = [k for k in keys if k.startswith("connect.") or k == "rss_per_conn_bytes"]
print(sys.argv[2], sys.argv[3], " ".join(f"{k}={rec.get(k, flat.get(k))}" for k in keys if flat.get(k) is not None))
EOF
  done
done

labels=()
for side in $SIDES; do labels+=("$side=$(side_var "$side" LABEL "$side")"); done
python3 - "$AB_DIR" "$SCEN" "${labels[@]}" <<'EOF'
import glob, json, statistics, sys
d, scen = sys.argv[1], sys.argv[2]
keys = ["server_cpu_us_per_delivery", "p50_ms", "p99_ms", "rss_per_conn_bytes", "lost", "steal_pct",
        "host_other_cpu_share", "connect.per_s", "connect.errors", "connect.p99_ms",
        "connect.server_cpu_us_per_connect", "connect.generator_cpu_us_per_connect"]
for pair in sys.argv[3:]:
    side, label = pair.split("=", 1)
    recs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/{scen}-{side}-*.json"))]
    out = []
    for k in keys:
        if k.startswith("connect."):
            vals = [r.get("connect", {}).get(k[8:]) for r in recs]
        elif recs and recs[0].get("mode") == "idle" and k != "rss_per_conn_bytes":
            continue
        else:
            vals = [r.get(k) for r in recs]
        vals = [v for v in vals if isinstance(v, (int, float))]
        if vals:
            out.append(f"{k}={statistics.median(vals):.4g}")
    print(f"median {label} ({len(recs)} runs):", " ".join(out))
EOF
