//! HTTP/1.1 on the wire: parsing heads with limits and smuggling defences, body framing, and
//! writing responses.
//!
//! Why this module is pure: nothing here touches a socket or a clock, so every malformed-input rule
//! is unit-tested and fuzzed directly, and the shards call it on bytes they already own.

pub mod headers;

pub use headers::{Header, Headers};
