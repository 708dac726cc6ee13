//! In-memory model of one shard's log: appended records become durable only
//! at a sync; a crash keeps exactly the synced prefix.

use surepush::core::AppendToken;
use surepush::log::{DedupConfig, InboxQuery, MessageRecord, Record, RecoveredState};
use surepush::proto::UserId;

#[derive(Default)]
pub struct Storage {
    records: Vec<Record>,
    synced: usize,
    /// Tokens of appends not yet synced, with the record count after each.
    unsynced: Vec<(AppendToken, usize)>,
}

impl Storage {
    pub fn append(&mut self, token: AppendToken, record: Record) {
        self.records.push(record);
        self.unsynced.push((token, self.records.len()));
    }

    /// Makes everything durable; returns the last token covered.
    pub fn sync(&mut self) -> Option<AppendToken> {
        self.synced = self.records.len();
        self.unsynced.drain(..).next_back().map(|(t, _)| t)
    }

    /// A failed sync: the unsynced tail is lost; returns the last token.
    pub fn fail_sync(&mut self) -> Option<AppendToken> {
        self.records.truncate(self.synced);
        self.unsynced.drain(..).next_back().map(|(t, _)| t)
    }

    /// Power loss: only the synced prefix survives.
    pub fn crash(&mut self) {
        self.records.truncate(self.synced);
        self.unsynced.clear();
    }

    pub fn recover(&self, dedup: &DedupConfig) -> RecoveredState {
        let mut state = RecoveredState::default();
        for r in &self.records[..self.synced] {
            state.apply(r, dedup);
        }
        state
    }

    pub fn read(&self, user: UserId, query: InboxQuery) -> Vec<MessageRecord> {
        let inbox = self.records[..self.synced].iter().filter_map(|r| match r {
            Record::Message(m) if m.inbox == user => Some(m.clone()),
            _ => None,
        });
        match query {
            InboxQuery::After { after, limit } => inbox
                .filter(|m| m.seq > after)
                .take(limit as usize)
                .collect(),
            InboxQuery::Latest { limit } => last_n(inbox.collect(), limit),
            InboxQuery::Before { before, limit } => {
                last_n(inbox.filter(|m| m.seq < before).collect(), limit)
            }
            InboxQuery::Seqs(seqs) => inbox.filter(|m| seqs.contains(&m.seq)).collect(),
        }
    }

    /// A test's sabotage: the durable message with `payload` appears a
    /// second time (at the next sequence of its inbox).
    pub fn duplicate_message_with(&mut self, payload: &[u8]) {
        let Some(m) = self.records[..self.synced].iter().find_map(|r| match r {
            Record::Message(m) if m.payload == payload => Some(m.clone()),
            _ => None,
        }) else {
            return;
        };
        let head = self
            .durable_messages()
            .filter(|x| x.inbox == m.inbox)
            .map(|x| x.seq)
            .max()
            .unwrap_or_default();
        let copy = MessageRecord {
            seq: head.next(),
            ..m
        };
        self.records.insert(self.synced, Record::Message(copy));
        self.synced += 1;
    }

    pub fn durable_messages(&self) -> impl Iterator<Item = &MessageRecord> {
        self.records[..self.synced].iter().filter_map(|r| match r {
            Record::Message(m) => Some(m),
            _ => None,
        })
    }
}

fn last_n(mut v: Vec<MessageRecord>, n: u32) -> Vec<MessageRecord> {
    let skip = v.len().saturating_sub(n as usize);
    v.drain(..skip);
    v
}
