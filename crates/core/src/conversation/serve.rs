//! CONVLIST and CONVFETCH on the owner shard (docs/PROTOCOL.md,
//! "Conversations").
//!
//! A CONVLIST is answered at once from [`super::Conversations`]: unread
//! counts are relative to the asking device's cursor. A CONVFETCH reads
//! the sequences the conversation's index names (one read of exactly the
//! page's messages, `InboxQuery::Seqs`) and answers when the read
//! completes; like a SYNC page, it never exceeds `max_frame` and holds
//! only durable messages. Neither acknowledges anything.

use surepush_proto::{
    ConvFetch, ConvList, ConvMsgs, ConvPage, ConvSummary, DeviceId, ErrorCode, Frame, Push, Seq,
    UserId, CONVMSGS_FIXED_LEN, CONVPAGE_FIXED_LEN, HEADER_LEN, SUMMARY_FIXED_LEN,
};

use crate::action::ConnId;
use crate::shard::{ReadPurpose, Shard};
use crate::{InboxQuery, MessageRecord};

/// A CONVFETCH whose read is in flight.
#[derive(Debug)]
pub(crate) struct FetchRead {
    pub(crate) conn: ConnId,
    pub(crate) request: ConvFetch,
    pub(crate) head: Seq,
    pub(crate) first_prev: Seq,
    pub(crate) end: bool,
    pub(crate) truncated: bool,
}

impl Shard {
    fn conversation_limit_ok(&mut self, conn: ConnId, limit: u32) -> bool {
        let max = self.config.max_sync_limit;
        if limit == 0 || limit > max {
            self.send_frame(
                conn,
                Frame::error(
                    ErrorCode::BadConversationRequest,
                    format!("limit {limit} outside 1..={max}"),
                ),
            );
            return false;
        }
        true
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
        let page = self.conversation_page(user, device, &request);
        self.stats.conversation_pages += 1;
        self.send_frame(conn, Frame::ConvPage(page));
    }

    /// The CONVPAGE answering `request` for `device` of `user` (also the
    /// admin API's view, with a device's cursor or none).
    pub fn conversation_page(
        &self,
        user: UserId,
        device: DeviceId,
        request: &ConvList,
    ) -> ConvPage {
        let cursor = self.device_cursor(user, device).unwrap_or(Seq::ZERO);
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
        if !self.conversation_limit_ok(conn, request.limit) {
            return;
        }
        let head = self.durable_head(user);
        let Some(plan) =
            self.conversations
                .plan(user, request.peer, request.direction, request.limit)
        else {
            // Not tracked (never, or evicted): an empty last page.
            self.send_frame(
                conn,
                Frame::ConvMsgs(ConvMsgs {
                    request_id: request.request_id,
                    peer: request.peer,
                    head,
                    end: true,
                    truncated: self.conversations.of(user).is_some_and(|u| u.older > 0),
                    items: Vec::new(),
                }),
            );
            return;
        };
        let purpose = ReadPurpose::Conversation(FetchRead {
            conn,
            request,
            head,
            first_prev: plan.first_prev,
            end: plan.end,
            truncated: plan.truncated,
        });
        self.read(user, InboxQuery::Seqs(plan.seqs), purpose);
    }

    pub(crate) fn on_conv_read(&mut self, read: FetchRead, result: Result<Vec<MessageRecord>, ()>) {
        let FetchRead {
            conn,
            request,
            head,
            first_prev,
            mut end,
            truncated,
        } = read;
        if self.conn(conn).is_none() {
            return;
        }
        let Ok(mut records) = result else {
            self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "could not read the inbox",
            );
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
        self.stats.conversation_pages += 1;
        self.send_frame(
            conn,
            Frame::ConvMsgs(ConvMsgs {
                request_id: request.request_id,
                peer: request.peer,
                head,
                end,
                truncated: truncated && !cut,
                items,
            }),
        );
    }
}
