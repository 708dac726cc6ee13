//! Wildcard topic filters over topic streams (issue #21 item 1,
//! docs/MQTT.md 2.3 and 3.1, docs/PROTOCOL.md "FILTER and TOPIC").
//!
//! A topic stream is a room whose id hashes its name
//! (`surepush_proto::topic_stream`); a wildcard filter cannot name one, so
//! a connection that registers a filter (FILTER) is told of every stream
//! whose name matches it (TOPIC), and subscribes each as a room itself.
//!
//! - **Registration.** The connection's shard keeps its filters in a trie
//!   of its own connections (`local`) and sends [`FilterJoin`] to every
//!   shard of the node. Each shard keeps a trie of all the node's filters
//!   by shard (`homes`), answers with a [`TopicNotice`] for each stream it
//!   homes whose name matches (from its next message: `seq` = head + 1),
//!   then [`FilterJoined`]. Once every shard has answered, the connection
//!   gets TOPIC with room 0 (its SUBACK may go): a message stored from then
//!   on is matched.
//! - **Matching.** When a stream message is durable (or a QoS 0 one is
//!   fanned out) on its home shard, its name is matched in `homes`: one
//!   [`TopicNotice`] per shard with a matching filter. That shard matches
//!   the name in `local` and sends TOPIC to each matching connection that
//!   does not subscribe the stream yet (a QoS 0 message follows as its
//!   ROOMPUSH, since it is stored nowhere to be read later).
//! - **Names.** The home shard remembers the names of its streams
//!   (`names`, at most `core.max_topic_names`) so a new filter finds those
//!   that exist. They are learnt from messages, and after a restart read
//!   back (the newest message of each stream homed here,
//!   [`Shard::load_topic_names`]); registrations wait for those reads.
//!   Names with a retained message are remembered too (`keyed.rs`; after a
//!   restart from the recovered keyed state), so a new filter finds a
//!   retained topic whose stream history has aged out. The names are a
//!   trie of levels ([`NameTrie`]): a new filter visits the branches it
//!   can match, not every name of the shard.
//! - **Bounds.** `core.max_topic_filters` distinct filters per shard and
//!   `core.max_filters_per_conn` per connection: a FILTER beyond them is
//!   refused (TOPIC room 0 with seq 0). Only MQTT connections may register
//!   (stream names are theirs; their permissions are checked by the MQTT
//!   bridge).
//! - The filters of a closing connection leave every trie ([`FilterLeave`]).
//! - Across the nodes of a cluster, shard 0 announces the node's set of
//!   distinct filters to the other nodes, and a home shard relays each
//!   matching message once per node (`topic_nodes.rs`).

use bytes::Bytes;

use super::action::{Action, ConnId};
use super::shard::Shard;
use crate::filter_trie::{FilterTrie, NameTrie};
use crate::hashing::FastHashMap;
use crate::peer::{FilterJoin, FilterJoined, FilterLeave, TopicNotice};
use crate::router::ShardId;
use crate::MessageRecord;
use surepush_proto::topic_stream::{is_topic_stream, retained_entries, split_payload};
use surepush_proto::{FilterReq, Frame, RoomPush, Seq, TopicSeen, UserId};

/// The wildcard filter state of one shard. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Topics {
    /// Every shard's filters, by shard (matched for streams homed here).
    homes: FilterTrie<ShardId>,
    /// This shard's connections' filters.
    local: FilterTrie<ConnId>,
    /// Each connection's filters.
    by_conn: FastHashMap<ConnId, Vec<String>>,
    /// Registrations waiting for shards' [`FilterJoined`]: how many.
    joining: FastHashMap<(ConnId, String), u16>,
    /// Names of the streams homed here, with their stream ids (two names
    /// may share one: a hash collision).
    names: NameTrie<u64>,
    /// Reads of stream names after a restart still out: registrations
    /// wait in `deferred` until they are done (else a filter would miss a
    /// stream that exists).
    pub(super) loading: usize,
    deferred: Vec<FilterJoin>,
    /// Other nodes' filters, and this node's as announced to them
    /// (`topic_nodes.rs`).
    pub(super) across: crate::topic_nodes::NodeTopics,
}

