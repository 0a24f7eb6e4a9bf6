//! The backend side of a request (Varnish's `cache_fetch.c`): `vcl_backend_fetch`, the fetch,
//! `vcl_backend_response` or `vcl_backend_error`, then an object to store, a marker, or a
//! response to stream.
//!
//! Why one state machine for misses, passes and background fetches: they differ only in what
//! happens to the result (stored and reported to the key's owner, streamed, or stored without a
//! client waiting), and VCL sees the same `bereq`/`beresp` in all three. The loop is bounded:
//! `return (retry)` counts against `max_retries`, after which the fetch goes to
//! `vcl_backend_error` (from there, it fails).
//!
//! TTLs: `beresp.ttl` is relative to now, as VCL sees it; the object keeps `t_origin` (the
//! origin's generation time, `Age` removed), so its stored TTL is `beresp.ttl + (now - t_origin)`.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::conn::{self, Endpoint};
use crate::backend::fetch::{self, FetchError, FetchLimits, Fetched, Target};
use crate::cache::ttl;
use crate::cache::{CacheKey, ObjKind, Object, VarySpec};
use crate::http::{write, Headers};
use crate::stats::C;
use crate::vcl::exec::{self, BackendRef, BereqCtx, BerespCtx, Ctx, Outcome, Site};
use crate::vcl::program::Method as Sub;

use super::conn_slot::{self, ConnGuard};
use super::env::{call_vcl, Running};
use super::io::secs;
use super::shard::{unix_now, BusyGuard, Shard};

/// `Via` value ringcache adds.
pub const VIA: &[u8] = b"1.1 ringcache (ringcache/0.1)";

/// What the fetch is for.
pub enum FetchMode {
    /// A cache miss: `guard` holds the key's busy flag (none for a hit-for-miss or vcl_hit's
    /// `miss`); `kept` is an expired object to revalidate (a 304 refreshes it).
    Miss {
        key: CacheKey,
        guard: Option<BusyGuard>,
        kept: Option<Arc<Object>>,
    },
    /// Pass: nothing is stored.
    Pass,
    /// A grace hit's refresh: stored, nobody waits; a failure keeps the stale object.
    Background { key: CacheKey, guard: BusyGuard },
}

/// A backend response to stream to the client.
pub struct Streamed {
    pub status: u16,
    pub reason: Bytes,
    /// `beresp.http` after VCL (hop-by-hop and framing fields removed).
    pub headers: Headers,
    /// The backend's `Age`, passed on.
    pub age: u64,
    pub f: Fetched,
    /// Where `f`'s connection goes back to when the body is read whole.
    pub endpoint: Endpoint,
    /// The fetch's claim on its backend connection, until the response is delivered.
    pub conn: ConnGuard,
}

/// How a fetch ended, for the client side.
pub enum FetchOutcome {
    /// Deliver this object (stored, or an error page or zero-TTL object).
    Object(Arc<Object>),
    /// Deliver this response as it arrives (pass, uncacheable, too large to store).
    Stream(Box<Streamed>),
    /// No object: the client gets a 503 "Backend fetch failed" from vcl_synth.
    Failed,
}

/// Everything the backend side takes from the client request.
pub struct FetchReq<'a> {
    /// The VCL the request runs on.
    pub run: &'a Running,
    pub bereq: BereqCtx,
    /// The request body (pass only; empty for cache fetches).
    pub body: Bytes,
    /// The client request carried a body framing (a pass forwards `Content-Length: 0` for it).
    pub has_body: bool,
    /// The client's headers, for the object's Vary spec.
    pub req_headers: &'a Headers,
    pub conn: exec::Conn,
    pub xid: u64,
}

/// Where the state machine is.
enum St {
    Fetch,
    Error(u16, Option<Bytes>),
    Retry { from_error: bool },
}

