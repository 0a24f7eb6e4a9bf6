//! Writing responses to the client: a cached object, a response VCL built or changed
//! (`resp.*` after `vcl_deliver` or `vcl_synth`), or a backend response streamed through.
//!
//! Why three writers: the hit path must stay a `writev` of the object's pre-built head plus a
//! few per-request lines and its shared body (no header list walked, nothing copied), which is
//! possible only while VCL does not touch `resp`; a VCL that does gets its `resp` headers
//! serialised; a pass or uncacheable response is never held whole. All three frame the body
//! themselves (`Content-Length`, or chunked for an unknown length), answer conditional requests
//! with 304 from a cached 200, and decide keep-alive.

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::backend::fetch::Fetched;
use crate::backend::Endpoint;
use crate::cache::Object;
use crate::http::chunked;
use crate::http::request::Version;
use crate::http::{write, Headers};
use crate::stats::C;
use crate::vcl::exec::RespCtx;

use super::fetch_fsm::log_fetch_error;
use super::io::{secs, write_all_timeout, write_head_body, Write};
use super::shard::{unix_now, Shard};

/// What the writers need to know about the client request.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    /// `req.method` is HEAD: no body is sent.
    pub head: bool,
    pub version: Version,
    pub keep_alive: bool,
}

/// What to do with the connection after a response.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    KeepAlive,
    Close,
}

