//! Webhooks to the backend (docs/WEBHOOKS.md): the `[webhooks]` settings,
//! the request signature, the dispatcher that POSTs events off the shard
//! threads, and their metrics. The events themselves, and their
//! durability, are the core's (`surepush-core`'s `webhook/`): a shard
//! stores an event in its log, hands it to the dispatcher once durable,
//! and forgets it when the dispatcher reports it delivered.

mod dispatcher;
mod metrics;
mod settings;
mod sign;

pub(crate) use dispatcher::report_loop;
pub use dispatcher::{
    Dispatcher, ShardLink, HEADER_EVENT, HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
pub use metrics::WebhookMetrics;
pub use settings::{WebhookSettings, MAX_PREVIEW_BYTES};
pub use sign::signature;
