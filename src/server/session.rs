//! One client connection: read requests, run each through recv -> lookup -> fetch -> deliver,
//! write responses in order.
//!
//! Why one task per connection, sequential: HTTP/1.1 pipelined responses must go out in request
//! order, and handling one request at a time per connection gives that for free while the
//! shard interleaves thousands of connections. The read buffer is reused across requests;
//! request heads are split off it as shared `Bytes`, so parsing copies nothing.
//!
//! The policy here is Varnish 7.1's built-in VCL, hard-coded until the VCL engine replaces it:
//! only GET and HEAD are looked up, `Authorization`/`Cookie` pass, uncacheable responses become
//! hit-for-miss for `uncacheable_ttl`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::backend::fetch::{self, FetchError, Fetched};
use crate::cache::ttl;
use crate::cache::{CacheKey, ObjKind, Object, VarySpec};
use crate::http::chunked::{self, ChunkedDecoder};
use crate::http::error::ParseError;
use crate::http::request::{self, BodyFraming, Method, RequestHead, Version};
use crate::http::{write, Headers};
use crate::stats::C;

use super::io::{read_timeout, secs, write_all_timeout, write_head_body, Read, Write};
use super::shard::{unix_now, BusyGuard, Reply, Shard};

/// `Via` value ringcache adds.
pub const VIA: &[u8] = b"1.1 ringcache (ringcache/0.1)";

/// What to do with the connection after a response.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    KeepAlive,
    Close,
}

/// A client connection.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: BytesMut,
}

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        peer,
        rbuf: BytesMut::with_capacity(4096),
    };
    loop {
        let head = match read_head(&shard, &mut conn).await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                shard.counters().inc(C::client_req_400);
                send_parse_error(&shard, &mut conn, &e).await;
                break;
            }
        };
        shard
            .counters()
            .add(C::s_req_hdrbytes, head.head_len as u64);
        let body = match read_body(&shard, &mut conn, &head).await {
            Ok(b) => b,
            Err(BodyError::Parse(e)) => {
                shard.counters().inc(C::client_req_400);
                send_parse_error(&shard, &mut conn, &e).await;
                break;
            }
            Err(BodyError::TooLarge) => {
                shard.counters().inc(C::client_req_400);
                let xid = shard.next_xid();
                let _ = send_synth(
                    &shard,
                    &mut conn,
                    413,
                    "Payload Too Large",
                    xid,
                    false,
                    false,
                )
                .await;
                break;
            }
            Err(BodyError::Gone) => break,
        };
        shard.counters().inc(C::client_req);
        match handle(&shard, &mut conn, head, body).await {
            Next::KeepAlive => continue,
            Next::Close => break,
        }
    }
    shard.conns.set(shard.conns.get().saturating_sub(1));
}

/// Reads until a complete request head is buffered. `Ok(None)`: the client went away or idled
/// out between requests (close quietly).
async fn read_head(shard: &Shard, conn: &mut Conn) -> Result<Option<RequestHead>, ParseError> {
    let idle = secs(shard.shared.params.timeout_idle);
    loop {
        if !conn.rbuf.is_empty() {
            if let Some(h) = request::parse_request(&mut conn.rbuf, &shard.req_limits)? {
                return Ok(Some(h));
            }
        }
        let buf = std::mem::take(&mut conn.rbuf);
        match read_timeout(&mut conn.stream, buf, idle).await {
            Read::Data(_, b) => conn.rbuf = b,
            Read::Eof(_) | Read::Failed(_) => return Ok(None),
            Read::TimedOut => {
                shard.counters().inc(C::sess_closed_err);
                return Ok(None);
            }
        }
    }
}

enum BodyError {
    Parse(ParseError),
    TooLarge,
    Gone,
}

