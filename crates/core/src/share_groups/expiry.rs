//! Expiry of a persistent share group member's session (issue #21,
//! docs/MQTT.md 2.3a "A member's session ends").
//!
//! A persistent member whose connection closes stays in its groups (its
//! QoS 2 messages wait for it, [MQTT-4.8.2-4]) for as long as its session
//! lives: its Session Expiry Interval (SHARE's `expiry_s`) from the close.
//! The member's shard arms a timer then; when it fires and the session has
//! not joined the group again since, the session has ended and the member
//! leaves the group everywhere, as an UNSUBSCRIBE would: its QoS 2 messages
//! are dropped for the group, never sent to another member
//! ([MQTT-4.8.2-5]), and the group no longer waits for it.
//!
//! Rules:
//! - A later close of the same session arms a later timer; the earlier one
//!   finds a later deadline recorded and does nothing.
//! - A join from the same (user, device) (it resumed, or started afresh
//!   and subscribed again) cancels it, and so does a leave.
//! - A restart: the group's durable state keeps the session (expiry, and
//!   when the connection closed) of each member it holds a QoS 2 message
//!   for (`share_group/durable.rs`). A restored group tells the member's
//!   shard when that session ends ([`ShareAway`]): the connection's
//!   recorded close + expiry, or, when no close was recorded (the
//!   gateway died while the member was connected, or before the record
//!   of the close was durable), the server's start + expiry, as for a
//!   session record (MQTT.md 2.5). The member's shard arms the same timer
//!   as for a live close, so a join cancels it the same way; one already
//!   armed (the member came back and left again) or a member joined now
//!   keeps its own. A member holding nothing is not waited for and not
//!   told about: the restored group does not know it.

use std::collections::BTreeMap;

use super::super::action::ConnId;
use super::super::shard::{Shard, TimerEvent};
use crate::peer::{ShareAway, ShareOp};
use surepush_proto::{share_key, DeviceId, Qos, ShareReq, UserId};

/// Nanoseconds per second of `expiry_s`.
const NS_PER_S: u64 = 1_000_000_000;
/// Nanoseconds per millisecond of a wall clock deadline.
const NS_PER_MS: u64 = 1_000_000;
/// Milliseconds per second of `expiry_s`.
const MS_PER_S: u64 = 1_000;

/// The connection a restored member's leave names: none (it has none
/// since the restart; the stream home shards do not read it for a leave).
const NO_CONN: ConnId = ConnId {
    index: u32::MAX,
    generation: u32::MAX,
};

/// Persistent members whose connection is gone, by (user, device, group
/// key): when their session ends, and what to leave.
#[derive(Debug, Default)]
pub(super) struct Expiring {
    by_member: BTreeMap<(UserId, DeviceId, u64), Gone>,
}

#[derive(Debug)]
struct Gone {
    deadline_ns: u64,
    conn: ConnId,
    req: ShareReq,
}

impl Expiring {
    /// The member joined or left `key` again: no expiry pending.
    pub(super) fn remove(&mut self, user: UserId, device: DeviceId, key: u64) {
        self.by_member.remove(&(user, device, key));
    }
}

impl Shard {
    /// A persistent member's connection `conn` closed: its session ends
    /// `req.expiry_s` from now unless it joins again.
    pub(super) fn share_expire_later(
        &mut self,
        conn: ConnId,
        user: UserId,
        device: DeviceId,
        req: &ShareReq,
    ) {
        let Some(expiry_s) = req.expiry_s else {
            return; // never expires
        };
        let key = req.key();
        let deadline_ns = self
            .now_ns
            .saturating_add(u64::from(expiry_s).saturating_mul(NS_PER_S));
        let gone = Gone {
            deadline_ns,
            conn,
            req: req.clone(),
        };
        self.shares
            .expiring
            .by_member
            .insert((user, device, key), gone);
        let event = TimerEvent::ShareExpiry { user, device, key };
        self.timers.insert(deadline_ns, event);
    }

    /// Group `key` was restored (home shard): each member it waits for
    /// whose session expires hears when (module doc).
    pub(in super::super) fn share_expire_restored(&mut self, key: u64) {
        let Some(h) = self.shares.groups.get(&key) else {
            return;
        };
        let start_ms = self.wall_ms();
        let away: Vec<ShareAway> = h
            .state
            .away()
            .filter_map(|(member, session)| {
                let expiry_ms = u64::from(session.expiry_s?).saturating_mul(MS_PER_S);
                let since = session.gone_ms.unwrap_or(start_ms);
                Some(ShareAway {
                    group: h.group.clone(),
                    filter: h.filter.clone(),
                    user: member.user,
                    device: member.device,
                    deadline_ms: since.saturating_add(expiry_ms),
                })
            })
            .collect();
        for m in away {
            self.route_to_owner(m.user, m);
        }
    }

    /// A restored group waits for a member of this shard whose session
    /// ends at `m.deadline_ms`: it leaves then unless it joins again.
    pub(crate) fn on_share_away(&mut self, m: ShareAway) {
        let key = share_key(&m.group, &m.filter);
        let member = (m.user, m.device, key);
        let joined = self.shares.by_conn.iter().any(|(conn, held)| {
            held.iter().any(|s| s.key == key)
                && self.conn(*conn).and_then(|c| c.session) == Some((m.user, m.device))
        });
        if joined || self.shares.expiring.by_member.contains_key(&member) {
            return; // back already, or its own close decides
        }
        let wait_ms = m.deadline_ms.saturating_sub(self.wall_ms());
        let deadline_ns = self
            .now_ns
            .saturating_add(wait_ms.saturating_mul(NS_PER_MS));
        let req = ShareReq {
            group: m.group,
            filter: m.filter,
            qos: Qos::AtMostOnce,
            receive_max: 0,
            leave: false,
            persistent: true,
            expiry_s: None,
        };
        let gone = Gone {
            deadline_ns,
            conn: NO_CONN,
            req,
        };
        self.shares.expiring.by_member.insert(member, gone);
        let event = TimerEvent::ShareExpiry {
            user: m.user,
            device: m.device,
            key,
        };
        self.timers.insert(deadline_ns, event);
    }

    /// The expiry timer of a persistent member of group `key` fired.
    pub(crate) fn on_share_expiry(&mut self, user: UserId, device: DeviceId, key: u64) {
        let member = (user, device, key);
        let expiring = &mut self.shares.expiring.by_member;
        match expiring.get(&member) {
            Some(gone) if gone.deadline_ns <= self.now_ns => {}
            // Came back, or closed again later (that timer decides).
            _ => return,
        }
        let gone = expiring.remove(&member).expect("just found");
        self.stats.share_expired += 1;
        tracing::debug!(
            user = user.0,
            device = device.0,
            key,
            "share member's session expired"
        );
        let leave = ShareReq {
            leave: true,
            ..gone.req
        };
        self.share_broadcast(gone.conn, user, device, &leave, ShareOp::Leave);
    }
}
