//! Admin calls between nodes (issue #20, docs/CLUSTER.md "Admin reads on
//! any node"): the admin API's reads and actions about one user — its
//! presence, its conversation summaries and pages, its inbox history, a
//! disconnect — asked of the node the user is placed on, whichever node
//! the HTTP request reached.
//!
//! A call is one NATS request on the owner's subject
//! `surepush.node.<id>.admin` ([`AdminCall`], kind 11), answered by one
//! [`AdminAnswer`] (kind 12). Why not the node lanes that carry copies
//! between shards: a lane resends a request until its receiver answers,
//! across the receiver's restarts, and never gives up — right for a
//! message copy that must not be lost, wrong for a read whose HTTP caller
//! waits: with the owner down, the admin API must answer at once (NATS
//! reports "no responders" for a subject nobody holds) or after a short
//! timeout, not wait in a queue behind the owner's return. Reads change
//! nothing and a disconnect is idempotent enough to ask again, so a lost
//! request or answer is the caller's to retry, and nothing needs the
//! lanes' ordering or dedup.
//!
//! The conversation types travel as the client protocol's own frames
//! (CONVLIST, CONVFETCH, CONVPAGE, CONVMSGS, PRESENCE), bounds-checked by
//! surepush-proto's decoder; a decoded call or answer re-encodes to its
//! input (a frame that would not is refused), as the `cluster_wire` fuzz
//! target checks. An answer larger than NATS `max_payload` is cut to fit
//! ([`AdminAnswer::fit`]) as the owner cuts a page to its `max_frame`:
//! fewer items, and `end` cleared so the caller pages on.

#[cfg(feature = "nats")]
mod service;

#[cfg(feature = "nats")]
pub use service::{send_calls, serve_calls, AdminCalls, CallError, IncomingCall, OutgoingCall};

use bytes::{BufMut, BytesMut};

use crate::wire::{kinds, put_blob, put_str, MessageKind, Reader, Wire, WireError};
use surepush_proto::{
    decode_shared, ConvFetch, ConvList, ConvMsgs, ConvPage, DeviceId, Frame, OnlineDevice,
    Presence, Seq, SyncDirection, UserId,
};

/// Most users one presence call asks about (the admin API's batch limit).
pub const MAX_PRESENCE_USERS: usize = 1_000;

/// A node asks the owner of a user (or of each of `users`) for this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCall {
    /// The online devices of each of `users` (all placed on the callee).
    Presence {
        /// The users, in the order the answer keeps.
        users: Vec<UserId>,
    },
    /// A page of `user`'s conversation summaries, unread counted from
    /// `device`'s cursor (`None`: the furthest of any device).
    Summaries {
        /// Whose.
        user: UserId,
        /// Whose cursor.
        device: Option<DeviceId>,
        /// Which page (as the CONVLIST frame).
        list: ConvList,
    },
    /// A page of one of `user`'s conversations (as the CONVFETCH frame).
    Messages {
        /// Whose.
        user: UserId,
        /// Which page.
        fetch: ConvFetch,
    },
    /// A page of `user`'s whole inbox (a CONVFETCH whose `peer` is unused).
    Inbox {
        /// Whose.
        user: UserId,
        /// Which page.
        fetch: ConvFetch,
    },
    /// Close `user`'s sessions (only `device`'s, if given).
    Disconnect {
        /// Whose.
        user: UserId,
        /// Which device (`None`: all).
        device: Option<DeviceId>,
    },
}

/// One user's presence in a [`AdminAnswer::Presence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence {
    /// The user.
    pub user: UserId,
    /// False if the callee does not own the user (placements disagree
    /// while a partition moves): the devices are then empty and mean
    /// nothing.
    pub owned: bool,
    /// Its online devices, by device id.
    pub devices: Vec<OnlineDevice>,
}

/// Why a call was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The callee does not own the user (a placement change half seen):
    /// it does not forward again, so two nodes that disagree never ask
    /// each other in a loop.
    NotOwner = 1,
    /// The request is invalid there (a page size beyond the owner's limit).
    Invalid = 2,
    /// The owner could not read (its log failed, or it is stopping).
    Unavailable = 3,
}

/// The owner's answer to an [`AdminCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAnswer {
    /// Each user asked, in the order asked.
    Presence(Vec<UserPresence>),
    /// A page of summaries.
    Summaries(ConvPage),
    /// A page of messages (a conversation's or the inbox's).
    Messages(ConvMsgs),
    /// How many sessions were closed.
    Disconnected(u64),
    /// Not carried out.
    Refused {
        /// Why.
        why: Refusal,
        /// For people (and the admin API's error message).
        message: String,
    },
}

