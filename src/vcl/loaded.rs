//! A compiled VCL made ready to serve: what the control plane hands to every shard.
//!
//! Why a separate step after compiling: the [`Program`] says what the operator wrote; serving
//! needs a few more facts decided once, off the data plane. Each backend gets its address, its
//! `Host` text as bytes and its health slot; `vcl_init` runs (recording the directors it
//! builds); and the program is scanned for what the hot path can skip: when `vcl_deliver` never
//! touches `resp.*` or `obj.*`, a hit is written from the object's pre-built head without
//! materialising a response context. Shards only read a `LoadedVcl` (behind an `Arc`); what
//! they write while serving are atomics: per-backend connection counts and a sticky fallback's
//! current member.
//!
//! `-b HOST:PORT` is not a special case: it is [`LoadedVcl::for_backend`], a generated VCL with
//! one backend, compiled like any file, so the built-in VCL decides everything in both modes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use bytes::Bytes;

use super::check::{compile, compile_file, CompileOptions};
use super::diag::{Diagnostic, FileId, SourceMap};
use super::exec::{self, BackendRef, Ctx, Env, Outcome, Site, Value};
use super::program::{
    self, BackendDef, BackendId, Expr, ExprKind, Method, ObjId, ObjectKind, Program, Stmt, VarRef,
};
use super::symbols::{Func, Sub};
use crate::backend::conn::{self, Dest, Endpoint};
use crate::cli::Backend;
use crate::director::{self, shard};

/// A backend as the data plane uses it.
#[derive(Debug)]
pub struct BackendRt {
    pub name: Box<str>,
    /// Where its connections go and what they send first (`None`: `backend x none;`, every
    /// fetch fails with a 503). A `.via` backend's endpoint is its proxy's, with a PROXY v2
    /// preamble naming this backend's address and authority.
    pub endpoint: Option<Endpoint>,
    /// `Host` of backend requests that carry none (`.host_header`, default the `.host` text).
    pub host_header: Bytes,
    /// Seconds; `None`: the parameter. A `.via` backend inherits its proxy's when unset.
    pub connect_timeout: Option<f64>,
    pub first_byte_timeout: Option<f64>,
    pub between_bytes_timeout: Option<f64>,
    /// `.proxy_header`: 0, or the PROXY version sent on each fetch's own connection.
    pub proxy_header: u8,
    /// `.max_connections` (0: unlimited), counted across all shards in `in_use`.
    pub max_connections: u32,
    /// `.wait_limit` / `.wait_timeout`; `None`: the parameters.
    pub wait_limit: Option<u32>,
    pub wait_timeout: Option<f64>,
    /// Fetches in flight to this backend on all shards, from the moment one is chosen until its
    /// connection is released: what `.max_connections` limits and `least_connections` compares.
    pub in_use: AtomicU32,
    /// Fetches of all shards waiting for a connection under `.max_connections`.
    pub waiting: AtomicU32,
    /// Health before any probe has run: a backend with a probe starts healthy only when the
    /// probe's `.initial` reaches its `.threshold` (Varnish's `vbp_insert`); without a probe
    /// it is always healthy.
    pub initially_healthy: bool,
    /// Its health slot on the board (`health::slots`): the control plane assigns it when the
    /// VCL is loaded; before that, the backend's index.
    pub slot: usize,
}

impl BackendRt {
    /// The TCP address of a plain TCP backend (none for `.path`, `.via` and `none`).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self.endpoint.as_ref()? {
            Endpoint {
                dest: Dest::Tcp(a),
                preamble: None,
            } => Some(*a),
            _ => None,
        }
    }
}

/// A director built in `vcl_init`: what its kind needs to pick (`crate::director`). Fixed
/// when `vcl_init` ends and shared by every shard; the only state written afterwards is a
/// sticky fallback's current member (an atomic, written when it changes). Round-robin and
/// least-connections cursors are per shard (`server::env::Running`).
#[derive(Debug, Default)]
pub struct DirectorRt {
    pub kind: Option<ObjectKind>,
    /// In the order added (shard: the ring's backends in Varnish's host order).
    pub members: Vec<BackendRef>,
    /// One per member for random and hash; empty (weight 1) for the other kinds.
    pub weights: Vec<f64>,
    /// `fallback(sticky = true)`.
    pub sticky: bool,
    /// A sticky fallback's current member (index into `members`).
    pub current: AtomicU32,
    /// The shard director's ring and settings.
    pub shard: Option<Box<shard::Shard<BackendRef>>>,
}

/// How a shard director's `.backend()` call resolves (its arguments checked as Varnish's
/// `shard_param_args` does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShardCall {
    /// `resolve=LAZY` without other arguments: the director itself, resolved at fetch time
    /// with the defaults (`by=HASH`).
    Lazy,
    /// Pick now.
    Now { by: ShardBy, params: shard::Params },
}

/// Where a shard lookup's key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardBy {
    /// The request digest on the backend side, else the URL (Varnish's fall-through).
    Hash,
    Url,
    /// `by=KEY` or `by=BLOB`: given.
    Key(u32),
}

