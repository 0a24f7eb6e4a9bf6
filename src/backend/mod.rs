//! Backends: per-shard connection pools and the fetch of one backend response.
//!
//! Why per shard: a shard owns its sockets like everything else it touches, so taking and
//! returning a pooled connection is a Vec push/pop with no lock. Pools are keyed by endpoint
//! (address and preamble), so two backends (or two configs) naming one address share
//! connections, as in Varnish.

pub mod conn;
pub mod fetch;
pub mod pool;

pub use conn::{Dest, Endpoint, Stream};
pub use fetch::{BodyReader, FetchError, Fetched};
pub use pool::Pool;
