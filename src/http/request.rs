//! Parsing a client request head, with Varnish's size limits and request-smuggling defences.
//!
//! Why this shape: a head is parsed in two passes over bytes we already hold. A cheap `memchr`
//! line scan runs first; it alone decides whether the head is complete and enforces the limits
//! that must hold even while the head is still arriving (`http_req_size`, `http_req_hdr_len`,
//! `http_max_hdr`, obs-fold), so a slow or hostile client can never make us buffer or rescan more
//! than the limits allow. Only then does `httparse` check the grammar, on the complete head frozen
//! into one `Bytes`, so every name, value, method and URL is a zero-copy slice of it. Framing
//! rules (Content-Length / Transfer-Encoding) are strict on purpose: anything two HTTP
//! implementations could read differently is refused with 400 rather than guessed at, because a
//! proxy that guesses differently from its backend is how requests get smuggled.
//!
//! Contract of [`parse_request`]: `Ok(None)` consumes nothing; `Ok(Some)` consumes exactly the
//! head (including any skipped leading empty lines, counted in `head_len`); `Err` leaves the
//! buffer as it was, and the caller answers with `err.status()` and closes the connection.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use crate::http::error::ParseError;
use crate::http::headers::Headers;

/// Size of the on-stack `httparse` header array: `max_hdr` above this is capped to it.
pub const MAX_HEADER_ARRAY: usize = 256;

/// How many empty lines may precede a start line (RFC 9112 §2.2 robustness) before we give up.
pub const MAX_LEADING_EMPTY_LINES: usize = 16;

/// Request head limits, named after the Varnish parameters they implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `http_req_size`: the whole head, request line to blank line inclusive.
    pub req_size: usize,
    /// `http_req_hdr_len`: one line (the request line or one field line), without its CRLF.
    pub hdr_len: usize,
    /// `http_max_hdr`: the number of header fields (capped at [`MAX_HEADER_ARRAY`]).
    pub max_hdr: usize,
}

impl Default for Limits {
    /// Varnish's defaults: 32k head, 8k line, 64 fields.
    fn default() -> Self {
        Limits {
            req_size: 32768,
            hdr_len: 8192,
            max_hdr: 64,
        }
    }
}

/// The protocol version of a message; only 1.0 and 1.1 are spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// The version as it appears on the wire, e.g. `b"HTTP/1.1"`.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// The request method; `Other` for any other valid token (see `RequestHead::method_raw`).
/// Methods are case-sensitive, so `get` is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
    Connect,
    Pri,
    Other,
}

impl Method {
    /// Classifies a method token (case-sensitive, as RFC 9110 §9.1 requires).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            b"PRI" => Method::Pri,
            _ => Method::Other,
        }
    }
}

/// How the body following a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes (a request with `Content-Length: 0` gets `Length(0)`).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with `ChunkedDecoder`.
    Chunked,
    /// Read until the peer closes; only ever produced for responses.
    UntilClose,
}

/// A parsed request head. Every `Bytes` is a slice of the one frozen head buffer.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: Method,
    /// The method token exactly as received.
    pub method_raw: Bytes,
    /// The request target as received: origin-form (`/...`), absolute-form (`http://...`,
    /// `https://...`; not rewritten, the caller decides) or `*` (OPTIONS only).
    pub url: Bytes,
    pub version: Version,
    /// All fields in arrival order; values have surrounding OWS trimmed.
    pub headers: Headers,
    /// `None`, `Length(n)` or `Chunked`; never `UntilClose`.
    pub body: BodyFraming,
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// An HTTP/1.1 request with `Expect: 100-continue` (case-insensitive). HTTP/1.0 requests
    /// never get it: RFC 9110 §10.1.1 says to ignore the expectation there.
    pub expect_continue: bool,
    /// Bytes consumed from the buffer: any skipped leading empty lines, the request line, the
    /// fields and the blank line.
    pub head_len: usize,
}

