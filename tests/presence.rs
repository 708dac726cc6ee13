//! Presence end to end (issue #22 item 2), over TCP against the real
//! binary on two shards: a watcher on one shard sees the devices of a
//! user owned by the other come and go (a clean close and a TCP reset
//! alike), with their device id, transport, shard and time; the admin
//! API reads the same; permissions and the watch limit are refused with
//! their typed codes and the session stays.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::TestServer;
use surepush::client::{BlockingClient, Event};
use surepush::core::{Acl, Router};
use surepush::proto::{Connect, Decoder, DeviceId, ErrorCode, Frame, Presence, UserId, WatchAck};

const WAIT: Duration = Duration::from_secs(10);
/// A short coalescing window, so each step's PRESENCE comes quickly.
const CONFIG: &str = "[core]\npresence_debounce_ms = 20\nmax_watches_per_conn = 3\n";

/// The first user id from `from` up owned by `shard` of two.
fn user_on(shard: u16, from: u64) -> u64 {
    (from..)
        .find(|n| Router::of_node(2).owner(UserId(*n)).0 == shard)
        .expect("users live on every shard")
}

fn contacts(users: &[u64]) -> Acl {
    let names: Vec<String> = users.iter().map(|u| format!("presence/{u}")).collect();
    Acl::new(&names, &[]).expect("valid filters")
}

/// WATCH `users`; the WATCHACK.
fn watch(c: &mut BlockingClient, users: &[u64]) -> WatchAck {
    let users: Vec<UserId> = users.iter().copied().map(UserId).collect();
    c.watch(&users).unwrap();
    match c
        .wait_for(WAIT, |e| matches!(e, Event::Watched(_)))
        .unwrap()
    {
        Some(Event::Watched(a)) => a,
        other => panic!("no WATCHACK: {other:?}"),
    }
}

/// The next PRESENCE; checks it is about `user` and returns its device
/// ids.
fn next_presence(c: &mut BlockingClient, user: u64) -> (Vec<u64>, Presence) {
    match c
        .wait_for(WAIT, |e| matches!(e, Event::Presence(_)))
        .unwrap()
    {
        Some(Event::Presence(p)) => {
            assert_eq!(p.user, UserId(user), "{p:?}");
            (p.devices.iter().map(|d| d.device.0).collect(), p)
        }
        other => panic!("no PRESENCE: {other:?}"),
    }
}

/// A device session over a raw socket, to end it with a TCP reset.
fn raw_session(server: &TestServer, user: u64, device: u64) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let connect = Frame::Connect(Connect {
        device: DeviceId(device),
        last_seq: None,
        keepalive_ms: 0,
        token: server.token(user, device),
    });
    s.write_all(&connect.to_bytes()).unwrap();
    let mut decoder = Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.decode().unwrap() {
            assert!(matches!(frame, Frame::ConnAck(_)), "{frame:?}");
            return s;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before CONNACK");
        decoder.feed(&buf[..n]);
    }
}

/// Closes `s` with a TCP reset (SO_LINGER 0), as a crashed client's
/// kernel or a middlebox would.
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `s` owns a valid socket descriptor for the whole call, and
    // `linger` is a live, correctly sized `struct linger`.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
    drop(s);
}

#[test]
fn a_watcher_on_another_shard_sees_devices_come_and_go_and_a_reset_goes_offline() {
    let server = TestServer::start(2, CONFIG);
    let watcher_user = user_on(0, 100);
    let watched = user_on(1, 200);
    let mut watcher = server.connect_granted(watcher_user, 1, contacts(&[watched]));
    let ack = watch(&mut watcher, &[watched]);
    assert_eq!((ack.code, ack.watching), (0, 1), "{ack:?}");
    let (devices, _) = next_presence(&mut watcher, watched);
    assert!(devices.is_empty(), "offline at first");

    // Two devices: one through the SDK, one over a raw socket.
    let before_ms = wall_ms();
    let (phone, _) = server.connect(watched, 10, None);
    let (devices, p) = next_presence(&mut watcher, watched);
    assert_eq!(devices, [10]);
    let d = &p.devices[0];
    assert_eq!((d.shard, d.transport.as_str()), (1, "native"));
    assert!(
        (before_ms..=wall_ms()).contains(&d.since_ms),
        "since_ms {} is the session's start",
        d.since_ms
    );
    let laptop = raw_session(&server, watched, 11);
    let (devices, _) = next_presence(&mut watcher, watched);
    assert_eq!(devices, [10, 11]);

    // The admin API reads the owner shard's view too.
    let (status, body) = server.http("GET", &format!("/v1/users/{watched}/presence"), "", true);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["user"], watched.to_string());
    assert_eq!(v["online"], true);
    let ids: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["10", "11"]);
    assert_eq!(v["devices"][0]["shard"], 1);

    // A TCP reset takes the device offline.
    reset(laptop);
    let (devices, _) = next_presence(&mut watcher, watched);
    assert_eq!(devices, [10]);
    // So does a clean close of the last one.
    drop(phone);
    let (devices, _) = next_presence(&mut watcher, watched);
    assert!(devices.is_empty());

    // The batch read, across both shards, in the order asked.
    let body = format!(r#"{{"users": ["{watched}", {watcher_user}]}}"#);
    let (status, body) = server.http("POST", "/v1/presence", &body, true);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["users"][0]["online"], false);
    assert_eq!(v["users"][1]["user"], watcher_user.to_string());
    assert_eq!(v["users"][1]["devices"][0]["device"], "1");
    assert_eq!(v["users"][1]["devices"][0]["shard"], 0);
}

#[test]
fn a_user_sees_its_own_devices_and_only_granted_contacts_within_the_limit() {
    let server = TestServer::start(2, CONFIG);
    let me = user_on(0, 300);
    let stranger = user_on(1, 400);
    let (mut first, _) = server.connect(me, 1, None);
    // Its own user needs no grant.
    assert_eq!(watch(&mut first, &[me]).code, 0);
    let (devices, _) = next_presence(&mut first, me);
    assert_eq!(devices, [1]);
    let (_second, _) = server.connect(me, 2, None);
    let (devices, _) = next_presence(&mut first, me);
    assert_eq!(devices, [1, 2]);

    // Another user without a grant: refused, nothing added.
    let ack = watch(&mut first, &[stranger]);
    assert_eq!(ack.error(), Some(ErrorCode::Forbidden));
    assert_eq!((ack.refused, ack.watching), (UserId(stranger), 1));

    // Beyond max_watches_per_conn (3): refused whole.
    let all = Acl::new(&["presence/+"], &[]).expect("valid");
    let mut wide = server.connect_granted(user_on(1, 500), 1, all);
    let ack = watch(&mut wide, &[1, 2, 3, 4]);
    assert_eq!(ack.error(), Some(ErrorCode::TooManyWatches));
    assert_eq!(ack.watching, 0);
    // The session stays, and a WATCH within the limit works.
    assert_eq!(watch(&mut wide, &[me]).code, 0);
    let (devices, _) = next_presence(&mut wide, me);
    assert_eq!(devices, [1, 2]);
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}
