//! The client side of a request (Varnish's `cache_req_fsm.c`): `vcl_recv`, `vcl_hash`, the
//! lookup, `vcl_hit` / `vcl_miss` / `vcl_pass` / `vcl_pipe` / `vcl_purge`, the fetch, then
//! `vcl_deliver` or `vcl_synth`.
//!
//! Why a step loop: VCL moves a request between states (`restart` goes back to `vcl_recv`,
//! `synth` can be reached from almost anywhere), so each state returns the next one and the
//! loop is bounded (`max_restarts`, plus a hard cap on steps). Every VCL call goes through the
//! same context, whose `req` persists across restarts as in Varnish. A runtime failure of the
//! VCL is a 503 "VCL failed" (and the connection closes), never a panic.
//!
//! The hit path: when `vcl_deliver` does not touch `resp`, a hit is written from the object's
//! pre-built head; the VCL calls themselves allocate nothing for a read-only VCL.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::backend::{Endpoint, Stream};
use crate::cache::{CacheKey, ObjKind, Object};
use crate::http::request::{BodyFraming, RequestHead, Version};
use crate::http::{write, Headers};
use crate::logs::access::{self, Handling};
use crate::stats::C;
use crate::vcl::exec::{self, BereqCtx, Ctx, ObjView, Outcome, ReqCtx, RespCtx, Site};
use crate::vcl::program::Method as Sub;

use super::conn_slot::{self, ConnGuard};
use super::deliver::{self, ClientInfo, Next, Sent, StreamExtra};
use super::env::{call_vcl, Running};
use super::fetch_fsm::{self, is_conditional, is_hop_by_hop, FetchMode, FetchOutcome, FetchReq};
use super::io::secs;
use super::pipe::PipeJob;
use super::shard::{unix_now, BusyGuard, Reply, Shard};

/// Hard cap on state transitions for one request (restarts are bounded separately; this
/// fences any cycle the step logic could have).
const MAX_STEPS: usize = 64;

/// How a request ended, for the connection loop.
pub enum Done {
    Next(Next),
    /// `return (pipe)`: the connection becomes a tunnel to this backend.
    Pipe(PipeRequest),
}

/// A pipe to open: the serialised backend request and where it goes.
pub struct PipeRequest {
    pub endpoint: Endpoint,
    /// The backend's name, for logs.
    pub name: Box<str>,
    pub connect_timeout: std::time::Duration,
    /// The endpoint's preamble, the PROXY header if the backend wants one, the request.
    pub wire: Bytes,
    pub idle: std::time::Duration,
    /// The tunnel's claim on a backend connection (`.max_connections`), until it ends.
    pub conn: ConnGuard,
}

impl PipeRequest {
    pub fn job(self, backend: Stream) -> PipeJob {
        PipeJob {
            backend,
            idle: self.idle,
            _conn: self.conn,
        }
    }
}

/// The next state.
enum Step {
    Recv,
    Lookup {
        purge: bool,
    },
    Pass,
    Pipe,
    Synth(u16, Option<Bytes>),
    Restart,
    /// A VCL failure: 503 "VCL failed", then close.
    Fail,
}

enum Go {
    Step(Step),
    /// A response went out.
    Wrote(Sent),
    /// `return (pipe)`.
    Done(Done),
}

impl From<Step> for Go {
    fn from(s: Step) -> Go {
        Go::Step(s)
    }
}

fn wrote(s: Sent) -> Go {
    Go::Wrote(s)
}

/// The connection-level facts a request needs.
#[derive(Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// One request in flight on the client side.
struct Task<'s> {
    shard: &'s Rc<Shard>,
    /// The VCL this request started on (kept to its end).
    run: &'s Rc<Running>,
    ctx: Ctx<'s>,
    xid: u64,
    version: Version,
    keep_alive: bool,
    body: Bytes,
    /// The client request had a body framing (a pass forwards it, even empty).
    has_body: bool,
    /// `X-Forwarded-For` already carries the client address (appended before `vcl_recv`).
    xff_done: bool,
    peer: SocketAddr,
    /// A `restart` from vcl_synth after `max_restarts` delivers instead.
    restarts_exhausted: bool,
    /// The last of `vcl_hit`, `vcl_miss`, `vcl_pass`, `vcl_synth` run, or pipe (access log).
    handling: Handling,
    /// The object delivered was stale, in grace.
    grace: bool,
}

