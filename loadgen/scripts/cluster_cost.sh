#!/usr/bin/env bash
# Cross-node cost and room fan-out across nodes (issue #20), one run each:
# N surepush nodes (release, 1 shard each unless SHARDS) on a fresh nats-server 2.15
# (JetStream, sync_interval: always) per case, the partitions placed by
# `surepush cluster init --nodes ...`, then surepush-loadgen against them.
# Prints loadgen's report, nats-server CPU (utime+stime from /proc), each
# node's CPU per thread (shard, its blocking thread, the cluster thread) and
# the nodes' cluster counters before/after.
#
#   loadgen/scripts/cluster_cost.sh one-to-one NODES LINGER_US [loadgen args...]
#   loadgen/scripts/cluster_cost.sh room NODES LINGER_US [loadgen args...]
#   loadgen/scripts/cluster_cost.sh cluster 2 LINGER_US [loadgen args...]
#     (the `cluster` report: node-local pairs on both nodes, then
#     cross-node pairs)
#
# NODES: how many nodes own partitions (1 = every user on node n1: all
# local; 2 = spread over n1,n2); two nodes always run for one-to-one, NODES
# for room. LINGER_US: [cluster] batch_linger_us.
# Env: SUREPUSH (binary), LOADGEN (binary), NATS (nats-server binary),
# SHARDS (shards per node, default 1), SPIN_US ([cluster]
# spin_before_park_us), LOG_SYNC_US ([log] sync_interval_us); unset: the
# key is left out.
set -euo pipefail
scenario=$1 owners=$2 linger=$3
shift 3
here=$(cd "$(dirname "$0")/../.." && pwd)
SUREPUSH=${SUREPUSH:-$here/target/release/surepush}
LOADGEN=${LOADGEN:-$here/target/release/surepush-loadgen}
NATS=${NATS:-${SUREPUSH_NATS_SERVER:-$here/target/nats-venv/bin/nats-server}}
secret=cluster-cost-secret-0123456789abcdef
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

running=2
[ "$scenario" = room ] && running=$owners
nats_port=17490
cat >"$work/nats.conf" <<EOF
listen: 127.0.0.1:$nats_port
jetstream { store_dir: "$work/js", sync_interval: always }
EOF
"$NATS" -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
nats_pid=$!
pids+=("$nats_pid")
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$nats_port) 2>/dev/null && break; sleep 0.05; done

names=()
for i in $(seq 1 "$owners"); do names+=("n$i"); done
"$SUREPUSH" cluster init --nats "nats://127.0.0.1:$nats_port" --partitions 64 \
    --nodes "$(IFS=,; echo "${names[*]}")" >/dev/null

servers=() admins=() node_pids=()
for i in $(seq 1 "$running"); do
    port=$((17410 + i)) admin=$((17420 + i)) mqtt=$((17430 + i))
    mkdir -p "$work/n$i"
    cat >"$work/n$i.toml" <<EOF
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
data_dir = "$work/n$i/data"
shards = ${SHARDS:-1}
pin_cores = false
token_secret = "$secret"
admin_token = "cluster-cost-admin"
${LOG_SYNC_US:+[log]}
${LOG_SYNC_US:+sync_interval_us = $LOG_SYNC_US}
[mqtt]
listen = "127.0.0.1:$mqtt"
[cluster]
nats = "nats://127.0.0.1:$nats_port"
node_id = "n$i"
partitions = 64
batch_linger_us = $linger
${SPIN_US:+spin_before_park_us = $SPIN_US}
EOF
    RUST_LOG=warn "$SUREPUSH" serve --config "$work/n$i.toml" >"$work/n$i.log" 2>&1 &
    pids+=("$!")
    node_pids+=("$!")
    servers+=("127.0.0.1:$port")
    admins+=("127.0.0.1:$admin")
done
for a in "${admins[@]}"; do
    for _ in $(seq 200); do curl -sf "http://$a/healthz" >/dev/null && break; sleep 0.05; done
done

counters() {
    for a in "${admins[@]}"; do
        curl -s -H "Authorization: Bearer cluster-cost-admin" "http://$a/metrics" |
            grep -E '^surepush_cluster_(requests_sent|request_batches_sent|reply_batches_received|room_messages_published|room_messages_received|room_pushes_to_shards)_total ' |
            sed "s/^/$a /"
    done
}
nats_cpu() { awk '{print $14 + $15}' "/proc/$nats_pid/stat"; }
# "node|tid|name ticks" for every thread of every node (the name is in
# parentheses in field 2; no thread name here holds a space).
thread_cpu() {
    local i=0
    for p in "${node_pids[@]}"; do
        i=$((i + 1))
        for t in /proc/"$p"/task/*; do
            awk -v n="n$i" -v t="${t##*/}" '{gsub(/[()]/, "", $2); print n"|"t"|"$2, $14 + $15}' "$t/stat" 2>/dev/null || true
        done
    done
}

echo "# $scenario, partitions on ${names[*]}, $running nodes running, batch_linger_us=$linger, load: $(cut -d' ' -f1-3 /proc/loadavg)"
counters >"$work/before"
thread_cpu >"$work/threads_before"
before=$(nats_cpu)
servers_csv=$(IFS=,; echo "${servers[*]}")
"$LOADGEN" "$scenario" --servers "$servers_csv" --secret "$secret" "$@"
after=$(nats_cpu)
thread_cpu >"$work/threads_after"
counters >"$work/after"
echo "nats-server CPU: $(( (after - before) * 10 )) ms"
echo "node threads CPU (after - before, ms; threads that ran):"
join <(sort "$work/threads_before") <(sort "$work/threads_after") |
    awk '$3 > $2 { printf "  %s %d\n", $1, ($3 - $2) * 10 }'
echo "cluster counters (after - before):"
join <(sort "$work/before" | awk '{print $1"|"$2, $3}') <(sort "$work/after" | awk '{print $1"|"$2, $3}') |
    awk '{ printf "  %s %d\n", $1, $3 - $2 }'
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
