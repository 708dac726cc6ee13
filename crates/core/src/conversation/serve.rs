//! CONVLIST and CONVFETCH on the owner shard (docs/PROTOCOL.md,
//! "Conversations").
//!
//! A CONVLIST is answered at once from [`super::Conversations`]: unread
//! counts are relative to the asking device's cursor. A CONVFETCH reads
//! the sequences the conversation's index names (one read of exactly the
//! page's messages, `InboxQuery::Seqs`) and answers when the read
//! completes; like a SYNC page, it never exceeds `max_frame` and holds
//! only durable messages. Neither acknowledges anything.
//!
//! The admin API asks the same two reads of the owner shard
//! ([`Shard::conversation_summaries`], [`Shard::handle_conversation_fetch`]):
//! the same pages, built by the same code, the fetch answered with
//! [`Action::ConversationMessages`] instead of a frame.

use surepush_proto::{
    ConvFetch, ConvList, ConvMsgs, ConvPage, ConvSummary, DeviceId, ErrorCode, Frame, Push, Seq,
    SyncDirection, UserId, CONVMSGS_FIXED_LEN, CONVPAGE_FIXED_LEN, HEADER_LEN, SUMMARY_FIXED_LEN,
};

use super::PagePlan;
use crate::action::{Action, ConnId};
use crate::shard::{ReadPurpose, Shard};
use crate::{InboxQuery, MessageRecord};

/// A conversation read asked with a page size outside
/// `1..=max_sync_limit` (ERROR `BadConversationRequest` on the wire, 400
/// over the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limit {limit} outside 1..={max}")]
pub struct BadConversationLimit {
    /// The page size asked for.
    pub limit: u32,
    /// The largest allowed (`max_sync_limit`).
    pub max: u32,
}

/// Who gets a conversation page.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PageFor {
    /// A client connection: a CONVMSGS frame.
    Conn(ConnId),
    /// The admin API's request: [`Action::ConversationMessages`].
    Admin(u64),
}

/// Whose cursor a summary page counts unread from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnreadFrom {
    /// One device's acknowledged position (0 for a device never seen).
    Device(DeviceId),
    /// The highest acknowledged position of any of the user's devices:
    /// what the user has read somewhere.
    AnyDevice,
}

/// A CONVFETCH whose read is in flight.
#[derive(Debug)]
pub(crate) struct FetchRead {
    pub(crate) to: PageFor,
    pub(crate) request: ConvFetch,
    pub(crate) head: Seq,
    pub(crate) first_prev: Seq,
    pub(crate) end: bool,
    pub(crate) truncated: bool,
}

impl Shard {
    /// Whether `limit` is a page size a conversation read may ask for.
    fn check_conversation_limit(&self, limit: u32) -> Result<(), BadConversationLimit> {
        let max = self.config.max_sync_limit;
        match limit == 0 || limit > max {
            true => Err(BadConversationLimit { limit, max }),
            false => Ok(()),
        }
    }

    fn conversation_limit_ok(&mut self, conn: ConnId, limit: u32) -> bool {
        match self.check_conversation_limit(limit) {
            Ok(()) => true,
            Err(e) => {
                let error = Frame::error(ErrorCode::BadConversationRequest, e.to_string());
                self.send_frame(conn, error);
                false
            }
        }
    }

    pub(crate) fn on_conv_list(
        &mut self,
        conn: ConnId,
        user: UserId,
        device: DeviceId,
        request: ConvList,
    ) {
        if !self.conversation_limit_ok(conn, request.limit) {
            return;
        }
        let page = self.conversation_page(user, UnreadFrom::Device(device), &request);
        self.stats.conversation_pages += 1;
        self.send_frame(conn, Frame::ConvPage(page));
    }

    /// The admin API's CONVLIST: the page a device would get (unread from
    /// `from`'s cursor), or why the request is refused. Answered at once,
    /// from memory.
    pub fn conversation_summaries(
        &mut self,
        user: UserId,
        from: UnreadFrom,
        request: &ConvList,
    ) -> Result<ConvPage, BadConversationLimit> {
        self.check_conversation_limit(request.limit)?;
        self.stats.conversation_pages += 1;
        Ok(self.conversation_page(user, from, request))
    }