static EMPTY_REQ: LazyLock<ReqCtx> = LazyLock::new(ReqCtx::default);

/// The request as received, for its access log line (taken only when the log is on: a few
/// reference-counted slices of the request head, copied when the request ends).
struct AccessStart {
    start: f64,
    peer: std::net::IpAddr,
    method: Bytes,
    url: Bytes,
    proto: &'static [u8],
    host: Option<Bytes>,
    referer: Option<Bytes>,
    user_agent: Option<Bytes>,
}

impl AccessStart {
    fn new(head: &RequestHead, peer: SocketAddr) -> AccessStart {
        AccessStart {
            start: unix_now(),
            peer: peer.ip(),
            method: head.method_raw.clone(),
            url: head.url.clone(),
            proto: match head.version {
                Version::Http10 => b"HTTP/1.0",
                Version::Http11 => b"HTTP/1.1",
            },
            host: head.headers.get("host").cloned(),
            referer: head.headers.get("referer").cloned(),
            user_agent: head.headers.get("user-agent").cloned(),
        }
    }

    fn finish(self, handling: Handling, grace: bool, sent: Option<Sent>) {
        let mut r = access::Record::new(
            self.start,
            self.peer,
            &access::Request {
                method: &self.method,
                url: &self.url,
                proto: self.proto,
                host: self.host.as_deref(),
                referer: self.referer.as_deref(),
                user_agent: self.user_agent.as_deref(),
            },
        );
        r.status = sent.map(|s| s.status);
        r.body_bytes = sent.map(|s| s.body);
        r.handling = handling;
        r.grace = grace;
        access::push(r);
    }
}

/// Runs one request through the VCL state machine and writes its response.
pub async fn handle(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    conn: ConnInfo,
    head: RequestHead,
    body: Bytes,
) -> Done {
    let xid = shard.next_xid();
    let run = shard.running();
    let log = access::enabled().then(|| AccessStart::new(&head, conn.peer));
    let mut t = Task::new(shard, &run, conn, head, body, xid);
    let (done, sent) = t.steps(stream).await;
    if let Some(a) = log {
        a.finish(t.handling, t.grace, sent);
    }
    done
}

impl<'s> Task<'s> {
    fn new(
        shard: &'s Rc<Shard>,
        run: &'s Rc<Running>,
        conn: ConnInfo,
        head: RequestHead,
        body: Bytes,
        xid: u64,
    ) -> Task<'s> {
        let mut url = head.url;
        let mut headers = head.headers;
        // Absolute-form target: the authority becomes Host, the path the URL (RFC 9112 3.2.2).
        let skip = if url.starts_with(b"http://") {
            7
        } else if url.starts_with(b"https://") {
            8
        } else {
            0
        };
        if skip > 0 {
            let rest = url.slice(skip..);
            let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            let host = rest.slice(..slash);
            url = if slash < rest.len() {
                rest.slice(slash..)
            } else {
                Bytes::from_static(b"/")
            };
            headers.set("Host", host);
        }
        let xff_done = run.vcl.features.client_reads_xff;
        if xff_done {
            append_xff(&mut headers, conn.peer);
        }
        let req = ReqCtx {
            method: head.method_raw,
            url,
            proto: Bytes::from_static(match head.version {
                Version::Http10 => b"HTTP/1.0",
                Version::Http11 => b"HTTP/1.1",
            }),
            headers,
            backend_hint: run.vcl.default_backend(),
            grace: None,
            ttl: None,
            hash_always_miss: false,
            restarts: 0,
            xid,
            esi_level: 0,
        };
        let mut ctx = Ctx::new(unix_now()).with_env(&**run);
        ctx.conn = exec::Conn {
            client_ip: conn.peer,
            server_ip: conn.local,
            local_ip: conn.local,
            remote_ip: conn.peer,
        };
        ctx.rng.set(xid.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        ctx.req = Some(req);
        Task {
            shard,
            run,
            ctx,
            xid,
            version: head.version,
            keep_alive: head.keep_alive,
            body,
            has_body: matches!(head.body, BodyFraming::Length(_) | BodyFraming::Chunked),
            xff_done,
            peer: conn.peer,
            restarts_exhausted: false,
            handling: Handling::None,
            grace: false,
        }
    }