/// Reads the request body (Content-Length or chunked), answering `Expect: 100-continue`.
async fn read_body(shard: &Shard, conn: &mut Conn, head: &RequestHead) -> Result<Bytes, BodyError> {
    let max = shard.shared.params.http_req_body_max;
    let idle = secs(shard.shared.params.timeout_idle);
    let need_continue = head.expect_continue;
    match head.body {
        BodyFraming::None | BodyFraming::Length(0) => Ok(Bytes::new()),
        BodyFraming::Length(n) => {
            if n > max {
                return Err(BodyError::TooLarge);
            }
            let n = n as usize;
            if need_continue && conn.rbuf.len() < n {
                send_continue(conn).await?;
            }
            while conn.rbuf.len() < n {
                conn.rbuf.reserve(n - conn.rbuf.len());
                let buf = std::mem::take(&mut conn.rbuf);
                match read_timeout(&mut conn.stream, buf, idle).await {
                    Read::Data(_, b) => conn.rbuf = b,
                    _ => return Err(BodyError::Gone),
                }
            }
            shard.counters().add(C::s_req_bodybytes, n as u64);
            Ok(conn.rbuf.split_to(n).freeze())
        }
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            if need_continue && conn.rbuf.is_empty() {
                send_continue(conn).await?;
            }
            let mut dec = ChunkedDecoder::new(16 * 1024);
            let mut out = BytesMut::new();
            loop {
                let done = dec
                    .decode(&mut conn.rbuf, &mut out)
                    .map_err(BodyError::Parse)?;
                if out.len() as u64 > max {
                    return Err(BodyError::TooLarge);
                }
                if done {
                    break;
                }
                let buf = std::mem::take(&mut conn.rbuf);
                match read_timeout(&mut conn.stream, buf, idle).await {
                    Read::Data(_, b) => conn.rbuf = b,
                    _ => return Err(BodyError::Gone),
                }
            }
            shard.counters().add(C::s_req_bodybytes, out.len() as u64);
            Ok(out.freeze())
        }
    }
}

async fn send_continue(conn: &mut Conn) -> Result<(), BodyError> {
    match write_all_timeout(
        &mut conn.stream,
        &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
        secs(5.0),
    )
    .await
    {
        Write::Done(_) => Ok(()),
        _ => Err(BodyError::Gone),
    }
}

/// Runs one request through the built-in policy.
async fn handle(shard: &Rc<Shard>, conn: &mut Conn, mut req: RequestHead, body: Bytes) -> Next {
    let xid = shard.next_xid();
    let keep_alive = req.keep_alive;

    // Absolute-form target: the authority becomes Host, the path the URL (RFC 9112 3.2.2).
    if req.url.starts_with(b"http://") || req.url.starts_with(b"https://") {
        let skip = if req.url.starts_with(b"https://") {
            8
        } else {
            7
        };
        let rest = req.url.slice(skip..);
        let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let host = rest.slice(..slash);
        req.url = if slash < rest.len() {
            rest.slice(slash..)
        } else {
            Bytes::from_static(b"/")
        };
        req.headers.set("Host", host);
    }

    // vcl_recv (builtin).
    if req.method == Method::Pri {
        return send_synth(
            shard,
            conn,
            405,
            "Method Not Allowed",
            xid,
            keep_alive,
            false,
        )
        .await;
    }
    let lookup = matches!(req.method, Method::Get | Method::Head)
        && !req.headers.contains("authorization")
        && !req.headers.contains("cookie");
    if !lookup {
        return pass(shard, conn, &req, body, xid).await;
    }

    // vcl_hash (builtin): URL, then Host or the server address.
    let host = match req.headers.get("host") {
        Some(h) => h.clone(),
        None => Bytes::from(
            conn.stream
                .local_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
        ),
    };
    let key = CacheKey::from_parts(&[&req.url, &host]);

    match shard.lookup(&key, &req.headers, None).await {
        Reply::Hit(obj) => {
            shard.counters().inc(C::cache_hit);
            deliver(shard, conn, &req, &obj, xid, true).await
        }
        Reply::Grace { stale, bgfetch } => {
            let c = shard.counters();
            c.inc(C::cache_hit);
            c.inc(C::cache_hit_grace);
            if bgfetch {
                let guard = BusyGuard::new(shard.clone(), key.clone());
                let bereq = build_bereq(
                    shard,
                    &req,
                    b"GET",
                    &Bytes::new(),
                    Some(None),
                    conn.peer,
                    xid,
                );
                let s = shard.clone();
                let req_headers = req.headers.clone();
                monoio::spawn(async move {
                    s.counters().inc(C::s_fetch);
                    s.counters().inc(C::s_bgfetch);
                    background_fetch(s, guard, bereq, req_headers, xid).await;
                });
            }
            deliver(shard, conn, &req, &stale, xid, true).await
        }
        Reply::Miss(kept) => {
            shard.counters().inc(C::cache_miss);
            let guard = BusyGuard::new(shard.clone(), key.clone());
            miss(shard, conn, &req, xid, key, Some(guard), kept).await
        }
        Reply::HitMiss => {
            let c = shard.counters();
            c.inc(C::cache_hitmiss);
            c.inc(C::cache_miss);
            miss(shard, conn, &req, xid, key, None, None).await
        }
        Reply::HitPass => {
            shard.counters().inc(C::cache_hitpass);
            pass(shard, conn, &req, body, xid).await
        }
        Reply::Overloaded => {
            send_synth(shard, conn, 503, "Service Unavailable", xid, false, false).await
        }
        Reply::Failed(obj) => deliver(shard, conn, &req, &obj, xid, false).await,
    }
}

