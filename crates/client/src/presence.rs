//! Presence watches of a [`ClientSession`]: WATCH/UNWATCH, WATCHACK and
//! PRESENCE (docs/PROTOCOL.md section 6c). The session remembers what it
//! watches and watches it again after every reconnect (the gateway keeps
//! no watch beyond a session).

use std::collections::{BTreeMap, BTreeSet};

use super::session::{ClientSession, Event};
use surepush_proto::{Frame, UserId, Watch, WatchAck};

/// Most users named in one WATCH or UNWATCH frame (its count is a u16).
const MAX_USERS_PER_FRAME: usize = u16::MAX as usize;

/// The users a session watches, and the WATCHes awaiting their answer.
#[derive(Debug, Default)]
pub(super) struct Watching {
    users: BTreeSet<UserId>,
    /// Request id -> the users that WATCH added here (dropped again if the
    /// gateway refuses it).
    pending: BTreeMap<u32, Vec<UserId>>,
    next_request: u32,
}

impl ClientSession {
    /// Watches the presence of `users` (answered with [`Event::Watched`],
    /// then [`Event::Presence`] per user now and after each change); kept
    /// across reconnects until [`ClientSession::unwatch`]. Returns the
    /// request id of the first WATCH sent (none while disconnected: the
    /// watch is sent on connect).
    pub fn watch(&mut self, users: &[UserId], now: u64) -> Option<u32> {
        self.set_now(now);
        let new: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|u| self.watching.users.insert(*u))
            .collect();
        if new.is_empty() || !self.is_connected() {
            return None;
        }
        self.send_watches(new)
    }

    /// Stops watching `users`.
    pub fn unwatch(&mut self, users: &[UserId], now: u64) {
        self.set_now(now);
        let gone: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|u| self.watching.users.remove(u))
            .collect();
        if self.is_connected() {
            for chunk in gone.chunks(MAX_USERS_PER_FRAME) {
                self.queue_frame(Frame::Unwatch(chunk.to_vec()));
            }
        }
    }

    /// The users this session watches (or will, once connected).
    pub fn watched(&self) -> impl Iterator<Item = UserId> + '_ {
        self.watching.users.iter().copied()
    }

    /// After CONNACK: the new session watches what the old one did.
    pub(super) fn rewatch_all(&mut self) {
        self.watching.pending.clear();
        let all: Vec<UserId> = self.watching.users.iter().copied().collect();
        if !all.is_empty() {
            self.send_watches(all);
        }
    }

    fn send_watches(&mut self, users: Vec<UserId>) -> Option<u32> {
        let mut first = None;
        for chunk in users.chunks(MAX_USERS_PER_FRAME) {
            let w = &mut self.watching;
            w.next_request = w.next_request.wrapping_add(1);
            let request = w.next_request;
            w.pending.insert(request, chunk.to_vec());
            first.get_or_insert(request);
            self.queue_frame(Frame::Watch(Watch {
                request,
                users: chunk.to_vec(),
            }));
        }
        first
    }

    pub(super) fn on_watch_ack(&mut self, ack: WatchAck) {
        let added = self.watching.pending.remove(&ack.request);
        if ack.code != 0 {
            // Refused whole: none of its users is watched.
            for u in added.unwrap_or_default() {
                self.watching.users.remove(&u);
            }
        }
        self.push_event(Event::Watched(ack));
    }
}