    /// The state machine, from `vcl_recv` to a response (or a pipe).
    async fn steps(&mut self, stream: &mut TcpStream) -> (Done, Option<Sent>) {
        let mut step = Step::Recv;
        for _ in 0..MAX_STEPS {
            let go = match step {
                Step::Recv => self.recv(),
                Step::Lookup { purge } => self.lookup(stream, purge).await,
                Step::Pass => self.pass(stream).await,
                Step::Pipe => self.pipe(),
                Step::Synth(status, reason) => self.synth(stream, status, reason).await,
                Step::Restart => self.restart(),
                Step::Fail => {
                    self.keep_alive = false;
                    Step::Synth(503, Some(Bytes::from_static(b"VCL failed"))).into()
                }
            };
            match go {
                Go::Step(s) => step = s,
                Go::Wrote(s) => return (Done::Next(s.next), Some(s)),
                Go::Done(d) => return (d, None),
            }
        }
        let xid = self.xid;
        crate::logs::emit(
            "VCL_Error",
            format!("VCL_Error {xid} request exceeded {MAX_STEPS} steps"),
        );
        let s =
            deliver::send_plain(self.shard, stream, 503, "Service Unavailable", xid, false).await;
        (Done::Next(s.next), Some(s))
    }

    fn req(&self) -> &ReqCtx {
        self.ctx.req.as_ref().unwrap_or(&EMPTY_REQ)
    }

    fn client(&self) -> ClientInfo {
        ClientInfo {
            head: &self.req().method[..] == b"HEAD",
            version: self.version,
            // Once the drain has begun every response closes its connection.
            keep_alive: self.keep_alive && !self.shard.draining(),
        }
    }

    /// Runs a client-side method. `now` is read once per request and again after each wait
    /// (lookup, fetch, purge), not per call: a hit costs one clock read in VCL.
    fn call(&mut self, m: Sub) -> Result<Outcome, ()> {
        call_vcl(self.shard, self.run, &mut self.ctx, m, self.xid).map_err(drop)
    }

    /// The outcomes every client-side method shares.
    fn common(o: Result<Outcome, ()>) -> Step {
        match o {
            Ok(Outcome::Restart) => Step::Restart,
            Ok(Outcome::Synth { status, reason }) => Step::Synth(status, reason),
            _ => Step::Fail,
        }
    }

    fn recv(&mut self) -> Go {
        self.ctx.obj = None;
        self.ctx.resp = None;
        self.ctx.hash.clear();
        // One allocation for the key's bytes, which become the key itself.
        self.ctx.hash.buf.reserve(128);
        match self.call(Sub::Recv) {
            Ok(Outcome::Hash) | Ok(Outcome::Lookup) => Step::Lookup { purge: false },
            Ok(Outcome::Pass { .. }) => Step::Pass,
            Ok(Outcome::Pipe) => Step::Pipe,
            Ok(Outcome::Purge) => Step::Lookup { purge: true },
            other => Self::common(other),
        }
        .into()
    }

