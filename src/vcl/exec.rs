//! The VCL interpreter: runs one method of a compiled [`Program`] against a request context.
//!
//! Why a tree-walking interpreter over the typed IR: every name, type and regex was resolved at
//! load by the checker, so evaluation is a walk over small nodes with no lookups by name. The
//! interpreter is pure: it opens no socket and reads no clock (`now` is in the [`Ctx`]); what it
//! cannot decide alone (backend health, director selection, `new` objects in vcl_init, DNS for
//! `std.ip`) goes through the [`Env`] trait that the runtime implements.
//!
//! Allocation: a VCL that only reads and compares allocates nothing. Strings are
//! `Cow<[u8]>` borrowed from the context (header values, URL) or from the program (literals);
//! comparisons and regex matches work on those slices. Only what the VCL builds (concatenation,
//! `regsub` that replaced inside the subject, case conversion, number formatting) or writes
//! (`set` of a literal or of a built string) allocates: a `regsub` that deletes at either end
//! of its subject is a slice of it, and `set` of a slice of a field shares that field's buffer
//! (`set req.http.Host = regsub(req.http.Host, ":[0-9]+$", "")` copies nothing).
//!
//! Speed: conditions (`cond`) and strings (`str_ref`) have their own evaluators that handle
//! the usual shapes (regex match, header presence, string comparison, `regsub`, case
//! conversion) on borrowed slices without building [`Value`]s, and fall back to the general
//! `eval` for the rest; regexes use the matchers of [`super::re`].
//!
//! Varnish semantics kept on purpose:
//! * an unset header is the NULL string: falsy, `""` in concatenation and regex matches, and
//!   unequal to everything in `==`/`!=` (`VRT_strcmp` returns 1 when either side is NULL);
//! * a method that ends without `return` continues into the built-in VCL, which the checker
//!   appended to the same [`SubCode`](super::program::SubCode), so nothing special happens here;
//! * `return (fetch)` in a custom sub called from vcl_hit is `miss` (the legacy meaning);
//! * `return (fail)`, an impossible conversion, a division by zero or an unsupported construct
//!   is a [`VclFailure`], never a panic (the runtime answers 503 as Varnish does).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use bytes::Bytes;

use super::program::{
    Action, ArithOp, BackendId, CmpOp, Expr, ExprKind, Method, ObjId, ObjectKind, Program, Stmt,
    Type, VarRef,
};
use super::re::Regex;
use super::symbols::{AssignOp, Func, VARS};
use crate::cache::object::{ObjKind, Object};
use crate::http::Headers;

/// Depth bound for `call` (the checker rejects recursion; this is a second fence).
pub const MAX_CALL_DEPTH: usize = 64;
/// Depth bound for expression trees (a long `a && b && c ...` chain nests to the left).
pub const MAX_EXPR_DEPTH: usize = 400;

// ---------------------------------------------------------------------------------------------
// Public types

/// A backend value: a declared backend, or a director object to be resolved by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendRef {
    Backend(BackendId),
    /// A director created in vcl_init (`vdir.backend()`): the runtime picks the backend.
    Director(ObjId),
}

/// A VCL value. Strings are `None` when unset (Varnish's NULL).
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(Option<Cow<'a, [u8]>>),
    Int(i64),
    Real(f64),
    /// Seconds.
    Duration(f64),
    Bytes(f64),
    /// Seconds since the Unix epoch.
    Time(f64),
    Bool(bool),
    /// Address and port (literal IPs carry port 0).
    Ip(SocketAddr),
    /// `None`: the `none` backend.
    Backend(Option<BackendRef>),
    Enum(&'static str),
    Blob(Cow<'a, [u8]>),
    Acl(usize),
    Probe(usize),
    Object(ObjId),
    Void,
}

impl Value<'_> {
    /// Detaches the value from what it borrows.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(s.map(|c| Cow::Owned(c.into_owned()))),
            Value::Blob(b) => Value::Blob(Cow::Owned(b.into_owned())),
            Value::Int(v) => Value::Int(v),
            Value::Real(v) => Value::Real(v),
            Value::Duration(v) => Value::Duration(v),
            Value::Bytes(v) => Value::Bytes(v),
            Value::Time(v) => Value::Time(v),
            Value::Bool(v) => Value::Bool(v),
            Value::Ip(v) => Value::Ip(v),
            Value::Backend(v) => Value::Backend(v),
            Value::Enum(v) => Value::Enum(v),
            Value::Acl(v) => Value::Acl(v),
            Value::Probe(v) => Value::Probe(v),
            Value::Object(v) => Value::Object(v),
            Value::Void => Value::Void,
        }
    }

    /// The bytes of a string value (`None` when unset or not a string).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// What the runtime provides to the interpreter. Every method has a default so tests need not
/// implement any; methods take `&self` (implementations use atomics or cells for state such as a
/// round-robin position).
pub trait Env {
    /// `std.healthy(be)` for a real backend or director (the `none` backend is unhealthy without
    /// asking).
    fn healthy(&self, be: BackendRef, now: f64) -> bool {
        let _ = (be, now);
        true
    }

    /// A method call on a director object (`vdir.backend()`, `vdir.add_backend(b1)`, ...).
    /// The default returns `BackendRef::Director(obj)` for `.backend()` (resolved later by the
    /// runtime) and `Void` for anything else.
    fn object_method(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        method: &'static Func,
        args: &[Option<Value<'_>>],
    ) -> Result<Value<'static>, String> {
        let _ = (kind, args);
        Ok(match method.ret {
            Type::Backend => Value::Backend(Some(BackendRef::Director(obj))),
            Type::Bool => Value::Bool(true),
            Type::Int => Value::Int(0),
            _ => Value::Void,
        })
    }

    /// `new obj = directors.kind(args)` in vcl_init.
    fn new_object(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        args: &[Option<Value<'_>>],
    ) -> Result<(), String> {
        let _ = (obj, kind, args);
        Ok(())
    }

    /// `be.resolve()`: the backend a director would pick now (default: itself).
    fn resolve_backend(&self, be: BackendRef) -> Option<BackendRef> {
        Some(be)
    }

    /// A director method call with its [`Site`] (what key-based directors read: the URL, the
    /// hash inputs, the sub). Default: [`Env::object_method`].
    fn object_call(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        method: &'static Func,
        args: &[Option<Value<'_>>],
        site: &Site<'_>,
    ) -> Result<Value<'static>, String> {
        let _ = site;
        self.object_method(obj, kind, method, args)
    }

    /// `be.resolve()` with its [`Site`]. Default: [`Env::resolve_backend`].
    fn resolve_at(&self, be: BackendRef, site: &Site<'_>) -> Option<BackendRef> {
        let _ = site;
        self.resolve_backend(be)
    }

    /// `std.ip(s, resolve=true)` on something that is not an IP literal (default: no DNS).
    fn resolve_ip(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let _ = (host, port);
        None
    }
}

/// Where a director call runs: the sub, the request's URL (client side `req.url`, backend side
/// `bereq.url`) and, when known, the `hash_data()` inputs (each followed by a NUL byte, as in
/// [`HashCtx`]), which the shard director's `by=URL` / `by=HASH` hash, and the time (its
/// rampup).
#[derive(Clone, Copy, Debug)]
pub struct Site<'a> {
    pub sub: Method,
    pub url: Option<&'a [u8]>,
    pub hash: Option<&'a [u8]>,
    pub now: f64,
}

impl<'a> Site<'a> {
    /// The site of a call in `sub` on `ctx`.
    pub fn of(sub: Method, ctx: &'a Ctx<'_>) -> Site<'a> {
        let url = match (&ctx.req, &ctx.bereq) {
            (Some(r), _) => Some(&r.url[..]),
            (None, Some(b)) => Some(&b.url[..]),
            (None, None) => None,
        };
        let hash = (ctx.hash.parts > 0).then_some(&ctx.hash.buf[..]);
        Site {
            sub,
            url,
            hash,
            now: ctx.now,
        }
    }
}

/// An [`Env`] with every default: all backends healthy, directors left unresolved.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEnv;

impl Env for NoEnv {}

static NO_ENV: NoEnv = NoEnv;

/// The client request (`req.*`).
#[derive(Clone, Debug, Default)]
pub struct ReqCtx {
    pub method: Bytes,
    pub url: Bytes,
    pub proto: Bytes,
    pub headers: Headers,
    pub backend_hint: Option<BackendRef>,
    /// `None`: unset (reads as -1s, as in Varnish).
    pub grace: Option<f64>,
    pub ttl: Option<f64>,
    pub hash_always_miss: bool,
    pub restarts: u32,
    pub xid: u64,
    pub esi_level: u32,
}

/// The backend request (`bereq.*`).
#[derive(Clone, Debug, Default)]
pub struct BereqCtx {
    pub method: Bytes,
    pub url: Bytes,
    pub proto: Bytes,
    pub headers: Headers,
    pub backend: Option<BackendRef>,
    /// Seconds; `None`: the backend's or the parameter's value (read as 3.5 / 60 / 60).
    pub connect_timeout: Option<f64>,
    pub first_byte_timeout: Option<f64>,
    pub between_bytes_timeout: Option<f64>,
    pub retries: u32,
    pub uncacheable: bool,
    pub is_bgfetch: bool,
    pub xid: u64,
    /// `unset bereq.body` was executed.
    pub body_unset: bool,
}

/// The backend response (`beresp.*`). `ttl`, `grace` and `keep` are relative to `now`, as VCL
/// sees them (the runtime converts to the object's `t_origin`).
#[derive(Clone, Debug, Default)]
pub struct BerespCtx {
    pub proto: Bytes,
    pub status: u16,
    pub reason: Bytes,
    pub headers: Headers,
    pub ttl: f64,
    pub grace: f64,
    pub keep: f64,
    pub uncacheable: bool,
    pub backend: Option<BackendRef>,
}

/// The response to the client (`resp.*`).
#[derive(Clone, Debug, Default)]
pub struct RespCtx {
    pub proto: Bytes,
    pub status: u16,
    pub reason: Bytes,
    pub headers: Headers,
}

/// A read-only view of the cached object (`obj.*`). Holds the object itself (an `Arc` clone,
/// no allocation), so a context can outlive the lookup that found it.
#[derive(Clone, Debug)]
pub struct ObjView {
    pub obj: std::sync::Arc<Object>,
    pub hits: u64,
}

/// The connection's addresses.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub client_ip: SocketAddr,
    pub server_ip: SocketAddr,
    pub local_ip: SocketAddr,
    pub remote_ip: SocketAddr,
}