/// Encodes `frame` as a length-prefixed blob.
fn put_frame(out: &mut BytesMut, frame: Frame) {
    let mut buf = BytesMut::with_capacity(frame.encoded_len());
    frame.encode(&mut buf);
    put_blob(out, &buf);
}

/// Reads a blob holding exactly one frame that re-encodes to itself.
fn get_frame(r: &mut Reader<'_>, field: &'static str) -> Result<Frame, WireError> {
    let blob = r.blob()?;
    let invalid = |reason: String| WireError::Invalid { field, reason };
    let frame = decode_shared(&blob).map_err(|e| invalid(e.to_string()))?;
    let mut again = BytesMut::with_capacity(blob.len());
    frame.encode(&mut again);
    if again[..] != blob[..] {
        return Err(invalid("not the frame's one encoding".into()));
    }
    Ok(frame)
}

fn wrong_frame(field: &'static str, got: &Frame) -> WireError {
    WireError::Invalid {
        field,
        reason: format!("a {:?} frame", got.kind()),
    }
}

fn put_opt_device(out: &mut BytesMut, device: Option<DeviceId>) {
    match device {
        None => out.put_u8(0),
        Some(d) => {
            out.put_u8(1);
            out.put_u64_le(d.0);
        }
    }
}

fn get_opt_device(r: &mut Reader<'_>) -> Result<Option<DeviceId>, WireError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(DeviceId(r.u64()?))),
        other => Err(WireError::Invalid {
            field: "device",
            reason: format!("option tag {other}"),
        }),
    }
}

fn get_fetch(r: &mut Reader<'_>) -> Result<ConvFetch, WireError> {
    match get_frame(r, "convfetch")? {
        Frame::ConvFetch(f) => Ok(f),
        other => Err(wrong_frame("convfetch", &other)),
    }
}

impl Wire for AdminCall {
    const KIND: MessageKind = kinds::ADMIN_CALL;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            AdminCall::Presence { users } => {
                out.put_u8(1);
                out.put_u32_le(users.len() as u32);
                users.iter().for_each(|u| out.put_u64_le(u.0));
            }
            AdminCall::Summaries { user, device, list } => {
                out.put_u8(2);
                out.put_u64_le(user.0);
                put_opt_device(out, *device);
                put_frame(out, Frame::ConvList(list.clone()));
            }
            AdminCall::Messages { user, fetch } | AdminCall::Inbox { user, fetch } => {
                out.put_u8(if matches!(self, AdminCall::Messages { .. }) {
                    3
                } else {
                    4
                });
                out.put_u64_le(user.0);
                put_frame(out, Frame::ConvFetch(fetch.clone()));
            }
            AdminCall::Disconnect { user, device } => {
                out.put_u8(5);
                out.put_u64_le(user.0);
                put_opt_device(out, *device);
            }
        }
    }

    fn decode_body(_version: u8, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            1 => {
                let n = r.count(8)?;
                if n > MAX_PRESENCE_USERS {
                    return Err(WireError::Invalid {
                        field: "users",
                        reason: format!("{n} users, at most {MAX_PRESENCE_USERS}"),
                    });
                }
                let users = (0..n)
                    .map(|_| r.u64().map(UserId))
                    .collect::<Result<_, _>>()?;
                AdminCall::Presence { users }
            }
            2 => {
                let user = UserId(r.u64()?);
                let device = get_opt_device(r)?;
                let list = match get_frame(r, "convlist")? {
                    Frame::ConvList(l) => l,
                    other => return Err(wrong_frame("convlist", &other)),
                };
                AdminCall::Summaries { user, device, list }
            }
            3 => AdminCall::Messages {
                user: UserId(r.u64()?),
                fetch: get_fetch(r)?,
            },
            4 => AdminCall::Inbox {
                user: UserId(r.u64()?),
                fetch: get_fetch(r)?,
            },
            5 => AdminCall::Disconnect {
                user: UserId(r.u64()?),
                device: get_opt_device(r)?,
            },
            other => {
                return Err(WireError::Invalid {
                    field: "admin call",
                    reason: format!("tag {other}"),
                })
            }
        })
    }
}

