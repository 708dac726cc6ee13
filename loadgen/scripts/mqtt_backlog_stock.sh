#!/usr/bin/env bash
# Offline backlog drained by stock mosquitto clients (issue #24), surepush's
# MQTT listener and mosquitto 2.x side by side in one run.
#
#   loadgen/scripts/mqtt_backlog_stock.sh [MESSAGES] [QOS]   # defaults 50000 1
#
# For each broker: a persistent session (`mosquitto_sub -c -q QOS -i rx`)
# subscribes and leaves; MESSAGES ~8-byte messages are published to it at
# QOS (`mosquitto_pub -q QOS -l`, stdin kept open for a while after the last
# line: at EOF it drops what is not acknowledged yet); then the session
# reconnects and drains them (`-C MESSAGES`). Printed: the drain time, the
# rate, and the broker's CPU (utime+stime of all its threads, /proc) during
# the drain. The drain is checked: every message once and in order.
# mosquitto runs with max_queued_messages 0 (its default, 1000, drops a
# backlog) and max_inflight_messages 0 (MQ_INFLIGHT; its default is 20);
# surepush with its defaults (shards 2, mqtt.page 64, mqtt.inflight 256).
# Ports below 32768;
# PORT_BASE, MQ_INFLIGHT, SP_MQTT_CONF, KILL9 and HOLD_S below.
set -euo pipefail
N=${1:-50000}
QOS=${2:-1}
HOLD_S=${HOLD_S:-8}
# Ports: PORT_BASE (native), +1 (admin), +2 (surepush MQTT), +3 (mosquitto).
PORT_BASE=${PORT_BASE:-17400}
SP_MQTT=$((PORT_BASE + 2)) MQ_PORT=$((PORT_BASE + 3))
# mosquitto's max_inflight_messages (its default is 20) and extra lines for
# surepush's [mqtt] table (e.g. SP_MQTT_CONF='inflight = 8192').
MQ_INFLIGHT=${MQ_INFLIGHT:-0}
SP_MQTT_CONF=${SP_MQTT_CONF:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SUREPUSH_BIN:-$ROOT/target/release/surepush}
WORK=$(mktemp -d /tmp/mqtt-backlog.XXXXXX)
trap 'kill $SP_PID $MQ_PID 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

# shellcheck source=loadgen/scripts/stock_brokers.sh
. "$ROOT/loadgen/scripts/stock_brokers.sh"
write_surepush_config "$SP_MQTT_CONF"
write_mosquitto_config "$MQ_PORT" "$MQ_INFLIGHT"
start_both_brokers
RX_TOKEN=$("$BIN" token --config "$WORK/gw.toml" --user 2 --device 1)
TX_TOKEN=$("$BIN" token --config "$WORK/gw.toml" --user 1 --device 1)

# KILL9=1: surepush is killed with SIGKILL once the backlog is stored and
# started again, so the drain reads from the log files (nothing cached).
restart_surepush() {
  kill -9 "$SP_PID"; wait "$SP_PID" 2>/dev/null || true
  "$BIN" serve --config "$WORK/gw.toml" >> "$WORK/gw.log" 2>&1 & SP_PID=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$SP_MQTT) 2>/dev/null && break
    sleep 0.1
  done
}

cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }

run() { # name port topic pid rx_auth... -- tx_auth...
  local name=$1 port=$2 topic=$3 pid=$4; shift 4
  local rx=() tx=()
  while [ "$1" != -- ]; do rx+=("$1"); shift; done; shift; tx=("$@")
  mosquitto_sub -h 127.0.0.1 -p "$port" "${rx[@]}" -c -q "$QOS" -i rx -t "$topic" -W 1 > /dev/null 2>&1 || true
  { seq 1 "$N" | sed 's/^/msg-/'; sleep "$HOLD_S"; } |
    mosquitto_pub -h 127.0.0.1 -p "$port" "${tx[@]}" -q "$QOS" -t "$topic" -l
  if [ -n "${KILL9:-}" ] && [ "$pid" = "$SP_PID" ]; then
    restart_surepush; pid=$SP_PID; name="$name, kill -9"
  fi
  local c0 t0 t1 c1
  c0=$(all_ticks "$pid"); t0=$(date +%s.%N)
  mosquitto_sub -h 127.0.0.1 -p "$port" "${rx[@]}" -c -q "$QOS" -i rx -t "$topic" -C "$N" -W 300 > "$WORK/out.$port"
  t1=$(date +%s.%N); c1=$(all_ticks "$pid")
  if ! seq 1 "$N" | sed 's/^/msg-/' | cmp -s - "$WORK/out.$port"; then
    echo "$name: NOT each once in order ($(wc -l < "$WORK/out.$port") lines)"; return 1
  fi
  awk -v n="$N" -v a="$t0" -v b="$t1" -v c=$(( (c1 - c0) * 10 )) -v name="$name" -v q="$QOS" \
    'BEGIN { d = b - a; printf "%-28s QoS %s  %d msgs  drain %.3f s  %.0f msgs/s  server CPU %d ms\n", name, q, n, d, n / d, c }'
}

run "mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') (bk/t)" "$MQ_PORT" bk/t "$MQ_PID" -- 
run "surepush MQTT (user/2)" "$SP_MQTT" user/2 "$SP_PID" -u x -P "$RX_TOKEN" -- -u x -P "$TX_TOKEN"