    fn restart(&mut self) -> Go {
        let max = self.shard.params().max_restarts;
        self.shard.counters().inc(C::s_restart);
        let Some(req) = self.ctx.req.as_mut() else {
            return Step::Fail.into();
        };
        // As Varnish: count it, then refuse past the limit (vcl_synth sees max_restarts + 1).
        req.restarts = req.restarts.saturating_add(1);
        if u64::from(req.restarts) > max {
            crate::logs::emit(
                "VCL_Error",
                format!("VCL_Error {} Too many restarts", self.xid),
            );
            self.restarts_exhausted = true;
            return Step::Synth(503, None).into();
        }
        Step::Recv.into()
    }

    async fn lookup(&mut self, stream: &mut TcpStream, purge: bool) -> Go {
        match self.call(Sub::Hash) {
            Ok(Outcome::Lookup) => {}
            other => return Self::common(other).into(),
        }
        let key = self.ctx.hash.take_key();
        let shard = self.shard;
        if purge {
            let n = shard.purge(&key).await;
            self.ctx.now = unix_now();
            let c = shard.counters();
            c.inc(C::n_purges);
            c.add(C::n_obj_purged, n as u64);
            return Self::common(self.call(Sub::Purge)).into();
        }
        if self.req().hash_always_miss {
            return self.miss(stream, key, None, None).await;
        }
        let reply = {
            let req = self.req();
            shard.lookup(&key, &req.url, &req.headers, req.grace).await
        };
        self.ctx.now = unix_now();
        let c = shard.counters();
        // As Varnish: hits count when vcl_hit delivers or passes, misses when vcl_miss
        // fetches; hit-for-miss and hit-for-pass count at the lookup.
        match reply {
            Reply::Hit(obj, hits) => self.hit(stream, key, obj, hits, None, false).await,
            Reply::Grace {
                stale,
                bgfetch,
                hits,
            } => {
                let guard = bgfetch.then(|| BusyGuard::new(shard.clone(), key.clone()));
                self.hit(stream, key, stale, hits, guard, true).await
            }
            Reply::Miss(kept) => {
                let guard = BusyGuard::new(shard.clone(), key.clone());
                self.miss(stream, key, Some(guard), kept).await
            }
            Reply::HitMiss => {
                c.inc(C::cache_hitmiss);
                self.miss(stream, key, None, None).await
            }
            Reply::HitPass => {
                c.inc(C::cache_hitpass);
                Step::Pass.into()
            }
            Reply::Overloaded => wrote(
                deliver::send_plain(shard, stream, 503, "Service Unavailable", self.xid, false)
                    .await,
            ),
            Reply::Failed(obj) => {
                // The fetch this request waited on failed: its error object, as a miss.
                self.handling = Handling::Miss;
                self.deliver_obj(stream, obj, 0, false).await
            }
        }
    }

    /// `vcl_hit` on a fresh or graced (`grace`) object. `bg`: this request holds the key's
    /// busy flag for a background refresh (a graced object) and must start it if the object is
    /// delivered.
    async fn hit(
        &mut self,
        stream: &mut TcpStream,
        key: CacheKey,
        obj: Arc<Object>,
        hits: u64,
        bg: Option<BusyGuard>,
        grace: bool,
    ) -> Go {
        self.ctx.obj = Some(ObjView {
            obj: obj.clone(),
            hits,
        });
        self.handling = Handling::Hit;
        match self.call(Sub::Hit) {
            Ok(Outcome::Deliver) => {
                let c = self.shard.counters();
                c.inc(C::cache_hit);
                if grace {
                    c.inc(C::cache_hit_grace);
                    self.grace = true;
                }
                if let Some(guard) = bg {
                    self.spawn_background(key, guard);
                }
                self.deliver_obj(stream, obj, hits, true).await
            }
            Ok(Outcome::Miss) => self.miss(stream, key, bg, None).await,
            Ok(Outcome::Pass { .. }) => {
                self.shard.counters().inc(C::cache_hit);
                Step::Pass.into()
            }
            other => Self::common(other).into(),
        }
    }

