//! What an idle MQTT session's bridge keeps on the heap (issue #17 goal 4,
//! issue #21 item 5): thousands of idle connections each pay it.
//!
//! A counting allocator (its own test binary, so `surepush-mqtt` keeps
//! `forbid(unsafe_code)`) measures the heap a bridge holds after the
//! connection has gone through what every idle subscriber does — CONNECT
//! of a persistent session, CONNACK, the empty replay, SUBSCRIBE, a few
//! QoS 1 messages acknowledged — and went idle
//! (`Bridge::release_idle_memory`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use surepush_mqtt::bridge::{Bridge, BridgeParams};
use surepush_mqtt::{
    Connect, MqttString, Packet, PacketId, Properties, ProtocolLevel, PubReply, QoS, ReasonCode,
    Subscribe, Subscription, SubscriptionOptions,
};
use surepush_proto::{ConnAck, DeviceId, Frame, Push, Qos, Seq, SyncPage, UserId};

/// Counts the bytes this thread has live (allocated and not freed).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: nothing to count once the thread's locals are gone.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting touches a thread-local `Cell` only (it never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

const ME: UserId = UserId(7);
const DEV: DeviceId = DeviceId(1);

fn params() -> BridgeParams {
    BridgeParams {
        page: 100,
        inflight: 64,
        inflight_bytes: 1 << 20,
        max_packet: 1 << 20,
        receive_max: 100,
        room_window: 8,
        topics_open: true,
    }
}

/// A persistent MQTT 3.1.1 session of `ME`, as `loadgen idle --mqtt`
/// connects it.
fn bridge() -> Bridge {
    let connect = Connect {
        protocol_level: ProtocolLevel::V311,
        clean_start: false,
        keep_alive: 60,
        client_id: MqttString::from("idle-7"),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"token")),
        properties: Properties::default(),
    };
    let claims = surepush_token::Claims {
        user: ME,
        device: DEV,
        expires_s: u64::MAX / 2,
        acl: Default::default(),
    };
    Bridge::new(connect, "token".into(), claims, None, 1, params())
}

/// Hands everything the bridge produced to nobody, reporting its state
/// writes durable at once (as the core does once they are synced).
fn settle(b: &mut Bridge) -> Vec<Frame> {
    while let Some(w) = b.poll_state() {
        if let Some(id) = w.report {
            b.on_state_stored(id, true);
        }
    }
    while b.poll_packet().is_some() {}
    std::iter::from_fn(|| b.poll_core()).collect()
}

fn push(seq: u64) -> Frame {
    Frame::Push(Push {
        seq: Seq(seq),
        prev_seq: Seq(seq - 1),
        from: UserId(99),
        from_device: DeviceId(1),
        to: ME,
        client_msg_id: seq,
        ts_ms: 0,
        qos: Qos::AtLeastOnce,
        echo: false,
        retransmit: false,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"hello"),
    })
}

/// The budget: the boxed bridge (512 bytes, `the_bridge_fits_in_half_a_kibibyte`)
/// and its one subscription; every queue, table and tree a busy moment
/// grew is given back, and the parts boxed apart for busy moments (the
/// bridge's `busy.rs`, the gate's queues) are dropped. Measured: 558 bytes
/// (1,070 before those parts were boxed apart, issue #17 goal 4).
const IDLE_BRIDGE_HEAP_MAX: isize = 512 + 64;

#[test]
fn an_idle_subscribed_bridge_holds_little_more_than_itself() {
    let before = live();
    let mut b = Box::new(bridge());
    settle(&mut b);
    b.on_frame(Frame::ConnAck(ConnAck {
        user: ME,
        device: DEV,
        head: Seq(0),
        cursor: None,
        max_frame: 1 << 20,
        push_window: 64,
        max_pending_sends: 100,
        keepalive_ms: 60_000,
        max_sync_limit: 100,
    }));
    let request = settle(&mut b)
        .iter()
        .find_map(|f| match f {
            Frame::Sync(s) => Some(s.request_id),
            _ => None,
        })
        .expect("the replay asks for its first page");
    b.on_frame(Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(0),
        end: true,
        gap: false,
        items: vec![],
    }));
    settle(&mut b);
    b.on_packet(Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        filters: vec![Subscription {
            filter: MqttString::from("user/7"),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }],
        properties: Properties::default(),
    }));
    settle(&mut b);
    // A few messages, each acknowledged: the busy moment.
    for seq in 1..=3 {
        b.on_frame(push(seq));
        let mut pids = Vec::new();
        while let Some(w) = b.poll_state() {
            if let Some(id) = w.report {
                b.on_state_stored(id, true);
            }
        }
        while let Some(p) = b.poll_packet() {
            if let Packet::Publish(p) = p {
                pids.extend(p.packet_id);
            }
        }
        for pid in pids {
            b.on_packet(Packet::PubAck(PubReply {
                packet_id: pid,
                reason: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }));
        }
        settle(&mut b);
    }
    b.release_idle_memory();
    let held = live() - before;
    assert!(
        held <= IDLE_BRIDGE_HEAP_MAX,
        "an idle bridge holds {held} bytes (at most {IDLE_BRIDGE_HEAP_MAX})"
    );
}
