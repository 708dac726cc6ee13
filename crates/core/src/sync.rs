//! Paged replay (SYNC / SYNCPAGE).
//!
//! Rules (docs/PROTOCOL.md, "Replay"):
//! - `After(a)` acknowledges everything up to `a` (fetching page N+1 with
//!   the last seq of page N acknowledges page N) and returns the messages
//!   after `a`; an empty `After` page acknowledges the last page and turns
//!   the connection live, so new messages are pushed from then on;
//! - a SYNC that reads ahead (`read_ahead`, issue #24) is the same read
//!   without the acknowledgement: a client that hands items on slowly (an
//!   MQTT client's PUBACKs) fetches the next page at once and acknowledges
//!   with ACK as items are taken, so the cursor never passes what the
//!   client holds and the replay does not stop and wait per page;
//! - `Latest` and `Before(a)` page backwards for a device without history
//!   and acknowledge nothing;
//! - while a SYNC is being served, the connection is not live: the replay
//!   itself covers what arrives meanwhile;
//! - request ids increase; a SYNC with an id not above the last one served
//!   is a stale duplicate and is ignored;
//! - a page's `head` is the durable head when its read was issued: every
//!   record up to it is in the read, so a sequence missing below it is
//!   gone (lost to a salvaged damage, removed by retention, or past a head
//!   a device raised) and the page says so with `GAP`.

use super::action::ConnId;
use super::deliver::push_frame;
use super::shard::{ReadPurpose, Shard};
use crate::{InboxQuery, MessageRecord};
use surepush_proto::{
    DeviceId, ErrorCode, Frame, Seq, Sync, SyncDirection, SyncPage, UserId, HEADER_LEN,
};

/// Bytes of a SYNCPAGE before its items.
const PAGE_OVERHEAD: usize = HEADER_LEN + 16;

impl Shard {
    pub(super) fn on_sync(
        &mut self,
        conn: ConnId,
        _user: UserId,
        _device: DeviceId,
        request: Sync,
    ) {
        let max = self.config.max_sync_limit;
        let c = self.conn_mut(conn).expect("connected");
        if c.sync
            .last_request
            .is_some_and(|last| request.request_id <= last)
        {
            return;
        }
        c.sync.last_request = Some(request.request_id);
        if request.limit == 0 || request.limit > max {
            self.send_frame(
                conn,
                Frame::error(
                    ErrorCode::BadSyncRequest,
                    format!("limit {} outside 1..={max}", request.limit),
                ),
            );
            return;
        }
        if c.sync.in_flight.is_some() {
            c.sync.queued = Some(Box::new(request));
            return;
        }
        self.start_sync(conn, request);
    }

    fn start_sync(&mut self, conn: ConnId, request: Sync) {
        let c = self.conn(conn).expect("connected");
        let (user, device) = c.session.expect("SYNC needs a session");
        let head = self.durable_head(user);
        let query = match request.direction {
            SyncDirection::After(anchor) => {
                let durable = head;
                if anchor > durable {
                    self.fail(
                        conn,
                        ErrorCode::AckBeyondSent,
                        &format!(
                            "SYNC after {} is beyond the inbox head {}",
                            anchor.0, durable.0
                        ),
                    );
                    return;
                }
                if !request.read_ahead {
                    self.advance_cursor(user, device, anchor);
                }
                self.stop_live(conn);
                InboxQuery::After {
                    after: anchor,
                    limit: request.limit,
                }
            }
            SyncDirection::Latest => InboxQuery::Latest {
                limit: request.limit,
            },
            SyncDirection::Before(before) => InboxQuery::Before {
                before,
                limit: request.limit,
            },
        };
        let purpose = ReadPurpose::Sync {
            conn,
            request,
            head,
        };
        let id = self.read(user, query, purpose);
        self.conn_mut(conn).expect("connected").sync.in_flight = Some(id);
    }