impl ShardBy {
    /// The key at `site`: `by=HASH` reads the hash inputs in backend subs (Varnish's
    /// `bo->digest`) when ringcache has them, otherwise, like `by=URL`, hashes the URL.
    pub fn key(self, site: &Site<'_>) -> u32 {
        let url = || director::hash32(&[site.url.unwrap_or_default()]);
        match self {
            ShardBy::Key(k) => k,
            ShardBy::Url => url(),
            ShardBy::Hash => match site.hash {
                Some(h) if is_backend_side(site.sub) => director::digest_key(h),
                _ => url(),
            },
        }
    }
}

/// The subs that run on the backend side (Varnish's `VCL_MET_TASK_B`, plus pipe for shard
/// parameters).
fn is_backend_side(m: Method) -> bool {
    matches!(
        m,
        Method::BackendFetch | Method::BackendResponse | Method::BackendError | Method::Pipe
    )
}

/// Checks the arguments of `shard.backend(by, key, key_blob, alt, warmup, rampup, healthy,
/// param, resolve)` (positions as declared in `symbols.rs`, defaults filled by the checker)
/// called in `sub` of director `name`. Errors carry Varnish's texts.
pub fn shard_call(
    name: &str,
    args: &[Option<Value<'_>>],
    sub: Method,
) -> Result<ShardCall, String> {
    let fail = |m: String| format!("vmod_directors: shard {name}: {m}");
    let arg = |i: usize| args.get(i).and_then(Option::as_ref);
    let by = match arg(0) {
        Some(Value::Enum(e)) => *e,
        _ => "HASH",
    };
    let key = match arg(1) {
        Some(Value::Int(k)) => Some(*k),
        _ => None,
    };
    let blob = match arg(2) {
        Some(Value::Blob(b)) => Some(&b[..]),
        _ => None,
    };
    let alt = match arg(3) {
        Some(Value::Int(a)) => *a,
        _ => 0,
    };
    let warmup = match arg(4) {
        Some(Value::Real(w)) => *w,
        Some(Value::Int(w)) => *w as f64,
        _ => -1.0,
    };
    let rampup = !matches!(arg(5), Some(Value::Bool(false)));
    let healthy = match arg(6) {
        Some(Value::Enum(h)) => shard::HealthMode::from_enum(h).unwrap_or_default(),
        _ => shard::HealthMode::Chosen,
    };
    if arg(7).is_some() {
        return Err(fail(
            "shard_param objects are not supported by ringcache".into(),
        ));
    }
    let lazy_asked = match arg(8) {
        Some(Value::Enum("LAZY")) => Some(true),
        Some(Value::Enum(_)) => Some(false),
        _ => None,
    };
    let in_init = matches!(sub, Method::Init | Method::Fini);
    let lazy = lazy_asked.unwrap_or(in_init);
    let only_defaults = by == "HASH"
        && key.is_none()
        && blob.is_none()
        && alt == 0
        && warmup == -1.0
        && rampup
        && healthy == shard::HealthMode::Chosen;
    if lazy && only_defaults {
        return Ok(ShardCall::Lazy);
    }
    if lazy && !is_backend_side(sub) {
        return Err(fail(
            ".backend(resolve=LAZY) with other parameters can only be used in backend/pipe \
             context"
                .into(),
        ));
    }
    if !lazy && in_init {
        return Err(fail(
            ".backend(resolve=NOW) cannot be used in vcl_init{}/vcl_fini{}".into(),
        ));
    }
    let func = "shard.backend()";
    let by = match by {
        "KEY" => match key {
            None => return Err(fail(format!("{func} missing key argument with by=KEY"))),
            Some(k) => match u32::try_from(k) {
                Ok(k) => ShardBy::Key(k),
                Err(_) => return Err(fail(format!("{func} invalid key argument {k} with by=KEY"))),
            },
        },
        "BLOB" => match blob {
            None => {
                return Err(fail(format!(
                    "{func} missing key_blob argument with by=BLOB"
                )))
            }
            Some(b) => ShardBy::Key(shard::blob_key(b)),
        },
        other => {
            if key.is_some() || blob.is_some() {
                return Err(fail(format!(
                    "{func} key and key_blob arguments are invalid with by={other}"
                )));
            }
            if other == "URL" {
                ShardBy::Url
            } else {
                ShardBy::Hash
            }
        }
    };
    let Ok(alt) = u32::try_from(alt) else {
        return Err(fail(format!("{func} invalid alt argument {alt}")));
    };
    if (warmup < 0.0 && warmup != -1.0) || warmup > 1.0 || warmup.is_nan() {
        return Err(fail(format!("{func} invalid warmup argument {warmup:.6}")));
    }
    Ok(ShardCall::Now {
        by,
        params: shard::Params {
            key: 0,
            alt,
            warmup,
            rampup,
            healthy,
        },
    })
}

/// The bytes of a STRANDS argument (an unset string is empty).
pub fn strands_arg<'v>(args: &'v [Option<Value<'_>>], i: usize) -> &'v [u8] {
    args.get(i)
        .and_then(Option::as_ref)
        .and_then(Value::as_bytes)
        .unwrap_or_default()
}

/// What the hot path may skip, decided by scanning the program once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `vcl_deliver` (with the subs it calls) reads or writes `resp.*`: build a response
    /// context from the object; otherwise write the object's pre-built head.
    pub deliver_uses_resp: bool,
    /// `vcl_deliver` reads `obj.*`.
    pub deliver_uses_obj: bool,
    /// Some client-side sub reads `req.http.X-Forwarded-For`: append the client address before
    /// `vcl_recv` (Varnish's order) instead of when the backend request is built.
    pub client_reads_xff: bool,
}

/// A VCL ready to serve.
#[derive(Debug)]
pub struct LoadedVcl {
    pub program: Program,
    /// The source files as compiled, `(name, text)`: the main file first, then includes, then
    /// the built-in VCL (`vcl.show`).
    pub sources: Vec<(String, String)>,
    pub backends: Vec<BackendRt>,
    pub directors: Vec<DirectorRt>,
    /// Some director is a shard director (a cache fetch then keeps the hash inputs for
    /// `by=HASH`).
    pub has_shard: bool,
    pub features: Features,
}

/// A VCL that could not be loaded: the rendered diagnostics (`FILE:LINE:COL: message`, the
/// source line and a caret), or a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl LoadedVcl {
    /// Compiles `path` and prepares it. `Ok` carries the rendered warnings (possibly empty).
    pub fn from_file(path: &Path) -> Result<(LoadedVcl, String), LoadError> {
        let (map, r) = compile_file(path, &CompileOptions::default());
        Self::finish(map, r)
    }

    /// Compiles VCL text given inline (`vcl.inline`), named `name` in messages. An `include`
    /// is resolved from the current directory.
    pub fn from_text(name: &str, text: &str) -> Result<(LoadedVcl, String), LoadError> {
        let (mut map, parsed) = super::parser::parse_str(name, text);
        let r = parsed.and_then(|vcl| {
            compile(&mut map, &vcl, &CompileOptions::default()).map(|mut p| {
                let w = std::mem::take(&mut p.warnings);
                (p, w)
            })
        });
        Self::finish(map, r)
    }

    fn finish(
        map: SourceMap,
        r: Result<(Program, Vec<Diagnostic>), Vec<Diagnostic>>,
    ) -> Result<(LoadedVcl, String), LoadError> {
        match r {
            Ok((program, warnings)) => {
                let w = if warnings.is_empty() {
                    String::new()
                } else {
                    map.render_all(&warnings)
                };
                let mut v = Self::prepare(program)?;
                v.sources = sources_of(&map);
                Ok((v, w))
            }
            Err(diags) => Err(LoadError(map.render_all(&diags))),
        }
    }

    /// The VCL `-b` stands for: one backend named `default` and the built-in VCL.
    pub fn for_backend(b: &Backend) -> Result<LoadedVcl, LoadError> {
        let text = generated_vcl(b);
        let (mut map, parsed) = super::parser::parse_str("<-b>", &text);
        let r = parsed.and_then(|vcl| compile(&mut map, &vcl, &CompileOptions::default()));
        match r {
            Ok(program) => {
                let mut v = Self::prepare(program)?;
                v.sources = sources_of(&map);
                Ok(v)
            }
            Err(diags) => Err(LoadError(map.render_all(&diags))),
        }
    }

    /// Resolves backends, runs `vcl_init`, scans features.
    pub fn prepare(program: Program) -> Result<LoadedVcl, LoadError> {
        let backends = program
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| backend_rt(&program, i, b))
            .collect();
        let directors = run_init(&program)?;
        let features = Features {
            deliver_uses_resp: uses(&program, &[Method::Deliver], |v| {
                v.var().name.starts_with("resp.")
            }),
            deliver_uses_obj: uses(&program, &[Method::Deliver], |v| {
                v.var().name.starts_with("obj.")
            }),
            client_reads_xff: uses(
                &program,
                &[
                    Method::Recv,
                    Method::Hash,
                    Method::Hit,
                    Method::Miss,
                    Method::Pass,
                    Method::Pipe,
                    Method::Purge,
                    Method::Deliver,
                    Method::Synth,
                ],
                |v| v.var().name == "req.http." && v.header.as_deref() == Some("x-forwarded-for"),
            ),
        };
        let has_shard = directors.iter().any(|d| d.shard.is_some());
        Ok(LoadedVcl {
            program,
            sources: Vec::new(),
            backends,
            directors,
            has_shard,
            features,
        })
    }

    /// Is `be` healthy, given each health slot's state? A backend by its slot; a director when
    /// any member is (Varnish's `vdir_any_healthy`), except a hash director, which has no
    /// health of its own in Varnish and counts as healthy. Nesting deeper than
    /// [`director::MAX_DEPTH`] counts as sick.
    pub fn healthy_with(&self, be: BackendRef, slot_healthy: &impl Fn(usize) -> bool) -> bool {
        self.healthy_at(be, slot_healthy, 0)
    }

    fn healthy_at(
        &self,
        be: BackendRef,
        slot_healthy: &impl Fn(usize) -> bool,
        depth: usize,
    ) -> bool {
        match be {
            BackendRef::Backend(id) => self.backends.get(id).is_some_and(|b| slot_healthy(b.slot)),
            BackendRef::Director(_) if depth >= director::MAX_DEPTH => false,
            BackendRef::Director(obj) => match self.directors.get(obj) {
                None => false,
                Some(d) if d.kind == Some(ObjectKind::Hash) => true,
                Some(d) => d
                    .members
                    .iter()
                    .any(|m| self.healthy_at(*m, slot_healthy, depth + 1)),
            },
        }
    }

    /// The backend `default` requests go to when VCL sets none (the first declared).
    pub fn default_backend(&self) -> Option<BackendRef> {
        self.program.default_backend.map(BackendRef::Backend)
    }
}

