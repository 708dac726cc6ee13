#!/usr/bin/env bash
# Shared subscriptions (issue #21): one share group of 3 members, surepush's
# MQTT listener and mosquitto 2.x side by side in one run, stock clients.
#
#   loadgen/scripts/mqtt_shared_stock.sh [MESSAGES] [QOS]   # defaults 30000 1
#
# For each broker: 3 `mosquitto_sub -V 5 -q QOS -t '$share/bench/jobs/+'`
# members subscribe, then 7 `mosquitto_pub -V 5 -q QOS -l -M 100` (one per
# topic, in parallel) publish MESSAGES lines ("m<i>") to jobs/<i % 7>
# (stdin kept open until the members have everything: at EOF it drops what
# is not acknowledged yet).
# Printed: the time from the first publish to the last message received,
# the rate, the broker's CPU (utime+stime of all its threads, /proc) over
# that time, and the check: every message reached exactly one member.
# mosquitto runs with max_queued_messages 0 and max_inflight_messages 0
# (its defaults drop and throttle QoS 1); surepush with topics_open and
# its defaults otherwise (shards 2). Ports PORT_BASE.. below 32768.
set -euo pipefail
N=${1:-30000}
QOS=${2:-1}
PORT_BASE=${PORT_BASE:-17460}
SP_MQTT=$((PORT_BASE + 2)) MQ_PORT=$((PORT_BASE + 3))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SUREPUSH_BIN:-$ROOT/target/release/surepush}
WORK=$(mktemp -d /tmp/mqtt-shared.XXXXXX)
trap 'kill $SP_PID $MQ_PID 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

# shellcheck source=loadgen/scripts/stock_brokers.sh
. "$ROOT/loadgen/scripts/stock_brokers.sh"
write_surepush_config "topics_open = true"
write_mosquitto_config "$MQ_PORT"
start_both_brokers
token() { "$BIN" token --config "$WORK/gw.toml" --user "$1" --device 1; }

run() { # name port pid auth-args-of-members (3); PUB_AUTH: the 7 publishers'
  local name=$1 port=$2 pid=$3
  shift 3
  local out=$WORK/$name
  mkdir -p "$out"
  local subs=()
  local i=0
  for auth in "$@"; do
    # shellcheck disable=SC2086
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$port" $auth -V 5 -q "$QOS" \
      -t '$share/bench/jobs/+' -v > "$out/member-$i.txt" 2> "$out/member-$i.err" &
    subs+=($!)
    i=$((i + 1))
  done
  sleep 1  # the SUBACKs (mosquitto_sub prints nothing before messages)
  seq 0 $((N - 1)) | awk '{print "m" $1}' > "$out/lines"
  local t0 c0
  c0=$(all_ticks "$pid")
  t0=$(date +%s%N)
  # Lines go to jobs/<i % 7>: one mosquitto_pub per topic, in parallel.
  local pubs=()
  for t in 0 1 2 3 4 5 6; do
    # shellcheck disable=SC2086
    # stdin stays open 60 s after the last line (the sleep ends by itself).
    (awk -v t=$t '(NR - 1) % 7 == t' "$out/lines"; sleep 60) \
      | mosquitto_pub -h 127.0.0.1 -p "$port" ${PUB_AUTH[$t]} -V 5 -q "$QOS" -M 100 -t "jobs/$t" -l &
    pubs+=($!)
  done
  while :; do
    local got
    got=$(cat "$out"/member-*.txt | wc -l)
    [ "$got" -ge "$N" ] && break
    if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -gt ${TIMEOUT_S:-300} ]; then echo "$name: timeout at $got"; break; fi
    sleep 0.05
  done
  local t1 c1
  t1=$(date +%s%N)
  c1=$(all_ticks "$pid")
  if [ "$name" = surepush ]; then
    curl -s "http://127.0.0.1:$((PORT_BASE + 1))/metrics" | grep -E '^surepush_share_' || true
  fi
  sleep 1  # late duplicates would show now
  kill "${pubs[@]}" "${subs[@]}" 2>/dev/null || true
  wait "${pubs[@]}" "${subs[@]}" 2>/dev/null || true
  local total dup lost per
  total=$(cat "$out"/member-*.txt | wc -l)
  dup=$(cat "$out"/member-*.txt | awk '{print $2}' | sort | uniq -d | wc -l)
  lost=$(comm -23 <(sort "$out/lines") <(cat "$out"/member-*.txt | awk '{print $2}' | sort -u) | wc -l)
  per=$(for f in "$out"/member-*.txt; do wc -l < "$f"; done | paste -sd/)
  local ms=$(( (t1 - t0) / 1000000 ))
  local ticks=$((c1 - c0))
  echo "$name: $N msgs QoS $QOS to 3 members ($per) in ${ms} ms = $(( N * 1000 / (ms > 0 ? ms : 1) )) msgs/s;" \
       "broker CPU $((ticks * 10)) ms = $(( ticks * 10000 / N )) us/msg; received $total, duplicates $dup, lost $lost"
}

# surepush: one user per client (a token is one session: two connections
# with one token would take each other over).
SP_AUTH=()
for u in 11 12 13; do SP_AUTH+=("-u x -P $(token $u)"); done
PUB_AUTH=()
for u in 20 21 22 23 24 25 26; do PUB_AUTH+=("-u x -P $(token $u)"); done
run surepush "$SP_MQTT" "$SP_PID" "${SP_AUTH[@]}"
PUB_AUTH=("" "" "" "" "" "" "")
run mosquitto "$MQ_PORT" "$MQ_PID" "" "" ""
