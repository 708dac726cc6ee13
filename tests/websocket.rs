//! The WebSocket listener end to end (issue #19 item 1): the real binary,
//! real WebSocket clients (tungstenite in the Rust SDK's `Transport::
//! WebSocket`, raw frames for bad input).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event, Transport};
use surepush::proto::{DeviceId, Qos, Seq, UserId};

/// A server with the WebSocket listener on (`extra`: more `[websocket]`
/// settings); returns it and the listener's address.
fn start(shards: u16, extra: &str) -> (TestServer, SocketAddr) {
    let port = surepush::server::limits::free_loopback_port().expect("a free port");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let top = format!("[websocket]\nenabled = true\nlisten = \"{addr}\"\n{extra}\n");
    (TestServer::start_full(shards, &top, "", |_| {}), addr)
}

fn ws() -> Transport {
    Transport::WebSocket { path: "/".into() }
}

/// Connects `user`/`device` over WebSocket and waits until it is live.
fn connect_ws(server: &TestServer, addr: SocketAddr, user: u64, device: u64) -> BlockingClient {
    let config = server.client_config(user, device);
    let mut c = BlockingClient::connect_over(addr, &ws(), config, None, Duration::from_secs(5))
        .expect("connect over WebSocket");
    loop {
        match c.next_event(Duration::from_secs(10)).expect("io") {
            Some(Event::CaughtUp) => return c,
            Some(Event::Error(e)) => panic!("gateway error while connecting: {e:?}"),
            Some(_) => {}
            None => panic!("not live in time"),
        }
    }
}

// Issue #19 item 1: native frames in binary WebSocket messages, across the
// shard hand-off (8 users on 2 shards: most land on a shard that does not
// own them and are handed over with their WebSocket state).
#[test]
fn native_protocol_over_websocket_delivers_with_identity_on_every_shard() {
    let (server, addr) = start(2, "");
    let users: Vec<u64> = (1..=8).collect();
    let mut clients: Vec<BlockingClient> = users
        .iter()
        .map(|&u| connect_ws(&server, addr, u, 1))
        .collect();
    // Each user sends two messages to the next one.
    let mut sent = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let to = users[(i + 1) % users.len()];
        for n in 0..2 {
            let payload = Bytes::from(format!("ws {} -> {to} #{n}", users[i]));
            let id = c
                .send(UserId(to), Qos::AtLeastOnce, payload.clone())
                .unwrap();
            sent.push((users[i], to, id, payload));
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let me = users[i];
        let from = users[(i + users.len() - 1) % users.len()];
        let mut got = Vec::new();
        while got.len() < 2 {
            match c.next_event(Duration::from_secs(10)).unwrap() {
                Some(Event::Message(p)) if !p.echo => got.push(p),
                Some(_) => {}
                None => panic!("user {me}: messages missing, got {got:?}"),
            }
        }
        // The inbox also holds the user's own sends (echoes): stored
        // messages are contiguous and in send order.
        assert!(got[0].seq < got[1].seq, "user {me}: {got:?}");
        assert!(got[0].client_msg_id < got[1].client_msg_id, "in send order");
        for p in &got {
            let (s_from, s_to, id, payload) = sent
                .iter()
                .find(|(f, t, _, pl)| *f == from && *t == me && *pl == p.payload)
                .unwrap_or_else(|| panic!("user {me} got a message nobody sent: {p:?}"));
            assert_eq!((p.from, p.to), (UserId(*s_from), UserId(*s_to)));
            assert_eq!(p.from_device, DeviceId(1));
            assert_eq!(p.client_msg_id, *id);
            assert_eq!(&p.payload, payload);
            assert_eq!(
                p.prev_seq,
                Seq(p.seq.0 - 1),
                "user {me}: stored, contiguous"
            );
        }
    }
}