impl Default for Conn {
    fn default() -> Self {
        let z = SocketAddr::from(([0, 0, 0, 0], 0));
        Conn {
            client_ip: z,
            server_ip: z,
            local_ip: z,
            remote_ip: z,
        }
    }
}

/// The `hash_data()` inputs, each followed by a NUL byte (the layout of
/// [`crate::cache::object::CacheKey::from_parts`]).
#[derive(Clone, Debug, Default)]
pub struct HashCtx {
    pub buf: Vec<u8>,
    pub parts: usize,
}

impl HashCtx {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.parts = 0;
    }

    pub fn add(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.buf.push(0);
        self.parts += 1;
    }

    /// The inputs in order.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let n = self.parts;
        self.buf
            .strip_suffix(b"\0")
            .unwrap_or(&[])
            .split(|&b| b == 0)
            .take(n)
    }

    /// The cache key, taking the buffer (no copy); the context is left empty.
    pub fn take_key(&mut self) -> crate::cache::object::CacheKey {
        self.parts = 0;
        crate::cache::object::CacheKey::from_joined(std::mem::take(&mut self.buf))
    }

    pub fn key(&self) -> crate::cache::object::CacheKey {
        let parts: Vec<&[u8]> = self.parts().collect();
        crate::cache::object::CacheKey::from_parts(&parts)
    }
}

/// Everything a method may read or write. The parts that do not exist in a method are `None`
/// (the checker guarantees a method only touches its own parts; a violation is a failure).
pub struct Ctx<'a> {
    pub env: &'a dyn Env,
    pub now: f64,
    pub conn: Conn,
    pub req: Option<ReqCtx>,
    pub bereq: Option<BereqCtx>,
    pub beresp: Option<BerespCtx>,
    pub obj: Option<ObjView>,
    pub resp: Option<RespCtx>,
    pub hash: HashCtx,
    /// `synthetic()`, `resp.body` (vcl_synth), `beresp.body` (vcl_backend_error).
    pub body: Vec<u8>,
    /// `std.log()` lines, for the runtime to forward to the log.
    pub log: Vec<String>,
    /// `ban()` and `std.ban()` expressions, for the runtime to apply (and log if bad) when the
    /// method returns. A cell because `std.ban()` is an expression.
    pub bans: RefCell<Vec<Bytes>>,
    /// The last `std.ban()` error of this task, for `std.ban_error()`.
    pub ban_error: RefCell<Option<String>>,
    /// State of `std.random` (xorshift64*); seed it per request, or fixed in tests.
    pub rng: Cell<u64>,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("now", &self.now)
            .field("conn", &self.conn)
            .field("req", &self.req)
            .field("bereq", &self.bereq)
            .field("beresp", &self.beresp)
            .field("obj", &self.obj)
            .field("resp", &self.resp)
            .field("hash", &self.hash)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("log", &self.log)
            .finish()
    }
}

impl<'a> Ctx<'a> {
    /// An empty context at `now` with [`NoEnv`].
    pub fn new(now: f64) -> Ctx<'a> {
        Ctx {
            env: &NO_ENV,
            now,
            conn: Conn::default(),
            req: None,
            bereq: None,
            beresp: None,
            obj: None,
            resp: None,
            hash: HashCtx::default(),
            body: Vec::new(),
            log: Vec::new(),
            bans: RefCell::new(Vec::new()),
            ban_error: RefCell::new(None),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    pub fn with_env(mut self, env: &'a dyn Env) -> Ctx<'a> {
        self.env = env;
        self
    }
}

/// The `return (action)` a method took.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Abandon,
    Deliver,
    /// `return (error(status, reason))` in a backend method (default 503).
    Error {
        status: u16,
        reason: Option<Bytes>,
    },
    Fetch,
    Hash,
    Lookup,
    /// vcl_hit's legacy `return (fetch)`.
    Miss,
    Ok,
    /// `ttl`: hit-for-pass duration of `return (pass(DURATION))` in vcl_backend_response.
    Pass {
        ttl: Option<f64>,
    },
    Pipe,
    Purge,
    Restart,
    Retry,
    /// Status as given (codes outside 100..=65535 become 503, as `VRT_synth` does); values
    /// above 999 are for vcl_synth to recognise and the runtime sends `status % 1000`.
    Synth {
        status: u16,
        reason: Option<Bytes>,
    },
}

/// A runtime failure of the VCL (Varnish: `VCL_Error` and a 503, or a failed vcl_init).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VclFailure {
    pub sub: Method,
    pub message: String,
}

impl fmt::Display for VclFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sub.name(), self.message)
    }
}

impl std::error::Error for VclFailure {}

/// Runs the method `sub` of `program` on `ctx`.
pub fn run(program: &Program, sub: Method, ctx: &mut Ctx<'_>) -> Result<Outcome, VclFailure> {
    let m = Machine::new(program, sub);
    let fail = |message: String| VclFailure { sub, message };
    let code = program.method(sub);
    let flow = m.block(&code.body, ctx, 0).map_err(|e| fail(e.into()))?;
    match (flow, m.outcome.take()) {
        (Flow::Ret, Some(o)) => Ok(o),
        _ => Err(fail(format!("{} ended without a return action", sub))),
    }
}

// ---------------------------------------------------------------------------------------------
// Variables

/// What a [`VarRef`] designates, decided once per entry of [`VARS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vk {
    ClientIp,
    ServerIp,
    RemoteIp,
    LocalIp,
    ReqBackendHint,
    ReqEsiLevel,
    ReqGrace,
    ReqHashAlwaysMiss,
    ReqHttp,
    ReqMethod,
    ReqProto,
    ReqRestarts,
    ReqTtl,
    ReqUrl,
    ReqXid,
    BereqBackend,
    BereqBetweenBytesTimeout,
    BereqConnectTimeout,
    BereqFirstByteTimeout,
    BereqBody,
    BereqHttp,
    BereqIsBgfetch,
    BereqMethod,
    BereqProto,
    BereqRetries,
    BereqUncacheable,
    BereqUrl,
    BereqXid,
    BerespBackend,
    BerespBackendName,
    BerespBody,
    BerespGrace,
    BerespHttp,
    BerespKeep,
    BerespProto,
    BerespReason,
    BerespStatus,
    BerespTtl,
    BerespUncacheable,
    ObjAge,
    ObjGrace,
    ObjHits,
    ObjHttp,
    ObjKeep,
    ObjReason,
    ObjStatus,
    ObjTtl,
    ObjUncacheable,
    RespBody,
    RespHttp,
    RespProto,
    RespReason,
    RespStatus,
    Now,
    Unsupported,
}

fn var_kind(name: &str) -> Vk {
    use Vk::*;
    match name {
        "client.ip" => ClientIp,
        "server.ip" => ServerIp,
        "remote.ip" => RemoteIp,
        "local.ip" => LocalIp,
        "req.backend_hint" => ReqBackendHint,
        "req.esi_level" => ReqEsiLevel,
        "req.grace" => ReqGrace,
        "req.hash_always_miss" => ReqHashAlwaysMiss,
        "req.http." => ReqHttp,
        "req.method" => ReqMethod,
        "req.proto" => ReqProto,
        "req.restarts" => ReqRestarts,
        "req.ttl" => ReqTtl,
        "req.url" => ReqUrl,
        "req.xid" => ReqXid,
        "bereq.backend" => BereqBackend,
        "bereq.between_bytes_timeout" => BereqBetweenBytesTimeout,
        "bereq.connect_timeout" => BereqConnectTimeout,
        "bereq.first_byte_timeout" => BereqFirstByteTimeout,
        "bereq.body" => BereqBody,
        "bereq.http." => BereqHttp,
        "bereq.is_bgfetch" => BereqIsBgfetch,
        "bereq.method" => BereqMethod,
        "bereq.proto" => BereqProto,
        "bereq.retries" => BereqRetries,
        "bereq.uncacheable" => BereqUncacheable,
        "bereq.url" => BereqUrl,
        "bereq.xid" => BereqXid,
        "beresp.backend" => BerespBackend,
        "beresp.backend.name" => BerespBackendName,
        "beresp.body" => BerespBody,
        "beresp.grace" => BerespGrace,
        "beresp.http." => BerespHttp,
        "beresp.keep" => BerespKeep,
        "beresp.proto" => BerespProto,
        "beresp.reason" => BerespReason,
        "beresp.status" => BerespStatus,
        "beresp.ttl" => BerespTtl,
        "beresp.uncacheable" => BerespUncacheable,
        "obj.age" => ObjAge,
        "obj.grace" => ObjGrace,
        "obj.hits" => ObjHits,
        "obj.http." => ObjHttp,
        "obj.keep" => ObjKeep,
        "obj.reason" => ObjReason,
        "obj.status" => ObjStatus,
        "obj.ttl" => ObjTtl,
        "obj.uncacheable" => ObjUncacheable,
        "resp.body" => RespBody,
        "resp.http." => RespHttp,
        "resp.proto" => RespProto,
        "resp.reason" => RespReason,
        "resp.status" => RespStatus,
        "now" => Now,
        _ => Unsupported,
    }
}

fn vk(v: &VarRef) -> Vk {
    static TABLE: OnceLock<Vec<Vk>> = OnceLock::new();
    let t = TABLE.get_or_init(|| VARS.iter().map(|v| var_kind(v.name)).collect());
    t.get(v.id as usize).copied().unwrap_or(Vk::Unsupported)
}

type R<T> = Result<T, String>;

fn missing(part: &str) -> String {
    format!("{part} is not available here")
}

fn unsupported_var(v: &VarRef) -> String {
    let name = v.var().name;
    match &v.header {
        Some(h) => format!("variable {name}{h} is not supported by ringcache"),
        None => format!("variable {name} is not supported by ringcache"),
    }
}

fn hdr<'a>(h: &'a Headers, name: &str) -> Value<'a> {
    Value::Str(field(h, name).map(|b| Cow::Borrowed(&b[..])))
}

/// [`Headers::get`] (the first field called `name`, ASCII case-insensitive), comparing names
/// eight bytes at a time: VCL looks up a few fields per statement.
fn field<'h>(h: &'h Headers, name: &str) -> Option<&'h Bytes> {
    let n = name.as_bytes();
    h.iter()
        .find(|f| f.name.len() == n.len() && eq_ignore_case(&f.name, n))
        .map(|f| &f.value)
}

