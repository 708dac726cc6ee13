//! Presence (issue #22 item 2) on one shard: permissions, limits,
//! coalescing, multi-device state, and watches ending with their
//! connection. Across shards: tests/presence.rs (the real gateway).

use super::*;
use surepush_proto::{OnlineDevice, Presence, Watch, WatchAck};

const DEBOUNCE_MS: u64 = 50;

fn harness(max_watches: u32) -> Harness {
    Harness::new(CoreConfig {
        max_watches_per_conn: max_watches,
        presence_debounce_ms: DEBOUNCE_MS,
        ..CoreConfig::default()
    })
}

fn contacts(users: &[u64]) -> Acl {
    let names: Vec<String> = users.iter().map(|u| format!("presence/{u}")).collect();
    Acl::new(&names, &[]).expect("valid filters")
}

impl Harness {
    /// WATCH `users`; the WATCHACK and the PRESENCE frames that followed.
    fn watch(&mut self, conn: ConnId, request: u32, users: &[u64]) -> (WatchAck, Vec<Presence>) {
        let users = users.iter().copied().map(UserId).collect();
        self.frame(conn, Frame::Watch(Watch { request, users }));
        let frames = self.take(conn);
        let ack = match frames.first() {
            Some(Frame::WatchAck(a)) => *a,
            other => panic!("expected a WATCHACK first: {other:?}"),
        };
        (ack, presences(&frames[1..]))
    }

    /// PRESENCE frames `conn` got so far.
    fn presences(&mut self, conn: ConnId) -> Vec<Presence> {
        presences(&self.take(conn))
    }
}

fn presences(frames: &[Frame]) -> Vec<Presence> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Presence(p) => p.clone(),
            other => panic!("expected only PRESENCE: {other:?}"),
        })
        .collect()
}

/// Device ids of a PRESENCE, checked to be of `user`.
fn online(p: &Presence, user: u64) -> Vec<u64> {
    assert_eq!(p.user, UserId(user), "{p:?}");
    p.devices.iter().map(|d| d.device.0).collect()
}

#[test]
fn a_watcher_sees_each_device_of_a_contact_come_and_go() {
    let mut h = harness(10);
    let watcher = h.connect_granted(1, 1, contacts(&[2]));
    let (ack, now) = h.watch(watcher, 7, &[2]);
    assert_eq!((ack.request, ack.code, ack.watching), (7, 0, 1));
    assert_eq!(now.len(), 1, "the current state comes at once");
    assert!(online(&now[0], 2).is_empty(), "user 2 is offline");

    let phone = h.connect(2, 10);
    h.advance(DEBOUNCE_MS);
    let got = h.presences(watcher);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(online(&got[0], 2), [10]);
    let d: &OnlineDevice = &got[0].devices[0];
    assert_eq!(d.transport, "native");
    assert_eq!(d.shard, 0);
    assert_eq!(d.since_ms, 1_700_000_000_000, "connected at time 0");

    let laptop = h.connect(2, 11);
    h.advance(DEBOUNCE_MS);
    assert_eq!(online(&h.presences(watcher)[0], 2), [10, 11]);

    h.shard.handle_closed(phone, h.now);
    h.run();
    h.advance(DEBOUNCE_MS);
    assert_eq!(online(&h.presences(watcher)[0], 2), [11]);
    assert_eq!(h.shard.online_devices(UserId(2)).len(), 1);

    h.shard.handle_closed(laptop, h.now);
    h.run();
    h.advance(DEBOUNCE_MS);
    assert!(online(&h.presences(watcher)[0], 2).is_empty());
}

#[test]
fn changes_within_the_window_are_one_presence_with_the_state_at_its_end() {
    let mut h = harness(10);
    let watcher = h.connect_granted(1, 1, contacts(&[2]));
    h.watch(watcher, 1, &[2]);
    // A flapping device: online, offline, online again within one window.
    let first = h.connect(2, 10);
    h.shard.handle_closed(first, h.now);
    h.run();
    h.advance(DEBOUNCE_MS / 2);
    h.connect(2, 10);
    assert!(
        h.presences(watcher).is_empty(),
        "nothing before the window ends"
    );
    h.advance(DEBOUNCE_MS);
    let got = h.presences(watcher);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(online(&got[0], 2), [10]);
    // A connect and a disconnect within a window: the state is what it was,
    // and nothing is sent.
    let tablet = h.connect(2, 12);
    h.shard.handle_closed(tablet, h.now);
    h.run();
    h.advance(DEBOUNCE_MS * 2);
    assert!(h.presences(watcher).is_empty());
    assert_eq!(h.shard.stats().presence_events, 1);
}