/// Every file of `map`, in the order they were read.
/// The runtime form of backend `i`: endpoint (with `.via` and `.preamble`), inherited
/// timeouts, limits.
fn backend_rt(program: &Program, i: usize, b: &BackendDef) -> BackendRt {
    let tcp = |e: &program::Endpoint| match e {
        program::Endpoint::Tcp { ipv4, ipv6 } => ipv4.or(*ipv6),
        _ => None,
    };
    let dest = |e: &program::Endpoint| match e {
        program::Endpoint::Tcp { .. } => tcp(e).map(Dest::Tcp),
        program::Endpoint::Uds(p) => Some(Dest::Uds(Arc::from(p.as_path()))),
        program::Endpoint::None => None,
    };
    let via = b.via.and_then(|v| program.backends.get(v));
    let endpoint = match via {
        Some(proxy) => dest(&proxy.endpoint).and_then(|d| {
            let to = tcp(&b.endpoint)?;
            Some(Endpoint {
                dest: d,
                preamble: Some(conn::via_preamble(to, b.authority.as_deref())),
            })
        }),
        None => dest(&b.endpoint).map(|d| Endpoint {
            dest: d,
            preamble: b.preamble.as_deref().map(Bytes::copy_from_slice),
        }),
    };
    let inherit = |own: Option<f64>, f: fn(&BackendDef) -> Option<f64>| own.or(via.and_then(f));
    BackendRt {
        name: b.name.clone(),
        endpoint,
        host_header: Bytes::copy_from_slice(b.host_header.as_bytes()),
        connect_timeout: inherit(b.connect_timeout, |p| p.connect_timeout),
        first_byte_timeout: inherit(b.first_byte_timeout, |p| p.first_byte_timeout),
        between_bytes_timeout: inherit(b.between_bytes_timeout, |p| p.between_bytes_timeout),
        proxy_header: b.proxy_header,
        max_connections: b.max_connections,
        wait_limit: b.wait_limit,
        wait_timeout: b.wait_timeout,
        in_use: AtomicU32::new(0),
        waiting: AtomicU32::new(0),
        initially_healthy: b
            .probe
            .and_then(|p| program.probes.get(p))
            .is_none_or(|p| p.initial >= p.threshold),
        slot: i,
    }
}

