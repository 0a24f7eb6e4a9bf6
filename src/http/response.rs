//! Parsing a backend response head and deciding how its body is delimited.
//!
//! Why this shape: it mirrors `request.rs` (same line scan, same zero-copy frozen head, same
//! "`Err` consumes nothing" contract) so both directions share one set of limit and smuggling
//! rules. Responses differ in three ways: no 414 (an over-long status line is a 431-class
//! `HeadersTooLarge`), framing depends on the request method and the status (so it is a separate
//! function, [`response_framing`], applied once the caller knows both), and a response with no
//! length is legal and is read until the backend closes. Any error here means the backend
//! misbehaved; the fetch code turns it into a 503 and does not reuse the connection. Like
//! requests, obs-fold and a space before the colon are refused, not repaired.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use crate::http::error::ParseError;
use crate::http::headers::Headers;
use crate::http::request::{
    content_length, map_httparse, parse_head, refused_version, strip_cr, transfer_codings,
    BodyFraming, ScanLimits, Version, MAX_HEADER_ARRAY,
};

/// Backend response head limits, named after the Varnish parameters they implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// `http_resp_size`: the whole head, status line to blank line inclusive.
    pub resp_size: usize,
    /// `http_resp_hdr_len`: one line, without its CRLF.
    pub hdr_len: usize,
    /// `http_max_hdr`: the number of header fields (capped at `MAX_HEADER_ARRAY`).
    pub max_hdr: usize,
}

impl Default for RespLimits {
    /// Varnish's defaults: 32k head, 8k line, 64 fields.
    fn default() -> Self {
        RespLimits {
            resp_size: 32768,
            hdr_len: 8192,
            max_hdr: 64,
        }
    }
}

/// A parsed response head. Every `Bytes` is a slice of the one frozen head buffer.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: Version,
    /// 100..=999.
    pub status: u16,
    /// The reason phrase as received (may be empty, may contain obs-text).
    pub reason: Bytes,
    /// All fields in arrival order; values have surrounding OWS trimmed.
    pub headers: Headers,
    /// Bytes consumed from the buffer, including any skipped leading empty lines.
    pub head_len: usize,
}

/// Parses one response head from the front of `buf`.
///
/// `Ok(None)`: incomplete, nothing consumed. `Ok(Some(h))`: `h.head_len` bytes were split off;
/// body bytes stay in `buf`. `Err`: `buf` unchanged; the backend connection must be closed.
/// A status line without a reason phrase (`HTTP/1.1 200\r\n`) is valid.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &RespLimits,
) -> Result<Option<ResponseHead>, ParseError> {
    let max_fields = limits.max_hdr.min(MAX_HEADER_ARRAY);
    let scan = ScanLimits {
        size: limits.resp_size,
        line: limits.hdr_len,
        fields: max_fields,
        start_line_too_long: ParseError::HeadersTooLarge,
    };
    parse_head(buf, &scan, precheck_partial, build_response)
}

/// The version token at the start of a (possibly incomplete) status line, and whether it is
/// complete (followed by SP or the end of the line).
fn response_version_token(rest: &[u8]) -> (&[u8], bool) {
    let (line, line_complete) = match memchr::memchr(b'\n', rest) {
        Some(i) => (strip_cr(&rest[..i]), true),
        None => (strip_cr(rest), false),
    };
    match memchr::memchr(b' ', line) {
        Some(i) => (&line[..i], true),
        None => (line, line_complete),
    }
}

fn precheck_partial(rest: &[u8], max_fields: usize) -> Result<(), ParseError> {
    let mut arr = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_ARRAY];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        rest,
        &mut arr[..max_fields],
    ) {
        Ok(httparse::Status::Partial) => Ok(()),
        Ok(httparse::Status::Complete(_)) => Err(ParseError::BadRequest("inconsistent head")),
        Err(httparse::Error::Version) => {
            let (token, complete) = response_version_token(rest);
            refused_version(token, complete)
        }
        Err(e) => Err(map_httparse(e)),
    }
}