#[test]
fn a_session_may_watch_itself_and_granted_contacts_only() {
    let mut h = harness(10);
    let plain = h.connect(1, 1);
    let (ack, _) = h.watch(plain, 1, &[1]);
    assert_eq!(ack.code, 0, "its own devices");
    let (ack, got) = h.watch(plain, 2, &[1, 3]);
    assert_eq!(ack.code, ErrorCode::Forbidden as u16);
    assert_eq!((ack.refused, ack.watching), (UserId(3), 1));
    assert!(got.is_empty(), "nothing added");
    assert!(!h.closed(plain), "a refusal keeps the session");

    let all = Acl::new(&["presence/+"], &[]).expect("valid");
    let wide = h.connect_granted(4, 1, all);
    let (ack, _) = h.watch(wide, 1, &[1, 2, 3]);
    assert_eq!((ack.code, ack.watching), (0, 3));
    // Groups and rooms have no presence, whatever the grant.
    let group = UserId::GROUP_BIT | 5;
    let room = surepush_proto::ROOM_BIT | 5;
    let (ack, _) = h.watch(wide, 2, &[group, room]);
    assert_eq!(ack.code, ErrorCode::Forbidden as u16);
    assert_eq!(ack.refused, UserId(group));
    // A room grant is not a presence grant.
    let rooms = Acl::new(&["room/+"], &[]).expect("valid");
    let reader = h.connect_granted(6, 1, rooms);
    let (ack, _) = h.watch(reader, 1, &[2]);
    assert_eq!(ack.code, ErrorCode::Forbidden as u16);
}

#[test]
fn a_watch_beyond_the_limit_is_refused_whole_and_repeats_do_not_count() {
    let mut h = harness(2);
    let all = Acl::new(&["presence/+"], &[]).expect("valid");
    let c = h.connect_granted(1, 1, all);
    let (ack, got) = h.watch(c, 1, &[2, 2, 3]);
    assert_eq!((ack.code, ack.watching, got.len()), (0, 2, 2));
    let (ack, got) = h.watch(c, 2, &[3, 2]);
    assert_eq!((ack.code, ack.watching), (0, 2), "already watched");
    assert!(got.is_empty(), "no state repeated for a watch in place");
    let (ack, got) = h.watch(c, 3, &[2, 4]);
    assert_eq!(ack.code, ErrorCode::TooManyWatches as u16);
    assert_eq!(ack.watching, 2);
    assert!(got.is_empty());
    // UNWATCH makes room.
    h.frame(c, Frame::Unwatch(vec![UserId(3)]));
    let (ack, _) = h.watch(c, 4, &[4]);
    assert_eq!((ack.code, ack.watching), (0, 2));
    // An unwatched user's changes are no longer reported.
    h.connect(3, 1);
    h.advance(DEBOUNCE_MS);
    assert!(h.presences(c).is_empty());
}

#[test]
fn watches_end_with_their_connection_and_the_owner_forgets_them() {
    let mut h = harness(10);
    let all = Acl::new(&["presence/+"], &[]).expect("valid");
    let a = h.connect_granted(1, 1, all.clone());
    let b = h.connect_granted(5, 1, all);
    h.watch(a, 1, &[2, 3]);
    h.watch(b, 1, &[2]);
    assert_eq!(h.shard.presence_sizes(), (2, 2, 3));
    h.shard.handle_closed(a, h.now);
    h.run();
    assert_eq!(h.shard.presence_sizes(), (1, 1, 1));
    // The second watcher of user 2 still hears; the first is gone.
    h.connect(2, 9);
    h.advance(DEBOUNCE_MS);
    assert_eq!(online(&h.presences(b)[0], 2), [9]);
    assert!(h.take(a).is_empty());
    // The watcher's own session going away is a change for its watchers
    // too (user 5 watched by nobody: nothing is kept for it).
    h.shard.handle_closed(b, h.now);
    h.run();
    assert_eq!(h.shard.presence_sizes(), (0, 0, 0));
}

#[test]
fn a_new_watcher_on_a_shard_already_watching_gets_the_known_state() {
    let mut h = harness(10);
    let all = Acl::new(&["presence/+"], &[]).expect("valid");
    h.connect(2, 3);
    let a = h.connect_granted(1, 1, all.clone());
    let (_, got) = h.watch(a, 1, &[2]);
    assert_eq!(online(&got[0], 2), [3]);
    let b = h.connect_granted(1, 2, all);
    let (_, got) = h.watch(b, 1, &[2]);
    assert_eq!(got.len(), 1, "answered from the shard's copy");
    assert_eq!(online(&got[0], 2), [3]);
    assert!(h.take(a).is_empty(), "the first watcher hears nothing new");
}
