//! HTTP/1.1 on the wire: parsing heads with limits and smuggling defences, body framing, and
//! writing responses.
//!
//! Why this module is pure: nothing here touches a socket or a clock, so every malformed-input rule
//! is unit-tested and fuzzed directly, and the shards call it on bytes they already own.

pub mod chunked;
pub mod date;
pub mod error;
pub mod headers;
pub mod request;
pub mod response;
pub mod status;
pub mod write;

#[cfg(test)]
mod fuzz;

pub use chunked::{write_chunk_header, ChunkedDecoder, LAST_CHUNK};
pub use date::{fmt_http_date, parse_http_date, DateCache};
pub use error::ParseError;
pub use headers::{Header, Headers};
pub use request::{parse_request, BodyFraming, Limits, Method, RequestHead, Version};
pub use response::{
    parse_response, response_framing, response_keep_alive, RespLimits, ResponseHead,
};
pub use status::reason_phrase;
