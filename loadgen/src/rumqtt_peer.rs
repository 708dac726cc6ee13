//! The closed-loop one-to-one workload over MQTT 3.1.1 driven by an
//! independent client, rumqttc, so a baseline broker (mosquitto) is not
//! measured only with surepush's own codec: the same pairs, topics,
//! persistent sessions and checks as `mqtt_peer`, on a tokio runtime of
//! its own (two worker threads, like the machine's two cores), one task
//! per connection. Each sender publishes the next message after the
//! previous one's PUBACK; each receiver's PUBACKs are sent by rumqttc
//! (automatic acks) and it checks order by the index in the payload.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::mqtt_peer::MqttTarget;
use crate::procfs::CpuMeter;
use crate::raw::{collect, new_histogram, InOrder, PairLoad, PeerResult};
use crate::{now_ns, RawReport};

/// How long a connection may stay silent before its task gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// A connected rumqttc client and its event loop (CONNACK seen).
async fn connect(
    addr: SocketAddr,
    target: &MqttTarget,
    load: &PairLoad,
    pair: u64,
    receiver: bool,
) -> Result<(AsyncClient, EventLoop), String> {
    let id = target.client_id(load.run, pair, receiver);
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options
        .set_clean_session(false) // a persistent session, like a device
        .set_keep_alive(Duration::from_secs(60));
    if let Some(password) = target.password(load.run, pair, receiver) {
        options.set_credentials("loadgen", password);
    }
    let (client, mut events) = AsyncClient::new(options, 64);
    wait_for(&mut events, |p| matches!(p, Packet::ConnAck(_))).await?;
    Ok((client, events))
}

/// Polls `events` until an incoming packet `wanted` says yes.
async fn wait_for(
    events: &mut EventLoop,
    mut wanted: impl FnMut(&Packet) -> bool,
) -> Result<Packet, String> {
    loop {
        match tokio::time::timeout(PATIENCE, events.poll()).await {
            Ok(Ok(Event::Incoming(p))) if wanted(&p) => return Ok(p),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("rumqttc: {e}")),
            Err(_) => return Err("rumqttc: nothing for 30 s".into()),
        }
    }
}

/// A receiver: every message of its pair, in order (counted until the
/// first one out of order or an error).
async fn receive(mut events: EventLoop, messages: u64) -> PeerResult {
    let mut got = InOrder::new();
    while got.next < messages {
        let Ok(Packet::Publish(p)) =
            wait_for(&mut events, |p| matches!(p, Packet::Publish(_))).await
        else {
            break;
        };
        got.take(&p.payload);
    }
    // Let rumqttc write the last PUBACK before the connection is dropped.
    let _ = tokio::time::timeout(Duration::from_millis(100), events.poll()).await;
    got.result()
}

/// A sender: each message after the previous one's PUBACK.
async fn send(
    client: AsyncClient,
    mut events: EventLoop,
    topic: String,
    load: PairLoad,
) -> PeerResult {
    let mut h = new_histogram();
    let mut acked = 0u64;
    for k in 0..u64::from(load.messages) {
        let t = now_ns();
        let mut body = vec![0u8; load.payload.max(16)];
        body[..8].copy_from_slice(&t.to_le_bytes());
        body[8..16].copy_from_slice(&k.to_le_bytes());
        if client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, body)
            .await
            .is_err()
        {
            break;
        }
        if wait_for(&mut events, |p| matches!(p, Packet::PubAck(_)))
            .await
            .is_err()
        {
            break;
        }
        acked += 1;
        h.saturating_record(now_ns().saturating_sub(t));
    }
    (h, new_histogram(), acked, 0)
}

/// Runs the workload against `target` at `addr` with rumqttc.
pub fn run_rumqttc(
    addr: SocketAddr,
    target: &MqttTarget,
    load: &PairLoad,
) -> Result<RawReport, String> {
    load.closed_loop_only("the rumqttc peer")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lg-rumqttc")
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (tx, rx) = mpsc::channel::<PeerResult>();
    for pair in 0..u64::from(load.pairs) {
        let (client, mut events) = runtime.block_on(connect(addr, target, load, pair, true))?;
        let topic = target.topic(load.run, pair);
        runtime.block_on(async {
            client
                .subscribe(topic, QoS::AtLeastOnce)
                .await
                .map_err(|e| format!("rumqttc subscribe: {e}"))?;
            wait_for(&mut events, |p| matches!(p, Packet::SubAck(_))).await
        })?;
        let (tx, messages) = (tx.clone(), u64::from(load.messages));
        runtime.spawn(async move {
            let _client = client; // the connection lives as long as its client
            let _ = tx.send(receive(events, messages).await);
        });
    }
    let started = Instant::now();
    let cpu = CpuMeter::start(load.server_pid);
    for pair in 0..u64::from(load.pairs) {
        let (client, events) = runtime.block_on(connect(addr, target, load, pair, false))?;
        let (tx, topic, load) = (tx.clone(), target.topic(load.run, pair), *load);
        runtime.spawn(async move {
            let _ = tx.send(send(client, events, topic, load).await);
        });
    }
    drop(tx);
    let report = collect(rx, Vec::new(), started, cpu);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}
