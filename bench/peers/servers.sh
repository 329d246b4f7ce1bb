# Start and stop the benchmark targets on loopback. Sourced by
# bench/run-matrix.sh and bench/flamegraph.sh; not meant to run on its own.
#
#   start_target TARGET SHARDS CORES   starts TARGET pinned to CORES (a taskset list),
#                                       sets SERVER_PID and SERVER_ADDR
#   stop_target                         stops it and waits
#
# Every server binds 127.0.0.1 only. Logs go to $LOG_DIR (default: a temp dir).

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO_DIR=${REPO_DIR:-$(cd "$BENCH_DIR/.." && pwd)}
LOG_DIR=${LOG_DIR:-$(mktemp -d)}
BENCH_BIN=${BENCH_BIN:-$REPO_DIR/target/release/ringcast-bench}
RINGCAST_BIN=${RINGCAST_BIN:-$REPO_DIR/target/release/ringcast}
# Servers listen below the ephemeral port range: a client socket of the
# generator can then never hold their ports (its TIME_WAIT sockets would block
# a listener's bind, SO_REUSEADDR or not, as they do not set it themselves).
EPHEMERAL_LO=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((EPHEMERAL_LO > 2024)) || EPHEMERAL_LO=20100
PORT_BASE=${PORT_BASE:-$((EPHEMERAL_LO - 1000))}

SERVER_PID=
SERVER_ADDR=

wait_port() {
  local port=$1 i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if [[ -n $SERVER_PID ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited before listening on $port" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$port after 30 s" >&2
  return 1
}

# Free to listen on: no socket but a TIME_WAIT one has it as its local
# port. A server's own TIME_WAIT sockets do not stop a bind with SO_REUSEADDR
# (every server here sets it), and after the idle and overload runs
# thousands of them sit on the ports below; a live socket does stop it.
port_free() {
  ! ss -Htan exclude time-wait "( sport = :$1 )" 2>/dev/null | grep -q .
}

# A base port with base..base+2 free (other software on the host may hold ports).
free_base() {
  local base=$PORT_BASE i
  for i in $(seq 1 50); do
    if port_free "$base" && port_free $((base + 1)) && port_free $((base + 2)); then
      echo "$base"
      return 0
    fi
    base=$((base + 10))
  done
  echo "no free ports from $PORT_BASE" >&2
  return 1
}

start_target() {
  local target=$1 shards=${2:-1} cores=${3:-0}
  local port log="$LOG_DIR/$target-$shards.log"
  port=$(free_base) || return 1
  SERVER_PID=
  case $target in
    ceiling)
      taskset -c "$cores" "$BENCH_BIN" ceiling --listen "127.0.0.1:$port" >"$log" 2>&1 &
      ;;
    ringcast-ws | ringcast-resp)
      # No per-connection publish rate (the peers have none): overload
      # publishes 30 a second on each publisher, past the default 20.
      taskset -c "$cores" "$RINGCAST_BIN" serve --shards "$shards" --limits-publish-rate 0 \
        --ws "127.0.0.1:$port" --resp "127.0.0.1:$((port + 1))" --admin "127.0.0.1:$((port + 2))" >"$log" 2>&1 &
      [[ $target == ringcast-resp ]] && port=$((port + 1))
      ;;
    uws)
      PORT=$port taskset -c "$cores" node "$BENCH_DIR/peers/uws-server.js" >"$log" 2>&1 &
      ;;
    ws)
      PORT=$port taskset -c "$cores" node "$BENCH_DIR/peers/ws-server.js" >"$log" 2>&1 &
      ;;
    socketio)
      PORT=$port taskset -c "$cores" node "$BENCH_DIR/peers/socketio-server.js" >"$log" 2>&1 &
      ;;
    nats)
      sed -e "s/127.0.0.1:4222/127.0.0.1:$((port + 1))/" -e "s/127.0.0.1:9004/127.0.0.1:$port/" \
        "$BENCH_DIR/peers/nats.conf" >"$LOG_DIR/nats.conf"
      taskset -c "$cores" nats-server -c "$LOG_DIR/nats.conf" >"$log" 2>&1 &
      ;;
    redis)
      taskset -c "$cores" redis-server "$BENCH_DIR/peers/redis.conf" --port "$port" \
        --maxclients "$(($(ulimit -Hn) - 64))" >"$log" 2>&1 &
      ;;
    *)
      echo "unknown target $target" >&2
      return 1
      ;;
  esac
  SERVER_PID=$!
  SERVER_ADDR=127.0.0.1:$port
  if ! wait_port "$port"; then
    tail -n 20 "$log" >&2 || true
    stop_target
    return 1
  fi
}

stop_target() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  # Let TIME_WAIT sockets and the listener go before the next server binds.
  sleep 0.5
}