fn build_response(
    head: &Bytes,
    prefix: usize,
    max_fields: usize,
) -> Result<ResponseHead, ParseError> {
    let rest = head.get(prefix..).unwrap_or_default();
    let mut arr = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_ARRAY];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        rest,
        &mut arr[..max_fields],
    ) {
        Ok(httparse::Status::Complete(n)) if n == rest.len() => {}
        Ok(_) => return Err(ParseError::BadRequest("inconsistent head")),
        Err(httparse::Error::Version) => {
            let (token, _) = response_version_token(rest);
            let e = refused_version(token, true).err();
            return Err(e.unwrap_or(ParseError::BadRequest("malformed HTTP version")));
        }
        Err(e) => return Err(map_httparse(e)),
    }
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(ParseError::BadRequest("invalid status line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::VersionNotSupported),
    };
    if status < 100 {
        return Err(ParseError::BadRequest("invalid status code"));
    }
    // httparse accepted "HTTP/1.x NNN" followed by the end of the line or SP and the reason.
    // Take the reason from the raw line so obs-text survives (httparse blanks it).
    let line_len = memchr::memchr(b'\n', rest).map_or(0, |i| strip_cr(&rest[..i]).len());
    const REASON_AT: usize = b"HTTP/1.1 200 ".len();
    let reason = if line_len > REASON_AT {
        head.slice(prefix + REASON_AT..prefix + line_len)
    } else {
        Bytes::new()
    };

    let mut headers = Headers::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        headers.append(head.slice_ref(h.name.as_bytes()), head.slice_ref(h.value));
    }
    Ok(ResponseHead {
        version,
        status,
        reason,
        headers,
        head_len: head.len(),
    })
}

/// How the body of `head` is delimited (RFC 9112 §6.3), in this order:
/// 1. a response to HEAD, any 1xx, 204 and 304 → `None`;
/// 2. Transfer-Encoding present: final coding `chunked` → `Chunked` (any Content-Length is
///    ignored, see [`response_keep_alive`]); otherwise → `UntilClose`. A list naming `chunked`
///    more than once, an empty list or a non-token coding is an error. Codings before a final
///    `chunked` (`gzip, chunked`) stay applied to the decoded body: the caller must keep the
///    rest of the list if it forwards such a body;
/// 3. a valid Content-Length (duplicates equal) → `Length(n)`; invalid or conflicting → error;
/// 4. neither → `UntilClose`.
pub fn response_framing(
    request_was_head: bool,
    head: &ResponseHead,
) -> Result<BodyFraming, ParseError> {
    let s = head.status;
    if request_was_head || (100..200).contains(&s) || s == 204 || s == 304 {
        return Ok(BodyFraming::None);
    }
    if let Some(c) = transfer_codings(&head.headers)? {
        if c.last_is_chunked {
            if c.chunked > 1 {
                return Err(ParseError::BadRequest("chunked applied more than once"));
            }
            return Ok(BodyFraming::Chunked);
        }
        return Ok(BodyFraming::UntilClose);
    }
    Ok(match content_length(&head.headers)? {
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::UntilClose,
    })
}