    /// Leaves live mode: pending pushes are dropped (the replay resends them).
    fn stop_live(&mut self, conn: ConnId) {
        let c = self.conn_mut(conn).expect("connected");
        c.live = false;
        c.refill = None;
        let timers: Vec<_> = c.pending.drain(..).map(|p| p.timer).collect();
        self.stats.pending_acks -= timers.len() as u64;
        for t in timers {
            self.timers.cancel(t);
        }
    }

    pub(super) fn on_sync_read(
        &mut self,
        conn: ConnId,
        request: Sync,
        head: Seq,
        result: Result<Vec<MessageRecord>, ()>,
    ) {
        let max_frame = self.config.max_frame as usize;
        let Some(c) = self.conn_mut(conn) else { return };
        c.sync.in_flight = None;
        let (_, device) = c.session.expect("SYNC needs a session");
        let Ok(mut records) = result else {
            self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "could not read the inbox",
            );
            return;
        };
        records.retain(|r| r.seq <= head);
        // Keep the page within the frame limit. Forward pages keep their
        // oldest items (the next page continues after them); backward pages
        // keep their newest (the next one continues before them).
        let full = records.len() as u32 >= request.limit;
        let budget = max_frame.saturating_sub(PAGE_OVERHEAD);
        let trimmed = trim_to_budget(&mut records, budget, request.direction);
        let end = match request.direction {
            SyncDirection::After(_) => records.last().is_none_or(|r| r.seq >= head),
            _ => !full && !trimmed,
        };
        // Each item's `prev_seq` is the item (or anchor) before it: what
        // lies strictly between is gone.
        let first_prev = match (request.direction, records.first()) {
            (SyncDirection::After(anchor), _) => anchor,
            (_, Some(first)) => Seq(first.seq.0 - 1),
            (_, None) => Seq::ZERO,
        };
        let mut prev = first_prev;
        let mut gap =
            matches!(request.direction, SyncDirection::After(a) if records.is_empty() && head > a);
        let items: Vec<_> = records
            .iter()
            .map(|r| {
                gap |= r.seq > prev.next();
                let before = std::mem::replace(&mut prev, r.seq);
                match push_frame(r, device, false, before) {
                    Frame::Push(mut p) => {
                        // A replay always carries the payload: the device may have lost it.
                        p.echo = false;
                        p.payload = r.payload.clone();
                        p
                    }
                    _ => unreachable!("push_frame builds a PUSH"),
                }
            })
            .collect();
        let c = self.conn_mut(conn).expect("checked above");
        // An empty forward page acknowledged everything: go live from its anchor.
        let go_live = match request.direction {
            SyncDirection::After(anchor) if records.is_empty() => {
                c.sent_up_to = anchor;
                c.live = true;
                true
            }
            _ => false,
        };
        self.stats.sync_pages += 1;
        self.send_frame(
            conn,
            Frame::SyncPage(SyncPage {
                request_id: request.request_id,
                head,
                end,
                gap,
                items,
            }),
        );
        if go_live {
            self.refill(conn);
        }
        let queued = self.conn_mut(conn).and_then(|c| c.sync.queued.take());
        if let Some(next) = queued {
            self.start_sync(conn, *next);
        }
    }
}

/// Cuts `records` (ascending) to the message items that fit in `budget`
/// bytes: a forward page (`After`) keeps its oldest, a backward one its
/// newest, so the next page continues from the kept end. Whether anything
/// was cut. SYNCPAGE and CONVMSGS items have the same size.
pub(super) fn trim_to_budget(
    records: &mut Vec<MessageRecord>,
    mut budget: usize,
    direction: SyncDirection,
) -> bool {
    let mut fits = |r: &MessageRecord| {
        let need = surepush_proto::MSG_ITEM_FIXED_LEN
            + r.payload.len()
            + surepush_proto::attrs_encoded_len(&r.attrs);
        let ok = need <= budget;
        if ok {
            budget -= need;
        }
        ok
    };
    let before = records.len();
    if matches!(direction, SyncDirection::After(_)) {
        let keep = records.iter().take_while(|r| fits(r)).count();
        records.truncate(keep);
    } else {
        let keep = records.iter().rev().take_while(|r| fits(r)).count();
        records.drain(..records.len() - keep);
    }
    records.len() < before
}
