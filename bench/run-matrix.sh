#!/usr/bin/env bash
# Runs the benchmark matrix: every scenario against every target, one after
# the other on this machine, then writes bench/results/latest.json,
# docs/benchmarks.md and docs/img/*.svg.
#
#   bench/run-matrix.sh [--quick]
#
# --quick runs a reduced fan-out find-max against every target (under 3
# minutes on 2 cores). Environment: TARGETS (space-separated, ringcast as
# ringcast-ws:SHARDS), SCENARIOS, SKIP_INSTALL=1, SKIP_BUILD=1, REPEAT=N
# (run every target x scenario N times, interleaved; the report keeps each
# one's median run), RUNS_DIR (add to an earlier run's records instead of
# starting a new directory, e.g. to repeat a few scenarios).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
cd "$REPO_DIR"

QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
export BENCH_BIN=$TARGET_DIR/release/ringcast-bench
export RINGCAST_BIN=${RINGCAST_BIN:-$TARGET_DIR/release/ringcast}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUNS=${RUNS_DIR:-$BENCH_DIR/results/runs/$STAMP}
REPEAT=${REPEAT:-1}
export LOG_DIR=$RUNS/logs
mkdir -p "$LOG_DIR"

# --- install what is missing -------------------------------------------------
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  missing=()
  command -v node >/dev/null || missing+=(nodejs npm)
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v taskset >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [[ ! -d $BENCH_DIR/peers/node_modules/@trufflesuite/uws-js-unofficial ]]; then
    echo "installing node peers (npm)"
    (cd "$BENCH_DIR/peers" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# --- build -------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release -p ringcast-bench
  if ! cargo build --release --bin ringcast; then
    echo "warning: ringcast does not build; its targets will be skipped" >&2
  fi
fi

# --- cores: the server gets the first half, the generator the rest ----------
NCPU=$(nproc)
HALF=$(((NCPU + 1) / 2))
SERVER_CORES=0-$((HALF - 1))
GEN_CORES=$(seq -s, "$HALF" $((NCPU - 1)))
if ((NCPU < 2)); then
  GEN_CORES=0
  echo "warning: one CPU: server and generator share it" >&2
fi
[[ $NCPU -eq 2 ]] && SERVER_CORES=0

# shellcheck source=peers/servers.sh
source "$BENCH_DIR/peers/servers.sh"
trap stop_target EXIT

# --- scenarios -----------------------------------------------------------------
# name[@only these targets]|generator arguments (every loop is bounded: steps,
# durations, drains). cross-shard compares a room's members spread over both
# shards (as connections land) with all of them on the room's home shard.
if ((QUICK)); then
  DEFAULT_TARGETS="ceiling ringcast-ws:1 ringcast-ws:2 ringcast-resp:1 uws ws socketio nats redis"
  SCEN=(
    "fanout|--connections 5000 --rooms 50 --publishers 500 --size 100 --delivery-rate 20000 --find-max --factor 1.6 --max-steps 3 --refine 0 --warmup 1 --duration 2 --drain 3 --connect-rate 0"
  )
else
  DEFAULT_TARGETS="ceiling ringcast-ws:1 ringcast-ws:2 ringcast-resp:1 uws ws socketio nats redis"
  SCEN=(
    "seed-3000|--connections 3000 --rooms 100 --publishers 3000 --rate 3000 --size 100 --warmup 3 --duration 10 --drain 10"
    "seed-3000-paused@ceiling ringcast-ws:1 uws|--connections 3000 --rooms 100 --publishers 3000 --rate 3000 --size 100 --warmup 3 --duration 10 --drain 10 --pause-ms 15 --pause-every-ms 500"
    "fanout|--connections 10000 --rooms 100 --publishers 1000 --size 100 --delivery-rate 20000 --find-max --factor 1.25 --max-steps 10 --refine 2 --warmup 2 --duration 5 --drain 5"
    "fanout-50k|--connections 10000 --rooms 100 --publishers 1000 --size 100 --delivery-rate 50000 --warmup 3 --duration 10 --drain 10"
    "overload@ceiling ringcast-ws:1 ringcast-ws:2 ringcast-resp:1 uws nats redis|--connections 10000 --rooms 100 --publishers 1000 --size 100 --delivery-rate 3000000 --overload --warmup 1 --duration 8 --drain 30"
    "broadcast|--connections 5000 --rooms 1 --publishers 10 --size 100 --delivery-rate 10000 --find-max --p99-ms 250 --factor 1.25 --max-steps 10 --warmup 2 --duration 5 --drain 5"
    "idle|--connections 18000 --rooms 0 --idle --duration 3 --sources 2 --connect-rate 10000"
    "storm|--connections 10000 --rooms 0 --idle --duration 1 --connect-rate 0 --max-connecting 2000"
    "join-storm|--connections 5000 --rooms 1 --publishers 10 --size 100 --delivery-rate 5000 --warmup 1 --duration 2 --drain 5 --connect-rate 0 --max-connecting 2000"
    "cross-shard@ringcast-ws:1 ringcast-ws:2|--connections 5000 --rooms 50 --publishers 500 --size 100 --delivery-rate 20000 --warmup 2 --duration 8 --drain 5"
    "cross-shard-local@ringcast-ws:2|--connections 6000 --rooms 50 --local-members 100 --shard-local --publishers 500 --size 100 --delivery-rate 20000 --warmup 2 --duration 8 --drain 5"
  )
fi
TARGETS=${TARGETS:-$DEFAULT_TARGETS}
SCENARIOS=${SCENARIOS:-}

echo "matrix $STAMP: $NCPU cores, server on $SERVER_CORES, generator on $GEN_CORES, kernel $(uname -r), $REPEAT repeat(s)"
failed=0
for rep in $(seq 1 "$REPEAT"); do
for entry in "${SCEN[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  only=
  if [[ $name == *@* ]]; then
    only=${name#*@}
    name=${name%%@*}
  fi
  if [[ -n $SCENARIOS && " $SCENARIOS " != *" $name "* ]]; then
    continue
  fi
  for t in $TARGETS; do
    if [[ -n $only && " $only " != *" $t "* ]]; then
      continue
    fi
    target=${t%%:*}
    shards=1
    [[ $t == *:* ]] && shards=${t#*:}
    cores=$SERVER_CORES
    shard_args=()
    if [[ $target == ringcast-* ]]; then
      if [[ ! -x $RINGCAST_BIN ]]; then
        echo "skip $name/$t: no ringcast binary"
        continue
      fi
      shard_args=(--shards "$shards")
      # Two shards on a 2-core host share the cores with the generator.
      ((shards > 1)) && cores=0-$((NCPU - 1))
    fi
    out=$RUNS/$name-$target-$shards.json
    k=1
    while [[ -e $out ]]; do
      k=$((k + 1))
      out=$RUNS/$name-$target-$shards-r$k.json
    done
    echo "--- $name / $t (run $rep of $REPEAT)"
    if ! start_target "$target" "$shards" "$cores"; then
      echo "skip $name/$t: server did not start" >&2
      failed=$((failed + 1))
      continue
    fi
    # shellcheck disable=SC2086
    if ! "$BENCH_BIN" run --target "$target" --addr "$SERVER_ADDR" --scenario "$name" \
      --server-pid "$SERVER_PID" --server-cores "$cores" --cores "$GEN_CORES" \
      "${shard_args[@]}" $args --out "$out" --quiet; then
      echo "run $name/$t failed" >&2
      failed=$((failed + 1))
    fi
    stop_target
  done
done
done

# resp-publish: redis-benchmark PUBLISH against one ringcast shard,
# redis-server and the RESP ceiling (bench/resp-publish.sh; server CPU per
# request, 3 rounds).
if ((!QUICK)) && [[ -z $SCENARIOS || " $SCENARIOS " == *" resp-publish "* ]]; then
  if command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null; then
    echo "--- resp-publish / ringcast-resp:1 vs redis and the ceiling"
    if ! BIN=$RINGCAST_BIN N=1000000 MD=$RUNS/resp-publish.md \
      bash "$BENCH_DIR/resp-publish.sh" 3 ringcast redis ceiling >"$RUNS/resp-publish.txt" 2>&1; then
      echo "run resp-publish failed (see $RUNS/resp-publish.txt)" >&2
      failed=$((failed + 1))
    fi
  else
    echo "skip resp-publish: needs redis-benchmark and redis-server (Debian redis-tools, redis-server)"
  fi
fi

"$BENCH_BIN" report "$RUNS" --out-dir "$BENCH_DIR/results"
echo "records in $RUNS; $failed run(s) failed"

# Publish: docs/benchmarks.md is the method page (bench/benchmarks-intro.md)
# followed by this run's tables; the charts go to docs/img/.
mkdir -p "$REPO_DIR/docs/img"
cp "$BENCH_DIR"/results/img/*.svg "$REPO_DIR/docs/img/"
{
  cat "$BENCH_DIR/benchmarks-intro.md"
  echo
  echo "## Latest run"
  echo
  sed -e '1d' -e 's/^## /### /' "$BENCH_DIR/results/benchmarks.md"
  if [[ -s $RUNS/resp-publish.md ]]; then
    echo
    echo "### resp-publish"
    echo
    cat "$RUNS/resp-publish.md"
  fi
} >"$REPO_DIR/docs/benchmarks.md"
echo "wrote docs/benchmarks.md and docs/img/"