    /// The CONVPAGE answering `request` for `user`, unread counted from
    /// `from`'s cursor.
    fn conversation_page(&self, user: UserId, from: UnreadFrom, request: &ConvList) -> ConvPage {
        let cursor = match from {
            UnreadFrom::Device(device) => self.device_cursor(user, device),
            UnreadFrom::AnyDevice => self.highest_cursor(user),
        }
        .unwrap_or(Seq::ZERO);
        let page = self.conversations.summaries(
            user,
            cursor,
            request.before,
            request.limit,
            request.unread_only,
        );
        // Keep the page within the frame limit (newest first: the next
        // page continues below the last item kept).
        let mut budget =
            (self.config.max_frame as usize).saturating_sub(HEADER_LEN + CONVPAGE_FIXED_LEN);
        let mut end = page.end;
        let mut items = Vec::with_capacity(page.items.len());
        for (peer, c, unread, unread_at_least) in page.items {
            let need = SUMMARY_FIXED_LEN + c.last.preview.len();
            if need > budget {
                end = false;
                break;
            }
            budget -= need;
            items.push(ConvSummary {
                peer,
                unread,
                unread_at_least,
                total: c.total,
                last_seq: c.last.seq,
                last_from: c.last.from,
                last_from_device: c.last.from_device,
                last_ts_ms: c.last.ts_ms,
                last_len: c.last.len,
                preview: c.last.preview.clone(),
            });
        }
        ConvPage {
            request_id: request.request_id,
            cursor,
            head: self.durable_head(user),
            older: page.older,
            end,
            items,
        }
    }

    pub(crate) fn on_conv_fetch(&mut self, conn: ConnId, user: UserId, request: ConvFetch) {
        if self.conversation_limit_ok(conn, request.limit) {
            self.start_conv_fetch(PageFor::Conn(conn), user, request);
        }
    }

    /// The admin API's CONVFETCH, tagged `request`: the page comes as
    /// [`Action::ConversationMessages`] once read from the log (at once
    /// for a conversation not tracked), unless the page size is refused.
    /// `fetch.request_id` is echoed in the page.
    pub fn handle_conversation_fetch(
        &mut self,
        request: u64,
        user: UserId,
        fetch: ConvFetch,
        now: u64,
    ) -> Result<(), BadConversationLimit> {
        self.set_now(now);
        self.check_conversation_limit(fetch.limit)?;
        self.start_conv_fetch(PageFor::Admin(request), user, fetch);
        Ok(())
    }

    /// The admin API's page of a user's whole inbox (`GET
    /// /v1/users/{n}/messages`), tagged `request`: like
    /// [`Shard::handle_conversation_fetch`], over every sequence of the
    /// inbox up to its durable head instead of one conversation's
    /// (`fetch.peer` is unused). Messages the log no longer holds
    /// (retention) are left out of the page.
    pub fn handle_inbox_fetch(
        &mut self,
        request: u64,
        user: UserId,
        fetch: ConvFetch,
        now: u64,
    ) -> Result<(), BadConversationLimit> {
        self.set_now(now);
        self.check_conversation_limit(fetch.limit)?;
        let plan = inbox_plan(self.durable_head(user), fetch.direction, fetch.limit);
        self.read_page(PageFor::Admin(request), user, fetch, plan);
        Ok(())
    }

    fn start_conv_fetch(&mut self, to: PageFor, user: UserId, request: ConvFetch) {
        let head = self.durable_head(user);
        let Some(plan) =
            self.conversations
                .plan(user, request.peer, request.direction, request.limit)
        else {
            // Not tracked (never, or evicted): an empty last page.
            let page = ConvMsgs {
                request_id: request.request_id,
                peer: request.peer,
                head,
                end: true,
                truncated: self.conversations.of(user).is_some_and(|u| u.older > 0),
                items: Vec::new(),
            };
            self.answer_conv_fetch(to, Some(page));
            return;
        };
        self.read_page(to, user, request, plan);
    }

    /// Reads the sequences of `plan` for the page `request` asked.
    fn read_page(&mut self, to: PageFor, user: UserId, request: ConvFetch, plan: PagePlan) {
        let purpose = ReadPurpose::Conversation(FetchRead {
            to,
            request,
            head: self.durable_head(user),
            first_prev: plan.first_prev,
            end: plan.end,
            truncated: plan.truncated,
        });
        self.read(user, InboxQuery::Seqs(plan.seqs), purpose);
    }

