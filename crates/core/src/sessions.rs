//! Sessions and delivery state: the inboxes, devices and connections of
//! the users owned by this shard.
//!
//! Owns, privately: the inbox of each user (assigned and durable head, its
//! devices with their cursors and connection), the open connections (a
//! slab indexed by [`ConnId`], whose generation tells a reused slot from
//! the connection that held it before), and the cursors changed since the
//! last flush.
//!
//! Invariants: a [`ConnId`] finds its connection only while that
//! connection is open (its generation matches); a device's `conn` names
//! a connection of this part or is cleared when it closes; a cursor never
//! moves back, and `persisted <= cursor`; a device is in the dirty list
//! at most once per flush (it enters when its cursor leaves `persisted`).
//!
//! Called by the dispatcher's session, delivery, sync and send code
//! (`session.rs`, `deliver.rs`, `sync.rs`, `send.rs`) and by the parts'
//! `impl Shard` glue that reads a head or an online device; the timers
//! (retransmit, idle, cursor flush) stay the dispatcher's: this part says
//! when one is needed ([`Sessions::arm_flush`]).
//!
//! Not private yet: the fields of [`Inbox`], [`Device`] and [`Conn`]
//! (the delivery code still reads and writes them in place).

use std::collections::VecDeque;

use slab::Slab;

use crate::action::{ConnId, ReadId};
use crate::hashing::FastHashMap;
use crate::timer::TimerId;
use crate::MessageRecord;
use surepush_proto::{ConnAck, DeviceId, Frame, Seq, UserId};

/// One user's inbox as far as delivery is concerned.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    /// Highest sequence handed to an append (durable or not).
    pub(super) assigned: Seq,
    /// Highest durable sequence.
    pub(super) durable: Seq,
    /// Devices that ever connected or acknowledged.
    pub(super) devices: Vec<Device>,
}

impl Inbox {
    pub(super) fn device_mut(&mut self, id: DeviceId) -> Option<&mut Device> {
        self.devices.iter_mut().find(|d| d.id == id)
    }
}

/// One device's delivery position.
#[derive(Debug)]
pub(super) struct Device {
    pub(super) id: DeviceId,
    /// Highest acknowledged sequence.
    pub(super) cursor: Seq,
    /// Highest cursor written to the log.
    pub(super) persisted: Seq,
    /// The device's connection on this shard, if online.
    pub(super) conn: Option<ConnId>,
}

/// A push awaiting its ACK.
#[derive(Debug)]
pub(super) struct PendingPush {
    pub(super) record: MessageRecord,
    /// The push before it on this connection (its PUSH `prev_seq`).
    pub(super) prev: Seq,
    pub(super) tries: u32,
    pub(super) timer: TimerId,
}

/// State of one SYNC exchange on a connection.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// Highest request id processed (older ones are stale duplicates).
    pub(super) last_request: Option<u32>,
    /// The read serving the current request.
    pub(super) in_flight: Option<ReadId>,
    /// A request that arrived while another was being read (boxed: rare,
    /// and every connection's slot holds a `SyncState`).
    pub(super) queued: Option<Box<surepush_proto::Sync>>,
}

/// One connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) generation: u32,
    /// (user, device) once CONNECT succeeded.
    pub(super) session: Option<(UserId, DeviceId)>,
    /// Receiving live pushes (after a SYNC returned an empty page).
    pub(super) live: bool,
    /// Highest sequence pushed live (the push window's front edge), or
    /// acknowledged beyond it by the device.
    pub(super) sent_up_to: Seq,
    /// Sequences up to here that the log no longer holds (lost to
    /// salvage, or past a raised head): live delivery skips them.
    pub(super) gone_to: Seq,
    /// A CONNACK held until the head its CONNECT raised is durable, and the
    /// frames queued behind it meanwhile (`session.rs`). Rare, so boxed: a
    /// `Conn` is in every open connection's slab slot.
    pub(super) held: Option<Box<(ConnAck, Vec<Frame>)>>,
    pub(super) pending: VecDeque<PendingPush>,
    /// The device's own-inbox copies of its sends that wait for their
    /// SENDACK: durable, not pushed yet, in sequence order right after
    /// `sent_up_to`. They are pushed just before the next frame to the
    /// connection (normally that SENDACK), see `deliver.rs`.
    pub(super) held_echoes: Vec<MessageRecord>,
    pub(super) refill: Option<ReadId>,
    pub(super) sync: SyncState,
    pub(super) last_rx_ns: u64,
    pub(super) idle_timer: Option<TimerId>,
    pub(super) idle_limit_ns: u64,
    pub(super) pending_sends: u32,
    pub(super) rate_window_start_ns: u64,
    pub(super) rate_count: u32,
    /// Rooms this connection subscribes to.
    pub(super) rooms: Vec<u64>,
    /// A retried SEND of this connection is being compared with its stored
    /// original (see `retry`): later SENDs wait in `deferred`, so sends
    /// are stored in the order the connection sent them.
    pub(super) verifying: bool,
    pub(super) deferred: VecDeque<surepush_proto::Send>,
    /// What the session's token grants (empty before CONNECT).
    pub(super) acl: surepush_token::Acl,
    /// How the client reached the gateway (`"native"`, `"mqtt"`, ...), for
    /// the session webhooks and presence.
    pub(super) transport: &'static str,
    /// When the session opened (ms since the epoch; presence).
    pub(super) since_ms: u64,
}

