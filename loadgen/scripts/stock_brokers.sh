# Shared by the *_stock.sh scripts (sourced): the configurations of the
# brokers they compare and the CPU reading. Expects WORK, PORT_BASE and
# SP_MQTT set by the script.

# surepush with its defaults (2 shards) and the MQTT listener on SP_MQTT;
# extra lines for [mqtt] in $1.
write_surepush_config() {
  cat > "$WORK/gw.toml" <<TOML
listen = "127.0.0.1:$PORT_BASE"
admin_listen = "127.0.0.1:$((PORT_BASE + 1))"
data_dir = "$WORK/data"
shards = 2
pin_cores = false
token_secret = "bench-secret"
[mqtt]
listen = "127.0.0.1:$SP_MQTT"
${1:-}
TOML
}

# mosquitto on port $1 with persistence, no queue limit and in-flight
# limit $2 (default 0: unlimited; mosquitto's own defaults drop and
# throttle QoS 1), its store in $WORK/mq.
write_mosquitto_config() {
  mkdir -p "$WORK/mq"
  cat > "$WORK/mosquitto.conf" <<CONF
user root
listener $1 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/mq/
max_queued_messages 0
max_inflight_messages ${2:-0}
CONF
}

# Waits until port $1 accepts connections, or gives up when process $2
# ends or after 10 s (pointing at $WORK/$3.log).
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "$3 did not start: see $WORK/$3.log"; KEEP=1; exit 1
}

# Starts surepush ($BIN, $WORK/gw.toml) and mosquitto ($WORK/mosquitto.conf)
# as SP_PID and MQ_PID, and waits for their MQTT ports SP_MQTT and MQ_PORT.
start_both_brokers() {
  "$BIN" serve --config "$WORK/gw.toml" > "$WORK/gw.log" 2>&1 & SP_PID=$!
  mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mq.log" 2>&1 & MQ_PID=$!
  wait_port "$SP_MQTT" "$SP_PID" gw
  wait_port "$MQ_PORT" "$MQ_PID" mq
}

# CPU ticks (utime + stime, 10 ms each) of every thread of process $1.
all_ticks() { local t=0; for s in /proc/"$1"/task/*/stat; do t=$((t + $(awk '{print $14 + $15}' "$s"))); done; echo $t; }