    /// Hands a conversation page (`None`: the log could not be read) to
    /// whoever asked.
    fn answer_conv_fetch(&mut self, to: PageFor, page: Option<ConvMsgs>) {
        match (to, page) {
            (PageFor::Conn(conn), Some(page)) => {
                self.stats.conversation_pages += 1;
                self.send_frame(conn, Frame::ConvMsgs(page));
            }
            (PageFor::Conn(conn), None) => self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "could not read the inbox",
            ),
            (PageFor::Admin(request), page) => {
                self.stats.conversation_pages += u64::from(page.is_some());
                self.actions
                    .push_back(Action::ConversationMessages { request, page });
            }
        }
    }

    pub(crate) fn on_conv_read(&mut self, read: FetchRead, result: Result<Vec<MessageRecord>, ()>) {
        let FetchRead {
            to,
            request,
            head,
            first_prev,
            mut end,
            truncated,
        } = read;
        if let PageFor::Conn(conn) = to {
            if self.conn(conn).is_none() {
                return;
            }
        }
        let Ok(mut records) = result else {
            self.answer_conv_fetch(to, None);
            return;
        };
        records.retain(|r| r.seq <= head);
        let budget =
            (self.config.max_frame as usize).saturating_sub(HEADER_LEN + CONVMSGS_FIXED_LEN);
        let cut = crate::sync::trim_to_budget(&mut records, budget, request.direction);
        end &= !cut;
        let mut prev = first_prev;
        let items = records
            .into_iter()
            .map(|r| Push {
                seq: r.seq,
                prev_seq: std::mem::replace(&mut prev, r.seq),
                from: r.from,
                from_device: r.from_device,
                to: r.to,
                client_msg_id: r.client_msg_id,
                ts_ms: r.ts_ms,
                qos: r.qos,
                echo: false,
                retransmit: false,
                attrs: r.attrs,
                payload: r.payload,
            })
            .collect();
        let page = ConvMsgs {
            request_id: request.request_id,
            peer: request.peer,
            head,
            end,
            truncated: truncated && !cut,
            items,
        };
        self.answer_conv_fetch(to, Some(page));
    }
}

/// The sequences of an inbox page: the newest `limit` up to `head`, the
/// `limit` before an anchor, or the `limit` after one (an inbox's
/// sequences are contiguous from 1).
fn inbox_plan(head: Seq, direction: SyncDirection, limit: u32) -> PagePlan {
    let (head, limit) = (head.0, u64::from(limit));
    // The page is `lo..=hi`; empty when `lo > hi`.
    let (lo, hi) = match direction {
        SyncDirection::Latest => (head.saturating_sub(limit) + 1, head),
        SyncDirection::Before(a) => {
            let hi = a.0.saturating_sub(1).min(head);
            (hi.saturating_sub(limit) + 1, hi)
        }
        SyncDirection::After(a) => (a.0.saturating_add(1), a.0.saturating_add(limit).min(head)),
    };
    let backward = !matches!(direction, SyncDirection::After(_));
    PagePlan {
        seqs: (lo..=hi).map(Seq).collect(),
        first_prev: Seq(lo.saturating_sub(1).min(head)),
        end: if backward { lo <= 1 } else { hi >= head },
        truncated: false,
    }
}

#[cfg(test)]
mod inbox_plan_tests {
    use super::*;

    fn seqs(p: &PagePlan) -> Vec<u64> {
        p.seqs.iter().map(|s| s.0).collect()
    }

    #[test]
    fn inbox_pages_cover_the_inbox_in_order_and_say_where_it_ends() {
        let p = inbox_plan(Seq(10), SyncDirection::Latest, 4);
        assert_eq!(
            (seqs(&p), p.first_prev, p.end),
            (vec![7, 8, 9, 10], Seq(6), false)
        );
        let p = inbox_plan(Seq(10), SyncDirection::Before(Seq(7)), 4);
        assert_eq!(
            (seqs(&p), p.first_prev, p.end),
            (vec![3, 4, 5, 6], Seq(2), false)
        );
        let p = inbox_plan(Seq(10), SyncDirection::Before(Seq(3)), 4);
        assert_eq!((seqs(&p), p.first_prev, p.end), (vec![1, 2], Seq(0), true));
        let p = inbox_plan(Seq(10), SyncDirection::After(Seq(0)), 4);
        assert_eq!(
            (seqs(&p), p.first_prev, p.end),
            (vec![1, 2, 3, 4], Seq(0), false)
        );
        let p = inbox_plan(Seq(10), SyncDirection::After(Seq(8)), 4);
        assert_eq!((seqs(&p), p.first_prev, p.end), (vec![9, 10], Seq(8), true));
        // Past the head, an empty inbox, an anchor beyond the head.
        let p = inbox_plan(Seq(10), SyncDirection::After(Seq(10)), 4);
        assert_eq!((seqs(&p), p.end), (vec![], true));
        let p = inbox_plan(Seq(0), SyncDirection::Latest, 4);
        assert_eq!((seqs(&p), p.end), (vec![], true));
        let p = inbox_plan(Seq(10), SyncDirection::Before(Seq(u64::MAX)), 3);
        assert_eq!((seqs(&p), p.end), (vec![8, 9, 10], false));
        let p = inbox_plan(Seq(5), SyncDirection::After(Seq(u64::MAX)), 3);
        assert_eq!((seqs(&p), p.end), (vec![], true));
    }
}