/// `a.eq_ignore_ascii_case(b)` for slices of the same length, in words (overlapping at the
/// end rather than byte by byte).
fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let same = |x: u64, y: u64| lower8(x) == lower8(y);
    let w8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let w4 = |s: &[u8], i: usize| {
        u64::from(u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4])))
    };
    match n {
        0 => true,
        1..=3 => {
            let w =
                |s: &[u8]| u64::from(s[0]) | u64::from(s[n / 2]) << 8 | u64::from(s[n - 1]) << 16;
            same(w(a), w(b))
        }
        4..=8 => {
            let w = |s: &[u8]| w4(s, 0) | w4(s, n - 4) << 32;
            same(w(a), w(b))
        }
        _ => {
            let mut i = 0;
            while i + 8 <= n {
                if !same(w8(a, i), w8(b, i)) {
                    return false;
                }
                i += 8;
            }
            i == n || same(w8(a, n - 8), w8(b, n - 8))
        }
    }
}

/// Each byte `A`..=`Z` of the word made lower-case, the others unchanged.
#[inline]
fn lower8(x: u64) -> u64 {
    x | (upper_bytes(x) >> 2)
}

/// Bit 7 set in each byte of the word that is `A`..=`Z`: bit 7 of `(byte & 0x7f) + 0x3f` is
/// set from `A` on, of `+ 0x25` from `[` on (no carry crosses a byte); bytes from 0x80 are
/// not letters.
#[inline]
fn upper_bytes(x: u64) -> u64 {
    let h = x & 0x7f7f_7f7f_7f7f_7f7f;
    (h + 0x3f3f_3f3f_3f3f_3f3f) & !(h + 0x2525_2525_2525_2525) & !x & 0x8080_8080_8080_8080
}

/// Bit 7 set in each byte of the word that is `a`..=`z` (as [`upper_bytes`]).
#[inline]
fn lower_bytes(x: u64) -> u64 {
    let h = x & 0x7f7f_7f7f_7f7f_7f7f;
    (h + 0x1f1f_1f1f_1f1f_1f1f) & !(h + 0x0505_0505_0505_0505) & !x & 0x8080_8080_8080_8080
}

/// Whether `has` finds a byte in some word of `b` (words overlap rather than going byte by
/// byte; `has` must ignore the zero bytes that pad a short `b`).
fn any_word(b: &[u8], has: fn(u64) -> u64) -> bool {
    let n = b.len();
    let w8 = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let w4 = |i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4])));
    match n {
        0 => false,
        1..=3 => has(u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16) != 0,
        4..=8 => has(w4(0) | w4(n - 4) << 32) != 0,
        _ => (0..n / 8).any(|k| has(w8(8 * k)) != 0) || has(w8(n - 8)) != 0,
    }
}

fn s<'a>(b: &'a Bytes) -> Value<'a> {
    Value::Str(Some(Cow::Borrowed(&b[..])))
}

fn xid_str(x: u64) -> Value<'static> {
    Value::Str(Some(Cow::Owned(x.to_string().into_bytes())))
}

/// The variables [`Machine::assign_bytes`] writes: strings stored as `Bytes`.
fn is_string_target(k: Vk) -> bool {
    use Vk::*;
    matches!(
        k,
        ReqHttp
            | BereqHttp
            | BerespHttp
            | RespHttp
            | ReqUrl
            | ReqMethod
            | ReqProto
            | BereqUrl
            | BereqMethod
            | BereqProto
            | BerespReason
            | BerespProto
            | RespReason
            | RespProto
    )
}

/// Whether `b` lies in `f`.
#[inline]
fn within(f: &Bytes, b: &[u8]) -> bool {
    let (s, p) = (f.as_ptr() as usize, b.as_ptr() as usize);
    p >= s && p + b.len() <= s + f.len()
}

/// A slice of the first of `h`'s values or of `more` that `b` lies in.
fn slice_of(h: &Headers, more: &[&Bytes], b: &[u8]) -> Option<Bytes> {
    for f in h.iter() {
        if within(&f.value, b) {
            return Some(f.value.slice_ref(b));
        }
    }
    for f in more {
        if within(f, b) {
            return Some(f.slice_ref(b));
        }
    }
    None
}

impl Ctx<'_> {
    /// `b` as `Bytes`: when it lies in a field of the context (URL, header value, ...), a
    /// slice sharing that field's buffer; else a copy.
    fn share(&self, b: &[u8]) -> Bytes {
        if b.is_empty() {
            return Bytes::new();
        }
        let mut found = None;
        if let Some(r) = &self.req {
            found = slice_of(&r.headers, &[&r.url, &r.method, &r.proto], b);
        }
        if let (None, Some(r)) = (&found, &self.bereq) {
            found = slice_of(&r.headers, &[&r.url, &r.method, &r.proto], b);
        }
        if let (None, Some(r)) = (&found, &self.beresp) {
            found = slice_of(&r.headers, &[&r.reason, &r.proto], b);
        }
        if let (None, Some(r)) = (&found, &self.resp) {
            found = slice_of(&r.headers, &[&r.reason, &r.proto], b);
        }
        if let (None, Some(o)) = (&found, &self.obj) {
            found = slice_of(&o.obj.headers, &[&o.obj.reason], b);
        }
        found.unwrap_or_else(|| Bytes::copy_from_slice(b))
    }
}

/// The reason phrase `http_SetStatus` gives a status (`status % 1000`).
fn standard_reason(status: u16) -> Bytes {
    Bytes::from_static(crate::http::status::reason_phrase(status % 1000).as_bytes())
}

/// Replaces every field `name` with one field, where the first one was; appends otherwise
/// (the name spelled as in the VCL is not kept by the checker: it is written in canonical
/// `Title-Case`).
fn set_header(h: &mut Headers, name: &str, value: Bytes) {
    // In place: a header write on the hit path (Host normalisation) costs no list rebuild.
    if let Some(value) = h.replace(name, value) {
        h.append(Bytes::from(canonical_name(name)), value);
    }
}

fn canonical_name(name: &str) -> Vec<u8> {
    let mut up = true;
    name.bytes()
        .map(|b| {
            let c = if up { b.to_ascii_uppercase() } else { b };
            up = b == b'-';
            c
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The machine

/// How a statement ends. The outcome of a `return (action)` is kept in [`Machine::outcome`],
/// where it is built: carried in `Flow`, the outcome (with its reason phrase) was copied at
/// every level of nesting, and the copies of a value just written stall the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Next,
    Bare,
    Ret,
}

/// A statement's result (the message boxed: a small result on the hot path).
type RF = Result<Flow, Box<str>>;

/// A condition's result.
type CR = Result<bool, Box<str>>;

/// Why [`Machine::leaf`] gives no bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoStr {
    /// An unset header (NULL).
    Unset,
    /// Not a literal or a plain field, or a failure: to evaluate the long way.
    Other,
}

struct Machine<'p> {
    prog: &'p Program,
    method: Method,
    /// The outcome of the `return (action)` that ended the method.
    outcome: Cell<Option<Outcome>>,
}