/// A miss (with the busy flag, or a hit-for-miss without it): fetch, store if cacheable, deliver.
async fn miss(
    shard: &Rc<Shard>,
    conn: &mut Conn,
    req: &RequestHead,
    xid: u64,
    key: CacheKey,
    guard: Option<BusyGuard>,
    kept: Option<Arc<Object>>,
) -> Next {
    shard.counters().inc(C::s_fetch);
    let bereq = build_bereq(
        shard,
        req,
        b"GET",
        &Bytes::new(),
        Some(kept.as_deref()),
        conn.peer,
        xid,
    );
    let fetched = do_fetch(shard, bereq, false, true).await;
    let mut f = match fetched {
        Ok(f) => f,
        Err(e) => return miss_failed(shard, conn, req, xid, guard, &e).await,
    };
    let now = unix_now();
    if let (Some(kept), 304) = (&kept, f.head.status) {
        // The kept object is still valid: refresh its headers and lifetime, keep its body.
        let obj = Arc::new(refreshed_object(shard, kept, &f, now, xid));
        release(shard, f);
        report(shard, guard, key, obj.clone());
        return deliver(shard, conn, req, &obj, xid, false).await;
    }
    let lt = ttl::rfc2616_ttl(f.head.status, &f.head.headers, now, &shard.ttl_params);
    let too_big = f
        .body
        .known_length()
        .is_some_and(|n| n as usize > shard.object_max);
    let uncacheable = ttl::builtin_uncacheable(&f.head.headers, &lt, now).is_some() || too_big;
    if uncacheable {
        // vcl_backend_response (builtin): hit-for-miss for uncacheable_ttl; stream it through.
        let marker = Arc::new(marker_object(
            shard,
            &f,
            &req.headers,
            ObjKind::HitForMiss,
            now,
            xid,
        ));
        report(shard, guard, key, marker);
        return stream_response(shard, conn, req, f, xid).await;
    }
    let body = match f.body.read_all(shard.object_max).await {
        Ok(b) => b,
        Err(e) => return miss_failed(shard, conn, req, xid, guard, &e).await,
    };
    count_framing(shard, &f);
    let obj = Arc::new(build_object(&f, body, &req.headers, lt, xid));
    release(shard, f);
    report(shard, guard, key, obj.clone());
    deliver(shard, conn, req, &obj, xid, false).await
}

/// Tells the key's owner how the fetch ended: through the busy guard when this request held
/// the key's busy flag, else as a plain insert (a hit-for-miss refetch).
fn report(shard: &Shard, guard: Option<BusyGuard>, key: CacheKey, obj: Arc<Object>) {
    match guard {
        Some(g) => g.complete(obj),
        None => shard.report_insert(key, obj, false),
    }
}