impl Wire for AdminAnswer {
    const KIND: MessageKind = kinds::ADMIN_ANSWER;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            AdminAnswer::Presence(users) => {
                out.put_u8(1);
                out.put_u32_le(users.len() as u32);
                for u in users {
                    out.put_u8(u8::from(u.owned));
                    let presence = Presence {
                        user: u.user,
                        devices: u.devices.clone(),
                    };
                    put_frame(out, Frame::Presence(presence));
                }
            }
            AdminAnswer::Summaries(page) => {
                out.put_u8(2);
                put_frame(out, Frame::ConvPage(page.clone()));
            }
            AdminAnswer::Messages(page) => {
                out.put_u8(3);
                put_frame(out, Frame::ConvMsgs(page.clone()));
            }
            AdminAnswer::Disconnected(n) => {
                out.put_u8(4);
                out.put_u64_le(*n);
            }
            AdminAnswer::Refused { why, message } => {
                out.put_u8(5);
                out.put_u8(*why as u8);
                put_str(out, message);
            }
        }
    }

    fn decode_body(_version: u8, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            1 => {
                // owned byte + blob length + the smallest PRESENCE frame
                let n = r.count(1 + 4 + surepush_proto::HEADER_LEN)?;
                let mut users = Vec::with_capacity(n);
                for _ in 0..n {
                    let owned = match r.u8()? {
                        0 => false,
                        1 => true,
                        other => {
                            return Err(WireError::Invalid {
                                field: "owned",
                                reason: format!("{other} is not a bool"),
                            })
                        }
                    };
                    let Presence { user, devices } = match get_frame(r, "presence")? {
                        Frame::Presence(p) => p,
                        other => return Err(wrong_frame("presence", &other)),
                    };
                    users.push(UserPresence {
                        user,
                        owned,
                        devices,
                    });
                }
                AdminAnswer::Presence(users)
            }
            2 => match get_frame(r, "convpage")? {
                Frame::ConvPage(p) => AdminAnswer::Summaries(p),
                other => return Err(wrong_frame("convpage", &other)),
            },
            3 => match get_frame(r, "convmsgs")? {
                Frame::ConvMsgs(p) => AdminAnswer::Messages(p),
                other => return Err(wrong_frame("convmsgs", &other)),
            },
            4 => AdminAnswer::Disconnected(r.u64()?),
            5 => {
                let why = match r.u8()? {
                    1 => Refusal::NotOwner,
                    2 => Refusal::Invalid,
                    3 => Refusal::Unavailable,
                    other => {
                        return Err(WireError::Invalid {
                            field: "refusal",
                            reason: format!("code {other}"),
                        })
                    }
                };
                AdminAnswer::Refused {
                    why,
                    message: r.str()?.to_owned(),
                }
            }
            other => {
                return Err(WireError::Invalid {
                    field: "admin answer",
                    reason: format!("tag {other}"),
                })
            }
        })
    }
}

/// Bytes of an encoded answer beyond its frame's own (envelope, tag,
/// blob length), with room to spare.
const ANSWER_OVERHEAD: usize = 64;

impl AdminAnswer {
    /// Cuts a page whose encoding would exceed `max_bytes` (NATS
    /// `max_payload`) to fit, as the owner cuts a page to its `max_frame`:
    /// the items farthest from where the page starts go (the oldest of a
    /// page of the newest, the newest of a page after an anchor), and
    /// `end` is cleared, so the caller asks for the rest. `direction` is
    /// the call's (for a page of messages). At least one item stays.
    pub fn fit(&mut self, max_bytes: usize, direction: Option<SyncDirection>) {
        let budget = max_bytes.saturating_sub(ANSWER_OVERHEAD);
        match self {
            AdminAnswer::Summaries(page) => {
                let mut cut = false;
                while page.items.len() > 1 && Frame::ConvPage(page.clone()).encoded_len() > budget {
                    // Newest first: the oldest summary goes.
                    page.items.pop();
                    cut = true;
                }
                page.end &= !cut;
            }
            AdminAnswer::Messages(page) => {
                let from_front = !matches!(direction, Some(SyncDirection::After(_)));
                let mut size = Frame::ConvMsgs(page.clone()).encoded_len();
                let mut cut = false;
                while page.items.len() > 1 && size > budget {
                    let item = if from_front {
                        page.items.remove(0)
                    } else {
                        page.items.pop().expect("more than one item")
                    };
                    size -= surepush_proto::MSG_ITEM_FIXED_LEN
                        + item.payload.len()
                        + surepush_proto::attrs_encoded_len(&item.attrs);
                    cut = true;
                }
                if cut {
                    if let (true, Some(first)) = (from_front, page.items.first_mut()) {
                        // Its previous message in the page was cut.
                        first.prev_seq = Seq(first.seq.0.saturating_sub(1));
                    }
                    page.end = false;
                    page.truncated = false;
                }
            }
            AdminAnswer::Presence(_)
            | AdminAnswer::Disconnected(_)
            | AdminAnswer::Refused { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