impl Shard {
    /// FILTER from `conn`.
    pub(super) fn on_filter(&mut self, conn: ConnId, req: FilterReq) {
        let FilterReq { filter, remove } = req;
        if remove {
            self.drop_filter(conn, &filter);
            return;
        }
        let mqtt = self
            .conn(conn)
            .is_some_and(|c| c.transport == crate::MQTT_TRANSPORT);
        let held = self.topics.by_conn.get(&conn);
        if held.is_some_and(|f| f.contains(&filter)) {
            return self.filter_answer(conn, filter, true);
        }
        let full = held.map_or(0, Vec::len) >= self.config.max_filters_per_conn as usize
            || (!self.topics.local.contains(&filter)
                && self.topics.local.filters() >= self.config.max_topic_filters as usize);
        if !mqtt || full {
            self.stats.topic_filters_refused += 1;
            return self.filter_answer(conn, filter, false);
        }
        self.topics
            .by_conn
            .entry(conn)
            .or_default()
            .push(filter.clone());
        self.topics.local.insert(&filter, conn);
        // Other nodes first: a wait recorded after this node's shards
        // answered (at once, on one shard) would tell the connection twice.
        self.ask_nodes_for_streams(&filter, conn);
        let shards = self.router.shards();
        self.topics.joining.insert((conn, filter.clone()), shards);
        let me = self.params.id;
        for i in 0..shards {
            let msg = FilterJoin {
                filter: filter.clone(),
                shard: me,
                conn,
            };
            self.route_to(ShardId(i), msg);
        }
    }

    /// TOPIC room 0: the answer to FILTER `filter`; when registered and
    /// no other node is still to answer, TOPIC room 0
    /// `TOPIC_NODES_ANSWERED` follows (`topic_nodes.rs`).
    fn filter_answer(&mut self, conn: ConnId, filter: String, ok: bool) {
        let done = ok && !self.waits_for_nodes(conn, &filter);
        let frame = Frame::Topic(TopicSeen {
            room: 0,
            seq: Seq(u64::from(ok)),
            name: filter.clone(),
        });
        self.send_frame(conn, frame);
        if done {
            self.nodes_answered(conn, filter);
        }
    }

    /// Whether this node's shards have not all answered `conn`'s
    /// registration of `filter` yet.
    pub(super) fn filter_joining(&self, conn: ConnId, filter: &str) -> bool {
        self.topics
            .joining
            .contains_key(&(conn, filter.to_string()))
    }

    fn drop_filter(&mut self, conn: ConnId, filter: &str) {
        let Some(held) = self.topics.by_conn.get_mut(&conn) else {
            return;
        };
        let Some(i) = held.iter().position(|f| f == filter) else {
            return;
        };
        let filter = held.swap_remove(i);
        if held.is_empty() {
            self.topics.by_conn.remove(&conn);
        }
        self.topics.local.remove(&filter, conn);
        self.topics.joining.remove(&(conn, filter.clone()));
        self.drop_node_wait(conn, &filter);
        let me = self.params.id;
        for i in 0..self.router.shards() {
            let msg = FilterLeave {
                filter: filter.clone(),
                shard: me,
            };
            self.route_to(ShardId(i), msg);
        }
    }

    /// Every filter of a closing connection.
    pub(super) fn drop_conn_filters(&mut self, conn: ConnId) {
        let filters = self.topics.by_conn.get(&conn).cloned().unwrap_or_default();
        for f in filters {
            self.drop_filter(conn, &f);
        }
    }

    /// The newest message of a stream homed here, read after a restart.
    pub(super) fn on_topic_name_read(&mut self, result: Result<Vec<MessageRecord>, ()>) {
        if let Some(m) = result.ok().and_then(|r| r.into_iter().last()) {
            if let Some((name, _)) = split_payload(&m.payload) {
                let name = name.to_string();
                self.remember_topic_name(m.inbox.0, &name);
            }
        }
        self.topics.loading = self.topics.loading.saturating_sub(1);
        if self.topics.loading == 0 {
            for m in std::mem::take(&mut self.topics.deferred) {
                self.on_filter_join(m);
            }
        }
    }

    /// Remembers that the stream `room` homed here carries `name` (at most
    /// `core.max_topic_names`).
    pub(super) fn remember_topic_name(&mut self, room: u64, name: &str) {
        let t = &mut self.topics;
        if t.names.len() < self.config.max_topic_names as usize {
            t.names.insert(name, room);
        }
    }

    /// Remembers the names of the retained messages recovered here (their
    /// streams' history may be gone). Part of [`Shard::load_topic_names`].
    pub(super) fn load_retained_names(&mut self) {
        let names: Vec<(u64, String)> = self
            .keyed
            .values()
            .filter_map(|(key, value)| match key {
                crate::StateKey::Retained { room } if is_topic_stream(room.0) => {
                    Some((room.0, value))
                }
                _ => None,
            })
            .filter_map(|(room, value)| Some((room, retained_entries(value)?)))
            .flat_map(|(room, entries)| {
                let names: Vec<(u64, String)> = entries
                    .into_iter()
                    .map(|(n, _)| (room, n.to_string()))
                    .collect();
                names
            })
            .collect();
        for (room, name) in names {
            self.remember_topic_name(room, &name);
        }
    }