    fn spawn_background(&self, key: CacheKey, guard: BusyGuard) {
        let mut bereq = self.bereq(true, None);
        bereq.is_bgfetch = true;
        let s = self.shard.clone();
        let run = self.run.clone();
        let req_headers = self.req().headers.clone();
        let conn = self.ctx.conn;
        let xid = self.xid;
        monoio::spawn(async move {
            s.counters().inc(C::s_fetch);
            s.counters().inc(C::s_bgfetch);
            let r = FetchReq {
                run: &run,
                bereq,
                body: Bytes::new(),
                has_body: false,
                req_headers: &req_headers,
                conn,
                xid,
            };
            let _ = fetch_fsm::run(&s, r, FetchMode::Background { key, guard }).await;
        });
    }

    /// `vcl_miss`, then a cache fetch.
    async fn miss(
        &mut self,
        stream: &mut TcpStream,
        key: CacheKey,
        guard: Option<BusyGuard>,
        kept: Option<Arc<Object>>,
    ) -> Go {
        self.ctx.obj = None;
        self.handling = Handling::Miss;
        match self.call(Sub::Miss) {
            Ok(Outcome::Fetch) => {}
            Ok(Outcome::Pass { .. }) => return Step::Pass.into(),
            other => return Self::common(other).into(),
        }
        self.shard.counters().inc(C::cache_miss);
        self.shard.counters().inc(C::s_fetch);
        let bereq = self.bereq(true, kept.as_deref());
        let mode = FetchMode::Miss { key, guard, kept };
        let outcome = {
            let r = FetchReq {
                run: self.run,
                bereq,
                body: Bytes::new(),
                has_body: false,
                req_headers: &self.req().headers,
                conn: self.ctx.conn,
                xid: self.xid,
            };
            fetch_fsm::run(self.shard, r, mode).await
        };
        self.ctx.now = unix_now();
        self.fetched(stream, outcome).await
    }

    /// `vcl_pass`, then a pass fetch.
    async fn pass(&mut self, stream: &mut TcpStream) -> Go {
        self.ctx.obj = None;
        self.handling = Handling::Pass;
        match self.call(Sub::Pass) {
            Ok(Outcome::Fetch) => {}
            other => return Self::common(other).into(),
        }
        self.shard.counters().inc(C::s_pass);
        self.shard.counters().inc(C::s_fetch);
        let bereq = self.bereq(false, None);
        let outcome = {
            let r = FetchReq {
                run: self.run,
                bereq,
                body: self.body.clone(),
                has_body: self.has_body,
                req_headers: &self.req().headers,
                conn: self.ctx.conn,
                xid: self.xid,
            };
            fetch_fsm::run(self.shard, r, FetchMode::Pass).await
        };
        self.ctx.now = unix_now();
        self.fetched(stream, outcome).await
    }

    async fn fetched(&mut self, stream: &mut TcpStream, outcome: FetchOutcome) -> Go {
        match outcome {
            FetchOutcome::Object(obj) => self.deliver_obj(stream, obj, 0, false).await,
            FetchOutcome::Stream(s) => self.deliver_stream(stream, *s).await,
            FetchOutcome::Failed => Step::Synth(503, None).into(),
        }
    }

    /// The backend request for a cache fetch (`cache`: GET, conditional fields dropped, the
    /// kept object's validators added) or a pass (the client's method and fields).
    fn bereq(&self, cache: bool, kept: Option<&Object>) -> BereqCtx {
        let req = self.req();
        let mut headers = filtered_headers(&req.headers, cache);
        if !self.xff_done {
            append_xff(&mut headers, self.peer);
        }
        append_number(&mut headers, "X-Varnish", self.xid, None);
        if let Some(k) = kept {
            if let Some(etag) = k.headers.get("etag") {
                headers.append(Bytes::from_static(b"If-None-Match"), etag.clone());
            }
            if let Some(lm) = k.headers.get("last-modified") {
                headers.append(Bytes::from_static(b"If-Modified-Since"), lm.clone());
            }
        }
        BereqCtx {
            method: if cache {
                Bytes::from_static(b"GET")
            } else {
                req.method.clone()
            },
            url: req.url.clone(),
            proto: Bytes::from_static(b"HTTP/1.1"),
            headers,
            backend: req.backend_hint,
            uncacheable: !cache,
            xid: self.xid,
            ..BereqCtx::default()
        }
    }