/// The inboxes, devices and connections of one shard (module docs).
#[derive(Debug, Default)]
pub(super) struct Sessions {
    users: FastHashMap<UserId, Inbox>,
    conns: Slab<Conn>,
    next_generation: u32,
    dirty_cursors: Vec<(UserId, DeviceId)>,
    flush_armed: bool,
}

impl Sessions {
    /// The heads and cursors recovery folded from the log.
    pub(super) fn recovered(
        heads: impl ExactSizeIterator<Item = (UserId, Seq)>,
        cursors: impl IntoIterator<Item = ((UserId, DeviceId), Seq)>,
    ) -> Sessions {
        let mut users: FastHashMap<UserId, Inbox> =
            FastHashMap::with_capacity_and_hasher(heads.len(), Default::default());
        for (user, head) in heads {
            let inbox = users.entry(user).or_default();
            inbox.assigned = head;
            inbox.durable = head;
        }
        for ((user, device), seq) in cursors {
            let devices = &mut users.entry(user).or_default().devices;
            // Most users have one device: grow by one, not to Vec's four.
            devices.reserve_exact(1);
            devices.push(Device {
                id: device,
                cursor: seq,
                persisted: seq,
                conn: None,
            });
        }
        Sessions {
            users,
            ..Default::default()
        }
    }

    // ----- connections -------------------------------------------------------

    /// Opens a connection built by `conn` from its generation.
    pub(super) fn open(&mut self, conn: impl FnOnce(u32) -> Conn) -> ConnId {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.conns.insert(conn(generation));
        ConnId {
            index: index as u32,
            generation,
        }
    }

    /// Removes connection `id` if it is open; returns it.
    pub(super) fn close(&mut self, id: ConnId) -> Option<Conn> {
        self.conn(id)?;
        Some(self.conns.remove(id.index as usize))
    }

    /// Connection `id`, if it is open.
    pub(super) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    /// Connection `id`, if it is open.
    pub(super) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    /// The open connections.
    pub(super) fn conns(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter().map(|(index, c)| {
            let id = ConnId {
                index: index as u32,
                generation: c.generation,
            };
            (id, c)
        })
    }

    // ----- inboxes -----------------------------------------------------------

    /// `user`'s inbox, if known here.
    pub(super) fn inbox(&self, user: UserId) -> Option<&Inbox> {
        self.users.get(&user)
    }

    /// `user`'s inbox, created empty if unknown.
    pub(super) fn inbox_entry(&mut self, user: UserId) -> &mut Inbox {
        self.users.entry(user).or_default()
    }

    /// Highest durable sequence of `user`'s inbox (0 if unknown here).
    pub(super) fn durable_head(&self, user: UserId) -> Seq {
        self.users.get(&user).map_or(Seq::ZERO, |i| i.durable)
    }

    /// The device `device` of `user`, if known.
    pub(super) fn device_mut(&mut self, user: UserId, device: DeviceId) -> Option<&mut Device> {
        self.users.get_mut(&user)?.device_mut(device)
    }

    /// Every inbox known here.
    pub(super) fn inboxes(&self) -> impl Iterator<Item = (UserId, &Inbox)> {
        self.users.iter().map(|(id, inbox)| (*id, inbox))
    }

    /// Drops `user`'s inbox state (its partition moved away).
    pub(super) fn forget_inbox(&mut self, user: UserId) {
        self.users.remove(&user);
    }

    // ----- cursors -----------------------------------------------------------

    /// Moves a device's cursor forward (never back); returns whether it
    /// moved (then it awaits the next flush).
    pub(super) fn advance_cursor(&mut self, user: UserId, device: DeviceId, seq: Seq) -> bool {
        let Some(d) = self.device_mut(user, device) else {
            return false;
        };
        if seq <= d.cursor {
            return false;
        }
        let was_clean = d.cursor == d.persisted;
        d.cursor = seq;
        if was_clean {
            self.dirty_cursors.push((user, device));
        }
        true
    }

    /// Notes that the bookkeeping flush is armed; returns whether it was
    /// not (the caller arms its timer then).
    pub(super) fn arm_flush(&mut self) -> bool {
        !std::mem::replace(&mut self.flush_armed, true)
    }

    /// The flush is due: returns the devices whose cursors changed since
    /// the last one (see [`Sessions::persist_cursor`]).
    pub(super) fn take_dirty_cursors(&mut self) -> Vec<(UserId, DeviceId)> {
        self.flush_armed = false;
        std::mem::take(&mut self.dirty_cursors)
    }

    /// Marks a device's cursor as written; returns it, or `None` if the
    /// device is gone or its cursor was written already.
    pub(super) fn persist_cursor(&mut self, user: UserId, device: DeviceId) -> Option<Seq> {
        let d = self.device_mut(user, device)?;
        if d.cursor == d.persisted {
            return None;
        }
        d.persisted = d.cursor;
        Some(d.cursor)
    }
}