/// A miss whose fetch failed: waiters get the same 503 object, and so does this client.
async fn miss_failed(
    shard: &Shard,
    conn: &mut Conn,
    req: &RequestHead,
    xid: u64,
    guard: Option<BusyGuard>,
    e: &FetchError,
) -> Next {
    log_fetch_error(shard, xid, e);
    let err = error_object(shard, xid);
    if let Some(g) = guard {
        g.fail(Some(err.clone()));
    }
    deliver(shard, conn, req, &err, xid, false).await
}

/// A grace hit's refresh: fetch, then replace the stale object (or keep it on failure).
async fn background_fetch(
    shard: Rc<Shard>,
    guard: BusyGuard,
    bereq: Bytes,
    req_headers: Headers,
    xid: u64,
) {
    let mut f = match do_fetch(&shard, bereq, false, true).await {
        Ok(f) => f,
        Err(e) => {
            log_fetch_error(&shard, xid, &e);
            // The stale object stays (Varnish b00035); nobody waits on a graced key.
            guard.fail(None);
            return;
        }
    };
    let now = unix_now();
    let lt = ttl::rfc2616_ttl(f.head.status, &f.head.headers, now, &shard.ttl_params);
    if ttl::builtin_uncacheable(&f.head.headers, &lt, now).is_some() {
        let marker = Arc::new(marker_object(
            &shard,
            &f,
            &req_headers,
            ObjKind::HitForMiss,
            now,
            xid,
        ));
        guard.complete(marker);
        return;
    }
    match f.body.read_all(shard.object_max).await {
        Ok(body) => {
            count_framing(&shard, &f);
            let obj = Arc::new(build_object(&f, body, &req_headers, lt, xid));
            release(&shard, f);
            guard.complete(obj);
        }
        Err(e) => {
            log_fetch_error(&shard, xid, &e);
            guard.fail(None);
        }
    }
}

/// Ends a fetch whose body was read whole: its connection goes back to the pool if reusable.
fn release(shard: &Shard, f: Fetched) {
    let mut pool = shard.pool.borrow_mut();
    f.body
        .release(&mut pool, shard.shared.backend.addr, shard.counters());
}

/// Pass: forward the request (with its body) and stream the response.
async fn pass(
    shard: &Rc<Shard>,
    conn: &mut Conn,
    req: &RequestHead,
    body: Bytes,
    xid: u64,
) -> Next {
    shard.counters().inc(C::s_pass);
    let method = req.method_raw.clone();
    let bereq = build_bereq(shard, req, &method, &body, None, conn.peer, xid);
    let retryable = matches!(
        req.method,
        Method::Get | Method::Head | Method::Options | Method::Trace | Method::Put | Method::Delete
    );
    match do_fetch(shard, bereq, req.method == Method::Head, retryable).await {
        Ok(f) => stream_response(shard, conn, req, f, xid).await,
        Err(e) => {
            log_fetch_error(shard, xid, &e);
            let err = error_object(shard, xid);
            deliver(shard, conn, req, &err, xid, false).await
        }
    }
}

async fn do_fetch(
    shard: &Shard,
    bereq: Bytes,
    head_request: bool,
    retryable: bool,
) -> Result<Fetched, FetchError> {
    shard.counters().inc(C::backend_req);
    let r = fetch::fetch(
        &shard.pool,
        shard.counters(),
        shard.shared.backend.addr,
        bereq,
        head_request,
        retryable,
        &shard.fetch_limits,
    )
    .await;
    if r.is_err() {
        shard.counters().inc(C::fetch_failed);
    }
    r
}

fn log_fetch_error(shard: &Shard, xid: u64, e: &FetchError) {
    eprintln!(
        "FetchError {} shard={} backend={} {}",
        xid, shard.id, shard.shared.backend.addr, e
    );
}

