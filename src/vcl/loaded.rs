//! A compiled VCL made ready to serve: what the control plane hands to every shard.
//!
//! Why a separate step after compiling: the [`Program`] says what the operator wrote; serving
//! needs a few more facts decided once, off the data plane. Each backend gets its address, its
//! `Host` text as bytes and its health slot; `vcl_init` runs (recording the directors it
//! builds); and the program is scanned for what the hot path can skip: when `vcl_deliver` never
//! touches `resp.*` or `obj.*`, a hit is written from the object's pre-built head without
//! materialising a response context. Shards only read a `LoadedVcl` (behind an `Arc`); nothing
//! here is touched while serving except through `&self`.
//!
//! `-b HOST:PORT` is not a special case: it is [`LoadedVcl::for_backend`], a generated VCL with
//! one backend, compiled like any file, so the built-in VCL decides everything in both modes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;

use super::check::{compile, compile_file, CompileOptions};
use super::diag::{Diagnostic, FileId, SourceMap};
use super::exec::{self, BackendRef, Ctx, Env, Outcome, Value};
use super::program::{
    BackendId, Endpoint, Expr, ExprKind, Method, ObjId, ObjectKind, Program, Stmt, VarRef,
};
use super::symbols::{Func, Sub};
use crate::cli::Backend;

/// A backend as the data plane uses it.
#[derive(Debug, Clone)]
pub struct BackendRt {
    pub name: Box<str>,
    /// `None`: `backend x none;` or a `.path` (Unix socket) backend, which ringcache cannot
    /// reach (a fetch fails with a 503).
    pub addr: Option<SocketAddr>,
    /// `Host` of backend requests that carry none (`.host_header`, default the `.host` text).
    pub host_header: Bytes,
    /// Seconds; `None`: the parameter.
    pub connect_timeout: Option<f64>,
    pub first_byte_timeout: Option<f64>,
    pub between_bytes_timeout: Option<f64>,
    /// Health before any probe has run: a backend with a probe starts healthy only when the
    /// probe's `.initial` reaches its `.threshold` (Varnish's `vbp_insert`); without a probe
    /// it is always healthy.
    pub initially_healthy: bool,
    /// Its health slot on the board (`health::slots`): the control plane assigns it when the
    /// VCL is loaded; before that, the backend's index.
    pub slot: usize,
}

/// A director built in `vcl_init` (the directors issue implements the kinds; until then every
/// kind picks its first healthy member, in the order they were added).
#[derive(Debug, Clone, Default)]
pub struct DirectorRt {
    pub kind: Option<ObjectKind>,
    pub members: Vec<BackendRef>,
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
            .map(|(i, b)| BackendRt {
                name: b.name.clone(),
                addr: match &b.endpoint {
                    Endpoint::Tcp { ipv4, ipv6 } => ipv4.or(*ipv6),
                    Endpoint::None | Endpoint::Uds(_) => None,
                },
                host_header: Bytes::copy_from_slice(b.host_header.as_bytes()),
                connect_timeout: b.connect_timeout,
                first_byte_timeout: b.first_byte_timeout,
                between_bytes_timeout: b.between_bytes_timeout,
                initially_healthy: b
                    .probe
                    .and_then(|p| program.probes.get(p))
                    .is_none_or(|p| p.initial >= p.threshold),
                slot: i,
            })
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
        Ok(LoadedVcl {
            program,
            sources: Vec::new(),
            backends,
            directors,
            features,
        })
    }

    /// The backend `default` requests go to when VCL sets none (the first declared).
    pub fn default_backend(&self) -> Option<BackendRef> {
        self.program.default_backend.map(BackendRef::Backend)
    }
}

/// Every file of `map`, in the order they were read.
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

/// The `Env` of `vcl_init`: records `new` and `add_backend` so shards can resolve directors.
struct InitEnv {
    directors: RefCell<Vec<DirectorRt>>,
}

impl Env for InitEnv {
    fn new_object(
        &self,
        obj: ObjId,
        kind: ObjectKind,
        _args: &[Option<Value<'_>>],
    ) -> Result<(), String> {
        let mut d = self.directors.borrow_mut();
        if d.len() <= obj {
            d.resize(obj + 1, DirectorRt::default());
        }
        d[obj].kind = Some(kind);
        Ok(())
    }

    fn object_method(
        &self,
        obj: ObjId,
        _kind: ObjectKind,
        method: &'static Func,
        args: &[Option<Value<'_>>],
    ) -> Result<Value<'static>, String> {
        let short = method.name.rsplit('.').next().unwrap_or(method.name);
        let mut d = self.directors.borrow_mut();
        if d.len() <= obj {
            d.resize(obj + 1, DirectorRt::default());
        }
        match short {
            "add_backend" => {
                if let Some(Some(Value::Backend(Some(be)))) = args.first() {
                    d[obj].members.push(*be);
                }
                Ok(Value::Void)
            }
            "remove_backend" => {
                if let Some(Some(Value::Backend(Some(be)))) = args.first() {
                    d[obj].members.retain(|m| m != be);
                }
                Ok(Value::Void)
            }
            "backend" => Ok(Value::Backend(Some(BackendRef::Director(obj)))),
            _ => Ok(Value::Void),
        }
    }
}

/// Runs `vcl_init`; a failure (or a `return (fail)`) refuses the VCL, as varnishd does.
fn run_init(program: &Program) -> Result<Vec<DirectorRt>, LoadError> {
    let env = InitEnv {
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
    d.resize(program.objects.len().max(d.len()), DirectorRt::default());
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
        assert_eq!(v.backends[0].addr, Some(b.addr));
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