fn sources_of(map: &SourceMap) -> Vec<(String, String)> {
    (0..map.len())
        .filter_map(|i| map.file(FileId(i as u32)))
        .map(|f| (f.name.clone(), f.text.clone()))
        .collect()
}

/// The text of the `-b` VCL.
fn generated_vcl(b: &Backend) -> String {
    let esc = |s: &str| s.replace(['"', '\n', '\r'], "");
    format!(
        "vcl 4.1;\n\nbackend default {{\n    .host = \"{}\";\n    .port = \"{}\";\n    \
         .host_header = \"{}\";\n}}\n",
        b.addr.ip(),
        b.addr.port(),
        esc(&b.host_header)
    )
}

/// The `Env` of `vcl_init`: records `new` and the configuration methods so shards can
/// resolve directors.
struct InitEnv<'p> {
    program: &'p Program,
    directors: RefCell<Vec<DirectorRt>>,
}

impl InitEnv<'_> {
    fn name(&self, be: BackendRef) -> &str {
        match be {
            BackendRef::Backend(id) => self.program.backends.get(id).map_or("", |b| &b.name),
            BackendRef::Director(o) => self.program.objects.get(o).map_or("", |o| &o.name),
        }
    }

    fn obj_name(&self, obj: ObjId) -> &str {
        self.program.objects.get(obj).map_or("", |o| &o.name)
    }
}