impl<'p> Machine<'p> {
    fn new(prog: &'p Program, method: Method) -> Machine<'p> {
        Machine {
            prog,
            method,
            outcome: Cell::new(None),
        }
    }

    fn block(&self, stmts: &'p [Stmt], ctx: &mut Ctx<'_>, depth: usize) -> RF {
        for st in stmts {
            // The frequent statements are dispatched here to small functions; the rest share
            // one (a frame holding every statement's temporaries would be paid on each call).
            let flow = match st {
                Stmt::Set { target, op, value } => self.s_set(target, *op, value, ctx)?,
                Stmt::If {
                    branches,
                    otherwise,
                } => self.s_if(branches, otherwise, ctx, depth)?,
                Stmt::Unset(target) => {
                    self.unset(target, ctx)?;
                    Flow::Next
                }
                Stmt::Call(id) => self.s_call(*id, ctx, depth)?,
                Stmt::ReturnBare => Flow::Bare,
                Stmt::Return { action, args } => self.s_return(*action, args, ctx)?,
                _ => self.stmt(st, ctx, depth)?,
            };
            if flow != Flow::Next {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    #[inline(never)]
    fn s_if(
        &self,
        branches: &'p [(Expr, Vec<Stmt>)],
        otherwise: &'p [Stmt],
        ctx: &mut Ctx<'_>,
        depth: usize,
    ) -> RF {
        let mut body = otherwise;
        for (cond, b) in branches {
            if self.cond(cond, ctx, 0)? {
                body = b;
                break;
            }
        }
        if body.is_empty() {
            return Ok(Flow::Next);
        }
        self.block(body, ctx, depth)
    }

    /// `return (action)`: the outcome is stored where it is built (not returned through
    /// every level of nesting).
    #[inline(never)]
    fn s_return(&self, action: Action, args: &'p [Option<Expr>], ctx: &Ctx<'_>) -> RF {
        self.outcome.set(Some(self.ret(action, args, ctx)?));
        Ok(Flow::Ret)
    }

    #[inline(never)]
    fn s_call(&self, id: usize, ctx: &mut Ctx<'_>, depth: usize) -> RF {
        if depth + 1 >= MAX_CALL_DEPTH {
            return Err("too many nested calls".into());
        }
        let code = self
            .prog
            .subs
            .get(id)
            .ok_or_else(|| format!("call of unknown sub #{id}"))?;
        Ok(match self.block(&code.body, ctx, depth + 1)? {
            Flow::Ret => Flow::Ret,
            Flow::Next | Flow::Bare => Flow::Next,
        })
    }

    /// `set`. A string written to a string variable is not copied when it is a slice of a
    /// field the context holds (a header value, the URL): it shares that field's buffer.
    #[inline(never)]
    fn s_set(&self, target: &VarRef, op: AssignOp, value: &'p Expr, ctx: &mut Ctx<'_>) -> RF {
        // `set req.backend_hint = name;`, the routing statement.
        if let (AssignOp::Set, ExprKind::Backend(id), Vk::ReqBackendHint) =
            (op, &value.kind, vk(target))
        {
            ctx.req.as_mut().ok_or_else(|| missing("req"))?.backend_hint =
                Some(BackendRef::Backend(*id));
            return Ok(Flow::Next);
        }
        if op == AssignOp::Set && value.ty == Type::String {
            let k = vk(target);
            if is_string_target(k) {
                let b = match self.str_ref(value, ctx, 0)? {
                    None => Bytes::new(),
                    Some(Cow::Owned(v)) => Bytes::from(v),
                    // A literal lives in the program, not in the context.
                    Some(Cow::Borrowed(b)) if matches!(value.kind, ExprKind::Str(_)) => {
                        Bytes::copy_from_slice(b)
                    }
                    Some(Cow::Borrowed(b)) => ctx.share(b),
                };
                self.assign_bytes(target, k, b, ctx)?;
                return Ok(Flow::Next);
            }
        }
        let v = self.eval(value, ctx, 0)?.into_owned();
        self.assign(target, op, v, ctx)?;
        Ok(Flow::Next)
    }

    /// The statements [`Self::block`] does not dispatch itself.
    #[inline(never)]
    fn stmt(&self, st: &'p Stmt, ctx: &mut Ctx<'_>, depth: usize) -> RF {
        match st {
            Stmt::Set { target, op, value } => return self.s_set(target, *op, value, ctx),
            Stmt::Unset(target) => self.unset(target, ctx)?,
            Stmt::If {
                branches,
                otherwise,
            } => return self.s_if(branches, otherwise, ctx, depth),
            Stmt::ReturnBare => return Ok(Flow::Bare),
            Stmt::Return { action, args } => return self.s_return(*action, args, ctx),
            Stmt::Call(id) => return self.s_call(*id, ctx, depth),
            Stmt::New { obj, args } => {
                let kind = self.obj_kind(*obj)?;
                let vals = self.args(args, ctx)?;
                ctx.env.new_object(*obj, kind, &vals)?;
            }
            Stmt::HashData(e) => {
                // The buffer is moved out while the value borrows the context: no copy.
                let mut h = std::mem::take(&mut ctx.hash);
                let r = self
                    .str_ref(e, ctx, 0)
                    .map(|b| h.add(b.as_deref().unwrap_or_default()));
                ctx.hash = h;
                r?;
            }
            Stmt::Synthetic(e) => {
                let mut body = std::mem::take(&mut ctx.body);
                let r = self
                    .str_ref(e, ctx, 0)
                    .map(|b| body.extend_from_slice(b.as_deref().unwrap_or_default()));
                ctx.body = body;
                r?;
            }
            Stmt::Ban(e) => {
                let b = self
                    .str_ref(e, ctx, 0)?
                    .map(Cow::into_owned)
                    .unwrap_or_default();
                ctx.bans.get_mut().push(Bytes::from(b));
            }
            Stmt::Eval(e) => self.effect(e, ctx)?,
        }
        Ok(Flow::Next)
    }

    /// A call evaluated for its effect (`std.log`, `std.collect`, director methods).
    fn effect(&self, e: &'p Expr, ctx: &mut Ctx<'_>) -> R<()> {
        if let ExprKind::Call { func, args } = &e.kind {
            match func.name {
                "std.log" => {
                    let line = match args.first() {
                        Some(Some(a)) => {
                            let v = self.eval(a, ctx, 0)?;
                            let b = self.to_str(v)?.unwrap_or_default();
                            String::from_utf8_lossy(&b).into_owned()
                        }
                        _ => String::new(),
                    };
                    ctx.log.push(line);
                    return Ok(());
                }
                "std.collect" => return self.collect(args, ctx),
                _ => {}
            }
        }
        self.eval(e, ctx, 0).map(drop)
    }

    fn collect(&self, args: &'p [Option<Expr>], ctx: &mut Ctx<'_>) -> R<()> {
        let Some(Some(Expr {
            kind: ExprKind::Var(var),
            ..
        })) = args.first()
        else {
            return Err("std.collect: expected a header".into());
        };
        let sep: Vec<u8> = match args.get(1) {
            Some(Some(e)) => {
                let v = self.eval(e, ctx, 0)?;
                self.to_str(v)?.map(Cow::into_owned).unwrap_or_default()
            }
            _ => b", ".to_vec(),
        };
        let name = var.header.as_deref().unwrap_or("");
        let h = match vk(var) {
            Vk::ReqHttp => &mut ctx.req.as_mut().ok_or_else(|| missing("req"))?.headers,
            Vk::BereqHttp => &mut ctx.bereq.as_mut().ok_or_else(|| missing("bereq"))?.headers,
            Vk::BerespHttp => {
                &mut ctx
                    .beresp
                    .as_mut()
                    .ok_or_else(|| missing("beresp"))?
                    .headers
            }
            Vk::RespHttp => &mut ctx.resp.as_mut().ok_or_else(|| missing("resp"))?.headers,
            _ => return Err(format!("std.collect: cannot collect {}", var.var().name)),
        };
        if h.get_all(name).nth(1).is_none() {
            return Ok(());
        }
        let mut joined = Vec::new();
        for (i, v) in h.get_all(name).enumerate() {
            if i > 0 {
                joined.extend_from_slice(&sep);
            }
            joined.extend_from_slice(v);
        }
        set_header(h, name, Bytes::from(joined));
        Ok(())
    }

    fn ret(&self, action: Action, args: &'p [Option<Expr>], ctx: &Ctx<'_>) -> R<Outcome> {
        let arg = |i: usize| match args.get(i) {
            Some(Some(e)) => self.eval(e, ctx, 0).map(Some),
            _ => Ok(None),
        };
        let reason = |i: usize| -> R<Option<Bytes>> {
            match arg(i)? {
                Some(v) => Ok(self.to_str(v)?.map(|c| Bytes::from(c.into_owned()))),
                None => Ok(None),
            }
        };
        let status = |default: u16| -> R<u16> {
            Ok(match arg(0)? {
                Some(Value::Int(n)) if (100..=65535).contains(&n) => n as u16,
                Some(_) => 503,
                None => default,
            })
        };
        Ok(match action {
            Action::Abandon => Outcome::Abandon,
            Action::Deliver => Outcome::Deliver,
            Action::Error => Outcome::Error {
                status: status(503)?,
                reason: reason(1)?,
            },
            Action::Fail => {
                let r = reason(0)?;
                return Err(match r {
                    Some(r) => format!("return (fail): {}", String::from_utf8_lossy(&r)),
                    None => "return (fail)".to_string(),
                });
            }
            Action::Fetch if self.method == Method::Hit => Outcome::Miss,
            Action::Fetch => Outcome::Fetch,
            Action::Hash => Outcome::Hash,
            Action::Lookup => Outcome::Lookup,
            Action::Miss => Outcome::Miss,
            Action::Ok => Outcome::Ok,
            Action::Pass => Outcome::Pass {
                ttl: match arg(0)? {
                    Some(Value::Duration(d)) => Some(d),
                    Some(other) => Some(num(&other)?),
                    None => None,
                },
            },
            Action::Pipe => Outcome::Pipe,
            Action::Purge => Outcome::Purge,
            Action::Restart => Outcome::Restart,
            Action::Retry => Outcome::Retry,
            Action::Synth => Outcome::Synth {
                status: status(503)?,
                reason: reason(1)?,
            },
            Action::Vcl => return Err("return (vcl(...)) is not supported by ringcache".into()),
        })
    }

    fn obj_kind(&self, obj: ObjId) -> R<ObjectKind> {
        self.prog
            .objects
            .get(obj)
            .map(|o| o.kind)
            .ok_or_else(|| format!("unknown object #{obj}"))
    }

    fn args<'a>(&self, args: &'p [Option<Expr>], ctx: &'a Ctx<'_>) -> R<Vec<Option<Value<'a>>>>
    where
        'p: 'a,
    {
        args.iter()
            .map(|a| match a {
                Some(e) => self.eval(e, ctx, 0).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    fn assign(&self, target: &VarRef, op: AssignOp, v: Value<'static>, ctx: &mut Ctx<'_>) -> R<()> {
        let v = if op == AssignOp::Set {
            v
        } else {
            let cur = match vk(target) {
                // `+=` on a body appends below without reading.
                Vk::RespBody | Vk::BerespBody => v,
                _ => {
                    let cur = self.read(target, ctx)?.into_owned();
                    combine(op, cur, v)?
                }
            };
            cur
        };
        let k = vk(target);
        macro_rules! part {
            ($f:ident, $n:literal) => {
                ctx.$f.as_mut().ok_or_else(|| missing($n))?
            };
        }
        match k {
            k if is_string_target(k) => return self.assign_bytes(target, k, to_bytes(v), ctx),
            Vk::ReqBackendHint => part!(req, "req").backend_hint = backend(&v)?,
            Vk::ReqGrace => part!(req, "req").grace = Some(num(&v)?),
            Vk::ReqTtl => part!(req, "req").ttl = Some(num(&v)?),
            Vk::ReqHashAlwaysMiss => part!(req, "req").hash_always_miss = boolean(&v)?,
            Vk::BereqBackend => part!(bereq, "bereq").backend = backend(&v)?,
            Vk::BereqConnectTimeout => part!(bereq, "bereq").connect_timeout = Some(num(&v)?),
            Vk::BereqFirstByteTimeout => part!(bereq, "bereq").first_byte_timeout = Some(num(&v)?),
            Vk::BereqBetweenBytesTimeout => {
                part!(bereq, "bereq").between_bytes_timeout = Some(num(&v)?)
            }
            // As `http_SetStatus`: a new status brings its standard reason phrase.
            Vk::BerespStatus => {
                let b = part!(beresp, "beresp");
                b.status = status_of(&v, "beresp")?;
                b.reason = standard_reason(b.status);
            }
            Vk::BerespTtl => part!(beresp, "beresp").ttl = num(&v)?,
            Vk::BerespGrace => part!(beresp, "beresp").grace = num(&v)?,
            Vk::BerespKeep => part!(beresp, "beresp").keep = num(&v)?,
            Vk::BerespUncacheable => {
                let b = boolean(&v)?;
                let be = part!(beresp, "beresp");
                if be.uncacheable && !b {
                    ctx.log
                        .push("Ignoring attempt to reset beresp.uncacheable".to_string());
                } else {
                    be.uncacheable = b;
                }
            }
            Vk::RespStatus => {
                let r = part!(resp, "resp");
                r.status = status_of(&v, "resp")?;
                r.reason = standard_reason(r.status);
            }
            Vk::RespBody | Vk::BerespBody => {
                if op == AssignOp::Set {
                    ctx.body.clear();
                }
                match v {
                    Value::Blob(b) => ctx.body.extend_from_slice(&b),
                    other => {
                        if let Some(b) = self.to_str(other)? {
                            ctx.body.extend_from_slice(&b);
                        }
                    }
                }
            }
            _ => return Err(format!("cannot set {}", target.var().name)),
        }
        Ok(())
    }

    /// Writes a string variable ([`is_string_target`]).
    fn assign_bytes(&self, target: &VarRef, k: Vk, b: Bytes, ctx: &mut Ctx<'_>) -> R<()> {
        macro_rules! part {
            ($f:ident, $n:literal) => {
                ctx.$f.as_mut().ok_or_else(|| missing($n))?
            };
        }
        let header = || target.header.as_deref().unwrap_or("");
        match k {
            Vk::ReqHttp => set_header(&mut part!(req, "req").headers, header(), b),
            Vk::BereqHttp => set_header(&mut part!(bereq, "bereq").headers, header(), b),
            Vk::BerespHttp => set_header(&mut part!(beresp, "beresp").headers, header(), b),
            Vk::RespHttp => set_header(&mut part!(resp, "resp").headers, header(), b),
            Vk::ReqUrl => part!(req, "req").url = b,
            Vk::ReqMethod => part!(req, "req").method = b,
            Vk::ReqProto => part!(req, "req").proto = b,
            Vk::BereqUrl => part!(bereq, "bereq").url = b,
            Vk::BereqMethod => part!(bereq, "bereq").method = b,
            Vk::BereqProto => part!(bereq, "bereq").proto = b,
            Vk::BerespReason => part!(beresp, "beresp").reason = b,
            Vk::BerespProto => part!(beresp, "beresp").proto = b,
            Vk::RespReason => part!(resp, "resp").reason = b,
            Vk::RespProto => part!(resp, "resp").proto = b,
            _ => return Err(format!("cannot set {}", target.var().name)),
        }
        Ok(())
    }

    fn unset(&self, target: &VarRef, ctx: &mut Ctx<'_>) -> R<()> {
        let name = target.header.as_deref().unwrap_or("");
        match vk(target) {
            Vk::ReqHttp => {
                ctx.req
                    .as_mut()
                    .ok_or_else(|| missing("req"))?
                    .headers
                    .remove(name);
            }
            Vk::BereqHttp => {
                ctx.bereq
                    .as_mut()
                    .ok_or_else(|| missing("bereq"))?
                    .headers
                    .remove(name);
            }
            Vk::BerespHttp => {
                ctx.beresp
                    .as_mut()
                    .ok_or_else(|| missing("beresp"))?
                    .headers
                    .remove(name);
            }
            Vk::RespHttp => {
                ctx.resp
                    .as_mut()
                    .ok_or_else(|| missing("resp"))?
                    .headers
                    .remove(name);
            }
            Vk::BereqBody => {
                if let Some(b) = ctx.bereq.as_mut() {
                    b.body_unset = true;
                }
            }
            Vk::RespBody | Vk::BerespBody => ctx.body.clear(),
            _ => return Err(format!("cannot unset {}", target.var().name)),
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    #[inline(never)]
    fn read<'a>(&self, v: &'a VarRef, ctx: &'a Ctx<'_>) -> R<Value<'a>>
    where
        'p: 'a,
    {
        macro_rules! part {
            ($f:ident, $n:literal) => {
                ctx.$f.as_ref().ok_or_else(|| missing($n))?
            };
        }
        macro_rules! obj {
            () => {
                ctx.obj.as_ref().ok_or_else(|| missing("obj"))?
            };
        }
        let header = || v.header.as_deref().unwrap_or("");
        Ok(match vk(v) {
            Vk::ClientIp => Value::Ip(ctx.conn.client_ip),
            Vk::ServerIp => Value::Ip(ctx.conn.server_ip),
            Vk::RemoteIp => Value::Ip(ctx.conn.remote_ip),
            Vk::LocalIp => Value::Ip(ctx.conn.local_ip),
            Vk::Now => Value::Time(ctx.now),
            Vk::ReqHttp => hdr(&part!(req, "req").headers, header()),
            Vk::ReqUrl => s(&part!(req, "req").url),
            Vk::ReqMethod => s(&part!(req, "req").method),
            Vk::ReqProto => s(&part!(req, "req").proto),
            Vk::ReqBackendHint => Value::Backend(part!(req, "req").backend_hint),
            Vk::ReqEsiLevel => Value::Int(part!(req, "req").esi_level as i64),
            Vk::ReqGrace => Value::Duration(part!(req, "req").grace.unwrap_or(-1.0)),
            Vk::ReqTtl => Value::Duration(part!(req, "req").ttl.unwrap_or(-1.0)),
            Vk::ReqHashAlwaysMiss => Value::Bool(part!(req, "req").hash_always_miss),
            Vk::ReqRestarts => Value::Int(part!(req, "req").restarts as i64),
            Vk::ReqXid => xid_str(part!(req, "req").xid),
            Vk::BereqHttp => hdr(&part!(bereq, "bereq").headers, header()),
            Vk::BereqUrl => s(&part!(bereq, "bereq").url),
            Vk::BereqMethod => s(&part!(bereq, "bereq").method),
            Vk::BereqProto => s(&part!(bereq, "bereq").proto),
            Vk::BereqBackend => Value::Backend(part!(bereq, "bereq").backend),
            Vk::BereqConnectTimeout => {
                Value::Duration(part!(bereq, "bereq").connect_timeout.unwrap_or(3.5))
            }
            Vk::BereqFirstByteTimeout => {
                Value::Duration(part!(bereq, "bereq").first_byte_timeout.unwrap_or(60.0))
            }
            Vk::BereqBetweenBytesTimeout => {
                Value::Duration(part!(bereq, "bereq").between_bytes_timeout.unwrap_or(60.0))
            }
            Vk::BereqIsBgfetch => Value::Bool(part!(bereq, "bereq").is_bgfetch),
            Vk::BereqRetries => Value::Int(part!(bereq, "bereq").retries as i64),
            Vk::BereqUncacheable => Value::Bool(part!(bereq, "bereq").uncacheable),
            Vk::BereqXid => xid_str(part!(bereq, "bereq").xid),
            Vk::BerespHttp => hdr(&part!(beresp, "beresp").headers, header()),
            Vk::BerespStatus => Value::Int(part!(beresp, "beresp").status as i64),
            Vk::BerespReason => s(&part!(beresp, "beresp").reason),
            Vk::BerespProto => s(&part!(beresp, "beresp").proto),
            Vk::BerespTtl => Value::Duration(part!(beresp, "beresp").ttl),
            Vk::BerespGrace => Value::Duration(part!(beresp, "beresp").grace),
            Vk::BerespKeep => Value::Duration(part!(beresp, "beresp").keep),
            Vk::BerespUncacheable => Value::Bool(part!(beresp, "beresp").uncacheable),
            Vk::BerespBackend => Value::Backend(part!(beresp, "beresp").backend),
            Vk::BerespBackendName => {
                let b = part!(beresp, "beresp").backend;
                Value::Str(b.map(|b| Cow::Borrowed(self.backend_name(b).as_bytes())))
            }
            Vk::ObjHttp => hdr(&obj!().obj.headers, header()),
            Vk::ObjStatus => Value::Int(obj!().obj.status as i64),
            Vk::ObjReason => s(&obj!().obj.reason),
            Vk::ObjHits => Value::Int(obj!().hits as i64),
            Vk::ObjTtl => {
                let o = &obj!().obj;
                Value::Duration(o.t_origin + o.ttl - ctx.now)
            }
            Vk::ObjGrace => Value::Duration(obj!().obj.grace),
            Vk::ObjKeep => Value::Duration(obj!().obj.keep),
            Vk::ObjAge => Value::Duration(ctx.now - obj!().obj.t_origin),
            Vk::ObjUncacheable => Value::Bool(obj!().obj.kind != ObjKind::Normal),
            Vk::RespHttp => hdr(&part!(resp, "resp").headers, header()),
            Vk::RespStatus => Value::Int(part!(resp, "resp").status as i64),
            Vk::RespReason => s(&part!(resp, "resp").reason),
            Vk::RespProto => s(&part!(resp, "resp").proto),
            Vk::BereqBody | Vk::BerespBody | Vk::RespBody | Vk::Unsupported => {
                return Err(unsupported_var(v))
            }
        })
    }

    fn backend_name(&self, b: BackendRef) -> &'p str {
        match b {
            BackendRef::Backend(id) => self.prog.backends.get(id).map_or("", |b| &b.name),
            BackendRef::Director(id) => self.prog.objects.get(id).map_or("", |o| &o.name),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Expressions

    /// A BOOL expression. The usual conditions (a regex match, a header's presence, a string
    /// comparison, `!`, `&&`, `||`) are decided here without building [`Value`]s.
    fn cond<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> CR
    where
        'p: 'a,
    {
        if d > MAX_EXPR_DEPTH {
            return Err("expression nested too deeply".into());
        }
        let d = d + 1;
        match &e.kind {
            ExprKind::Bool(b) => Ok(*b),
            ExprKind::RegexMatch {
                subject,
                regex,
                negate,
            } => {
                let m = match self.leaf(subject, ctx) {
                    Ok(b) => regex.is_match(b),
                    Err(NoStr::Unset) => regex.is_match(b""),
                    Err(NoStr::Other) => {
                        let s = self.str_node(subject, ctx, d)?;
                        regex.is_match(s.as_deref().unwrap_or_default())
                    }
                };
                Ok(m != *negate)
            }
            ExprKind::ToBool(x) if x.ty == Type::String => match self.leaf(x, ctx) {
                Ok(_) => Ok(true),
                Err(NoStr::Unset) => Ok(false),
                Err(NoStr::Other) => Ok(self.str_node(x, ctx, d)?.is_some()),
            },
            ExprKind::Not(x) => Ok(!self.cond(x, ctx, d)?),
            ExprKind::And(..) | ExprKind::Or(..) => self.logic(e, ctx, d),
            ExprKind::Cmp { op, lhs, rhs }
                if lhs.ty == Type::String
                    && rhs.ty == Type::String
                    && !matches!(op, CmpOp::Match | CmpOp::NoMatch) =>
            {
                match (self.leaf(lhs, ctx), self.leaf(rhs, ctx)) {
                    (Ok(l), Ok(r)) => Ok(cmp_ord(*op, Some(l.cmp(r)))),
                    // VRT_strcmp: a NULL side compares as "different" (greater).
                    (Err(NoStr::Unset), Ok(_) | Err(NoStr::Unset)) | (Ok(_), Err(NoStr::Unset)) => {
                        Ok(cmp_ord(*op, Some(std::cmp::Ordering::Greater)))
                    }
                    _ => {
                        let l = self.str_ref(lhs, ctx, d)?;
                        let r = self.str_ref(rhs, ctx, d)?;
                        Ok(compare(*op, &Value::Str(l), &Value::Str(r))?)
                    }
                }
            }
            _ => Ok(boolean(&self.eval(e, ctx, d)?)?),
        }
    }

    /// The bytes of a literal, a header field, the URL or the method, borrowed (a small
    /// result, for the conditions); [`NoStr::Other`] for anything else and for failures, which
    /// [`Self::str_node`] handles.
    #[inline]
    fn leaf<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>) -> Result<&'a [u8], NoStr>
    where
        'p: 'a,
    {
        let v = match &e.kind {
            ExprKind::Str(t) => return Ok(t.as_bytes()),
            ExprKind::Var(v) => v,
            _ => return Err(NoStr::Other),
        };
        let h = match vk(v) {
            Vk::ReqHttp => ctx.req.as_ref().map(|r| &r.headers),
            Vk::BereqHttp => ctx.bereq.as_ref().map(|r| &r.headers),
            Vk::BerespHttp => ctx.beresp.as_ref().map(|r| &r.headers),
            Vk::RespHttp => ctx.resp.as_ref().map(|r| &r.headers),
            Vk::ObjHttp => ctx.obj.as_ref().map(|o| &o.obj.headers),
            Vk::ReqUrl => return ctx.req.as_ref().map(|r| &r.url[..]).ok_or(NoStr::Other),
            Vk::ReqMethod => return ctx.req.as_ref().map(|r| &r.method[..]).ok_or(NoStr::Other),
            _ => return Err(NoStr::Other),
        };
        let name = v.header.as_deref().unwrap_or("");
        match field(h.ok_or(NoStr::Other)?, name) {
            Some(b) => Ok(&b[..]),
            None => Err(NoStr::Unset),
        }
    }

    /// A STRING expression (`None`: unset); literals and fields are borrowed.
    #[inline]
    fn str_ref<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> R<Option<Cow<'a, [u8]>>>
    where
        'p: 'a,
    {
        match self.leaf(e, ctx) {
            Ok(b) => Ok(Some(Cow::Borrowed(b))),
            Err(NoStr::Unset) => Ok(None),
            Err(NoStr::Other) => self.str_node(e, ctx, d),
        }
    }

    /// [`Self::str_ref`] of anything but a literal or a variable: the string functions are
    /// run here on borrowed arguments, the rest through [`Self::eval`].
    #[inline(never)]
    fn str_node<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> R<Option<Cow<'a, [u8]>>>
    where
        'p: 'a,
    {
        if d > MAX_EXPR_DEPTH {
            return Err("expression nested too deeply".into());
        }
        let d = d + 1;
        if let ExprKind::Var(v) = &e.kind {
            let val = self.read(v, ctx)?;
            return self.to_str(val);
        }
        if let ExprKind::Call { func, args } = &e.kind {
            let arg = |i: usize| match args.get(i) {
                Some(Some(x)) => self.str_ref(x, ctx, d),
                _ => Ok(None),
            };
            match func.name {
                "regsub" | "regsuball" => {
                    if let Some(Some(Expr {
                        kind: ExprKind::Regex(re),
                        ..
                    })) = args.get(1)
                    {
                        let subject = arg(0)?.unwrap_or(Cow::Borrowed(b""));
                        let sub = arg(2)?.unwrap_or(Cow::Borrowed(b""));
                        let all = func.name == "regsuball";
                        return Ok(Some(regsub(re, subject, &sub, all)));
                    }
                }
                "std.tolower" | "std.toupper" => {
                    let up = func.name == "std.toupper";
                    return Ok(arg(0)?.map(|b| change_case(b, up)));
                }
                _ => {}
            }
        }
        let v = self.eval(e, ctx, d)?;
        self.to_str(v)
    }

    fn eval<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> R<Value<'a>>
    where
        'p: 'a,
    {
        if d > MAX_EXPR_DEPTH {
            return Err("expression nested too deeply".into());
        }
        let d = d + 1;
        // Leaves inline; everything bigger in its own function so that this frame, which
        // recursion stacks up, stays small.
        Ok(match &e.kind {
            ExprKind::Str(t) => Value::Str(Some(Cow::Borrowed(t.as_bytes()))),
            ExprKind::Int(n) => Value::Int(*n),
            ExprKind::Real(x) => Value::Real(*x),
            ExprKind::Duration(x) => Value::Duration(*x),
            ExprKind::Bytes(x) => Value::Bytes(*x),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Blob(b) => Value::Blob(Cow::Borrowed(b)),
            ExprKind::Ip(ip) => Value::Ip(SocketAddr::new(*ip, 0)),
            ExprKind::Enum(s) => Value::Enum(s),
            ExprKind::Var(v) => self.read(v, ctx)?,
            ExprKind::Backend(id) => Value::Backend(Some(BackendRef::Backend(*id))),
            ExprKind::NoBackend => Value::Backend(None),
            ExprKind::Probe(p) => Value::Probe(*p),
            ExprKind::Acl(a) => Value::Acl(*a),
            ExprKind::Object(o) => Value::Object(*o),
            ExprKind::Regex(_) => return Err("a regex is not a value".into()),
            ExprKind::And(..) | ExprKind::Or(..) => Value::Bool(self.logic(e, ctx, d)?),
            ExprKind::Call { func, args } => self.call(func, args, ctx, d)?,
            _ => self.eval_node(e, ctx, d)?,
        })
    }

    /// A chain `a || b || c` (or `&&`) nests to the left; it is walked without recursing
    /// along the chain (quadratic in its length, which is small in practice), evaluating
    /// operands left to right with short-circuit.
    #[inline(never)]
    fn logic<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> CR
    where
        'p: 'a,
    {
        let is_or = matches!(e.kind, ExprKind::Or(..));
        let split = |x: &'a Expr| -> Option<(&'a Expr, &'a Expr)> {
            match &x.kind {
                ExprKind::Or(a, b) if is_or => Some((a, b)),
                ExprKind::And(a, b) if !is_or => Some((a, b)),
                _ => None,
            }
        };
        // The spine's length and its leftmost operand.
        let mut n = 0usize;
        let mut leaf = e;
        while let Some((l, _)) = split(leaf) {
            leaf = l;
            n += 1;
        }
        let decided = |v: bool| v == is_or;
        if decided(self.cond(leaf, ctx, d)?) {
            return Ok(is_or);
        }
        // The right operands, bottom of the spine first.
        for k in (0..n).rev() {
            let mut node = e;
            for _ in 0..k {
                node = split(node).map(|(l, _)| l).unwrap_or(node);
            }
            if let Some((_, r)) = split(node) {
                if decided(self.cond(r, ctx, d)?) {
                    return Ok(is_or);
                }
            }
        }
        Ok(!is_or)
    }

    #[inline(never)]
    fn eval_node<'a>(&self, e: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> R<Value<'a>>
    where
        'p: 'a,
    {
        // One small function per node kind: in unoptimised builds a frame holds the
        // temporaries of every arm, and this one is stacked once per nesting level.
        match &e.kind {
            ExprKind::ToString(x) => self.e_to_string(x, ctx, d),
            ExprKind::ToBool(x) | ExprKind::Not(x) => {
                let negate = matches!(e.kind, ExprKind::Not(_));
                self.e_bool(x, negate, ctx, d)
            }
            ExprKind::IntToReal(x) | ExprKind::Neg(x) => {
                let neg = matches!(e.kind, ExprKind::Neg(_));
                self.e_num(x, neg, ctx, d)
            }
            ExprKind::Concat(parts) => self.e_concat(parts, ctx, d),
            ExprKind::Arith { op, lhs, rhs } => self.e_arith(*op, e.ty, lhs, rhs, ctx, d),
            ExprKind::Cmp { op, lhs, rhs } => self.e_cmp(*op, lhs, rhs, ctx, d),
            ExprKind::RegexMatch {
                subject,
                regex,
                negate,
            } => self.e_regex(subject, regex, *negate, ctx, d),
            ExprKind::AclMatch { ip, acl, negate } => self.e_acl(ip, *acl, *negate, ctx, d),
            ExprKind::Method { obj, method, args } => self.e_method(*obj, method, args, ctx, d),
            ExprKind::TypeMethod { on, method } => self.e_type_method(on, method.name, ctx, d),
            // Leaves, chains and calls are handled by `eval`.
            _ => Err("internal: unexpected expression node".into()),
        }
    }

    #[inline(never)]
    fn e_to_string<'a>(&self, x: &'a Expr, ctx: &'a Ctx<'_>, d: usize) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let v = self.eval(x, ctx, d)?;
        Ok(Value::Str(self.to_str(v)?))
    }

    #[inline(never)]
    fn e_bool<'a>(&self, x: &'a Expr, negate: bool, ctx: &'a Ctx<'_>, d: usize) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let v = self.eval(x, ctx, d)?;
        Ok(Value::Bool(boolean(&v)? != negate))
    }

    #[inline(never)]
    fn e_num<'a>(&self, x: &'a Expr, neg: bool, ctx: &'a Ctx<'_>, d: usize) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let v = self.eval(x, ctx, d)?;
        if !neg {
            return Ok(match v {
                Value::Int(n) => Value::Real(n as f64),
                other => Value::Real(num(&other)?),
            });
        }
        Ok(match v {
            Value::Int(n) => Value::Int(n.wrapping_neg()),
            Value::Real(x) => Value::Real(-x),
            Value::Duration(x) => Value::Duration(-x),
            Value::Bytes(x) => Value::Bytes(-x),
            other => return Err(format!("cannot negate {other:?}")),
        })
    }