impl Next {
    fn after(w: &Write<()>, keep_alive: bool) -> Next {
        match w {
            Write::Done(_) if keep_alive => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

/// What a writer sent (for the access log) and what comes next on the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sent {
    pub next: Next,
    /// The status line's code.
    pub status: u16,
    /// Body bytes sent.
    pub body: u64,
}

/// Fields a 304 carries over from the full response (RFC 9110 15.4.5).
const NOT_MODIFIED_KEEP: [&[u8]; 8] = [
    b"etag",
    b"last-modified",
    b"cache-control",
    b"expires",
    b"vary",
    b"date",
    b"content-location",
    b"via",
];

/// Does the client's conditional request match a 200 with these headers (RFC 9110 13.1.2,
/// 13.1.3)?
pub fn not_modified(req: &Headers, status: u16, headers: &Headers) -> bool {
    if status != 200 {
        return false;
    }
    if let Some(inm) = req.get("if-none-match") {
        let Some(etag) = headers.get("etag") else {
            return false;
        };
        let strip = |t: &[u8]| -> Vec<u8> {
            let t = crate::http::headers::trim(t);
            t.strip_prefix(b"W/").unwrap_or(t).to_vec()
        };
        let want = strip(etag);
        return inm
            .split(|&b| b == b',')
            .any(|t| crate::http::headers::trim(t) == b"*" || strip(t) == want);
    }
    if let Some(ims) = req.get("if-modified-since") {
        let (Some(ims), Some(lm)) = (
            crate::http::date::parse_http_date(ims),
            headers
                .get("last-modified")
                .and_then(|v| crate::http::date::parse_http_date(v)),
        ) else {
            return false;
        };
        return lm <= ims;
    }
    false
}

fn connection_header(head: &mut Vec<u8>, ci: &ClientInfo, keep_alive: bool) {
    if !keep_alive {
        head.extend_from_slice(b"Connection: close\r\n");
    } else if ci.version == Version::Http10 {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

fn bodyless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Writes a cached object (hit, fresh miss, error object) from its pre-built head, with
/// `X-Varnish` (and the object's xid on hits), `Age` (at `now`) and framing.
#[allow(clippy::too_many_arguments)]
pub async fn write_obj(
    shard: &Shard,
    stream: &mut TcpStream,
    ci: &ClientInfo,
    req_headers: &Headers,
    obj: &Object,
    xid: u64,
    hit: bool,
    now: f64,
) -> Sent {
    let mut head = Vec::with_capacity(obj.head.len() + 160);
    let cond = not_modified(req_headers, obj.status, &obj.headers);
    if cond {
        write::write_status_line(&mut head, 304, b"Not Modified");
        for h in &obj.headers {
            if NOT_MODIFIED_KEEP
                .iter()
                .any(|k| h.name.eq_ignore_ascii_case(k))
            {
                write::write_header(&mut head, &h.name, &h.value);
            }
        }
    } else {
        head.extend_from_slice(&obj.head);
    }
    head.extend_from_slice(b"X-Varnish: ");
    write::write_u64(&mut head, xid);
    if hit {
        head.push(b' ');
        write::write_u64(&mut head, obj.xid);
    }
    head.extend_from_slice(b"\r\nAge: ");
    write::write_u64(&mut head, obj.age(now));
    head.extend_from_slice(b"\r\n");
    let no_body = cond || bodyless(obj.status);
    if !no_body {
        head.extend_from_slice(b"Content-Length: ");
        write::write_u64(&mut head, obj.body.len() as u64);
        head.extend_from_slice(b"\r\n");
    }
    connection_header(&mut head, ci, ci.keep_alive);
    head.extend_from_slice(b"\r\n");
    let body = if !no_body && !ci.head {
        obj.body.clone()
    } else {
        Bytes::new()
    };
    let c = shard.counters();
    c.add(C::s_resp_hdrbytes, head.len() as u64);
    c.add(C::s_resp_bodybytes, body.len() as u64);
    let sent_body = body.len() as u64;
    let w = write_head_body(stream, head, body, secs(shard.params().send_timeout)).await;
    Sent {
        next: Next::after(&w, ci.keep_alive),
        status: if cond { 304 } else { obj.status },
        body: sent_body,
    }
}

/// The status a response carries on the wire: VCL may use codes above 999 internally (the
/// `synth(750)` idiom keeps them below), which go out as `status % 1000`.
fn wire_status(status: u16) -> u16 {
    let s = if status > 999 { status % 1000 } else { status };
    if s < 100 {
        503
    } else {
        s
    }
}

/// Serialises `headers` for the client, skipping framing fields (the writers frame bodies
/// themselves). Returns whether VCL asked to close (`Connection: close`).
fn write_fields(head: &mut Vec<u8>, headers: &Headers, only: Option<&[&[u8]]>) -> bool {
    let mut close = false;
    for h in headers {
        let n = &h.name[..];
        if n.eq_ignore_ascii_case(b"connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| crate::http::headers::trim(t).eq_ignore_ascii_case(b"close"));
            continue;
        }
        if n.eq_ignore_ascii_case(b"content-length") || n.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        if let Some(keep) = only {
            if !keep.iter().any(|k| n.eq_ignore_ascii_case(k)) {
                continue;
            }
        }
        write::write_header(head, n, &h.value);
    }
    close
}

/// Writes a response VCL built or changed: `resp.status`, `resp.reason`, `resp.http.*` (which
/// already carry `X-Varnish` and `Age`), and `body`.
pub async fn write_resp(
    shard: &Shard,
    stream: &mut TcpStream,
    ci: &ClientInfo,
    req_headers: &Headers,
    resp: &RespCtx,
    body: Bytes,
) -> Sent {
    let (reason, headers) = (&resp.reason[..], &resp.headers);
    let status = wire_status(resp.status);
    let cond = not_modified(req_headers, status, headers);
    let mut head = Vec::with_capacity(256 + headers.wire_len());
    let close = if cond {
        write::write_status_line(&mut head, 304, b"Not Modified");
        write_fields(&mut head, headers, Some(&NOT_MODIFIED_KEEP))
    } else {
        let reason: &[u8] = if reason.is_empty() {
            crate::http::status::reason_phrase(status).as_bytes()
        } else {
            reason
        };
        write::write_status_line(&mut head, status, reason);
        write_fields(&mut head, headers, None)
    };
    let keep_alive = ci.keep_alive && !close;
    let no_body = cond || bodyless(status);
    if !no_body {
        head.extend_from_slice(b"Content-Length: ");
        write::write_u64(&mut head, body.len() as u64);
        head.extend_from_slice(b"\r\n");
    }
    connection_header(&mut head, ci, keep_alive);
    head.extend_from_slice(b"\r\n");
    let body = if !no_body && !ci.head {
        body
    } else {
        Bytes::new()
    };
    let c = shard.counters();
    c.add(C::s_resp_hdrbytes, head.len() as u64);
    c.add(C::s_resp_bodybytes, body.len() as u64);
    let sent_body = body.len() as u64;
    let w = write_head_body(stream, head, body, secs(shard.params().send_timeout)).await;
    Sent {
        next: Next::after(&w, keep_alive),
        status: if cond { 304 } else { status },
        body: sent_body,
    }
}

/// The per-request lines of a streamed response when VCL did not build `resp` itself.
pub struct StreamExtra {
    pub xid: u64,
    pub age: u64,
}

/// Streams a backend response to the client as it arrives (pass, uncacheable, too large).
/// `extra`: append `X-Varnish` and `Age` (they are in `headers` when VCL built `resp`).
/// `slot`: the backend's slot, whose `VBE.beresp_bodybytes` the body counts in.
#[allow(clippy::too_many_arguments)]
pub async fn write_stream(
    shard: &Shard,
    stream: &mut TcpStream,
    ci: &ClientInfo,
    status: u16,
    reason: &[u8],
    headers: &Headers,
    extra: Option<StreamExtra>,
    mut f: Fetched,
    endpoint: &Endpoint,
    xid: u64,
    slot: usize,
) -> Sent {
    let send_timeout = secs(shard.params().send_timeout);
    let status = wire_status(status);
    let mut head = Vec::with_capacity(f.head.head_len + 160);
    let reason: &[u8] = if reason.is_empty() {
        crate::http::status::reason_phrase(status).as_bytes()
    } else {
        reason
    };
    write::write_status_line(&mut head, status, reason);
    let close = write_fields(&mut head, headers, None);
    let mut keep_alive = ci.keep_alive && !close;
    if let Some(x) = extra {
        head.extend_from_slice(b"X-Varnish: ");
        write::write_u64(&mut head, x.xid);
        head.extend_from_slice(b"\r\nAge: ");
        write::write_u64(&mut head, x.age);
        head.extend_from_slice(b"\r\n");
    }
    let no_body = bodyless(status);
    let mut chunked_out = false;
    if ci.head {
        if let Some(cl) = f.head.headers.get("content-length") {
            write::write_header(&mut head, b"Content-Length", cl);
        }
    } else if !no_body {
        match f.body.known_length() {
            Some(n) => {
                head.extend_from_slice(b"Content-Length: ");
                write::write_u64(&mut head, n);
                head.extend_from_slice(b"\r\n");
            }
            None if ci.version == Version::Http11 => {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                chunked_out = true;
            }
            None => keep_alive = false,
        }
    }
    connection_header(&mut head, ci, keep_alive);
    head.extend_from_slice(b"\r\n");
    shard.counters().add(C::s_resp_hdrbytes, head.len() as u64);
    let mut sent_body = 0u64;
    let closed = |sent_body: u64| {
        shard.counters().add(C::s_resp_bodybytes, sent_body);
        shard.count_beresp_body(slot, sent_body);
        Sent {
            next: Next::Close,
            status,
            body: sent_body,
        }
    };
    match write_all_timeout(stream, head, send_timeout).await {
        Write::Done(_) => {}
        _ => return closed(0),
    }
    if !ci.head && !no_body {
        loop {
            let piece = match f.body.next().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    log_fetch_error(shard, xid, "", Some(endpoint), &e);
                    shard.counters().inc(C::fetch_failed);
                    // The response is cut short: the client must see the connection end.
                    return closed(sent_body);
                }
            };
            if piece.is_empty() {
                continue;
            }
            sent_body += piece.len() as u64;
            let ok = if chunked_out {
                let mut h = Vec::with_capacity(16);
                chunked::write_chunk_header(piece.len(), &mut h);
                let r1 = write_head_body(stream, h, piece, send_timeout).await;
                matches!(r1, Write::Done(_))
                    && matches!(
                        write_all_timeout(stream, &b"\r\n"[..], send_timeout).await,
                        Write::Done(_)
                    )
            } else {
                matches!(
                    write_all_timeout(stream, piece, send_timeout).await,
                    Write::Done(_)
                )
            };
            if !ok {
                return closed(sent_body);
            }
        }
        if chunked_out
            && !matches!(
                write_all_timeout(stream, chunked::LAST_CHUNK, send_timeout).await,
                Write::Done(_)
            )
        {
            return closed(sent_body);
        }
    }
    shard.counters().add(C::s_resp_bodybytes, sent_body);
    shard.count_beresp_body(slot, sent_body);
    if f.body.is_done() || no_body || ci.head {
        super::fetch_fsm::release(shard, f, endpoint);
    }
    Sent {
        next: if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        },
        status,
        body: sent_body,
    }
}

/// A synthetic response ringcache makes without VCL: protocol errors (400, 413, 414, 431, ...)
/// and overload, where the request never reached `vcl_recv`.
pub async fn send_plain(
    shard: &Shard,
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    xid: u64,
    keep_alive: bool,
) -> Sent {
    shard.counters().inc(C::s_synth);
    let body = write::synthetic_error_page(status, reason, xid);
    let mut head = Vec::with_capacity(256);
    write::write_status_line(&mut head, status, reason.as_bytes());
    head.extend_from_slice(b"Date: ");
    shard.date(unix_now() as u64, &mut head);
    head.extend_from_slice(b"\r\nServer: ringcache\r\nX-Varnish: ");
    write::write_u64(&mut head, xid);
    head.extend_from_slice(b"\r\nContent-Type: text/html; charset=utf-8\r\n");
    if status == 503 {
        head.extend_from_slice(b"Retry-After: 5\r\n");
    }
    head.extend_from_slice(b"Content-Length: ");
    write::write_u64(&mut head, body.len() as u64);
    head.extend_from_slice(b"\r\n");
    if !keep_alive {
        head.extend_from_slice(b"Connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let sent_body = body.len() as u64;
    let w = write_head_body(stream, head, Bytes::from(body), secs(5.0)).await;
    Sent {
        next: Next::after(&w, keep_alive),
        status,
        body: sent_body,
    }
}