/// Runs the backend side to its end.
pub async fn run(shard: &Rc<Shard>, r: FetchReq<'_>, mode: FetchMode) -> FetchOutcome {
    let max_retries = shard.params().max_retries.min(u32::MAX as u64) as u32;
    let xid = r.xid;
    let run = r.run;
    let mut ctx = Ctx::new(unix_now()).with_env(run);
    ctx.conn = r.conn;
    ctx.rng.set(xid.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    ctx.bereq = Some(r.bereq);
    if run.vcl.has_shard {
        // The shard director's `by=HASH` reads the request's hash inputs on this side.
        if let FetchMode::Miss { key, .. } | FetchMode::Background { key, .. } = &mode {
            ctx.hash.buf = key.bytes.to_vec();
            ctx.hash.parts = key.bytes.iter().filter(|b| **b == 0).count();
        }
    }
    let mut st = St::Fetch;
    loop {
        ctx.now = unix_now();
        st = match st {
            St::Fetch => {
                ctx.beresp = None;
                match call_vcl(shard, run, &mut ctx, Sub::BackendFetch, xid) {
                    Ok(Outcome::Fetch) => {}
                    Ok(Outcome::Error { status, reason }) => {
                        st = St::Error(status, reason);
                        continue;
                    }
                    _ => return fail(shard, mode, xid),
                }
                let Some(bereq) = ctx.bereq.as_ref() else {
                    return fail(shard, mode, xid);
                };
                let site = Site {
                    sub: Sub::BackendFetch,
                    url: Some(&bereq.url),
                    hash: (ctx.hash.parts > 0).then_some(&ctx.hash.buf[..]),
                    now: ctx.now,
                };
                let out = Outgoing {
                    body: &r.body,
                    has_body: r.has_body,
                    conn: &r.conn,
                };
                match send_to_candidates(shard, run, bereq, &site, &out, xid).await {
                    None => St::Error(503, None),
                    Some(Sent {
                        f,
                        id,
                        endpoint,
                        conn,
                    }) => {
                        // The response head has just arrived: lifetimes count from now.
                        ctx.now = unix_now();
                        let kept = match &mode {
                            FetchMode::Miss { kept, .. } => kept.clone(),
                            _ => None,
                        };
                        let now = ctx.now;
                        let (beresp, t_origin, reuse_body) =
                            beresp_of(shard, &f, kept.as_deref(), id, bereq.uncacheable, now);
                        ctx.beresp = Some(beresp);
                        let hit_for_pass =
                            match call_vcl(shard, run, &mut ctx, Sub::BackendResponse, xid) {
                                Ok(Outcome::Deliver) => None,
                                Ok(Outcome::Pass { ttl }) => Some(ttl),
                                Ok(Outcome::Retry) => {
                                    st = St::Retry { from_error: false };
                                    continue;
                                }
                                Ok(Outcome::Error { status, reason }) => {
                                    st = St::Error(status, reason);
                                    continue;
                                }
                                _ => return fail(shard, mode, xid),
                            };
                        let how = FinishHow {
                            t_origin,
                            reuse_body,
                            hit_for_pass,
                            mode,
                            xid,
                            conn,
                        };
                        return finish(shard, &mut ctx, r.req_headers, f, endpoint, how).await;
                    }
                }
            }
            St::Retry { from_error } => {
                let Some(b) = ctx.bereq.as_mut() else {
                    return fail(shard, mode, xid);
                };
                if b.retries >= max_retries {
                    crate::logs::emit(
                        "VCL_Error",
                        format!("VCL_Error {xid} Too many retries, delivering 503"),
                    );
                    if from_error {
                        return fail(shard, mode, xid);
                    }
                    St::Error(503, None)
                } else {
                    b.retries += 1;
                    shard.counters().inc(C::fetch_retry);
                    St::Fetch
                }
            }
            St::Error(status, reason) => {
                shard.counters().inc(C::fetch_failed);
                let mut headers = Headers::with_capacity(4);
                let mut date = Vec::with_capacity(32);
                shard.date(ctx.now as u64, &mut date);
                headers.append(Bytes::from_static(b"Date"), Bytes::from(date));
                headers.append(
                    Bytes::from_static(b"Server"),
                    Bytes::from_static(b"ringcache"),
                );
                ctx.beresp = Some(BerespCtx {
                    proto: Bytes::from_static(b"HTTP/1.1"),
                    status: status % 1000,
                    reason: reason.unwrap_or(Bytes::from_static(b"Backend fetch failed")),
                    headers,
                    ttl: 0.0,
                    grace: 0.0,
                    keep: 0.0,
                    uncacheable: false,
                    backend: ctx.bereq.as_ref().and_then(|b| b.backend),
                });
                ctx.body.clear();
                match call_vcl(shard, run, &mut ctx, Sub::BackendError, xid) {
                    Ok(Outcome::Deliver) => return error_delivered(shard, &mut ctx, mode, xid),
                    Ok(Outcome::Retry) => St::Retry { from_error: true },
                    _ => return fail(shard, mode, xid),
                }
            }
        };
    }
}

fn name_of(vcl: &crate::vcl::LoadedVcl, b: BackendRef) -> String {
    match b {
        BackendRef::Backend(id) => crate::vcl::loaded::backend_name(vcl, id).into(),
        BackendRef::Director(obj) => vcl
            .program
            .objects
            .get(obj)
            .map_or("?".into(), |o| o.name.to_string()),
    }
}

/// A backend response head on its way in: which backend sent it, the endpoint its connection
/// goes back to, and the fetch's claim on that connection.
struct Sent {
    f: Fetched,
    id: usize,
    endpoint: Endpoint,
    conn: ConnGuard,
}

/// What a fetch sends besides `bereq`: the request body and the client's addresses (for a
/// PROXY header).
struct Outgoing<'a> {
    body: &'a Bytes,
    has_body: bool,
    conn: &'a exec::Conn,
}

