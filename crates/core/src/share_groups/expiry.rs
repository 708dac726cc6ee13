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
//! - The timer is memory only: after a gateway restart a restored group
//!   keeps the QoS 2 messages of a member that never returns (its session
//!   is found expired only when it connects again, MQTT.md 3.5).

use std::collections::BTreeMap;

use super::super::action::ConnId;
use super::super::shard::{Shard, TimerEvent};
use crate::peer::ShareOp;
use surepush_proto::{DeviceId, ShareReq, UserId};

/// Nanoseconds per second of `expiry_s`.
const NS_PER_S: u64 = 1_000_000_000;

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