    pub(super) fn on_filter_join(&mut self, m: FilterJoin) {
        if self.topics.loading > 0 {
            self.topics.deferred.push(m);
            return;
        }
        let FilterJoin {
            filter,
            shard,
            conn,
        } = m;
        if self.topics.homes.insert(&filter, shard) {
            self.node_filter_changed(&filter, true);
        }
        for (room, name) in self.streams_matching(&filter) {
            let head = self.sessions.durable_head(UserId(room));
            let msg = TopicNotice {
                room,
                seq: head.next(),
                name,
                conn: Some(conn),
                frame: Bytes::new(),
            };
            self.route_to(shard, msg);
        }
        self.route_to(shard, FilterJoined { conn, filter });
    }

    /// The streams homed here whose names `filter` matches.
    pub(super) fn streams_matching(&self, filter: &str) -> Vec<(u64, String)> {
        let mut found: Vec<(u64, String)> = Vec::new();
        self.topics
            .names
            .matching(filter, |name, room| found.push((room, name.to_string())));
        found
    }

    pub(super) fn on_filter_leave(&mut self, m: FilterLeave) {
        self.topics.homes.remove(&m.filter, m.shard);
        if !self.topics.homes.contains(&m.filter) {
            self.node_filter_changed(&m.filter, false);
        }
    }

    pub(super) fn on_filter_joined(&mut self, m: FilterJoined) {
        let FilterJoined { conn, filter } = m;
        let key = (conn, filter);
        let Some(left) = self.topics.joining.get_mut(&key) else {
            return; // dropped meanwhile
        };
        *left -= 1;
        if *left == 0 {
            self.topics.joining.remove(&key);
            self.filter_answer(conn, key.1, true);
        }
    }

    /// A topic stream message is durable (or, seq 0, a QoS 0 one is being
    /// fanned out) on its home shard: remember the name, tell the shards
    /// whose filters match it.
    pub(super) fn topic_published(&mut self, record: &MessageRecord) {
        let room = record.inbox.0;
        let Some((name, _)) = split_payload(&record.payload) else {
            return;
        };
        let name = name.to_string();
        self.remember_topic_name(room, &name);
        self.share_published(record, &name);
        let shards = self.matching_shards(&name);
        if shards.is_empty() && !self.relays_topic(&name) {
            return;
        }
        self.stats.topic_notices += shards.len() as u64;
        let frame = if record.seq == Seq::ZERO {
            Frame::RoomPush(RoomPush {
                room,
                seq: record.seq,
                from: record.from,
                ts_ms: record.ts_ms,
                qos: record.qos,
                attrs: record.attrs.clone(),
                payload: record.payload.clone(),
            })
            .to_bytes()
        } else {
            Bytes::new()
        };
        self.relay_topic(room, record.seq, &name, &frame);
        for shard in shards {
            let msg = TopicNotice {
                room,
                seq: record.seq,
                name: name.clone(),
                conn: None,
                frame: frame.clone(),
            };
            self.route_to(shard, msg);
        }
    }

    /// The shards of this node with a filter matching `name`, once each.
    pub(super) fn matching_shards(&self, name: &str) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = Vec::new();
        self.topics.homes.matches(name, |s| {
            if !shards.contains(&s) {
                shards.push(s);
            }
        });
        shards
    }

    pub(super) fn on_topic_notice(&mut self, m: TopicNotice) {
        let TopicNotice {
            room,
            seq,
            name,
            conn,
            frame,
        } = m;
        let mut conns: Vec<ConnId> = Vec::new();
        match conn {
            Some(c) => conns.push(c),
            None => self.topics.local.matches(&name, |c| {
                if !conns.contains(&c) {
                    conns.push(c);
                }
            }),
        }
        let joining = conn.is_some();
        for conn in conns {
            // A registration hears of every matching stream, subscribed or
            // not: the bridge sends a new filter's retained messages.
            let told = self
                .conn(conn)
                .is_some_and(|c| joining || !c.rooms.contains(&room));
            if !told {
                continue; // gone, or subscribes the stream already
            }
            let topic = TopicSeen {
                room,
                seq,
                name: name.clone(),
            };
            self.send_frame(conn, Frame::Topic(topic));
            if !frame.is_empty() {
                let bytes = frame.clone();
                self.actions
                    .push_back(Action::SendShared { conn, room, bytes });
            }
        }
    }
}