/// Resolves `bereq.backend` and sends the request. When the chosen backend refuses it before
/// any byte was sent (connect failed, busy, held down), an idempotent fetch through a director
/// moves on to the director's next healthy candidate, at most `director_failover_max` times
/// (Varnish stops at the first: its issues #2765, #977). `None`: the fetch failed (logged).
async fn send_to_candidates(
    shard: &Shard,
    run: &Running,
    bereq: &BereqCtx,
    site: &Site<'_>,
    r: &Outgoing<'_>,
    xid: u64,
) -> Option<Sent> {
    let counters = shard.counters();
    let Some(start) = bereq.backend else {
        crate::logs::emit(
            "FetchError",
            format!("FetchError {xid} shard={} No backend", shard.id),
        );
        return None;
    };
    let send_body = !bereq.body_unset && (r.has_body || !r.body.is_empty());
    let retryable = !send_body
        || matches!(
            &bereq.method[..],
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        );
    let failover_max = match start {
        BackendRef::Director(_) if retryable => shard.params().director_failover_max,
        _ => 0,
    };
    let mut skip: Vec<usize> = Vec::new();
    loop {
        let Some(id) = run.resolve(start, site, &skip) else {
            let name = name_of(&run.vcl, start);
            let why = match start {
                BackendRef::Director(_) if skip.is_empty() => {
                    format!("Director {name} returned no backend")
                }
                BackendRef::Director(_) => {
                    format!(
                        "Director {name}: no other candidate after {} failovers",
                        skip.len()
                    )
                }
                BackendRef::Backend(b) => {
                    counters.inc(C::backend_unhealthy);
                    shard.count_unhealthy(run, b);
                    format!("backend {name}: unhealthy")
                }
            };
            crate::logs::emit(
                "FetchError",
                format!("FetchError {xid} shard={} {why}", shard.id),
            );
            return None;
        };
        let be = run.vcl.backends.get(id)?;
        match attempt(shard, run, bereq, id, r, send_body, retryable).await {
            Ok(sent) => return Some(sent),
            Err(e) => {
                shard.count_fetch_error(be.slot, &e);
                log_fetch_error(shard, xid, &be.name, be.endpoint.as_ref(), &e);
                if e.before_send() && (skip.len() as u64) < failover_max {
                    skip.push(be.slot);
                    counters.inc(C::backend_failover);
                    continue;
                }
                return None;
            }
        }
    }
}

