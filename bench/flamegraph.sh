#!/usr/bin/env bash
# Profiles a server under a benchmark scenario and renders a flamegraph.
#
#   bench/flamegraph.sh [SCENARIO] [TARGET]
#
# SCENARIO: fanout-50k (default), fanout, broadcast, seed-3000, or
#           resp-publish (redis-benchmark PUBLISH -c 50 -P 16 with one
#           redis-cli subscriber; TARGET ringcast-resp or redis).
# CALLGRAPH: perf's call graphs, `fp` (default: frame pointers, cheap, but
#           Rust frames without them show as [unknown]) or `dwarf` (whole
#           stacks through ringcast's own code; larger recordings).
# TARGET:   ringcast-ws (default; ringcast-ws:2 for two shards) or any other
#           matrix target, e.g. ceiling or uws (JIT frames of Node peers show
#           as unresolved addresses).
# Needs perf (Debian `linux-perf`) and inferno (`cargo install inferno`);
# installs them when missing. Writes docs/img/flamegraph-SCENARIO-TARGET.svg.
# SKIP_BUILD=1 uses the binaries already built.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
cd "$REPO_DIR"

SCENARIO=${1:-fanout-50k}
T=${2:-ringcast-ws}
TARGET=${T%%:*}
SHARDS=1
[[ $T == *:* ]] && SHARDS=${T#*:}
FREQ=${PERF_FREQ:-999}

case $SCENARIO in
  fanout-50k) ARGS="--connections 10000 --rooms 100 --publishers 1000 --delivery-rate 50000" ;;
  fanout) ARGS="--connections 10000 --rooms 100 --publishers 1000 --delivery-rate 70000" ;;
  broadcast) ARGS="--connections 5000 --rooms 1 --publishers 10 --delivery-rate 50000" ;;
  seed-3000) ARGS="--connections 3000 --rooms 100 --publishers 3000 --rate 3000" ;;
  resp-publish)
    [[ $TARGET == ringcast-resp || $TARGET == redis ]] || { echo "resp-publish needs TARGET ringcast-resp or redis" >&2; exit 2; }
    ARGS=
    ;;
  *)
    echo "unknown scenario $SCENARIO" >&2
    exit 2
    ;;
esac

command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
if ! command -v inferno-flamegraph >/dev/null; then
  cargo install inferno --locked
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
export BENCH_BIN=$TARGET_DIR/release/ringcast-bench
export RINGCAST_BIN=${RINGCAST_BIN:-$TARGET_DIR/release/ringcast}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release -p ringcast-bench
  if [[ $TARGET == ringcast-* ]]; then
    cargo build --release --bin ringcast
  fi
fi

WORK=$(mktemp -d)
export LOG_DIR=$WORK
# shellcheck source=peers/servers.sh
source "$BENCH_DIR/peers/servers.sh"
trap 'stop_target; rm -rf "$WORK"' EXIT

NCPU=$(nproc)
SERVER_CORES=0
GEN_CORES=$((NCPU - 1))
((SHARDS > 1)) && SERVER_CORES=0-$((NCPU - 1))
start_target "$TARGET" "$SHARDS" "$SERVER_CORES"

WARMUP=3
DURATION=10
case ${CALLGRAPH:-fp} in
  fp) GRAPH=(-g) ;;
  dwarf) GRAPH=(--call-graph dwarf,16384) ;;
  *) echo "CALLGRAPH is fp or dwarf" >&2; exit 2 ;;
esac
if [[ $SCENARIO == resp-publish ]]; then
  port=${SERVER_ADDR##*:}
  taskset -c "$GEN_CORES" redis-cli -p "$port" subscribe bench >/dev/null &
  SUB=$!
  # Bounded: 100M requests is far more than the recorded seconds need; it is
  # stopped right after the recording.
  taskset -c "$GEN_CORES" redis-benchmark -p "$port" -c 50 -P 16 -n 100000000 -q PUBLISH bench hello >/dev/null 2>&1 &
  GEN=$!
  sleep 2
  perf record -F "$FREQ" "${GRAPH[@]}" -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep 5 2>"$WORK/perf.log"
  kill "$GEN" "$SUB" 2>/dev/null || true
  wait "$GEN" "$SUB" 2>/dev/null || true
else
  # shellcheck disable=SC2086
  "$BENCH_BIN" run --target "$TARGET" --addr "$SERVER_ADDR" --scenario "$SCENARIO" --server-pid "$SERVER_PID" \
    --cores "$GEN_CORES" --size 100 $ARGS --warmup "$WARMUP" --duration "$DURATION" --drain 10 --quiet &
  GEN=$!
  # Record only the measured window: connects and warm-up are not what we profile.
  # Wait until every connection is up (the server's socket count stops growing).
  prev=-1
  for _ in $(seq 1 120); do
    n=$(ls /proc/"$SERVER_PID"/fd 2>/dev/null | wc -l)
    ((n == prev)) && break
    prev=$n
    sleep 1
  done
  sleep "$WARMUP"
  perf record -F "$FREQ" "${GRAPH[@]}" -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$((DURATION - 2))" 2>"$WORK/perf.log"
  wait "$GEN"
fi

OUT_DIR=$REPO_DIR/docs/img
mkdir -p "$OUT_DIR"
SVG=$OUT_DIR/flamegraph-$SCENARIO-${T/:/x}.svg
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/folded"
inferno-flamegraph --title "$T under $SCENARIO" <"$WORK/folded" >"$SVG"
echo "top functions (self samples):"
awk '{n=$NF; $NF=""; k=split($0,f,";"); s[f[k]]+=n; t+=n} END {for (x in s) printf "%6.2f%% %s\n", 100*s[x]/t, x}' "$WORK/folded" | sort -rn | head -15
echo "flamegraph: $SVG"