    /// `vcl_deliver` for an object, then write it.
    async fn deliver_obj(
        &mut self,
        stream: &mut TcpStream,
        obj: Arc<Object>,
        hits: u64,
        hit: bool,
    ) -> Go {
        let features = self.run.vcl.features;
        self.ctx.obj = if features.deliver_uses_obj {
            Some(ObjView {
                obj: obj.clone(),
                hits,
            })
        } else {
            None
        };
        if !features.deliver_uses_resp {
            self.ctx.resp = None;
            return match self.call(Sub::Deliver) {
                Ok(Outcome::Deliver) => {
                    let ci = self.client();
                    let req_headers = &self.req().headers;
                    let now = self.ctx.now;
                    wrote(
                        deliver::write_obj(
                            self.shard,
                            stream,
                            &ci,
                            req_headers,
                            &obj,
                            self.xid,
                            hit,
                            now,
                        )
                        .await,
                    )
                }
                other => Self::common(other).into(),
            };
        }
        let mut headers = obj.headers.clone();
        append_number(&mut headers, "X-Varnish", self.xid, hit.then_some(obj.xid));
        append_number(&mut headers, "Age", obj.age(self.ctx.now), None);
        self.ctx.resp = Some(RespCtx {
            proto: Bytes::from_static(b"HTTP/1.1"),
            status: obj.status,
            reason: obj.reason.clone(),
            headers,
        });
        match self.call(Sub::Deliver) {
            Ok(Outcome::Deliver) => {
                let Some(resp) = self.ctx.resp.take() else {
                    return Step::Fail.into();
                };
                let ci = self.client();
                let req_headers = &self.req().headers;
                wrote(
                    deliver::write_resp(
                        self.shard,
                        stream,
                        &ci,
                        req_headers,
                        &resp,
                        obj.body.clone(),
                    )
                    .await,
                )
            }
            other => Self::common(other).into(),
        }
    }

    /// `vcl_deliver` for a streamed backend response, then stream it.
    async fn deliver_stream(&mut self, stream: &mut TcpStream, s: fetch_fsm::Streamed) -> Go {
        let features = self.run.vcl.features;
        let slot = s.conn.slot();
        self.ctx.obj = if features.deliver_uses_obj {
            let (head, headers) = Object::build_head_and_headers(s.status, &s.reason, &s.headers);
            Some(ObjView {
                obj: Arc::new(Object {
                    xid: self.xid,
                    kind: ObjKind::Normal,
                    status: s.status,
                    reason: s.reason.clone(),
                    head,
                    headers,
                    body: Bytes::new(),
                    t_origin: unix_now(),
                    ttl: 0.0,
                    grace: 0.0,
                    keep: 0.0,
                    vary: None,
                }),
                hits: 0,
            })
        } else {
            None
        };
        let ci = self.client();
        if !features.deliver_uses_resp {
            self.ctx.resp = None;
            return match self.call(Sub::Deliver) {
                Ok(Outcome::Deliver) => {
                    let extra = StreamExtra {
                        xid: self.xid,
                        age: s.age,
                    };
                    wrote(
                        deliver::write_stream(
                            self.shard,
                            stream,
                            &ci,
                            s.status,
                            &s.reason,
                            &s.headers,
                            Some(extra),
                            s.f,
                            &s.endpoint,
                            self.xid,
                            slot,
                        )
                        .await,
                    )
                }
                // The unread response dies with its connection.
                other => Self::common(other).into(),
            };
        }
        let mut headers = s.headers;
        append_number(&mut headers, "X-Varnish", self.xid, None);
        append_number(&mut headers, "Age", s.age, None);
        self.ctx.resp = Some(RespCtx {
            proto: Bytes::from_static(b"HTTP/1.1"),
            status: s.status,
            reason: s.reason,
            headers,
        });
        match self.call(Sub::Deliver) {
            Ok(Outcome::Deliver) => {
                let Some(resp) = self.ctx.resp.take() else {
                    return Step::Fail.into();
                };
                wrote(
                    deliver::write_stream(
                        self.shard,
                        stream,
                        &ci,
                        resp.status,
                        &resp.reason,
                        &resp.headers,
                        None,
                        s.f,
                        &s.endpoint,
                        self.xid,
                        slot,
                    )
                    .await,
                )
            }
            other => Self::common(other).into(),
        }
    }