/// One try of backend `id`: holddown, a connection claim (maybe queued), then the request.
async fn attempt(
    shard: &Shard,
    run: &Running,
    bereq: &BereqCtx,
    id: usize,
    r: &Outgoing<'_>,
    send_body: bool,
    retryable: bool,
) -> Result<Sent, FetchError> {
    let counters = shard.counters();
    let Some(be) = run.vcl.backends.get(id) else {
        return Err(FetchError::Connect(std::io::Error::other(
            "no such backend",
        )));
    };
    let Some(endpoint) = be.endpoint.as_ref() else {
        return Err(FetchError::Connect(std::io::Error::other(
            "backend none: no address",
        )));
    };
    let board = &shard.shared.health.board;
    if board.held_down(be.slot, unix_now()) {
        counters.inc(C::backend_helddown);
        return Err(FetchError::HeldDown);
    }
    let conn = conn_slot::acquire(shard, &run.vcl, id).await?;
    let wire = serialize_bereq(bereq, &be.host_header, r.body, send_body);
    let params = shard.params();
    let mut limits: FetchLimits = shard.fetch_limits();
    let pick = |vcl: Option<f64>, backend: Option<f64>, dflt| vcl.or(backend).map_or(dflt, secs);
    limits.connect = pick(bereq.connect_timeout, be.connect_timeout, limits.connect);
    limits.first_byte = pick(
        bereq.first_byte_timeout,
        be.first_byte_timeout,
        limits.first_byte,
    );
    limits.between_bytes = pick(
        bereq.between_bytes_timeout,
        be.between_bytes_timeout,
        limits.between_bytes,
    );
    let target = Target {
        endpoint,
        proxy: proxy_header(be.proxy_header, r.conn),
    };
    let head_request = &bereq.method[..] == b"HEAD";
    let sizes = (wire.len(), if send_body { r.body.len() } else { 0 });
    let result = fetch::fetch(
        &shard.pool,
        counters,
        &target,
        wire,
        head_request,
        retryable,
        &limits,
    )
    .await;
    shard.count_bereq(be.slot, &result, sizes);
    match result {
        Ok(f) => {
            shard.count_beresp_head(be.slot, &f, head_request);
            Ok(Sent {
                f,
                id,
                endpoint: endpoint.clone(),
                conn,
            })
        }
        Err(e) => {
            if let FetchError::Connect(io) = &e {
                let (remote, local) = (
                    params.backend_remote_error_holddown,
                    params.backend_local_error_holddown,
                );
                if let Some(d) = conn::holddown_for(io, remote, local) {
                    board.hold_down(be.slot, unix_now() + d);
                }
            }
            Err(e)
        }
    }
}

/// The PROXY header a `.proxy_header` backend gets on this fetch's connection: the client's
/// address and the address it connected to (Varnish's `VPX_Send_Proxy`).
pub fn proxy_header(version: u8, c: &exec::Conn) -> Option<Vec<u8>> {
    match version {
        1 => Some(conn::proxy_v1(c.client_ip, c.server_ip)),
        2 => Some(conn::proxy_v2(c.client_ip, c.server_ip, None)),
        _ => None,
    }
}