    #[inline(never)]
    fn e_concat<'a>(&self, parts: &'a [Expr], ctx: &'a Ctx<'_>, d: usize) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let mut out: Option<Cow<'a, [u8]>> = None;
        for p in parts {
            let v = self.eval(p, ctx, d)?;
            let Some(b) = self.to_str(v)? else { continue };
            out = Some(match out {
                None => b,
                Some(prev) if prev.is_empty() => b,
                Some(prev) if b.is_empty() => prev,
                Some(prev) => {
                    let mut o = prev.into_owned();
                    o.extend_from_slice(&b);
                    Cow::Owned(o)
                }
            });
        }
        Ok(Value::Str(Some(out.unwrap_or(Cow::Borrowed(b"")))))
    }

    #[inline(never)]
    fn e_arith<'a>(
        &self,
        op: ArithOp,
        ty: Type,
        lhs: &'a Expr,
        rhs: &'a Expr,
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let l = self.eval(lhs, ctx, d)?;
        let r = self.eval(rhs, ctx, d)?;
        arith(op, ty, &l, &r)
    }

    #[inline(never)]
    fn e_cmp<'a>(
        &self,
        op: CmpOp,
        lhs: &'a Expr,
        rhs: &'a Expr,
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let l = self.eval(lhs, ctx, d)?;
        let r = self.eval(rhs, ctx, d)?;
        Ok(Value::Bool(compare(op, &l, &r)?))
    }

    #[inline(never)]
    fn e_regex<'a>(
        &self,
        subject: &'a Expr,
        regex: &Regex,
        negate: bool,
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let s = self.str_ref(subject, ctx, d)?;
        Ok(Value::Bool(
            regex.is_match(s.as_deref().unwrap_or_default()) != negate,
        ))
    }

    #[inline(never)]
    fn e_acl<'a>(
        &self,
        ip: &'a Expr,
        acl: usize,
        negate: bool,
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let Value::Ip(addr) = self.eval(ip, ctx, d)? else {
            return Err("ACL match on a non-IP value".into());
        };
        let table = self
            .prog
            .acls
            .get(acl)
            .ok_or_else(|| format!("unknown ACL #{acl}"))?;
        Ok(Value::Bool(table.matches(addr.ip()) != negate))
    }

    #[inline(never)]
    fn e_method<'a>(
        &self,
        obj: ObjId,
        method: &'static Func,
        args: &'a [Option<Expr>],
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let kind = self.obj_kind(obj)?;
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(match a {
                Some(x) => Some(self.eval(x, ctx, d)?),
                None => None,
            });
        }
        ctx.env
            .object_call(obj, kind, method, &vals, &Site::of(self.method, ctx))
    }

    #[inline(never)]
    fn e_type_method<'a>(
        &self,
        on: &'a Expr,
        name: &str,
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let v = self.eval(on, ctx, d)?;
        Ok(match name {
            "resolve" => match v {
                Value::Backend(Some(b)) => {
                    Value::Backend(ctx.env.resolve_at(b, &Site::of(self.method, ctx)))
                }
                Value::Backend(None) => Value::Backend(None),
                other => return Err(format!(".resolve() on {other:?}")),
            },
            "lower" | "upper" => {
                let up = name == "upper";
                Value::Str(self.to_str(v)?.map(|b| change_case(b, up)))
            }
            other => return Err(format!(".{other}() is not supported by ringcache")),
        })
    }

    #[inline(never)]
    fn call<'a>(
        &self,
        func: &'static Func,
        args: &'a [Option<Expr>],
        ctx: &'a Ctx<'_>,
        d: usize,
    ) -> R<Value<'a>>
    where
        'p: 'a,
    {
        let arg = |i: usize| -> R<Option<Value<'a>>> {
            match args.get(i) {
                Some(Some(e)) => self.eval(e, ctx, d).map(Some),
                _ => Ok(None),
            }
        };
        let str_arg = |i: usize| -> R<Option<Cow<'a, [u8]>>> {
            match arg(i)? {
                Some(v) => self.to_str(v),
                None => Ok(None),
            }
        };
        let regex_arg = |i: usize| -> R<&'a Regex> {
            match args.get(i) {
                Some(Some(Expr {
                    kind: ExprKind::Regex(r),
                    ..
                })) => Ok(r),
                _ => Err(format!("{}: expected a regex literal", func.name)),
            }
        };
        Ok(match func.name {
            "regsub" | "regsuball" => {
                let subject = str_arg(0)?.unwrap_or(Cow::Borrowed(b""));
                let re = regex_arg(1)?;
                let sub = str_arg(2)?.unwrap_or(Cow::Borrowed(b""));
                Value::Str(Some(regsub(re, subject, &sub, func.name == "regsuball")))
            }
            "std.tolower" | "std.toupper" => {
                let up = func.name == "std.toupper";
                Value::Str(str_arg(0)?.map(|b| change_case(b, up)))
            }
            "std.ban" => {
                // Checked here for the return value and std.ban_error(); the runtime adds it
                // (or logs why not) when the method returns.
                let verdict = match str_arg(0)? {
                    None => Err("Null argument".to_string()),
                    Some(b) => {
                        let text = String::from_utf8_lossy(&b).into_owned();
                        let v = crate::cache::ban::BanSpec::parse_vcl(&text).map(drop);
                        ctx.bans.borrow_mut().push(Bytes::from(text));
                        v
                    }
                };
                let ok = verdict.is_ok();
                *ctx.ban_error.borrow_mut() = verdict.err();
                Value::Bool(ok)
            }
            "std.ban_error" => Value::Str(Some(Cow::Owned(
                ctx.ban_error
                    .borrow()
                    .clone()
                    .unwrap_or_default()
                    .into_bytes(),
            ))),
            "std.healthy" => match arg(0)? {
                Some(Value::Backend(Some(b))) => Value::Bool(ctx.env.healthy(b, ctx.now)),
                _ => Value::Bool(false),
            },
            "std.port" => match arg(0)? {
                Some(Value::Ip(a)) => Value::Int(a.port() as i64),
                _ => Value::Int(0),
            },
            "std.random" => {
                let lo = num(&arg(0)?.unwrap_or(Value::Real(0.0)))?;
                let hi = num(&arg(1)?.unwrap_or(Value::Real(0.0)))?;
                let u = next_random(&ctx.rng);
                Value::Real(lo + (hi - lo) * u)
            }
            "std.integer" => {
                let fallback = arg(1)?;
                let mut given = Vec::new();
                for i in [0usize, 2, 3, 4, 5, 6] {
                    if let Some(v) = arg(i)? {
                        given.push(v);
                    }
                }
                if given.len() != 1 {
                    return Err(
                        "std.integer: precisely one of s, bool, bytes, duration, real \
                                or time must be given"
                            .into(),
                    );
                }
                let r = match &given[0] {
                    Value::Str(s) => s.as_deref().and_then(parse_int),
                    Value::Bool(b) => Some(*b as i64),
                    Value::Int(n) => Some(*n),
                    Value::Real(x) | Value::Duration(x) | Value::Bytes(x) | Value::Time(x) => {
                        real_to_int(*x)
                    }
                    _ => None,
                };
                match (r, fallback) {
                    (Some(n), _) => Value::Int(n),
                    (None, Some(f)) => f,
                    (None, None) => return Err("std.integer: conversion failed".into()),
                }
            }
            "std.duration" => {
                let fallback = arg(1)?;
                let mut given = Vec::new();
                for i in [0usize, 2, 3] {
                    if let Some(v) = arg(i)? {
                        given.push(v);
                    }
                }
                if given.len() != 1 {
                    return Err("std.duration: precisely one of s, real or integer must be \
                                given"
                        .into());
                }
                let r = match &given[0] {
                    Value::Str(s) => s.as_deref().and_then(parse_duration),
                    Value::Int(n) => Some(*n as f64),
                    Value::Real(x) if x.is_finite() => Some(*x),
                    _ => None,
                };
                match (r, fallback) {
                    (Some(x), _) => Value::Duration(x),
                    (None, Some(f)) => f,
                    (None, None) => return Err("std.duration: conversion failed".into()),
                }
            }
            "std.ip" => {
                let text = str_arg(0)?.unwrap_or_default();
                let fallback = arg(1)?;
                let resolve = matches!(arg(2)?, Some(Value::Bool(true)) | None);
                let port = match str_arg(3)? {
                    Some(p) => std::str::from_utf8(&p)
                        .ok()
                        .and_then(|p| p.trim().parse::<u16>().ok()),
                    None => Some(80),
                };
                let text = std::str::from_utf8(&text).unwrap_or("").trim();
                let parsed = port.and_then(|port| {
                    text.parse::<SocketAddr>()
                        .ok()
                        .or_else(|| {
                            text.parse::<IpAddr>()
                                .ok()
                                .map(|a| SocketAddr::new(a, port))
                        })
                        .or_else(|| {
                            if resolve && !text.is_empty() {
                                ctx.env.resolve_ip(text, port)
                            } else {
                                None
                            }
                        })
                });
                match (parsed, fallback) {
                    (Some(a), _) => Value::Ip(a),
                    (None, Some(f)) => f,
                    (None, None) => return Err(format!("std.ip: cannot convert \"{text}\"")),
                }
            }
            "std.log" | "std.collect" => {
                // Reached only inside an expression (never: they are VOID); statements handle
                // them with their effect.
                Value::Void
            }
            other => return Err(format!("{other}() is not supported by ringcache")),
        })
    }

    /// The string form of a value (`None`: unset).
    fn to_str<'a>(&self, v: Value<'a>) -> R<Option<Cow<'a, [u8]>>>
    where
        'p: 'a,
    {
        let owned = |s: String| Ok(Some(Cow::Owned(s.into_bytes())));
        match v {
            Value::Str(s) => Ok(s),
            Value::Int(n) => owned(n.to_string()),
            Value::Real(x) | Value::Duration(x) => owned(format!("{x:.3}")),
            Value::Bytes(x) => owned(format!("{x:.0}")),
            Value::Time(t) => owned(http_date(t)),
            Value::Bool(b) => Ok(Some(Cow::Borrowed(if b { b"true" } else { b"false" }))),
            Value::Ip(a) => owned(a.ip().to_string()),
            Value::Backend(None) => Ok(None),
            Value::Backend(Some(b)) => Ok(Some(Cow::Borrowed(self.backend_name(b).as_bytes()))),
            Value::Enum(e) => Ok(Some(Cow::Borrowed(e.as_bytes()))),
            Value::Blob(_) => Err("cannot convert a BLOB to STRING".into()),
            Value::Object(o) => Ok(Some(Cow::Borrowed(
                self.prog.objects.get(o).map_or("", |o| &o.name).as_bytes(),
            ))),
            Value::Acl(_) | Value::Probe(_) | Value::Void => {
                Err(format!("cannot convert {v:?} to STRING"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn to_bytes(v: Value<'static>) -> Bytes {
    match v {
        Value::Str(Some(Cow::Owned(b))) => Bytes::from(b),
        Value::Str(Some(Cow::Borrowed(b))) => Bytes::from_static(b),
        Value::Str(None) => Bytes::new(),
        // The checker converts everything else with ToString; keep a readable fallback.
        other => Bytes::from(format!("{other:?}")),
    }
}

fn boolean(v: &Value<'_>) -> R<bool> {
    Ok(match v {
        Value::Bool(b) => *b,
        Value::Str(s) => s.is_some(),
        Value::Int(n) => *n != 0,
        Value::Duration(x) => *x > 0.0,
        Value::Real(x) | Value::Bytes(x) => *x != 0.0,
        Value::Backend(b) => b.is_some(),
        other => return Err(format!("cannot use {other:?} as BOOL")),
    })
}

fn num(v: &Value<'_>) -> R<f64> {
    Ok(match v {
        Value::Int(n) => *n as f64,
        Value::Real(x) | Value::Duration(x) | Value::Bytes(x) | Value::Time(x) => *x,
        other => return Err(format!("expected a number, got {other:?}")),
    })
}

fn backend(v: &Value<'_>) -> R<Option<BackendRef>> {
    match v {
        Value::Backend(b) => Ok(*b),
        other => Err(format!("expected a BACKEND, got {other:?}")),
    }
}

fn status_of(v: &Value<'_>, what: &str) -> R<u16> {
    match v {
        Value::Int(n) if (0..=65535).contains(n) => Ok(*n as u16),
        Value::Int(n) => Err(format!("{what}.status ({n}) is out of range")),
        other => Err(format!("{what}.status: expected an INT, got {other:?}")),
    }
}

fn with_type(ty: Type, x: f64) -> Value<'static> {
    match ty {
        Type::Duration => Value::Duration(x),
        Type::Bytes => Value::Bytes(x),
        Type::Time => Value::Time(x),
        _ => Value::Real(x),
    }
}

fn arith(op: ArithOp, ty: Type, l: &Value<'_>, r: &Value<'_>) -> R<Value<'static>> {
    if let (Value::Int(a), Value::Int(b)) = (l, r) {
        if ty == Type::Int || matches!(ty, Type::String | Type::Strands) {
            return Ok(Value::Int(match op {
                ArithOp::Add => a.wrapping_add(*b),
                ArithOp::Sub => a.wrapping_sub(*b),
                ArithOp::Mul => a.wrapping_mul(*b),
                ArithOp::Div | ArithOp::Rem if *b == 0 => return Err("INT division by zero".into()),
                ArithOp::Div => a.wrapping_div(*b),
                ArithOp::Rem => a.wrapping_rem(*b),
            }));
        }
    }
    let (a, b) = (num(l)?, num(r)?);
    let x = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div if b == 0.0 => return Err(format!("{} division by zero", ty.name())),
        ArithOp::Div => a / b,
        ArithOp::Rem if b == 0.0 => return Err(format!("{} division by zero", ty.name())),
        ArithOp::Rem => a % b,
    };
    if !x.is_finite() {
        return Err(format!("{} overflow", ty.name()));
    }
    // The left operand's type decides for `*`/`/`; `+`/`-` from the checker's type.
    let ty = match (op, l) {
        (ArithOp::Mul | ArithOp::Div, Value::Duration(_)) => Type::Duration,
        (ArithOp::Mul | ArithOp::Div, Value::Bytes(_)) => Type::Bytes,
        _ => ty,
    };
    if ty == Type::Int {
        return Ok(Value::Int(x as i64));
    }
    Ok(with_type(ty, x))
}

/// `set x op= v`: the value `x op v`.
fn combine(op: AssignOp, cur: Value<'static>, v: Value<'static>) -> R<Value<'static>> {
    let aop = match op {
        AssignOp::Set => return Ok(v),
        AssignOp::Add => ArithOp::Add,
        AssignOp::Sub => ArithOp::Sub,
        AssignOp::Mul => ArithOp::Mul,
        AssignOp::Div => ArithOp::Div,
    };
    match (&cur, aop) {
        (Value::Str(c), ArithOp::Add) => {
            let mut o = c.as_deref().unwrap_or_default().to_vec();
            if let Value::Str(Some(b)) = &v {
                o.extend_from_slice(b);
            }
            Ok(Value::Str(Some(Cow::Owned(o))))
        }
        (Value::Int(_), _) => arith(aop, Type::Int, &cur, &v),
        (Value::Duration(_), _) => arith(aop, Type::Duration, &cur, &v),
        (Value::Time(_), _) => arith(aop, Type::Time, &cur, &v),
        (Value::Real(_), _) => arith(aop, Type::Real, &cur, &v),
        (Value::Bytes(_), _) => arith(aop, Type::Bytes, &cur, &v),
        _ => Err(format!("operator not possible on {cur:?}")),
    }
}

fn compare(op: CmpOp, l: &Value<'_>, r: &Value<'_>) -> R<bool> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Value::Str(a), Value::Str(b)) => match (a, b) {
            // VRT_strcmp: a NULL side compares as "different" (1).
            (Some(a), Some(b)) => Some(a[..].cmp(&b[..])),
            _ => Some(Ordering::Greater),
        },
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Backend(a), Value::Backend(b)) => {
            if a == b {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
        (Value::Ip(a), Value::Ip(b)) => {
            if canon(a.ip()) == canon(b.ip()) {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
        (Value::Enum(a), Value::Enum(b)) => Some(a.cmp(b)),
        (Value::Acl(a), Value::Acl(b))
        | (Value::Probe(a), Value::Probe(b))
        | (Value::Object(a), Value::Object(b)) => {
            if a == b {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
        _ => {
            let (a, b) = (num(l)?, num(r)?);
            a.partial_cmp(&b)
        }
    };
    if matches!(op, CmpOp::Match | CmpOp::NoMatch) {
        return Err(format!("operator {} needs a regex or an ACL", op.token()));
    }
    Ok(cmp_ord(op, ord))
}

/// A comparison operator (not `~`/`!~`) applied to an ordering (`None`: unordered).
fn cmp_ord(op: CmpOp, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering;
    match op {
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::Match | CmpOp::NoMatch => false,
    }
}

fn canon(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `std.toupper`/`std.tolower`: a string already in that case is returned as is (no copy).
fn change_case(b: Cow<'_, [u8]>, up: bool) -> Cow<'_, [u8]> {
    let has = if up { lower_bytes } else { upper_bytes };
    if !any_word(&b, has) {
        return b;
    }
    let mut o = b.into_owned();
    if up {
        o.make_ascii_uppercase();
    } else {
        o.make_ascii_lowercase();
    }
    Cow::Owned(o)
}

/// Varnish's `regsub`/`regsuball`: `\0`..`\9` insert a group (empty when it did not take part),
/// `\` before any other character makes it literal, a trailing `\` is kept. Without a match the
/// subject is returned as is (no copy).
fn regsub<'a>(re: &Regex, subject: Cow<'a, [u8]>, sub: &[u8], all: bool) -> Cow<'a, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut last = 0;
    // References to groups 1..9 need the (slower) capturing engine; otherwise only the match
    // bounds are needed, which the fast matcher or the regex crate's DFA find.
    if refs_groups(sub) {
        for caps in re.regex().captures_iter(&subject) {
            let Some(m) = caps.get(0) else { break };
            let o = out.get_or_insert_with(|| Vec::with_capacity(subject.len() + sub.len()));
            o.extend_from_slice(&subject[last..m.start()]);
            expand_sub(o, sub, |n| caps.get(n).map(|g| g.as_bytes()));
            last = m.end();
            if !all {
                break;
            }
        }
    } else {
        if sub.is_empty() {
            // Deleting a match at either end leaves a slice of the subject (`:[0-9]+$` on a
            // Host): no copy. A first match that ends the subject is also the last one.
            let mut first = None;
            re.each_match(&subject, false, |start, end| first = Some((start, end)));
            let n = subject.len();
            match first {
                None => return subject,
                Some((start, end)) if end == n => return cow_slice(subject, 0..start),
                Some((0, end)) if !all => return cow_slice(subject, end..n),
                Some(_) => {}
            }
        }
        re.each_match(&subject, all, |start, end| {
            let o = out.get_or_insert_with(|| Vec::with_capacity(subject.len() + sub.len()));
            o.extend_from_slice(&subject[last..start]);
            let m = &subject[start..end];
            expand_sub(o, sub, |n| (n == 0).then_some(m));
            last = end;
        });
    }
    match out {
        None => subject,
        Some(mut o) => {
            o.extend_from_slice(&subject[last..]);
            Cow::Owned(o)
        }
    }
}

/// A part of a string, borrowed if the string was.
fn cow_slice(c: Cow<'_, [u8]>, r: std::ops::Range<usize>) -> Cow<'_, [u8]> {
    match c {
        Cow::Borrowed(b) => Cow::Borrowed(&b[r]),
        Cow::Owned(mut v) => {
            v.truncate(r.end);
            v.drain(..r.start);
            Cow::Owned(v)
        }
    }
}

/// Whether a replacement refers to a group other than `\0` (as [`expand_sub`] reads it).
fn refs_groups(sub: &[u8]) -> bool {
    let mut i = 0;
    while i + 1 < sub.len() {
        if sub[i] == b'\\' {
            if matches!(sub[i + 1], b'1'..=b'9') {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Appends the replacement text: `\0`..`\9` insert `group(n)` (nothing when it did not take
/// part), `\` before any other character makes it literal, a trailing `\` is kept.
fn expand_sub<'g>(o: &mut Vec<u8>, sub: &[u8], group: impl Fn(usize) -> Option<&'g [u8]>) {
    let mut i = 0;
    while i < sub.len() {
        let c = sub[i];
        if c == b'\\' && i + 1 < sub.len() {
            let n = sub[i + 1];
            if n.is_ascii_digit() {
                if let Some(g) = group((n - b'0') as usize) {
                    o.extend_from_slice(g);
                }
            } else {
                o.push(n);
            }
            i += 2;
        } else {
            o.push(c);
            i += 1;
        }
    }
}

/// An integer as `std.integer` reads it: optional blanks and sign, decimal digits only.
fn parse_int(b: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(b).ok()?.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse::<i64>().ok()
}

fn real_to_int(x: f64) -> Option<i64> {
    if x.is_finite() && x > -9.2e18 && x < 9.2e18 {
        Some(x.floor() as i64)
    } else {
        None
    }
}

/// A duration as `std.duration` reads it: a number and a unit (`ms s m h d w y`).
fn parse_duration(b: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(b).ok()?.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().ok()?;
    let mul = crate::vcl::ast::duration_unit_scale(unit.trim())?;
    let x = n * mul;
    x.is_finite().then_some(x)
}

fn http_date(t: f64) -> String {
    let secs = if t.is_finite() && t > 0.0 {
        t.min(253_402_300_799.0)
    } else {
        0.0
    };
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs))
}

/// xorshift64*: a uniform value in [0, 1).
fn next_random(state: &Cell<u64>) -> f64 {
    let mut x = state.get();
    if x == 0 {
        x = 0x9E37_79B9_7F4A_7C15;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.set(x);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (r >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
