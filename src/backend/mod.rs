//! Backends: per-shard connection pools and the fetch of one backend response.
//!
//! Why per shard: a shard owns its sockets like everything else it touches, so taking and
//! returning a pooled connection is a Vec push/pop with no lock. Pools are keyed by address, so
//! two backends (or two configs) naming one address share connections, as in Varnish.

pub mod fetch;
pub mod pool;

pub use fetch::{BodyReader, FetchError, Fetched};
pub use pool::Pool;
