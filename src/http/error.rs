//! Why a request or response head could not be accepted.
//!
//! Why this shape: every rejection the wire parser makes maps onto exactly one status code the
//! client must receive (400/414/431/501/505), so the error *is* that mapping. Variants carry only
//! `&'static str` details so an error is `Copy`, never allocates on a hostile input, and can be
//! logged (`detail`) without echoing attacker-controlled bytes back. Backend responses reuse the
//! same type; the fetch code turns any of them into a 503.

use std::fmt;

use crate::http::status::reason_phrase;

/// A malformed, oversized or unsupported message head or body framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// 400: syntax error or a smuggling defence tripped; the detail says which.
    BadRequest(&'static str),
    /// 414: the request line is longer than `http_req_hdr_len`.
    UriTooLong,
    /// 431: the head is larger than its size limit, a field line is too long, or there are
    /// too many fields.
    HeadersTooLarge,
    /// 501: a transfer coding we do not implement; the detail says which rule.
    NotImplemented(&'static str),
    /// 505: a well-formed HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
}

impl ParseError {
    /// The status code to answer a client with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadRequest(_) => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeadersTooLarge => 431,
            ParseError::NotImplemented(_) => 501,
            ParseError::VersionNotSupported => 505,
        }
    }

    /// The standard reason phrase of [`status`](Self::status).
    pub fn reason(&self) -> &'static str {
        reason_phrase(self.status())
    }

    /// A short human-readable explanation for logs.
    pub fn detail(&self) -> &'static str {
        match self {
            ParseError::BadRequest(d) | ParseError::NotImplemented(d) => d,
            ParseError::UriTooLong => "request line too long",
            ParseError::HeadersTooLarge => "header section too large",
            ParseError::VersionNotSupported => "HTTP version not supported",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.reason(), self.detail())
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons() {
        let cases = [
            (ParseError::BadRequest("x"), 400, "Bad Request", "x"),
            (
                ParseError::UriTooLong,
                414,
                "Request-URI Too Long",
                "request line too long",
            ),
            (
                ParseError::HeadersTooLarge,
                431,
                "Request Header Fields Too Large",
                "header section too large",
            ),
            (ParseError::NotImplemented("y"), 501, "Not Implemented", "y"),
            (
                ParseError::VersionNotSupported,
                505,
                "HTTP Version Not Supported",
                "HTTP version not supported",
            ),
        ];
        for (e, status, reason, detail) in cases {
            assert_eq!(e.status(), status);
            assert_eq!(e.reason(), reason);
            assert_eq!(e.detail(), detail);
        }
    }

    #[test]
    fn display() {
        let e = ParseError::BadRequest("obs-fold");
        assert_eq!(e.to_string(), "400 Bad Request: obs-fold");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("obs-fold"));
    }
}