    /// `vcl_synth`, then write its page.
    async fn synth(&mut self, stream: &mut TcpStream, status: u16, reason: Option<Bytes>) -> Go {
        let shard = self.shard;
        shard.counters().inc(C::s_synth);
        self.handling = Handling::Synth;
        let reason = reason.unwrap_or_else(|| {
            let s = if status > 999 { status % 1000 } else { status };
            Bytes::from_static(crate::http::status::reason_phrase(s).as_bytes())
        });
        let mut headers = Headers::with_capacity(8);
        let mut date = Vec::with_capacity(32);
        shard.date(unix_now() as u64, &mut date);
        headers.append(Bytes::from_static(b"Date"), Bytes::from(date));
        headers.append(
            Bytes::from_static(b"Server"),
            Bytes::from_static(b"ringcache"),
        );
        append_number(&mut headers, "X-Varnish", self.xid, None);
        self.ctx.obj = None;
        self.ctx.body.clear();
        self.ctx.resp = Some(RespCtx {
            proto: Bytes::from_static(b"HTTP/1.1"),
            status,
            reason,
            headers,
        });
        let o = self.call(Sub::Synth);
        let deliver = match o {
            Ok(Outcome::Deliver) => true,
            Ok(Outcome::Restart) if !self.restarts_exhausted => return Step::Restart.into(),
            Ok(Outcome::Restart) => true,
            _ => false,
        };
        if !deliver {
            // vcl_synth itself failed: a bare 500, and the connection ends (Varnish does too).
            return wrote(
                deliver::send_plain(shard, stream, 500, "Internal Server Error", self.xid, false)
                    .await,
            );
        }
        let Some(resp) = self.ctx.resp.take() else {
            return Step::Fail.into();
        };
        let body = Bytes::from(std::mem::take(&mut self.ctx.body));
        let ci = self.client();
        let req_headers = &self.req().headers;
        wrote(deliver::write_resp(shard, stream, &ci, req_headers, &resp, body).await)
    }