fn count_framing(shard: &Shard, f: &Fetched) {
    let c = match f.body.framing() {
        BodyFraming::None => C::fetch_none,
        BodyFraming::Length(_) => C::fetch_length,
        BodyFraming::Chunked => C::fetch_chunked,
        BodyFraming::UntilClose => C::fetch_eof,
    };
    shard.counters().inc(c);
}

/// Hop-by-hop fields (RFC 9110 7.6.1) never forwarded in either direction.
fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Fields a cache fetch drops so the backend sends a full, unconditional response.
fn is_conditional(name: &[u8]) -> bool {
    const COND: [&[u8]; 6] = [
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
        b"range",
    ];
    COND.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Serialises the backend request: request line, filtered headers, Host, X-Forwarded-For,
/// X-Varnish, Content-Length, body.
///
/// `cache`: `Some` for a cache fetch (the client's conditional and Range fields are dropped so
/// the backend sends a full response), with the kept object to revalidate, if any, whose
/// validators become `If-None-Match` / `If-Modified-Since`. `None` for pass.
fn build_bereq(
    shard: &Shard,
    req: &RequestHead,
    method: &[u8],
    body: &Bytes,
    cache: Option<Option<&Object>>,
    peer: SocketAddr,
    xid: u64,
) -> Bytes {
    let for_cache = cache.is_some();
    let mut out = Vec::with_capacity(256 + req.head_len + body.len());
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(&req.url);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let listed: Vec<&[u8]> = req
        .headers
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(crate::http::headers::trim)
        .collect();
    let mut xff: Vec<u8> = Vec::new();
    let mut has_host = false;
    for h in &req.headers {
        let n = &h.name[..];
        if is_hop_by_hop(n)
            || n.eq_ignore_ascii_case(b"expect")
            || listed.iter().any(|l| n.eq_ignore_ascii_case(l))
            || (for_cache && is_conditional(n))
        {
            continue;
        }
        if n.eq_ignore_ascii_case(b"x-forwarded-for") {
            if !xff.is_empty() {
                xff.extend_from_slice(b", ");
            }
            xff.extend_from_slice(&h.value);
            continue;
        }
        if n.eq_ignore_ascii_case(b"host") {
            has_host = true;
        }
        write::write_header(&mut out, n, &h.value);
    }
    if !has_host {
        write::write_header(
            &mut out,
            b"Host",
            shard.shared.backend.host_header.as_bytes(),
        );
    }
    if !xff.is_empty() {
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(peer.ip().to_string().as_bytes());
    write::write_header(&mut out, b"X-Forwarded-For", &xff);
    out.extend_from_slice(b"X-Varnish: ");
    write::write_u64(&mut out, xid);
    out.extend_from_slice(b"\r\n");
    if let Some(Some(kept)) = cache {
        if let Some(etag) = kept.headers.get("etag") {
            write::write_header(&mut out, b"If-None-Match", etag);
        }
        if let Some(lm) = kept.headers.get("last-modified") {
            write::write_header(&mut out, b"If-Modified-Since", lm);
        }
    }
    let has_body = !body.is_empty()
        || matches!(req.body, BodyFraming::Length(_) | BodyFraming::Chunked) && !for_cache;
    if has_body {
        out.extend_from_slice(b"Content-Length: ");
        write::write_u64(&mut out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if has_body {
        out.extend_from_slice(body);
    }
    Bytes::from(out)
}

/// Stored headers of a backend response: hop-by-hop, framing and Age removed; Via extended;
/// Date added when the backend sent none.
fn stored_headers(resp: &Headers, now: f64) -> Headers {
    let mut h = Headers::with_capacity(resp.len() + 2);
    let listed: Vec<Bytes> = resp
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| Bytes::copy_from_slice(crate::http::headers::trim(t)))
        .collect();
    let mut via: Option<Vec<u8>> = None;
    let mut has_date = false;
    for f in resp {
        let n = &f.name[..];
        if is_hop_by_hop(n)
            || n.eq_ignore_ascii_case(b"age")
            || listed.iter().any(|l| n.eq_ignore_ascii_case(l))
        {
            continue;
        }
        if n.eq_ignore_ascii_case(b"via") {
            let v = via.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(&f.value);
            continue;
        }
        if n.eq_ignore_ascii_case(b"date") {
            has_date = true;
        }
        h.append(f.name.clone(), f.value.clone());
    }
    if !has_date {
        h.append(
            Bytes::from_static(b"Date"),
            Bytes::from(crate::http::date::fmt_http_date(now as u64)),
        );
    }
    let mut v = via.unwrap_or_default();
    if !v.is_empty() {
        v.extend_from_slice(b", ");
    }
    v.extend_from_slice(VIA);
    h.append(Bytes::from_static(b"Via"), Bytes::from(v));
    // Objects re-home these into their own head buffer (Object::build_head_and_headers), so
    // nothing stored pins the fetch's read buffer.
    h
}

fn build_object(
    f: &Fetched,
    body: Bytes,
    req_headers: &Headers,
    lt: ttl::Lifetime,
    xid: u64,
) -> Object {
    let headers = stored_headers(&f.head.headers, lt.t_origin.max(unix_now()));
    let reason: Bytes = if f.head.reason.is_empty() {
        Bytes::from_static(write_reason(f.head.status).as_bytes())
    } else {
        // A copy: the parsed reason is a slice of the fetch's read buffer.
        Bytes::copy_from_slice(&f.head.reason)
    };
    let (head, headers) = Object::build_head_and_headers(f.head.status, &reason, &headers);
    Object {
        xid,
        kind: ObjKind::Normal,
        status: f.head.status,
        head,
        reason,
        headers,
        body,
        t_origin: lt.t_origin,
        ttl: lt.ttl,
        grace: lt.grace,
        keep: lt.keep,
        vary: VarySpec::from_response(&f.head.headers, req_headers),
    }
}

fn write_reason(status: u16) -> &'static str {
    crate::http::status::reason_phrase(status)
}

/// A kept object refreshed by a 304: its stored headers updated with the 304's fields, its
/// body unchanged, a new lifetime computed as for a 200 with the merged headers.
fn refreshed_object(shard: &Shard, kept: &Object, f: &Fetched, now: f64, xid: u64) -> Object {
    let fresh = stored_headers(&f.head.headers, now);
    let mut headers = kept.headers.clone();
    for h in &fresh {
        if h.name.eq_ignore_ascii_case(b"via") {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(&h.name) {
            headers.remove(name);
        }
        headers.append(h.name.clone(), h.value.clone());
    }
    let lt = ttl::rfc2616_ttl(kept.status, &headers, now, &shard.ttl_params);
    let (head, headers) = Object::build_head_and_headers(kept.status, &kept.reason, &headers);
    Object {
        xid,
        kind: ObjKind::Normal,
        status: kept.status,
        head,
        reason: kept.reason.clone(),
        headers,
        body: kept.body.clone(),
        t_origin: lt.t_origin,
        ttl: lt.ttl,
        grace: lt.grace,
        keep: lt.keep,
        vary: kept.vary.clone(),
    }
}

/// A hit-for-miss (or hit-for-pass) marker: no body, TTL `uncacheable_ttl`.
fn marker_object(
    shard: &Shard,
    f: &Fetched,
    req_headers: &Headers,
    kind: ObjKind,
    now: f64,
    xid: u64,
) -> Object {
    let headers = Headers::new();
    Object {
        xid,
        kind,
        status: f.head.status,
        reason: Bytes::new(),
        head: Bytes::new(),
        headers,
        body: Bytes::new(),
        t_origin: now,
        ttl: shard.shared.params.uncacheable_ttl,
        grace: shard.shared.params.default_grace,
        keep: 0.0,
        vary: VarySpec::from_response(&f.head.headers, req_headers),
    }
}

/// The 503 "Backend fetch failed" object (not stored; handed to waiters and the fetcher).
fn error_object(shard: &Shard, xid: u64) -> Arc<Object> {
    let now = unix_now();
    let body = write::synthetic_error_page(503, "Backend fetch failed", xid);
    let mut headers = Headers::new();
    headers.append(
        Bytes::from_static(b"Date"),
        Bytes::from(crate::http::date::fmt_http_date(now as u64)),
    );
    headers.append(
        Bytes::from_static(b"Server"),
        Bytes::from_static(b"ringcache"),
    );
    headers.append(
        Bytes::from_static(b"Content-Type"),
        Bytes::from_static(b"text/html; charset=utf-8"),
    );
    headers.append(Bytes::from_static(b"Retry-After"), Bytes::from_static(b"5"));
    headers.append(Bytes::from_static(b"Via"), Bytes::from_static(VIA));
    let _ = shard;
    Arc::new(Object {
        xid,
        kind: ObjKind::Normal,
        status: 503,
        head: Object::build_head(503, b"Backend fetch failed", &headers),
        reason: Bytes::from_static(b"Backend fetch failed"),
        headers,
        body: Bytes::from(body),
        t_origin: now,
        ttl: 0.0,
        grace: 0.0,
        keep: 0.0,
        vary: None,
    })
}

/// Does the client's conditional request match the object (RFC 9110 13.1.2, 13.1.3)?
fn not_modified(req: &RequestHead, obj: &Object) -> bool {
    if obj.status != 200 {
        return false;
    }
    if let Some(inm) = req.headers.get("if-none-match") {
        let Some(etag) = obj.headers.get("etag") else {
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
    if let Some(ims) = req.headers.get("if-modified-since") {
        let (Some(ims), Some(lm)) = (
            crate::http::date::parse_http_date(ims),
            obj.headers
                .get("last-modified")
                .and_then(|v| crate::http::date::parse_http_date(v)),
        ) else {
            return false;
        };
        return lm <= ims;
    }
    false
}

/// Delivers an object (hit, fresh miss, or error object) with Age, X-Varnish and framing.
async fn deliver(
    shard: &Shard,
    conn: &mut Conn,
    req: &RequestHead,
    obj: &Object,
    xid: u64,
    hit: bool,
) -> Next {
    let now = unix_now();
    let keep_alive = req.keep_alive;
    let mut head = Vec::with_capacity(obj.head.len() + 160);
    let cond = not_modified(req, obj);
    if cond {
        write::write_status_line(&mut head, 304, b"Not Modified");
        for h in &obj.headers {
            const KEEP: [&[u8]; 8] = [
                b"etag",
                b"last-modified",
                b"cache-control",
                b"expires",
                b"vary",
                b"date",
                b"content-location",
                b"via",
            ];
            if KEEP.iter().any(|k| h.name.eq_ignore_ascii_case(k)) {
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
    let bodyless_status = cond || obj.status < 200 || obj.status == 204 || obj.status == 304;
    if !bodyless_status {
        head.extend_from_slice(b"Content-Length: ");
        write::write_u64(&mut head, obj.body.len() as u64);
        head.extend_from_slice(b"\r\n");
    }
    connection_header(&mut head, req, keep_alive);
    head.extend_from_slice(b"\r\n");
    let send_body = !bodyless_status && req.method != Method::Head;
    let body = if send_body {
        obj.body.clone()
    } else {
        Bytes::new()
    };
    let c = shard.counters();
    c.add(C::s_resp_hdrbytes, head.len() as u64);
    c.add(C::s_resp_bodybytes, body.len() as u64);
    match write_head_body(
        &mut conn.stream,
        head,
        body,
        secs(shard.shared.params.send_timeout),
    )
    .await
    {
        Write::Done(_) if keep_alive => Next::KeepAlive,
        _ => Next::Close,
    }
}

fn connection_header(head: &mut Vec<u8>, req: &RequestHead, keep_alive: bool) {
    if !keep_alive {
        head.extend_from_slice(b"Connection: close\r\n");
    } else if req.version == Version::Http10 {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// Streams a backend response to the client as it arrives (pass and uncacheable responses).
async fn stream_response(
    shard: &Shard,
    conn: &mut Conn,
    req: &RequestHead,
    mut f: Fetched,
    xid: u64,
) -> Next {
    let send_timeout = secs(shard.shared.params.send_timeout);
    let status = f.head.status;
    let mut keep_alive = req.keep_alive;
    let mut head = Vec::with_capacity(f.head.head_len + 160);
    let reason: &[u8] = if f.head.reason.is_empty() {
        write_reason(status).as_bytes()
    } else {
        &f.head.reason
    };
    write::write_status_line(&mut head, status, reason);
    let stored = stored_headers(&f.head.headers, unix_now());
    stored.write_to(&mut head);
    head.extend_from_slice(b"X-Varnish: ");
    write::write_u64(&mut head, xid);
    head.extend_from_slice(b"\r\nAge: ");
    let age = f
        .head
        .headers
        .get("age")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    write::write_u64(&mut head, age);
    head.extend_from_slice(b"\r\n");
    let bodyless = status < 200 || status == 204 || status == 304;
    let mut chunked_out = false;
    if req.method == Method::Head {
        if let Some(cl) = f.head.headers.get("content-length") {
            write::write_header(&mut head, b"Content-Length", cl);
        }
    } else if !bodyless {
        match f.body.known_length() {
            Some(n) => {
                head.extend_from_slice(b"Content-Length: ");
                write::write_u64(&mut head, n);
                head.extend_from_slice(b"\r\n");
            }
            None if req.version == Version::Http11 => {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                chunked_out = true;
            }
            None => keep_alive = false,
        }
    }
    connection_header(&mut head, req, keep_alive);
    head.extend_from_slice(b"\r\n");
    shard.counters().add(C::s_resp_hdrbytes, head.len() as u64);
    match write_all_timeout(&mut conn.stream, head, send_timeout).await {
        Write::Done(_) => {}
        _ => return Next::Close,
    }
    let mut sent_body = 0u64;
    if req.method != Method::Head && !bodyless {
        loop {
            let piece = match f.body.next().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    log_fetch_error(shard, xid, &e);
                    shard.counters().inc(C::fetch_failed);
                    // The response is cut short: the client must see the connection end.
                    return Next::Close;
                }
            };
            if piece.is_empty() {
                continue;
            }
            sent_body += piece.len() as u64;
            let ok = if chunked_out {
                let mut h = Vec::with_capacity(16);
                chunked::write_chunk_header(piece.len(), &mut h);
                let r1 = write_head_body(&mut conn.stream, h, piece, send_timeout).await;
                matches!(r1, Write::Done(_))
                    && matches!(
                        write_all_timeout(&mut conn.stream, &b"\r\n"[..], send_timeout).await,
                        Write::Done(_)
                    )
            } else {
                matches!(
                    write_all_timeout(&mut conn.stream, piece, send_timeout).await,
                    Write::Done(_)
                )
            };
            if !ok {
                return Next::Close;
            }
        }
        if chunked_out {
            if let Write::Done(_) =
                write_all_timeout(&mut conn.stream, chunked::LAST_CHUNK, send_timeout).await
            {
            } else {
                return Next::Close;
            }
        }
    }
    shard.counters().add(C::s_resp_bodybytes, sent_body);
    count_framing(shard, &f);
    if f.body.is_done() || bodyless || req.method == Method::Head {
        let mut pool = shard.pool.borrow_mut();
        f.body
            .release(&mut pool, shard.shared.backend.addr, shard.counters());
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// A synthetic response (errors ringcache makes itself).
async fn send_synth(
    shard: &Shard,
    conn: &mut Conn,
    status: u16,
    reason: &str,
    xid: u64,
    keep_alive: bool,
    head_only: bool,
) -> Next {
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
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    match write_head_body(&mut conn.stream, head, body, secs(5.0)).await {
        Write::Done(_) if keep_alive => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// Answers a malformed request with its status; the caller closes the connection.
async fn send_parse_error(shard: &Shard, conn: &mut Conn, e: &ParseError) {
    let xid = shard.next_xid();
    let _ = send_synth(shard, conn, e.status(), e.reason(), xid, false, false).await;
}