/// A BACKEND argument: `Ok(None)` when absent, `Err` for the `none` backend.
fn backend_arg(args: &[Option<Value<'_>>], i: usize) -> Result<Option<BackendRef>, ()> {
    match args.get(i).and_then(Option::as_ref) {
        Some(Value::Backend(Some(b))) => Ok(Some(*b)),
        Some(Value::Backend(None)) => Err(()),
        _ => Ok(None),
    }
}

/// A REAL (or INT) argument.
fn real_arg(args: &[Option<Value<'_>>], i: usize) -> Option<f64> {
    match args.get(i).and_then(Option::as_ref) {
        Some(Value::Real(r)) | Some(Value::Duration(r)) => Some(*r),
        Some(Value::Int(n)) => Some(*n as f64),
        _ => None,
    }
}

impl Env for InitEnv<'_> {
    fn new_object(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        args: &[Option<Value<'_>>],
    ) -> Result<(), String> {
        let mut d = self.directors.borrow_mut();
        if d.len() <= obj {
            d.resize_with(obj + 1, DirectorRt::default);
        }
        let new = &mut d[obj];
        new.kind = Some(kind);
        new.sticky = matches!(args.first(), Some(Some(Value::Bool(true))));
        if kind == ObjectKind::Shard {
            new.shard = Some(Box::default());
        }
        Ok(())
    }

    fn object_method(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        method: &'static Func,
        args: &[Option<Value<'_>>],
    ) -> Result<Value<'static>, String> {
        let short = method.name.rsplit('.').next().unwrap_or(method.name);
        let name = self.obj_name(obj);
        let mut all = self.directors.borrow_mut();
        if all.len() <= obj {
            all.resize_with(obj + 1, DirectorRt::default);
        }
        let d = &mut all[obj];
        if let Some(sh) = d.shard.as_deref_mut() {
            let r = shard_init_method(sh, short, args, |b| self.name(b))
                .map_err(|m| format!("vmod_directors: shard {name}: {m}"));
            d.members = sh.backends().iter().map(|b| b.member).collect();
            return match r {
                Ok(Some(v)) => Ok(v),
                Ok(None) => match shard_call(name, args, Method::Init)? {
                    ShardCall::Lazy => Ok(Value::Backend(Some(BackendRef::Director(obj)))),
                    // shard_call refuses NOW in vcl_init.
                    ShardCall::Now { .. } => Ok(Value::Backend(None)),
                },
                Err(e) => Err(e),
            };
        }
        let weighted = matches!(kind, ObjectKind::Random | ObjectKind::Hash);
        match short {
            "add_backend" => {
                let be = backend_arg(args, 0)
                    .map_err(|()| format!("{name}: None backend cannot be added"))?;
                if let Some(be) = be {
                    d.members.push(be);
                    if weighted {
                        d.weights.push(real_arg(args, 1).unwrap_or(1.0));
                    }
                }
                Ok(Value::Void)
            }
            "remove_backend" => {
                let be = backend_arg(args, 0)
                    .map_err(|()| format!("{name}: None backend cannot be removed"))?;
                // Varnish removes the first occurrence.
                if let Some(i) = be.and_then(|be| d.members.iter().position(|m| *m == be)) {
                    d.members.remove(i);
                    if i < d.weights.len() {
                        d.weights.remove(i);
                    }
                }
                Ok(Value::Void)
            }
            "backend" if kind == ObjectKind::Hash => {
                // Varnish resolves a hash director at once; in vcl_init every member counts as
                // healthy.
                let key = strands_arg(args, 0);
                let pick = director::hash::pick(&d.members, &d.weights, &[key], |_| true);
                Ok(Value::Backend(pick))
            }
            "backend" => Ok(Value::Backend(Some(BackendRef::Director(obj)))),
            _ => Ok(Value::Void),
        }
    }
}

/// A shard director's configuration methods in vcl_init. `Ok(None)`: `.backend()`, which the
/// caller answers.
fn shard_init_method<'a>(
    sh: &mut shard::Shard<BackendRef>,
    method: &str,
    args: &[Option<Value<'_>>],
    name_of: impl Fn(BackendRef) -> &'a str,
) -> Result<Option<Value<'static>>, String> {
    let str_arg = |i: usize| {
        args.get(i)
            .and_then(Option::as_ref)
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    Ok(Some(match method {
        "add_backend" => {
            let be = backend_arg(args, 0)
                .map_err(|()| "None backend cannot be added".to_string())?
                .ok_or("None backend cannot be added")?;
            let ident = str_arg(1);
            sh.add_backend(
                be,
                name_of(be),
                ident.as_deref(),
                real_arg(args, 2),
                real_arg(args, 3),
            );
            Value::Bool(true)
        }
        "remove_backend" => {
            let be = backend_arg(args, 0).ok().flatten();
            sh.remove_backend(be, str_arg(1).as_deref())?;
            Value::Bool(true)
        }
        "clear" => {
            sh.clear();
            Value::Bool(true)
        }
        "reconfigure" => {
            let replicas = match args.first().and_then(Option::as_ref) {
                Some(Value::Int(n)) => *n,
                _ => i64::from(shard::DEFAULT_REPLICAS),
            };
            let r = sh.reconfigure(replicas);
            if let Err(e) = &r {
                eprintln!("Error vcl_init: vmod_directors: shard: {e}");
            }
            Value::Bool(r.is_ok())
        }
        "set_warmup" => {
            // Varnish ignores a probability outside [0, 1).
            if let Some(p) = real_arg(args, 0).filter(|p| (0.0..1.0).contains(p)) {
                sh.warmup = p;
            }
            Value::Void
        }
        "set_rampup" => {
            sh.rampup = real_arg(args, 0).filter(|d| *d >= 0.0).unwrap_or(0.0);
            Value::Void
        }
        "key" => Value::Int(i64::from(director::hash32(&[strands_arg(args, 0)]))),
        "backend" => return Ok(None),
        _ => Value::Void,
    }))
}

/// Runs `vcl_init`; a failure (or a `return (fail)`) refuses the VCL, as varnishd does. Shard
/// directors with changes not reconfigured yet are reconfigured with 67 replicas when it ends
/// (Varnish's end-of-task `reconfigure`).
fn run_init(program: &Program) -> Result<Vec<DirectorRt>, LoadError> {
    let env = InitEnv {
        program,
        directors: RefCell::new(Vec::new()),
    };
    let mut ctx = Ctx::new(crate::server::shard::unix_now()).with_env(&env);
    match exec::run(program, Method::Init, &mut ctx) {
        Ok(Outcome::Ok) => {}
        Ok(other) => {
            return Err(LoadError(format!(
                "vcl_init returned {other:?}: the VCL is not loaded"
            )))
        }
        Err(e) => return Err(LoadError(format!("vcl_init failed: {e}"))),
    }
    drop(ctx);
    let mut d = env.directors.into_inner();
    d.resize_with(program.objects.len().max(d.len()), DirectorRt::default);
    for (obj, dir) in d.iter_mut().enumerate() {
        let Some(sh) = dir.shard.as_deref_mut() else {
            continue;
        };
        if sh.has_pending() {
            if let Err(e) = sh.reconfigure(i64::from(shard::DEFAULT_REPLICAS)) {
                let name = program.objects.get(obj).map_or("", |o| &*o.name);
                eprintln!("Error vcl_init: vmod_directors: shard {name}: {e}");
            }
        }
        dir.members = sh.backends().iter().map(|b| b.member).collect();
    }
    Ok(d)
}

/// Does any of `methods` (or a sub they call) mention a variable matching `pred`?
fn uses(program: &Program, methods: &[Method], pred: impl Fn(&VarRef) -> bool) -> bool {
    let mut seen = vec![false; program.subs.len()];
    let mut stack: Vec<usize> = methods
        .iter()
        .filter_map(|m| Sub::ALL.iter().position(|x| x == m))
        .map(|i| program.methods[i])
        .collect();
    while let Some(id) = stack.pop() {
        if seen.get(id).copied().unwrap_or(true) {
            continue;
        }
        seen[id] = true;
        let mut found = false;
        walk_stmts(
            &program.subs[id].body,
            &mut |v| found |= pred(v),
            &mut |c| stack.push(c),
        );
        if found {
            return true;
        }
    }
    false
}

fn walk_stmts(stmts: &[Stmt], var: &mut dyn FnMut(&VarRef), call: &mut dyn FnMut(usize)) {
    for st in stmts {
        match st {
            Stmt::Set { target, value, .. } => {
                var(target);
                walk_expr(value, var);
            }
            Stmt::Unset(v) => var(v),
            Stmt::If {
                branches,
                otherwise,
            } => {
                for (c, b) in branches {
                    walk_expr(c, var);
                    walk_stmts(b, var, call);
                }
                walk_stmts(otherwise, var, call);
            }
            Stmt::ReturnBare => {}
            Stmt::Return { args, .. } | Stmt::New { args, .. } => {
                args.iter().flatten().for_each(|e| walk_expr(e, var))
            }
            Stmt::Call(id) => call(*id),
            Stmt::HashData(e) | Stmt::Synthetic(e) | Stmt::Ban(e) | Stmt::Eval(e) => {
                walk_expr(e, var)
            }
        }
    }
}

fn walk_expr(e: &Expr, var: &mut dyn FnMut(&VarRef)) {
    match &e.kind {
        ExprKind::Var(v) => var(v),
        ExprKind::ToString(a)
        | ExprKind::ToBool(a)
        | ExprKind::IntToReal(a)
        | ExprKind::Not(a)
        | ExprKind::Neg(a) => walk_expr(a, var),
        ExprKind::TypeMethod { on, .. } => walk_expr(on, var),
        ExprKind::RegexMatch { subject, .. } => walk_expr(subject, var),
        ExprKind::AclMatch { ip, .. } => walk_expr(ip, var),
        ExprKind::Concat(parts) => parts.iter().for_each(|p| walk_expr(p, var)),
        ExprKind::And(a, b)
        | ExprKind::Or(a, b)
        | ExprKind::Arith { lhs: a, rhs: b, .. }
        | ExprKind::Cmp { lhs: a, rhs: b, .. } => {
            walk_expr(a, var);
            walk_expr(b, var);
        }
        ExprKind::Call { args, .. } | ExprKind::Method { args, .. } => {
            args.iter().flatten().for_each(|a| walk_expr(a, var))
        }
        ExprKind::Str(_)
        | ExprKind::Int(_)
        | ExprKind::Real(_)
        | ExprKind::Duration(_)
        | ExprKind::Bytes(_)
        | ExprKind::Bool(_)
        | ExprKind::Blob(_)
        | ExprKind::Ip(_)
        | ExprKind::Enum(_)
        | ExprKind::Backend(_)
        | ExprKind::NoBackend
        | ExprKind::Probe(_)
        | ExprKind::Acl(_)
        | ExprKind::Object(_)
        | ExprKind::Regex(_) => {}
    }
}

/// Lets the data plane name a backend in logs.
pub fn backend_name(vcl: &LoadedVcl, id: BackendId) -> &str {
    vcl.backends.get(id).map_or("?", |b| &b.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcl::parser::parse_str;

    fn load(text: &str) -> LoadedVcl {
        let (mut map, parsed) = parse_str("t.vcl", text);
        let vcl = parsed.expect("parses");
        let p = compile(&mut map, &vcl, &CompileOptions::default()).expect("compiles");
        LoadedVcl::prepare(p).expect("prepares")
    }

    #[test]
    fn generated_vcl_for_b() {
        let b = Backend {
            addr: "127.0.0.1:8080".parse().expect("addr"),
            host_header: "origin.example:8080".into(),
        };
        let v = LoadedVcl::for_backend(&b).expect("loads");
        assert_eq!(v.backends.len(), 1);
        assert_eq!(v.backends[0].tcp_addr(), Some(b.addr));
        assert_eq!(&v.backends[0].host_header[..], b"origin.example:8080");
        assert!(v.backends[0].initially_healthy);
        assert_eq!(v.features, Features::default());
        assert_eq!(v.default_backend(), Some(BackendRef::Backend(0)));
    }

    #[test]
    fn features_follow_calls() {
        let v = load(
            r#"vcl 4.1;
            backend b { .host = "127.0.0.1"; }
            sub mark { set resp.http.X-Cache = "HIT"; }
            sub vcl_deliver { if (obj.hits > 0) { call mark; } }
            sub vcl_recv { if (req.http.X-Forwarded-For) { return (pass); } }
            "#,
        );
        assert!(v.features.deliver_uses_resp);
        assert!(v.features.deliver_uses_obj);
        assert!(v.features.client_reads_xff);
        let v = load(
            r#"vcl 4.1;
            backend b { .host = "127.0.0.1"; }
            sub vcl_backend_response { set beresp.http.X-Forwarded-For = "x"; }
            "#,
        );
        assert!(!v.features.deliver_uses_resp);
        assert!(!v.features.client_reads_xff);
    }

    #[test]
    fn probe_initial_decides_first_health() {
        let v = load(
            r#"vcl 4.1;
            probe p { .url = "/"; .window = 5; .threshold = 3; .initial = 0; }
            backend sick { .host = "127.0.0.1"; .probe = p; }
            backend fine { .host = "127.0.0.1"; .probe = { .url = "/"; .initial = 3; .threshold = 3; } }
            backend plain { .host = "127.0.0.1"; }
            sub vcl_recv {
                if (req.url == "/a") { set req.backend_hint = sick; }
                if (req.url == "/b") { set req.backend_hint = fine; }
                if (req.url == "/c") { set req.backend_hint = plain; }
            }
            "#,
        );
        let h: Vec<bool> = v.backends.iter().map(|b| b.initially_healthy).collect();
        assert_eq!(h, vec![false, true, true]);
    }

    #[test]
    fn vcl_init_records_directors() {
        let v = load(
            r#"vcl 4.1;
            import directors;
            backend a { .host = "127.0.0.1"; .port = "81"; }
            backend b { .host = "127.0.0.1"; .port = "82"; }
            sub vcl_init {
                new fb = directors.fallback();
                fb.add_backend(b);
                fb.add_backend(a);
            }
            sub vcl_recv { set req.backend_hint = fb.backend(); }
            "#,
        );
        assert_eq!(v.directors.len(), 1);
        assert_eq!(
            v.directors[0].members,
            vec![BackendRef::Backend(1), BackendRef::Backend(0)]
        );
    }

    fn load_err(text: &str) -> String {
        let (mut map, parsed) = parse_str("t.vcl", text);
        let p = compile(
            &mut map,
            &parsed.expect("parses"),
            &CompileOptions::default(),
        )
        .expect("compiles");
        LoadedVcl::prepare(p).expect_err("refused").0
    }

    const TWO: &str = "vcl 4.1;\nimport directors;\n\
        backend a { .host = \"127.0.0.1\"; .port = \"81\"; }\n\
        backend b { .host = \"127.0.0.1\"; .port = \"82\"; }\n\
        sub vcl_recv { if (req.url == \"/\") { set req.backend_hint = a; } \
        else { set req.backend_hint = b; } }\n";

    #[test]
    fn vcl_init_records_weights_sticky_and_shard() {
        let v = load(&format!(
            "{TWO}sub vcl_init {{\n\
               new rd = directors.random(); rd.add_backend(a, 2.5); rd.add_backend(b, 1);\n\
               new h = directors.hash(); h.add_backend(a); h.add_backend(b, 3);\n\
               new fb = directors.fallback(sticky = true); fb.add_backend(a);\n\
               new sh = directors.shard(); sh.add_backend(a); sh.add_backend(b, ident = \"bee\");\n\
               sh.set_rampup(5s); sh.set_warmup(0.25); sh.set_warmup(2.0);\n\
               new sh2 = directors.shard(); sh2.add_backend(a);\n\
               if (!sh2.reconfigure(replicas = 3)) {{ return (fail); }}\n\
               sh2.remove_backend(a);\n\
             }}\n"
        ));
        assert_eq!(v.directors[0].weights, vec![2.5, 1.0]);
        assert_eq!(v.directors[1].weights, vec![1.0, 3.0]);
        assert!(v.directors[2].sticky && !v.directors[0].sticky);
        // Not reconfigured in vcl_init: done with 67 replicas when it ends.
        let sh = v.directors[3].shard.as_deref().expect("shard");
        assert_eq!(sh.points(), 134);
        assert_eq!(sh.backends()[1].ident(), "bee");
        assert_eq!((sh.rampup, sh.warmup), (5.0, 0.25));
        assert_eq!(
            v.directors[3].members,
            vec![BackendRef::Backend(0), BackendRef::Backend(1)]
        );
        // The implicit reconfigure after the last removal leaves no backend.
        assert!(v.directors[4].members.is_empty());
        assert!(v.has_shard);
    }

    #[test]
    fn director_errors_refuse_the_vcl() {
        let e = load_err(&format!(
            "{TWO}sub vcl_init {{ new rr = directors.round_robin(); rr.add_backend(none); }}\n"
        ));
        assert!(e.contains("rr: None backend cannot be added"), "{e}");
        let e = load_err(&format!(
            "{TWO}sub vcl_init {{ new sh = directors.shard(); sh.add_backend(a); \
             new rr = directors.round_robin(); rr.add_backend(sh.backend(resolve = NOW)); }}\n"
        ));
        assert!(e.contains("cannot be used in vcl_init"), "{e}");
    }

    #[test]
    fn shard_call_checks_arguments_as_varnish() {
        use super::shard::HealthMode;
        let args = |v: Vec<Option<Value<'static>>>| v;
        let dflt = || {
            args(vec![
                Some(Value::Enum("HASH")),
                None,
                None,
                Some(Value::Int(0)),
                Some(Value::Real(-1.0)),
                Some(Value::Bool(true)),
                Some(Value::Enum("CHOSEN")),
                None,
                None,
            ])
        };
        assert_eq!(shard_call("s", &dflt(), Method::Init), Ok(ShardCall::Lazy));
        let now = shard_call("s", &dflt(), Method::Recv).expect("ok");
        assert!(matches!(
            now,
            ShardCall::Now {
                by: ShardBy::Hash,
                ..
            }
        ));
        let mut a = dflt();
        a[0] = Some(Value::Enum("KEY"));
        let e = shard_call("s", &a, Method::Recv).expect_err("no key");
        assert_eq!(
            e,
            "vmod_directors: shard s: shard.backend() missing key argument with by=KEY"
        );
        a[1] = Some(Value::Int(7));
        a[3] = Some(Value::Int(2));
        a[6] = Some(Value::Enum("ALL"));
        match shard_call("s", &a, Method::BackendFetch) {
            Ok(ShardCall::Now { by, params }) => {
                assert_eq!(by, ShardBy::Key(7));
                assert_eq!((params.alt, params.healthy), (2, HealthMode::All));
            }
            other => panic!("{other:?}"),
        }
        a[1] = Some(Value::Int(1 << 40));
        assert!(shard_call("s", &a, Method::Recv).is_err());
        let mut a = dflt();
        a[3] = Some(Value::Int(-1));
        assert!(shard_call("s", &a, Method::Recv)
            .expect_err("alt")
            .ends_with("invalid alt argument -1"));
        let mut a = dflt();
        a[1] = Some(Value::Int(1));
        assert!(shard_call("s", &a, Method::Recv)
            .expect_err("key with HASH")
            .contains("invalid with by=HASH"));
        let mut a = dflt();
        a[8] = Some(Value::Enum("LAZY"));
        a[0] = Some(Value::Enum("URL"));
        assert!(
            shard_call("s", &a, Method::Recv).is_err(),
            "LAZY with args, client side"
        );
        assert!(matches!(
            shard_call("s", &a, Method::BackendFetch),
            Ok(ShardCall::Now {
                by: ShardBy::Url,
                ..
            })
        ));
        let site = |sub, hash| Site {
            sub,
            url: Some(b"/x"),
            hash,
            now: 0.0,
        };
        let url_key = director::hash32(&[b"/x"]);
        assert_eq!(
            ShardBy::Hash.key(&site(Method::Recv, Some(b"k\0"))),
            url_key
        );
        assert_eq!(
            ShardBy::Hash.key(&site(Method::BackendFetch, Some(b"k\0"))),
            director::digest_key(b"k\0")
        );
        assert_eq!(
            ShardBy::Hash.key(&site(Method::BackendFetch, None)),
            url_key
        );
    }

    #[test]
    fn failing_init_refuses_the_vcl() {
        let (mut map, parsed) = parse_str(
            "t.vcl",
            "vcl 4.1; backend b { .host = \"127.0.0.1\"; } sub vcl_init { return (fail); }",
        );
        let p = compile(
            &mut map,
            &parsed.expect("parses"),
            &CompileOptions::default(),
        )
        .expect("compiles");
        let e = LoadedVcl::prepare(p).expect_err("refused");
        assert!(e.0.contains("vcl_init failed"), "{e}");
    }
}
