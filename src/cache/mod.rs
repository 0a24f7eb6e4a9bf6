//! The cache: objects, keys, TTL rules, bans and the per-shard store.

pub mod ban;
pub mod object;
pub mod store;
pub mod ttl;

pub use object::{CacheKey, ObjKind, Object, VarySpec};