/// Whether the backend connection may be reused after this response's body.
///
/// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`. Never when
/// both Content-Length and Transfer-Encoding are present (a backend that sends both cannot be
/// trusted to frame the next response), never after 101 (the connection stops speaking HTTP),
/// and never when a response to a non-HEAD request would be read until close, or the framing is
/// invalid. This function does not know the request method, so it is conservative for HEAD
/// (where such a connection could in fact be reused); the caller must also refuse reuse whenever
/// [`response_framing`] returns `UntilClose` or an error.
pub fn response_keep_alive(head: &ResponseHead) -> bool {
    let h = &head.headers;
    let wanted = match head.version {
        Version::Http11 => !h.has_token("connection", "close"),
        Version::Http10 => {
            h.has_token("connection", "keep-alive") && !h.has_token("connection", "close")
        }
    };
    if !wanted || head.status == 101 {
        return false;
    }
    if h.contains("transfer-encoding") && h.contains("content-length") {
        return false;
    }
    matches!(
        response_framing(false, head),
        Ok(BodyFraming::None | BodyFraming::Length(_) | BodyFraming::Chunked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Option<ResponseHead>, ParseError> {
        let mut b = BytesMut::from(s);
        let before = b.clone();
        let r = parse_response(&mut b, &RespLimits::default());
        match &r {
            Ok(Some(h)) => assert_eq!(&before[h.head_len..], &b[..]),
            _ => assert_eq!(before, b),
        }
        r
    }

    fn ok(s: &[u8]) -> ResponseHead {
        match parse(s) {
            Ok(Some(h)) => h,
            Ok(None) => panic!("incomplete: {:?}", String::from_utf8_lossy(s)),
            Err(e) => panic!("{e} for {:?}", String::from_utf8_lossy(s)),
        }
    }

    fn framing(s: &[u8]) -> Result<BodyFraming, ParseError> {
        response_framing(false, &ok(s))
    }

    #[test]
    fn simple_response() {
        let mut b =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello"[..]);
        let h = parse_response(&mut b, &RespLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.status, 200);
        assert_eq!(&h.reason[..], b"OK");
        assert_eq!(h.headers.get("x-a").map(|v| &v[..]), Some(&b"b"[..]));
        assert_eq!(&b[..], b"hello");
        assert_eq!(response_framing(false, &h), Ok(BodyFraming::Length(5)));
        assert!(response_keep_alive(&h));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(&ok(b"HTTP/1.1 200\r\n\r\n").reason[..], b"");
        assert_eq!(&ok(b"HTTP/1.1 200 \r\n\r\n").reason[..], b"");
        assert_eq!(
            &ok(b"HTTP/1.1 404 Not  Found\r\n\r\n").reason[..],
            b"Not  Found"
        );
        assert_eq!(
            &ok(b"HTTP/1.0 200 \xc3\xa7a va\r\n\r\n").reason[..],
            b"\xc3\xa7a va"
        );
        let h = ok(b"\r\nHTTP/1.1 503 Oops\r\n\r\n");
        assert_eq!(
            (h.status, &h.reason[..], h.head_len),
            (503, &b"Oops"[..], 23)
        );
    }

    #[test]
    fn incomplete_and_limits() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let l = RespLimits {
            resp_size: 64,
            hdr_len: 32,
            max_hdr: 2,
        };
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..]);
        assert_eq!(
            parse_response(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        let mut b = BytesMut::from(format!("HTTP/1.1 200 {}\r\n\r\n", "x".repeat(40)).as_bytes());
        assert_eq!(
            parse_response(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        let mut b =
            BytesMut::from(format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "x".repeat(40)).as_bytes());
        assert_eq!(
            parse_response(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        let mut b = BytesMut::from(
            format!(
                "HTTP/1.1 200 OK\r\nX: {}\r\nY: {}\r\n",
                "x".repeat(25),
                "y".repeat(25)
            )
            .as_bytes(),
        );
        assert_eq!(
            parse_response(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
    }

    #[test]
    fn malformed_responses() {
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 OK\r\n\r\n",
            b"HTTP/1.10 200 OK\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"HTTP/2.0 200 OK\r\n\r\n").unwrap_err(),
            ParseError::VersionNotSupported
        );
        assert_eq!(
            parse(b"HTTP/2.0 200").unwrap_err(),
            ParseError::VersionNotSupported
        );
        assert!(parse(b"HTTP/2.").unwrap().is_none());
    }

    #[test]
    fn framing_no_body_cases() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(response_framing(true, &h), Ok(BodyFraming::None));
        for s in [100u16, 101, 103, 204, 304] {
            let raw = format!(
                "HTTP/1.1 {s} X\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            assert_eq!(framing(raw.as_bytes()), Ok(BodyFraming::None), "{s}");
        }
        assert_eq!(
            framing(b"HTTP/1.1 205 X\r\nContent-Length: 0\r\n\r\n"),
            Ok(BodyFraming::Length(0))
        );
    }

    #[test]
    fn framing_te_cl_and_eof() {
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Ok(BodyFraming::UntilClose)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok(BodyFraming::UntilClose)
        );
        assert!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n").is_err()
        );
        assert!(framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n").is_err());
        // TE wins over CL, but the connection is not reused.
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(response_framing(false, &h), Ok(BodyFraming::Chunked));
        assert!(!response_keep_alive(&h));
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n"),
            Ok(BodyFraming::Length(7))
        );
        assert!(matches!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"),
            Err(ParseError::BadRequest(_))
        ));
        assert!(matches!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(ParseError::BadRequest(_))
        ));
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n"),
            Ok(BodyFraming::UntilClose)
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\n\r\n"),
            Ok(BodyFraming::UntilClose)
        );
    }

    #[test]
    fn keep_alive() {
        let ka = |s: &[u8]| response_keep_alive(&ok(s));
        assert!(ka(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(ka(b"HTTP/1.1 304 Not Modified\r\n\r\n"));
        assert!(ka(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(!ka(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        ));
        // Read until close: never reusable.
        assert!(!ka(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!ka(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"));
        assert!(!ka(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"));
        assert!(!ka(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        ));
    }
}