/// Parses one request head from the front of `buf`.
///
/// `Ok(None)`: the head is incomplete and nothing was consumed. `Ok(Some(h))`: `h.head_len`
/// bytes were split off the front of `buf`; body bytes (if any) stay in `buf`. `Err(e)`: `buf`
/// is unchanged; answer `e.status()` and close.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<RequestHead>, ParseError> {
    let max_fields = limits.max_hdr.min(MAX_HEADER_ARRAY);
    let scan = ScanLimits {
        size: limits.req_size,
        line: limits.hdr_len,
        fields: max_fields,
        start_line_too_long: ParseError::UriTooLong,
    };
    parse_head(buf, &scan, precheck_partial, build_request)
}

/// The shared shape of request and response parsing: scan for the end of the head within the
/// limits; refuse garbage early while incomplete (`precheck`); on a complete head, split it off
/// and `build` the typed head from it, putting the bytes back if that fails so `Err` never
/// consumes anything.
pub(crate) fn parse_head<T>(
    buf: &mut BytesMut,
    scan: &ScanLimits,
    precheck: fn(&[u8], usize) -> Result<(), ParseError>,
    build: fn(&Bytes, usize, usize) -> Result<T, ParseError>,
) -> Result<Option<T>, ParseError> {
    match scan_head(buf, scan)? {
        Scan::Partial { prefix } => {
            precheck(&buf[prefix..], scan.fields)?;
            Ok(None)
        }
        Scan::Complete { prefix, len } => {
            let head = buf.split_to(len).freeze();
            match build(&head, prefix, scan.fields) {
                Ok(h) => Ok(Some(h)),
                Err(e) => {
                    restore(buf, &head);
                    Err(e)
                }
            }
        }
    }
}

/// Runs httparse over an incomplete head so garbage is refused as soon as it arrives instead of
/// after the client has sent up to `req_size` bytes of it.
fn precheck_partial(rest: &[u8], max_fields: usize) -> Result<(), ParseError> {
    let mut arr = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_ARRAY];
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        rest,
        &mut arr[..max_fields],
    ) {
        Ok(httparse::Status::Partial) => Ok(()),
        // The line scan found no blank line, so httparse cannot have; refuse rather than wait.
        Ok(httparse::Status::Complete(_)) => Err(ParseError::BadRequest("inconsistent head")),
        Err(httparse::Error::Version) => match request_version_token(rest) {
            Some((token, complete)) => refused_version(token, complete),
            None => Err(ParseError::BadRequest("malformed request line")),
        },
        Err(e) => Err(map_httparse(e)),
    }
}

fn build_request(
    head: &Bytes,
    prefix: usize,
    max_fields: usize,
) -> Result<RequestHead, ParseError> {
    let rest = head.get(prefix..).unwrap_or_default();
    let mut arr = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_ARRAY];
    let mut req = httparse::Request::new(&mut []);
    match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        rest,
        &mut arr[..max_fields],
    ) {
        Ok(httparse::Status::Complete(n)) if n == rest.len() => {}
        Ok(_) => return Err(ParseError::BadRequest("inconsistent head")),
        Err(httparse::Error::Version) => {
            // With the line complete, `refused_version` always yields an error.
            let e = request_version_token(rest)
                .and_then(|(token, _)| refused_version(token, true).err());
            return Err(e.unwrap_or(ParseError::BadRequest("malformed HTTP version")));
        }
        Err(e) => return Err(map_httparse(e)),
    }
    let (Some(method_str), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::BadRequest("malformed request line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::VersionNotSupported),
    };
    let method = Method::from_bytes(method_str.as_bytes());
    check_target(method, path.as_bytes())?;

    let mut headers = Headers::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        headers.append(head.slice_ref(h.name.as_bytes()), head.slice_ref(h.value));
    }

    let hosts = headers.get_all("host").count();
    if hosts > 1 {
        return Err(ParseError::BadRequest("more than one Host"));
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(ParseError::BadRequest("HTTP/1.1 request without Host"));
    }

    let body = request_framing(version, &headers)?;
    let keep_alive = connection_keep_alive(version, &headers);
    let expect_continue = version == Version::Http11
        && headers
            .get_all("expect")
            .any(|v| v.eq_ignore_ascii_case(b"100-continue"));

    Ok(RequestHead {
        method,
        method_raw: head.slice_ref(method_str.as_bytes()),
        url: head.slice_ref(path.as_bytes()),
        version,
        headers,
        body,
        keep_alive,
        expect_continue,
        head_len: head.len(),
    })
}