    /// `vcl_pipe`: on `pipe`, hand the connection to the tunnel.
    fn pipe(&mut self) -> Go {
        self.shard.counters().inc(C::s_pipe);
        self.handling = Handling::Pipe;
        let mut bereq = self.bereq(false, None);
        bereq.headers.remove("connection");
        bereq.headers.append(
            Bytes::from_static(b"Connection"),
            Bytes::from_static(b"close"),
        );
        self.ctx.bereq = Some(bereq);
        let o = self.call(Sub::Pipe);
        let bereq = self.ctx.bereq.take();
        match o {
            Ok(Outcome::Pipe) => {}
            other => return Self::common(other).into(),
        }
        let Some(bereq) = bereq else {
            return Step::Fail.into();
        };
        let site = Site {
            sub: Sub::Pipe,
            url: Some(&bereq.url),
            hash: None,
            now: self.ctx.now,
        };
        let target = bereq.backend.and_then(|b| self.run.resolve(b, &site, &[]));
        let Some((id, be)) = target.and_then(|id| Some((id, self.run.vcl.backends.get(id)?)))
        else {
            if let Some(crate::vcl::exec::BackendRef::Backend(b)) = bereq.backend {
                self.shard.counters().inc(C::backend_unhealthy);
                self.shard.count_unhealthy(self.run, b);
            }
            let line = format!("FetchError {} pipe: no healthy backend", self.xid);
            crate::logs::emit("FetchError", line);
            return Step::Synth(503, None).into();
        };
        let Some(endpoint) = be.endpoint.clone() else {
            return Step::Synth(503, None).into();
        };
        if self.run.health.board.held_down(be.slot, unix_now()) {
            self.shard.counters().inc(C::backend_helddown);
            self.shard.vbe(be.slot).inc(crate::stats::Vbe::helddown);
            let line = format!(
                "FetchError {} pipe: backend {} held down",
                self.xid, be.name
            );
            crate::logs::emit("FetchError", line);
            return Step::Synth(503, None).into();
        }
        // A tunnel does not queue: at .max_connections it is refused at once.
        let Some(conn) = conn_slot::try_acquire(self.shard, &self.run.vcl, id) else {
            self.shard.vbe(be.slot).inc(crate::stats::Vbe::busy);
            let line = format!("FetchError {} pipe: backend {} busy", self.xid, be.name);
            crate::logs::emit("FetchError", line);
            return Step::Synth(503, None).into();
        };
        let request = fetch_fsm::serialize_bereq(
            &bereq,
            &be.host_header,
            &self.body,
            self.has_body && !bereq.body_unset,
        );
        let proxy = fetch_fsm::proxy_header(be.proxy_header, &self.ctx.conn);
        let mut wire = Vec::new();
        wire.extend_from_slice(endpoint.preamble.as_deref().unwrap_or_default());
        wire.extend_from_slice(proxy.as_deref().unwrap_or_default());
        wire.extend_from_slice(&request);
        let connect = bereq
            .connect_timeout
            .or(be.connect_timeout)
            .map_or(self.shard.params().fetch_limits.connect, secs);
        Go::Done(Done::Pipe(PipeRequest {
            endpoint,
            name: be.name.clone(),
            connect_timeout: connect,
            wire: Bytes::from(wire),
            idle: secs(self.shard.params().pipe_timeout),
            conn,
        }))
    }
}

/// The client's fields a backend request carries: hop-by-hop fields, `Expect`, fields named in
/// `Connection` and (for cache fetches) conditional and range fields removed.
fn filtered_headers(req: &Headers, cache: bool) -> Headers {
    let listed: Vec<&[u8]> = req
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(crate::http::headers::trim)
        .collect();
    let mut out = Headers::with_capacity(req.len() + 3);
    for h in req {
        let n = &h.name[..];
        if is_hop_by_hop(n)
            || n.eq_ignore_ascii_case(b"expect")
            || listed.iter().any(|l| n.eq_ignore_ascii_case(l))
            || (cache && is_conditional(n))
        {
            continue;
        }
        out.append(h.name.clone(), h.value.clone());
    }
    out
}

/// Appends `name: n` (or `name: n second`, the two-number `X-Varnish` of a hit).
fn append_number(headers: &mut Headers, name: &'static str, n: u64, second: Option<u64>) {
    let mut v = Vec::with_capacity(24);
    write::write_u64(&mut v, n);
    if let Some(m) = second {
        v.push(b' ');
        write::write_u64(&mut v, m);
    }
    headers.append(Bytes::from_static(name.as_bytes()), Bytes::from(v));
}

/// Appends the client address to `X-Forwarded-For` (several fields become one list).
fn append_xff(headers: &mut Headers, peer: SocketAddr) {
    let mut xff: Vec<u8> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        if !xff.is_empty() {
            xff.extend_from_slice(b", ");
        }
        xff.extend_from_slice(v);
    }
    if !xff.is_empty() {
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(peer.ip().to_string().as_bytes());
    headers.remove("x-forwarded-for");
    headers.append(Bytes::from_static(b"X-Forwarded-For"), Bytes::from(xff));
}