/// The backend request on the wire: request line, `bereq.http`, `Host` from the backend when
/// VCL left none, `Content-Length` for a body.
pub fn serialize_bereq(
    bereq: &BereqCtx,
    host_header: &[u8],
    body: &Bytes,
    send_body: bool,
) -> Bytes {
    let mut out = Vec::with_capacity(256 + bereq.headers.wire_len() + body.len());
    out.extend_from_slice(&bereq.method);
    out.push(b' ');
    out.extend_from_slice(&bereq.url);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    for h in &bereq.headers {
        if h.name.eq_ignore_ascii_case(b"content-length")
            || h.name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        if h.name.eq_ignore_ascii_case(b"host") {
            has_host = true;
        }
        write::write_header(&mut out, &h.name, &h.value);
    }
    if !has_host && !host_header.is_empty() {
        write::write_header(&mut out, b"Host", host_header);
    }
    if send_body {
        out.extend_from_slice(b"Content-Length: ");
        write::write_u64(&mut out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if send_body {
        out.extend_from_slice(body);
    }
    Bytes::from(out)
}

/// `beresp` for a response: stored headers, Varnish's TTL rules relative to now. A 304 to a
/// revalidation becomes the kept object refreshed (status, merged headers, its body reused), as
/// Varnish does before `vcl_backend_response`.
fn beresp_of(
    shard: &Shard,
    f: &Fetched,
    kept: Option<&Object>,
    id: usize,
    uncacheable: bool,
    now: f64,
) -> (BerespCtx, f64, Option<Bytes>) {
    let (status, reason, headers, body, lt) = match kept {
        Some(k) if f.head.status == 304 => {
            let fresh = stored_headers(&f.head.headers, now);
            let mut h = k.headers.clone();
            for x in &fresh {
                if x.name.eq_ignore_ascii_case(b"via") {
                    continue;
                }
                if let Ok(name) = std::str::from_utf8(&x.name) {
                    h.remove(name);
                }
                h.append(x.name.clone(), x.value.clone());
            }
            let lt = ttl::rfc2616_ttl(k.status, &h, now, &shard.ttl_params());
            (k.status, k.reason.clone(), h, Some(k.body.clone()), lt)
        }
        _ => {
            let reason = if f.head.reason.is_empty() {
                Bytes::from_static(crate::http::status::reason_phrase(f.head.status).as_bytes())
            } else {
                // A copy: the parsed reason is a slice of the fetch's read buffer.
                Bytes::copy_from_slice(&f.head.reason)
            };
            // The backend's own fields (its Age included) decide the lifetime.
            let lt = ttl::rfc2616_ttl(f.head.status, &f.head.headers, now, &shard.ttl_params());
            (
                f.head.status,
                reason,
                stored_headers(&f.head.headers, now),
                None,
                lt,
            )
        }
    };
    let beresp = BerespCtx {
        proto: Bytes::from_static(b"HTTP/1.1"),
        status,
        reason,
        headers,
        ttl: lt.ttl - (now - lt.t_origin),
        grace: lt.grace,
        keep: lt.keep,
        uncacheable,
        backend: Some(BackendRef::Backend(id)),
    };
    (beresp, lt.t_origin, body)
}

struct FinishHow {
    t_origin: f64,
    reuse_body: Option<Bytes>,
    /// `Some` after `return (pass(DURATION))`: a hit-for-pass marker for that long (or
    /// `beresp.ttl`).
    hit_for_pass: Option<Option<f64>>,
    mode: FetchMode,
    xid: u64,
    conn: ConnGuard,
}

/// `vcl_backend_response` returned deliver (or pass): store, mark or stream.
async fn finish(
    shard: &Rc<Shard>,
    ctx: &mut Ctx<'_>,
    req_headers: &Headers,
    mut f: Fetched,
    endpoint: Endpoint,
    how: FinishHow,
) -> FetchOutcome {
    let now = ctx.now;
    let Some(beresp) = ctx.beresp.take() else {
        return fail(shard, how.mode, how.xid);
    };
    let age_shift = now - how.t_origin;
    let xid = how.xid;
    let marker = |kind: ObjKind, ttl: f64| {
        Arc::new(Object {
            xid,
            kind,
            status: beresp.status,
            reason: Bytes::new(),
            head: Bytes::new(),
            headers: Headers::new(),
            body: Bytes::new(),
            t_origin: now,
            ttl,
            grace: 0.0,
            keep: 0.0,
            vary: VarySpec::from_response(&beresp.headers, req_headers),
        })
    };
    let too_big = how.reuse_body.is_none()
        && f.body
            .known_length()
            .is_some_and(|n| n as usize > shard.object_max);
    let slot = how.conn.slot();
    let conn = how.conn;
    let streamed = |f: Fetched, beresp: BerespCtx, endpoint: Endpoint| {
        FetchOutcome::Stream(Box::new(Streamed {
            status: beresp.status,
            reason: beresp.reason,
            age: f
                .head
                .headers
                .get("age")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0),
            headers: beresp.headers,
            f,
            endpoint,
            conn,
        }))
    };
    let (key, guard) = match how.mode {
        FetchMode::Pass => return streamed(f, beresp, endpoint),
        FetchMode::Miss { key, guard, .. } => (key, Guard::Client(guard)),
        FetchMode::Background { key, guard } => (key, Guard::Background(guard)),
    };
    let mark = match how.hit_for_pass {
        Some(ttl) => Some((ObjKind::HitForPass, ttl.unwrap_or(beresp.ttl))),
        None if beresp.uncacheable || too_big => Some((ObjKind::HitForMiss, beresp.ttl)),
        None => None,
    };
    if let Some((kind, ttl)) = mark {
        let m = marker(kind, ttl);
        guard.complete(shard, key, m);
        return streamed(f, beresp, endpoint);
    }
    let body = match how.reuse_body {
        Some(b) => b,
        None => match f.body.read_all(shard.object_max).await {
            Ok(b) => shard.counted_body(slot, b),
            Err(e) => {
                log_fetch_error(shard, xid, "", Some(&endpoint), &e);
                shard.counters().inc(C::fetch_failed);
                return guard.fail(shard, xid);
            }
        },
    };
    release(shard, f, &endpoint);
    let (head, headers) =
        Object::build_head_and_headers(beresp.status, &beresp.reason, &beresp.headers);
    let obj = Arc::new(Object {
        xid,
        kind: ObjKind::Normal,
        status: beresp.status,
        head,
        reason: beresp.reason.clone(),
        vary: VarySpec::from_response(&beresp.headers, req_headers),
        headers,
        body,
        t_origin: how.t_origin,
        ttl: beresp.ttl + age_shift,
        grace: beresp.grace,
        keep: beresp.keep,
    });
    guard.complete(shard, key, obj.clone());
    FetchOutcome::Object(obj)
}

/// Who reports a cache fetch's end to the key's owner.
enum Guard {
    Client(Option<BusyGuard>),
    Background(BusyGuard),
}

impl Guard {
    fn complete(self, shard: &Shard, key: CacheKey, obj: Arc<Object>) {
        match self {
            Guard::Client(Some(g)) | Guard::Background(g) => g.complete(obj),
            Guard::Client(None) => shard.report_insert(key, obj, false),
        }
    }

    fn fail(self, shard: &Shard, xid: u64) -> FetchOutcome {
        match self {
            Guard::Client(Some(g)) => g.fail(Some(error_object(shard, xid))),
            Guard::Client(None) => {}
            Guard::Background(g) => g.fail(None),
        }
        FetchOutcome::Failed
    }
}

/// `vcl_backend_error` returned deliver: its page is the object (stored when VCL gave it a
/// TTL; waiters of a miss get it either way).
fn error_delivered(shard: &Shard, ctx: &mut Ctx<'_>, mode: FetchMode, xid: u64) -> FetchOutcome {
    let Some(beresp) = ctx.beresp.take() else {
        return fail(shard, mode, xid);
    };
    let body = Bytes::from(std::mem::take(&mut ctx.body));
    let mut headers = beresp.headers;
    let mut via = Vec::with_capacity(VIA.len());
    via.extend_from_slice(VIA);
    headers.append(Bytes::from_static(b"Via"), Bytes::from(via));
    let (head, headers) = Object::build_head_and_headers(beresp.status, &beresp.reason, &headers);
    let obj = Arc::new(Object {
        xid,
        kind: ObjKind::Normal,
        status: beresp.status,
        head,
        reason: beresp.reason,
        headers,
        body,
        t_origin: ctx.now,
        ttl: beresp.ttl,
        grace: beresp.grace,
        keep: beresp.keep,
        vary: None,
    });
    match mode {
        FetchMode::Pass => {}
        FetchMode::Miss { key, guard, .. } => {
            if obj.ttl > 0.0 {
                Guard::Client(guard).complete(shard, key, obj.clone());
            } else if let Some(g) = guard {
                g.fail(Some(obj.clone()));
            }
        }
        // A refresh that ended in an error page keeps the stale object (Varnish b00035).
        FetchMode::Background { guard, .. } => guard.fail(None),
    }
    FetchOutcome::Object(obj)
}

/// The fetch ends with no object: waiters of a miss get the 503 error object, a background
/// fetch leaves the stale object in place.
fn fail(shard: &Shard, mode: FetchMode, xid: u64) -> FetchOutcome {
    match mode {
        FetchMode::Pass => {}
        FetchMode::Miss { guard, .. } => {
            if let Some(g) = guard {
                g.fail(Some(error_object(shard, xid)));
            }
        }
        FetchMode::Background { guard, .. } => guard.fail(None),
    }
    FetchOutcome::Failed
}

/// Ends a fetch whose body was read whole: its connection goes back to the pool if reusable.
pub fn release(shard: &Shard, f: Fetched, endpoint: &Endpoint) {
    let mut pool = shard.pool.borrow_mut();
    f.body.release(&mut pool, endpoint, shard.counters());
}

/// `FetchError <xid> shard=<n> backend=<name> <address> <what>`, to the event log.
pub fn log_fetch_error(
    shard: &Shard,
    xid: u64,
    name: &str,
    endpoint: Option<&Endpoint>,
    e: &FetchError,
) {
    let at = endpoint.map_or_else(|| "-".to_string(), |ep| ep.dest.to_string());
    let name = if name.is_empty() { "-" } else { name };
    let line = format!(
        "FetchError {xid} shard={} backend={name} {at} {e}",
        shard.id
    );
    crate::logs::emit("FetchError", line);
}

/// Hop-by-hop fields (RFC 9110 7.6.1) never forwarded in either direction.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
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
pub fn is_conditional(name: &[u8]) -> bool {
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

/// Stored headers of a backend response: hop-by-hop, framing and Age removed; Via extended;
/// Date added when the backend sent none.
pub fn stored_headers(resp: &Headers, now: f64) -> Headers {
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

/// The 503 "Backend fetch failed" object handed to the waiters of a failed miss.
pub fn error_object(shard: &Shard, xid: u64) -> Arc<Object> {
    let now = unix_now();
    let body = write::synthetic_error_page(503, "Backend fetch failed", xid);
    let mut headers = Headers::new();
    let mut date = Vec::with_capacity(32);
    shard.date(now as u64, &mut date);
    headers.append(Bytes::from_static(b"Date"), Bytes::from(date));
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