/// Origin-form, absolute-form with an http(s) scheme, or `*` for OPTIONS. Authority-form
/// (`CONNECT host:port`) is refused: a caching proxy does not tunnel.
fn check_target(method: Method, target: &[u8]) -> Result<(), ParseError> {
    let ok = match target {
        [b'/', ..] => true,
        b"*" => method == Method::Options,
        _ => is_absolute_http(target),
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::BadRequest("invalid request target"))
    }
}

fn is_absolute_http(t: &[u8]) -> bool {
    let rest = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        &t[7..]
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        &t[8..]
    } else {
        return false;
    };
    // There must be an authority.
    !matches!(rest.first(), None | Some(b'/' | b'?' | b'#'))
}

/// Request framing, RFC 9112 §6.1–6.3, strict.
///
/// Transfer-Encoding rules, in order:
/// * present in an HTTP/1.0 request → 400 (1.0 has no transfer codings; a 1.0 backend would
///   read the body differently);
/// * present together with Content-Length → 400;
/// * no coding at all (`Transfer-Encoding:` empty), or a coding that is not a token → 400;
/// * final coding `chunked`: alone → `Chunked`; `chunked` listed twice → 400; other codings
///   before it (`gzip, chunked`) → 501, we do not implement them;
/// * final coding not `chunked`: a list (`chunked, gzip`) → 400, because the body length
///   cannot be determined and RFC 9112 §6.3 says so; a single coding (`gzip`, `foo`) → 501.
///
/// Several Transfer-Encoding fields count as one comma-joined list.
fn request_framing(version: Version, headers: &Headers) -> Result<BodyFraming, ParseError> {
    let codings = transfer_codings(headers)?;
    if let Some(c) = codings {
        if version == Version::Http10 {
            return Err(ParseError::BadRequest(
                "Transfer-Encoding in HTTP/1.0 request",
            ));
        }
        if headers.contains("content-length") {
            return Err(ParseError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if c.last_is_chunked {
            if c.chunked > 1 {
                return Err(ParseError::BadRequest("chunked applied more than once"));
            }
            if c.count > 1 {
                return Err(ParseError::NotImplemented(
                    "transfer coding other than chunked",
                ));
            }
            return Ok(BodyFraming::Chunked);
        }
        if c.count > 1 {
            return Err(ParseError::BadRequest(
                "final transfer coding is not chunked",
            ));
        }
        return Err(ParseError::NotImplemented("unsupported transfer coding"));
    }
    Ok(match content_length(headers)? {
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::None,
    })
}

fn connection_keep_alive(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => !headers.has_token("connection", "close"),
        Version::Http10 => {
            headers.has_token("connection", "keep-alive")
                && !headers.has_token("connection", "close")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared with response.rs

/// The transfer codings of a message, flattened over every Transfer-Encoding field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Codings {
    /// Number of codings listed.
    pub count: usize,
    /// How many of them are `chunked`.
    pub chunked: usize,
    /// Whether the final one is `chunked`.
    pub last_is_chunked: bool,
}

/// `None` when there is no Transfer-Encoding field. Empty list elements are ignored (RFC 9110
/// §5.6.1); a field with no coding at all, or a coding that is not a token, is an error.
/// Parameters (`;q=...`) are ignored for naming the coding.
pub(crate) fn transfer_codings(headers: &Headers) -> Result<Option<Codings>, ParseError> {
    let mut seen = false;
    let mut c = Codings {
        count: 0,
        chunked: 0,
        last_is_chunked: false,
    };
    for v in headers.get_all("transfer-encoding") {
        seen = true;
        for elem in v.split(|&b| b == b',') {
            let elem = crate::http::headers::trim(elem);
            if elem.is_empty() {
                continue;
            }
            let name = match memchr::memchr(b';', elem) {
                Some(i) => crate::http::headers::trim(&elem[..i]),
                None => elem,
            };
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(ParseError::BadRequest("invalid transfer coding"));
            }
            let is_chunked = name.eq_ignore_ascii_case(b"chunked");
            // `chunked` with parameters is not chunked as we know it.
            let is_chunked = is_chunked && name.len() == elem.len();
            c.count += 1;
            c.chunked += usize::from(is_chunked);
            c.last_is_chunked = is_chunked;
        }
    }
    if !seen {
        return Ok(None);
    }
    if c.count == 0 {
        return Err(ParseError::BadRequest("empty Transfer-Encoding"));
    }
    Ok(Some(c))
}

/// The Content-Length, if any. Every field and every comma-separated element must be plain
/// decimal digits fitting in a u64 (no sign, no spaces inside) and all must be equal
/// (`5, 5` is fine, `5, 6` is not).
pub(crate) fn content_length(headers: &Headers) -> Result<Option<u64>, ParseError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all("content-length") {
        for elem in v.split(|&b| b == b',') {
            let n = parse_decimal(crate::http::headers::trim(elem))
                .ok_or(ParseError::BadRequest("invalid Content-Length"))?;
            match found {
                Some(prev) if prev != n => {
                    return Err(ParseError::BadRequest("conflicting Content-Length"));
                }
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// RFC 9110 token character.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

pub(crate) fn map_httparse(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::HeaderName => ParseError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => ParseError::BadRequest("invalid header value"),
        httparse::Error::NewLine => ParseError::BadRequest("invalid line ending"),
        httparse::Error::Status => ParseError::BadRequest("invalid status line"),
        httparse::Error::Token => ParseError::BadRequest("invalid method or request target"),
        httparse::Error::TooManyHeaders => ParseError::HeadersTooLarge,
        httparse::Error::Version => ParseError::BadRequest("malformed HTTP version"),
    }
}

/// The version token of a (possibly incomplete) request line that starts `rest`, and whether
/// the token is complete. `None` if the line does not have exactly three SP-separated parts.
fn request_version_token(rest: &[u8]) -> Option<(&[u8], bool)> {
    let (line, complete) = match memchr::memchr(b'\n', rest) {
        Some(i) => (strip_cr(&rest[..i]), true),
        None => (strip_cr(rest), false),
    };
    let mut parts = line.splitn(3, |&b| b == b' ');
    let _method = parts.next()?;
    let _target = parts.next()?;
    let version = parts.next()?;
    if version.contains(&b' ') {
        return None;
    }
    Some((version, complete))
}

/// httparse refused a version token (it knows only 1.0 and 1.1). A complete, well-formed
/// `HTTP/<d>.<d>` is 505; a prefix of one may still become one, so wait; anything else is 400.
pub(crate) fn refused_version(token: &[u8], complete: bool) -> Result<(), ParseError> {
    const SHAPE: &[u8; 8] = b"HTTP/d.d";
    let fits = token.len() <= SHAPE.len()
        && token.iter().zip(SHAPE.iter()).all(|(&b, &s)| {
            if s == b'd' {
                b.is_ascii_digit()
            } else {
                b == s
            }
        });
    match (fits, complete) {
        (true, true) if token.len() == SHAPE.len() => Err(ParseError::VersionNotSupported),
        (true, false) => Ok(()),
        _ => Err(ParseError::BadRequest("malformed HTTP version")),
    }
}

pub(crate) fn strip_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

/// Puts a frozen head back in front of `buf` after a late error, so `Err` never consumes.
/// This copies, but only on the error path, once per connection, at most `req_size` bytes.
pub(crate) fn restore(buf: &mut BytesMut, head: &Bytes) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(head);
    whole.extend_from_slice(buf);
    *buf = whole;
}

pub(crate) struct ScanLimits {
    /// Maximum head size in bytes.
    pub size: usize,
    /// Maximum length of one line, without its line end.
    pub line: usize,
    /// Maximum number of field lines.
    pub fields: usize,
    /// Error for an over-long start line.
    pub start_line_too_long: ParseError,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// No blank line yet; the start line begins at `prefix`.
    Partial { prefix: usize },
    /// The head is `buf[..len]`; its start line begins at `prefix`.
    Complete { prefix: usize, len: usize },
}

/// The line scan: finds the end of the head and enforces the limits and the obs-fold ban,
/// looking at no more than `size` bytes. A line ends at LF (a CR before it is not counted);
/// httparse later rejects a CR anywhere else.
pub(crate) fn scan_head(buf: &[u8], lim: &ScanLimits) -> Result<Scan, ParseError> {
    let mut pos = 0;
    let mut empties = 0;
    loop {
        match &buf[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            [] | [b'\r'] => {
                if buf.len() >= lim.size {
                    return Err(ParseError::HeadersTooLarge);
                }
                return Ok(Scan::Partial { prefix: pos });
            }
            _ => break,
        }
        empties += 1;
        if empties > MAX_LEADING_EMPTY_LINES {
            return Err(ParseError::BadRequest(
                "too many empty lines before start line",
            ));
        }
    }
    let prefix = pos;
    let mut fields = 0;
    let mut first = true;
    loop {
        if pos >= lim.size {
            // The head goes on past this point, so it is larger than `size`.
            return Err(ParseError::HeadersTooLarge);
        }
        let too_long = if first {
            lim.start_line_too_long
        } else {
            ParseError::HeadersTooLarge
        };
        let window_end = buf
            .len()
            .min(pos.saturating_add(lim.line).saturating_add(2));
        let window = &buf[pos..window_end];
        let Some(i) = memchr::memchr(b'\n', window) else {
            if strip_cr(window).len() > lim.line {
                return Err(too_long);
            }
            if buf.len() >= lim.size {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(Scan::Partial { prefix });
        };
        let content = strip_cr(&window[..i]);
        if content.len() > lim.line {
            return Err(too_long);
        }
        let next = pos + i + 1;
        if !first {
            if content.is_empty() {
                if next > lim.size {
                    return Err(ParseError::HeadersTooLarge);
                }
                return Ok(Scan::Complete { prefix, len: next });
            }
            if matches!(content[0], b' ' | b'\t') {
                return Err(ParseError::BadRequest("obs-fold line folding"));
            }
            fields += 1;
            if fields > lim.fields {
                return Err(ParseError::HeadersTooLarge);
            }
        }
        first = false;
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn parse(s: &[u8]) -> Result<Option<RequestHead>, ParseError> {
        let mut b = BytesMut::from(s);
        let before = b.clone();
        let r = parse_request(&mut b, &lim());
        match &r {
            Ok(Some(h)) => assert_eq!(&before[h.head_len..], &b[..]),
            _ => assert_eq!(before, b, "nothing consumed on None/Err"),
        }
        r
    }

    fn ok(s: &[u8]) -> RequestHead {
        match parse(s) {
            Ok(Some(h)) => h,
            other => panic!(
                "expected a head for {:?}, got {:?}",
                String::from_utf8_lossy(s),
                other.map(|o| o.is_some())
            ),
        }
    }

    fn err(s: &[u8]) -> ParseError {
        match parse(s) {
            Err(e) => e,
            Ok(o) => panic!(
                "expected an error for {:?}, got Ok(is_some={})",
                String::from_utf8_lossy(s),
                o.is_some()
            ),
        }
    }

    #[test]
    fn simple_get_is_zero_copy() {
        let mut b = BytesMut::from(
            &b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Foo:  bar \t\r\n\r\nBODY"[..],
        );
        let h = parse_request(&mut b, &lim()).unwrap().unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(&h.method_raw[..], b"GET");
        assert_eq!(&h.url[..], b"/a?b=c");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(
            h.headers.get("host").map(|v| &v[..]),
            Some(&b"example.com"[..])
        );
        assert_eq!(h.headers.get("x-foo").map(|v| &v[..]), Some(&b"bar"[..]));
        assert_eq!(h.body, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.head_len, 57);
        assert_eq!(&b[..], b"BODY");
        // Slices of one allocation: the URL lies between method and headers.
        let m = h.method_raw.as_ptr() as usize;
        let u = h.url.as_ptr() as usize;
        assert_eq!(u, m + 4);
    }

    #[test]
    fn incomplete_needs_more_and_consumes_nothing() {
        let full = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        for cut in 0..full.len() - 3 {
            assert!(parse(&full[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let h = ok(full);
        assert_eq!(h.body, BodyFraming::Length(3));
    }

    #[test]
    fn leading_empty_lines_are_skipped_but_bounded() {
        let h = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(&h.url[..], b"/");
        assert_eq!(h.head_len, 4 + 16 + 9 + 2);
        assert!(parse(b"\r\n\r\n").unwrap().is_none());
        assert!(parse(b"\r\n\r").unwrap().is_none());
        let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok(&many).head_len == many.len());
        let mut too_many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        too_many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(err(&too_many), ParseError::BadRequest(_)));
    }

    #[test]
    fn long_request_line_is_414() {
        let l = Limits {
            req_size: 32768,
            hdr_len: 100,
            max_hdr: 64,
        };
        // Exactly at the limit is fine.
        let url = "/".repeat(100 - "GET  HTTP/1.1".len());
        let req = format!("GET {url} HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut b = BytesMut::from(req.as_bytes());
        assert!(parse_request(&mut b, &l).unwrap().is_some());
        let url = "/".repeat(101 - "GET  HTTP/1.1".len());
        let req = format!("GET {url} HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut b = BytesMut::from(req.as_bytes());
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::UriTooLong
        );
        // Still incomplete: no line end within hdr_len bytes.
        let mut b = BytesMut::from(format!("GET /{}", "a".repeat(100)).as_bytes());
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::UriTooLong
        );
        let mut b = BytesMut::from(format!("GET /{}", "a".repeat(95)).as_bytes());
        assert!(parse_request(&mut b, &l).unwrap().is_none());
        assert_eq!(ParseError::UriTooLong.status(), 414);
    }

    #[test]
    fn big_head_is_431() {
        let l = Limits {
            req_size: 200,
            hdr_len: 100,
            max_hdr: 64,
        };
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while req.len() < 210 {
            req.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        // Incomplete but already over the limit.
        let mut b = BytesMut::from(&req[..]);
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        // Complete but over the limit.
        req.extend_from_slice(b"\r\n");
        let mut b = BytesMut::from(&req[..]);
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        assert_eq!(b.len(), req.len());
        // Exactly at the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        exact.resize(198, b'v');
        exact.extend_from_slice(b"\r\n\r\n");
        let l2 = Limits {
            req_size: exact.len(),
            hdr_len: 1000,
            max_hdr: 64,
        };
        let mut b = BytesMut::from(&exact[..]);
        assert!(parse_request(&mut b, &l2).unwrap().is_some());
        let l3 = Limits {
            req_size: exact.len() - 1,
            ..l2
        };
        let mut b = BytesMut::from(&exact[..]);
        assert_eq!(
            parse_request(&mut b, &l3).unwrap_err(),
            ParseError::HeadersTooLarge
        );
    }

    #[test]
    fn long_header_line_is_431() {
        let l = Limits {
            req_size: 32768,
            hdr_len: 50,
            max_hdr: 64,
        };
        let line = format!("X: {}", "v".repeat(47));
        let mut b =
            BytesMut::from(format!("GET / HTTP/1.1\r\nHost: a\r\n{line}\r\n\r\n").as_bytes());
        assert!(parse_request(&mut b, &l).unwrap().is_some());
        let line = format!("X: {}", "v".repeat(48));
        let mut b =
            BytesMut::from(format!("GET / HTTP/1.1\r\nHost: a\r\n{line}\r\n\r\n").as_bytes());
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        // Incomplete long line.
        let mut b = BytesMut::from(format!("GET / HTTP/1.1\r\nHost: a\r\n{line}").as_bytes());
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
    }

    #[test]
    fn too_many_fields_is_431() {
        let l = Limits {
            req_size: 32768,
            hdr_len: 8192,
            max_hdr: 4,
        };
        let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let mut b = BytesMut::from(&four[..]);
        assert_eq!(parse_request(&mut b, &l).unwrap().unwrap().headers.len(), 4);
        let five = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
        let mut b = BytesMut::from(&five[..]);
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        // max_hdr above the array size is capped to it.
        let l = Limits {
            req_size: 1 << 20,
            hdr_len: 8192,
            max_hdr: 10_000,
        };
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADER_ARRAY {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let mut b = BytesMut::from(&req[..]);
        assert_eq!(
            parse_request(&mut b, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
    }

    #[test]
    fn versions() {
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
        assert_eq!(
            ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").version,
            Version::Http11
        );
        for v in ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"] {
            let req = format!("GET / {v}\r\nHost: a\r\n\r\n");
            assert_eq!(err(req.as_bytes()), ParseError::VersionNotSupported, "{v}");
            // Known as soon as the request line is complete.
            let req = format!("GET / {v}\r\n");
            assert_eq!(err(req.as_bytes()), ParseError::VersionNotSupported, "{v}");
        }
        // A prefix of a well-formed version: wait.
        assert!(parse(b"GET / HTTP/2").unwrap().is_none());
        assert!(parse(b"GET / HTTP/2.0\r").unwrap().is_none());
        assert_eq!(
            err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            ParseError::VersionNotSupported
        );
        for bad in [
            &b"GET / HTTP/1.10\r\nHost: a\r\n\r\n"[..],
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/11\r\nHost: a\r\n\r\n",
            b"GET / HTTPS/1.1\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / FOO\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/a.1\r\n",
        ] {
            assert!(
                matches!(err(bad), ParseError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn methods_and_targets() {
        assert_eq!(
            ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").method,
            Method::Options
        );
        assert!(matches!(
            err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        let h = ok(b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(&h.url[..], b"http://example.com/x");
        let h = ok(b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(&h.url[..], b"HTTPS://example.com");
        let h = ok(b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            (h.method, &h.method_raw[..]),
            (Method::Other, &b"PURGE"[..])
        );
        assert_eq!(
            ok(b"get / HTTP/1.1\r\nHost: a\r\n\r\n").method,
            Method::Other
        );
        for (m, e) in [
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("TRACE", Method::Trace),
            ("PATCH", Method::Patch),
        ] {
            let req = format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(ok(req.as_bytes()).method, e);
        }
        for bad in [
            &b"GET x HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http:/// HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(err(bad), ParseError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Garbage is refused before the head completes.
        assert!(matches!(err(b"G(T / HT"), ParseError::BadRequest(_)));
    }

    #[test]
    fn both_cl_and_te_is_400() {
        assert!(matches!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
    }

    #[test]
    fn content_length_rules() {
        let cl = |v: &str| {
            let req = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
            parse(req.as_bytes()).map(|o| o.map(|h| h.body))
        };
        assert_eq!(cl("0"), Ok(Some(BodyFraming::Length(0))));
        assert_eq!(cl("42"), Ok(Some(BodyFraming::Length(42))));
        assert_eq!(cl("5, 5"), Ok(Some(BodyFraming::Length(5))));
        assert_eq!(
            cl("18446744073709551615"),
            Ok(Some(BodyFraming::Length(u64::MAX)))
        );
        assert_eq!(cl("007"), Ok(Some(BodyFraming::Length(7))));
        for bad in [
            "",
            "+5",
            "-5",
            "5a",
            "0x10",
            "5 5",
            "5,6",
            "18446744073709551616",
            "5,",
            " , ",
            "1e3",
        ] {
            assert!(matches!(cl(bad), Err(ParseError::BadRequest(_))), "{bad:?}");
        }
        // Duplicate fields: identical is fine, differing is not.
        let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.body, BodyFraming::Length(5));
        assert!(matches!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
    }

    #[test]
    fn transfer_encoding_rules() {
        let te = |v: &str| {
            let req = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
            parse(req.as_bytes()).map(|o| o.map(|h| h.body))
        };
        assert_eq!(te("chunked"), Ok(Some(BodyFraming::Chunked)));
        assert_eq!(te("CHUNKED"), Ok(Some(BodyFraming::Chunked)));
        assert_eq!(te(" Chunked "), Ok(Some(BodyFraming::Chunked)));
        assert_eq!(te(", chunked"), Ok(Some(BodyFraming::Chunked)));
        // Final coding not chunked, as a list: 400.
        for bad in [
            "chunked, gzip",
            "chunked, chunked",
            "gzip, foo",
            "chunked, identity",
        ] {
            assert!(matches!(te(bad), Err(ParseError::BadRequest(_))), "{bad:?}");
        }
        // Final coding chunked after others, or a single unsupported coding: 501.
        for ni in [
            "gzip, chunked",
            "deflate,chunked",
            "foo, chunked",
            "gzip",
            "foo",
            "identity",
            "chunked;x=1",
        ] {
            assert!(
                matches!(te(ni), Err(ParseError::NotImplemented(_))),
                "{ni:?}"
            );
        }
        assert_eq!(te("gzip").unwrap_err().status(), 501);
        assert_eq!(te("chunked, gzip").unwrap_err().status(), 400);
        // Not a coding at all.
        for bad in ["", ",", "chu nked", "\"chunked\""] {
            assert!(matches!(te(bad), Err(ParseError::BadRequest(_))), "{bad:?}");
        }
        // Split over several fields: one list.
        assert!(matches!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::NotImplemented(_)
        ));
        // HTTP/1.0 has no transfer codings.
        assert!(matches!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
    }

    #[test]
    fn obs_fold_is_400() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            ParseError::BadRequest("obs-fold line folding")
        );
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        // Whitespace before the first field is the same thing.
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        // Detected while still incomplete.
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\n b"),
            ParseError::BadRequest(_)
        ));
    }

    #[test]
    fn nul_cr_lf_in_values_are_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            // A bare LF ends the field, so what follows must be a field: here it is not.
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n",
        ] {
            assert!(
                matches!(err(bad), ParseError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // obs-text and HTAB are allowed.
        let h = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xffc\r\n\r\n");
        assert_eq!(h.headers.get("x").map(|v| &v[..]), Some(&b"a\tb\xffc"[..]));
    }

    #[test]
    fn space_before_colon_is_400() {
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
    }

    #[test]
    fn host_rules() {
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n"),
            ParseError::BadRequest(_)
        ));
        assert!(ok(b"GET / HTTP/1.0\r\n\r\n").headers.is_empty());
        // An empty Host is allowed (RFC 9110 §7.2).
        assert_eq!(
            ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
                .headers
                .get("host")
                .map(|v| v.len()),
            Some(0)
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn expect_continue() {
        assert!(
            ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(
            !ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(
            !ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn case_insensitive_names_and_trimmed_values() {
        let h = ok(b"GET / HTTP/1.1\r\nhOsT:   a  \r\nCONTENT-LENGTH:\t 2 \t\r\n\r\nxx");
        assert_eq!(h.headers.get("Host").map(|v| &v[..]), Some(&b"a"[..]));
        assert_eq!(h.body, BodyFraming::Length(2));
        // Names keep their case.
        assert_eq!(&h.headers.iter().next().unwrap().name[..], b"hOsT");
    }

    #[test]
    fn bare_lf_line_ends_are_accepted_in_heads() {
        let h = ok(b"GET / HTTP/1.1\nHost: a\n\nrest");
        assert_eq!(h.head_len, 24);
    }

    #[test]
    fn pipelined_requests() {
        let mut b = BytesMut::from(
            &b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        );
        let h1 = parse_request(&mut b, &lim()).unwrap().unwrap();
        let h2 = parse_request(&mut b, &lim()).unwrap().unwrap();
        assert_eq!((&h1.url[..], &h2.url[..]), (&b"/1"[..], &b"/2"[..]));
        assert!(b.is_empty());
        assert!(parse_request(&mut b, &lim()).unwrap().is_none());
    }

    #[test]
    fn refused_version_shapes() {
        assert_eq!(
            refused_version(b"HTTP/2.0", true),
            Err(ParseError::VersionNotSupported)
        );
        assert_eq!(refused_version(b"HTTP/2", false), Ok(()));
        assert_eq!(refused_version(b"", false), Ok(()));
        assert!(refused_version(b"HTTP/2", true).is_err());
        assert!(matches!(
            refused_version(b"HTTP/2.00", false),
            Err(ParseError::BadRequest(_))
        ));
        assert!(matches!(
            refused_version(b"XTTP", false),
            Err(ParseError::BadRequest(_))
        ));
    }
}
