//! The VCL checker: from the syntax tree to a [`Program`], with Varnish 7.1's semantic errors.
//!
//! Why a separate pass after parsing: Varnish resolves names while parsing; our parser is
//! syntax-only (see `ast`), so every name, type, permission and table rule is decided here, in
//! this order: imports, declarations (duplicates), probes, backends (host resolution), ACLs,
//! subroutine bodies (typing each statement once), then per built-in method a walk of the call
//! graph that checks what depends on the calling method (variable access, restricted functions
//! and statements, return actions; recursion), then unused and undefined symbols
//! (`vcc_xref.c`). The built-in VCL of Varnish 7.1 is compiled together with the user's, the
//! user's definitions first. Messages reuse libvcc's wording; where Varnish prints several
//! locations, the first is the diagnostic's span and the others become notes.
//!
//! DNS: `.host` and ACL names are resolved once, at load, through
//! [`CompileOptions::resolver`] (default: the system resolver), so tests need no DNS.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path as FsPath;
use std::sync::Arc;

use super::ast::{self, ExprKind as AK};
use super::diag::{Diagnostic, SourceMap, Span};
use super::program::*;
use super::symbols::{self as sym, Access, AssignOp, Func, Var, VARS};

/// Resolves `(host, port)` to addresses (`Err` carries the resolver's message).
pub type Resolver = dyn Fn(&str, &str) -> Result<Vec<SocketAddr>, String> + Send + Sync;

/// Compilation options.
#[derive(Clone, Default)]
pub struct CompileOptions {
    /// Replaces the system resolver (tests).
    pub resolver: Option<Arc<Resolver>>,
    /// Do not append Varnish's built-in VCL (unit tests of single subs).
    pub no_builtin: bool,
    /// Unused subs, ACLs, probes and backends are warnings instead of errors (Varnish's
    /// `vcc_err_unref` parameter turned off).
    pub allow_unused: bool,
}

impl std::fmt::Debug for CompileOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileOptions")
            .field("resolver", &self.resolver.is_some())
            .field("no_builtin", &self.no_builtin)
            .field("allow_unused", &self.allow_unused)
            .finish()
    }
}

/// Varnish 7.1's `builtin.vcl`.
pub const BUILTIN_VCL: &str = include_str!("builtin.vcl");

/// What [`compile_file`] gives besides the source map: the program and its warnings, or every
/// error (and warning).
pub type CompileResult = Result<(Program, Vec<Diagnostic>), Vec<Diagnostic>>;

/// Reads, parses and compiles a VCL file. `Ok` carries the program and its warnings.
pub fn compile_file(path: impl AsRef<FsPath>, opts: &CompileOptions) -> (SourceMap, CompileResult) {
    let (mut map, parsed) = super::parser::parse_file(path);
    let r = match parsed {
        Err(e) => Err(e),
        Ok(vcl) => compile(&mut map, &vcl, opts).map(|mut p| {
            let w = std::mem::take(&mut p.warnings);
            (p, w)
        }),
    };
    (map, r)
}

/// Compiles a parsed VCL (the built-in VCL is added to `map` and compiled after it).
/// Warnings are in [`Program::warnings`]; on failure every error found is returned (warnings
/// included, after the errors).
pub fn compile(
    map: &mut SourceMap,
    vcl: &ast::Vcl,
    opts: &CompileOptions,
) -> Result<Program, Vec<Diagnostic>> {
    // Like the parser, run on a thread with a known stack: the checker recurses along the
    // expression tree and the call graph.
    let r = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("vcl-check".to_string())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(s, || compile_here(map, vcl, opts))
            .ok()?;
        Some(h.join())
    });
    match r {
        Some(Ok(v)) => v,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => compile_here(map, vcl, opts),
    }
}

const COMPILE_STACK: usize = 64 << 20;

fn compile_here(
    map: &mut SourceMap,
    vcl: &ast::Vcl,
    opts: &CompileOptions,
) -> Result<Program, Vec<Diagnostic>> {
    let mut items: Vec<(&ast::Item, bool)> = vcl.items.iter().map(|i| (i, false)).collect();
    let builtin;
    if !opts.no_builtin {
        let id = map.add("<builtin>", None, BUILTIN_VCL.to_string());
        match super::parser::parse(map, id) {
            Ok(b) => builtin = b,
            Err(e) => return Err(e),
        }
        items.extend(builtin.items.iter().map(|i| (i, true)));
    }
    let map: &SourceMap = map;
    let syntax = match vcl.version.version {
        ast::VclVersion::V40 => Syntax::V40,
        ast::VclVersion::V41 => Syntax::V41,
    };
    let mut ck = Ck {
        map,
        opts,
        syntax,
        errors: Vec::new(),
        warnings: vcl.warnings.clone(),
        imports: HashMap::new(),
        names: HashMap::new(),
        backends: Vec::new(),
        probes: Vec::new(),
        acls: Vec::new(),
        objects: Vec::new(),
        subs: Vec::new(),
        sub_info: Vec::new(),
        regexes: HashMap::new(),
        cur: 0,
        undefined: HashSet::new(),
        default_probe: None,
        seen_err: HashSet::new(),
        phase2: usize::MAX,
    };
    ck.run(&items, vcl);
    let phase2 = ck.phase2.min(ck.errors.len());
    let Ck {
        mut errors,
        warnings,
        backends,
        probes,
        acls,
        objects,
        subs,
        imports,
        default_probe,
        ..
    } = ck;
    if !errors.is_empty() {
        errors[..phase2].sort_by_key(|d| (d.span.file, d.span.start));
        let all_late = errors.split_off(phase2);
        let mut all = errors;
        all.extend(all_late);
        all.extend(warnings);
        return Err(all);
    }
    let mut methods = [0usize; 14];
    for (i, m) in Method::ALL.iter().enumerate() {
        methods[i] = subs.iter().position(|s| s.method == Some(*m)).unwrap_or(0);
    }
    let default_backend = backends
        .iter()
        .position(|b| &*b.name == "default")
        .or(if backends.is_empty() { None } else { Some(0) });
    let mut imports: Vec<Box<str>> = imports.into_values().map(Into::into).collect();
    imports.sort();
    imports.dedup();
    Ok(Program {
        syntax,
        imports,
        backends,
        default_backend,
        probes,
        default_probe,
        acls,
        objects,
        subs,
        methods,
        warnings,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Backend,
    Acl,
    Probe,
    Sub,
    Object,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Backend => "backend",
            Kind::Acl => "acl",
            Kind::Probe => "probe",
            Kind::Sub => "sub",
            Kind::Object => "instance",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Kind::Backend => "Backend",
            Kind::Acl => "Acl",
            Kind::Probe => "Probe",
            Kind::Sub => "Subroutine",
            Kind::Object => "Instance",
        }
    }
}

struct SymInfo {
    kind: Kind,
    id: usize,
    span: Span,
    refs: u32,
    builtin: bool,
}

/// A use inside a sub whose legality depends on the calling built-in method.
#[derive(Clone, Copy)]
enum Use {
    Var(&'static Var, Access, Span),
    Restricted(sym::SubMask, Access, Span),
    Return(Action, Span),
}

struct SubInfo {
    /// The name spans of its definitions.
    defs: Vec<Span>,
    uses: Vec<Use>,
    calls: Vec<(SubId, Span)>,
}

struct Ck<'a> {
    map: &'a SourceMap,
    opts: &'a CompileOptions,
    syntax: Syntax,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// alias → module.
    imports: HashMap<String, String>,
    names: HashMap<String, SymInfo>,
    backends: Vec<BackendDef>,
    probes: Vec<ProbeSpec>,
    acls: Vec<AclTable>,
    objects: Vec<ObjectDecl>,
    subs: Vec<SubCode>,
    sub_info: Vec<SubInfo>,
    regexes: HashMap<String, Arc<super::re::Regex>>,
    cur: SubId,
    undefined: HashSet<String>,
    default_probe: Option<ProbeId>,
    seen_err: HashSet<(Span, String)>,
    phase2: usize,
}

fn norm(t: Type) -> Type {
    match t {
        Type::Strands | Type::Header => Type::String,
        t => t,
    }
}

fn is_stringish(t: Type) -> bool {
    matches!(t, Type::String | Type::Strands | Type::Header)
}

fn mk(ty: Type, kind: ExprKind) -> Expr {
    Expr { ty, kind }
}

fn var_id(v: &'static Var) -> u16 {
    VARS.iter().position(|x| std::ptr::eq(x, v)).unwrap_or(0) as u16
}

fn all_stmts<'b>(stmts: &'b [ast::Stmt], out: &mut Vec<&'b ast::Stmt>) {
    for s in stmts {
        out.push(s);
        match s {
            ast::Stmt::If(i) => {
                all_stmts(&i.then.stmts, out);
                for e in &i.elifs {
                    all_stmts(&e.block.stmts, out);
                }
                if let Some(b) = &i.else_ {
                    all_stmts(&b.stmts, out);
                }
            }
            ast::Stmt::Block(b) => all_stmts(&b.stmts, out),
            _ => {}
        }
    }
}

impl<'a> Ck<'a> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        let msg = msg.into();
        if self.seen_err.insert((span, msg.clone())) {
            self.errors.push(Diagnostic::error(span, msg));
        }
    }

    fn err_notes(&mut self, span: Span, msg: impl Into<String>, notes: Vec<String>) {
        let msg = msg.into();
        if self.seen_err.insert((span, msg.clone())) {
            let mut d = Diagnostic::error(span, msg);
            d.notes = notes;
            self.errors.push(d);
        }
    }

    fn warn(&mut self, span: Span, msg: impl Into<String>) {
        let msg = msg.into();
        if self.seen_err.insert((span, format!("w:{msg}"))) {
            self.warnings.push(Diagnostic::warning(span, msg));
        }
    }

    /// Refuses a Varnish construct the ringcache runtime does not implement (its `supported`
    /// flag in the symbol tables is off). The embedded builtin VCL is exempt: what it uses, the
    /// runtime provides.
    fn unsupported(&mut self, span: Span, what: &str) {
        if self.map.name(span.file) == "<builtin>" {
            return;
        }
        self.err(span, format!("'{what}' is not supported by ringcache"));
    }

    fn snippet(&self, span: Span) -> String {
        self.map.snippet(span).to_string()
    }

    /// `'FILE' Line L Pos C` as Varnish prints a location in a note.
    fn where_(&self, span: Span) -> String {
        let (l, c) = self.map.line_col(span.file, span.start);
        format!("({}:{}:{})", self.map.name(span.file), l, c)
    }

    // -----------------------------------------------------------------------------------------
    // Driver

    fn run(&mut self, items: &[(&ast::Item, bool)], vcl: &ast::Vcl) {
        // Imports.
        for (item, _) in items {
            if let ast::Item::Import(imp) = item {
                let m = &imp.module.name;
                if !sym::modules().contains(&m.as_str()) {
                    self.err(imp.module.span, sym::unknown_module_message(m));
                    continue;
                }
                let alias = imp.alias.as_ref().unwrap_or(&imp.module).name.clone();
                self.imports.insert(alias, m.clone());
            }
        }
        // Declarations.
        let mut sub_groups: Vec<(String, Vec<(&ast::Sub, bool)>)> = Vec::new();
        let builtin_subs: HashSet<&str> = items
            .iter()
            .filter(|(_, b)| *b)
            .filter_map(|(i, _)| match i {
                ast::Item::Sub(s) => Some(s.name.name.as_str()),
                _ => None,
            })
            .collect();
        for (item, builtin) in items {
            let (kind, name) = match item {
                ast::Item::Backend(b) => (Kind::Backend, &b.name),
                ast::Item::Probe(p) => (Kind::Probe, &p.name),
                ast::Item::Acl(a) => (Kind::Acl, &a.name),
                ast::Item::Sub(s) => {
                    let n = &s.name.name;
                    if let Some(g) = sub_groups.iter_mut().find(|g| &g.0 == n) {
                        if n.starts_with("vcl_") {
                            g.1.push((s, *builtin));
                        } else {
                            let first = g.1[0].0.name.span;
                            self.err_notes(
                                s.name.span,
                                format!("Subroutine '{n}' redefined"),
                                vec![format!("First definition: {}", self.where_(first))],
                            );
                        }
                        continue;
                    }
                    if n.starts_with("vcl_")
                        && Method::from_name(n).is_none()
                        && !builtin_subs.contains(n.as_str())
                    {
                        self.err(
                            s.name.span,
                            "The names 'vcl_*' are reserved for subroutines.",
                        );
                        continue;
                    }
                    sub_groups.push((n.clone(), vec![(s, *builtin)]));
                    continue;
                }
                ast::Item::Import(_) => continue,
            };
            self.declare(kind, name, item.span(), *builtin);
        }
        for (i, (name, defs)) in sub_groups.iter().enumerate() {
            let builtin = defs.iter().all(|d| d.1);
            let method = Method::from_name(name);
            if method.is_none() {
                self.names.insert(
                    name.clone(),
                    SymInfo {
                        kind: Kind::Sub,
                        id: i,
                        span: defs[0].0.name.span,
                        refs: 0,
                        builtin,
                    },
                );
            }
            self.subs.push(SubCode {
                name: name.as_str().into(),
                method,
                body: Vec::new(),
            });
            self.sub_info.push(SubInfo {
                defs: defs.iter().map(|d| d.0.name.span).collect(),
                uses: Vec::new(),
                calls: Vec::new(),
            });
        }
        for m in Method::ALL {
            if !self.subs.iter().any(|s| s.method == Some(m)) {
                self.subs.push(SubCode {
                    name: m.name().into(),
                    method: Some(m),
                    body: Vec::new(),
                });
                self.sub_info.push(SubInfo {
                    defs: Vec::new(),
                    uses: Vec::new(),
                    calls: Vec::new(),
                });
            }
        }
        // Objects (`new`) anywhere, so uses before vcl_init's text resolve.
        for (_, defs) in &sub_groups {
            for (s, _) in defs {
                let mut flat = Vec::new();
                all_stmts(&s.body.stmts, &mut flat);
                for st in flat {
                    if let ast::Stmt::New(n) = st {
                        self.declare_object(n);
                    }
                }
            }
        }
        // Probes, then backends, then ACLs.
        for (item, _) in items {
            if let ast::Item::Probe(p) = item {
                if p.name.name == "default" {
                    // Not a symbol (see `declare`): every one is compiled, the last one is the
                    // default probe, as in varnishd.
                    if let Some(spec) = self.probe_spec(Some("default"), &p.fields, p.span) {
                        self.default_probe = Some(self.probes.len());
                        self.probes.push(spec);
                    }
                    continue;
                }
                if self.names.get(&p.name.name).map(|s| s.span) != Some(p.name.span) {
                    continue; // a duplicate
                }
                if let Some(spec) = self.probe_spec(Some(&p.name.name), &p.fields, p.span) {
                    let id = self.probes.len();
                    self.probes.push(spec);
                    if let Some(s) = self.names.get_mut(&p.name.name) {
                        s.id = id;
                    }
                }
            }
        }
        let mut n_backends = 0;
        for (item, _) in items {
            if let ast::Item::Backend(b) = item {
                n_backends += 1;
                if self.names.get(&b.name.name).map(|s| s.span) != Some(b.name.span) {
                    continue;
                }
                let id = self.backends.len();
                if let Some(s) = self.names.get_mut(&b.name.name) {
                    s.id = id;
                }
                let def = self.backend(b);
                self.backends.push(def);
            }
        }
        // Backend ids follow declaration order; `.via` references resolved by name meanwhile.
        for (item, _) in items {
            if let ast::Item::Acl(a) = item {
                if self.names.get(&a.name.name).map(|s| s.span) != Some(a.name.span) {
                    continue;
                }
                let id = self.acls.len();
                if let Some(s) = self.names.get_mut(&a.name.name) {
                    s.id = id;
                }
                let t = self.acl(a);
                self.acls.push(t);
            }
        }
        if n_backends == 0 && self.errors.is_empty() {
            self.err(
                vcl.version.span,
                "No backends or directors found in VCL program, at least one is necessary.",
            );
        }
        // Subroutine bodies.
        for (i, (_, defs)) in sub_groups.iter().enumerate() {
            self.cur = i;
            let mut body = Vec::new();
            for (s, _) in defs {
                let mut code = self.block(&s.body.stmts);
                body.append(&mut code);
            }
            self.subs[i].body = body;
        }
        // Varnish reports parse-time errors first, then the cross-reference pass (unused and
        // undefined symbols, then per-method checks).
        self.phase2 = self.errors.len();
        self.check_refs();
        self.check_methods();
    }

    fn declare(&mut self, kind: Kind, name: &ast::Ident, item: Span, builtin: bool) {
        // `probe default` is not a symbol in varnishd 7.1 (`vcc_ParseProbe` only records it as
        // the VCL's default probe): it shares no namespace with `backend default`, is never
        // "unused", and a second one silently replaces the first. It is reached only as the
        // implicit probe of backends and as `.probe = default`.
        if kind == Kind::Probe && name.name == "default" {
            return;
        }
        if let Some(prev) = self.names.get(&name.name) {
            let (pk, ps) = (prev.kind, prev.span);
            if kind == Kind::Backend && pk == kind && name.name == "default" {
                let at = Span::new(item.file, item.start, item.start + 7);
                self.err(at, "Only one default director possible.");
                return;
            }
            let msg = if pk == kind {
                format!("{} '{}' redefined.", kind.title(), name.name)
            } else {
                format!(
                    "Name '{}' is already defined as a {}.",
                    name.name,
                    pk.name()
                )
            };
            self.err_notes(
                name.span,
                msg,
                vec![format!("First definition: {}", self.where_(ps))],
            );
            return;
        }
        self.names.insert(
            name.name.clone(),
            SymInfo {
                kind,
                id: usize::MAX,
                span: name.span,
                refs: 0,
                builtin,
            },
        );
    }

    fn declare_object(&mut self, n: &ast::New) {
        let AK::Call { callee, .. } = &n.constructor.kind else {
            return;
        };
        let ctor = self.module_path(callee);
        let Some(kind) = ObjectKind::from_constructor(&ctor) else {
            return;
        };
        if self.names.contains_key(&n.name.name) {
            let (pk, ps) = {
                let p = &self.names[&n.name.name];
                (p.kind, p.span)
            };
            if pk == Kind::Object {
                self.err(
                    n.name.span,
                    format!("Instance '{}' redefined.", n.name.name),
                );
            } else {
                self.err_notes(
                    n.name.span,
                    format!(
                        "Name '{}' is already defined as a {}.",
                        n.name.name,
                        pk.name()
                    ),
                    vec![format!("First definition: {}", self.where_(ps))],
                );
            }
            return;
        }
        let id = self.objects.len();
        self.objects.push(ObjectDecl {
            name: n.name.name.as_str().into(),
            kind,
        });
        self.names.insert(
            n.name.name.clone(),
            SymInfo {
                kind: Kind::Object,
                id,
                span: n.name.span,
                refs: 1,
                builtin: false,
            },
        );
    }

    /// `alias.rest` with the alias replaced by its module (`"std.log"`); unchanged otherwise.
    fn module_path(&self, p: &ast::Path) -> String {
        let d = p.dotted();
        if p.parts.len() >= 2 {
            if let Some(m) = self.imports.get(&p.parts[0].name) {
                return format!("{m}{}", &d[p.parts[0].name.len()..]);
            }
        }
        d
    }

    /// A reference to a global symbol of `kind` (counts it; reports undefined once).
    fn reference(&mut self, kind: Kind, name: &str, span: Span) -> Option<usize> {
        match self.names.get_mut(name) {
            Some(s) if s.kind == kind => {
                s.refs += 1;
                Some(s.id)
            }
            Some(s) => {
                let k = s.kind;
                self.err(
                    span,
                    format!(
                        "Symbol '{name}' has wrong type ({}), expected {}",
                        k.name(),
                        kind.name()
                    ),
                );
                None
            }
            None => {
                if self.undefined.insert(format!("{}:{name}", kind.name())) {
                    self.err(
                        span,
                        format!("Undefined {} {name}, first reference:", kind.name()),
                    );
                }
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Backends and probes

    fn field_str(&mut self, f: &ast::Field) -> Option<String> {
        match &f.value {
            ast::FieldValue::Expr(ast::Expr {
                kind: AK::Str(s), ..
            }) => Some(s.value.clone()),
            ast::FieldValue::Expr(e) => {
                let t = self.snippet(e.span);
                self.err(e.span, format!("Expected CSTR got '{t}'"));
                None
            }
            ast::FieldValue::Strings(l) => {
                let sp = l.get(1).map_or(f.span, |s| s.span);
                let t = self.snippet(sp);
                self.err(sp, format!("Expected ';' got '{t}'"));
                None
            }
            ast::FieldValue::Probe { span, .. } => {
                self.err(*span, "Expected CSTR got '{'");
                None
            }
        }
    }

    fn field_duration(&mut self, f: &ast::Field) -> Option<f64> {
        match &f.value {
            ast::FieldValue::Expr(ast::Expr {
                kind: AK::Duration(d),
                ..
            }) => Some(d.seconds),
            ast::FieldValue::Expr(
                e @ ast::Expr {
                    kind: AK::Int(_) | AK::Real(_),
                    ..
                },
            ) => {
                let sp = Span::new(e.span.file, e.span.end, e.span.end + 1);
                let t = self.snippet(sp);
                self.err(sp, format!("Expected ID got '{t}'"));
                None
            }
            other => {
                let sp = match other {
                    ast::FieldValue::Expr(e) => e.span,
                    _ => f.span,
                };
                let t = self.snippet(sp);
                self.err(sp, format!("Expected DURATION got '{t}'"));
                None
            }
        }
    }

    fn field_uint(&mut self, f: &ast::Field) -> Option<(u64, Span)> {
        match &f.value {
            ast::FieldValue::Expr(ast::Expr {
                kind: AK::Int(n),
                span,
            }) if *n >= 0 => Some((*n as u64, *span)),
            ast::FieldValue::Expr(e) => {
                let t = self.snippet(e.span);
                self.err(e.span, format!("Expected CNUM got '{t}'"));
                None
            }
            _ => {
                self.err(f.span, "Expected CNUM");
                None
            }
        }
    }

    /// Checks field names against `allowed`: unknown and duplicate fields.
    fn fields_ok<'f>(&mut self, fields: &'f [ast::Field], allowed: &[&str]) -> Vec<&'f ast::Field> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out = Vec::new();
        for f in fields {
            let n = f.name.name.as_str();
            if !allowed.contains(&n) {
                self.err(f.name.span, format!("Unknown field: '{n}' at"));
                continue;
            }
            if let Some(prev) = seen.get(n) {
                let w = self.where_(*prev);
                self.err_notes(
                    f.name.span,
                    format!("Field '{n}' redefined at:"),
                    vec![format!("First defined at: {w}")],
                );
                continue;
            }
            seen.insert(n, f.name.span);
            out.push(f);
        }
        out
    }

    fn probe_spec(
        &mut self,
        name: Option<&str>,
        fields: &[ast::Field],
        _span: Span,
    ) -> Option<ProbeSpec> {
        const ALLOWED: &[&str] = &[
            "url",
            "request",
            "expected_response",
            "timeout",
            "interval",
            "window",
            "threshold",
            "initial",
            // Varnish 7.3+.
            "expect_close",
            // ringcache: probe a dedicated health port.
            "port",
        ];
        let n0 = self.errors.len();
        let fields = self.fields_ok(fields, ALLOWED);
        let mut request: Option<(ProbeRequest, Span)> = None;
        let mut expect_close = true;
        let mut port = None;
        let (mut timeout, mut interval) = (0.0, 0.0);
        let (mut window, mut threshold, mut initial) = (None, None, None);
        let mut expected = 0u16;
        for f in fields {
            match f.name.name.as_str() {
                "url" | "request" => {
                    if let Some((_, prev)) = &request {
                        let w = self.where_(*prev);
                        self.err_notes(
                            f.name.span,
                            "Probe request redefinition at:",
                            vec![format!("Previous definition: {w}")],
                        );
                        continue;
                    }
                    let r = if f.name.name == "url" {
                        self.field_str(f).map(|u| ProbeRequest::Url(u.into()))
                    } else {
                        let parts: Vec<String> = match &f.value {
                            ast::FieldValue::Strings(l) => {
                                l.iter().map(|s| s.value.clone()).collect()
                            }
                            _ => self.field_str(f).into_iter().collect(),
                        };
                        let mut raw = Vec::new();
                        for p in &parts {
                            raw.extend_from_slice(p.as_bytes());
                            raw.extend_from_slice(b"\r\n");
                        }
                        raw.extend_from_slice(b"\r\n");
                        (!parts.is_empty()).then(|| ProbeRequest::Raw(raw.into()))
                    };
                    if let Some(r) = r {
                        request = Some((r, f.name.span));
                    }
                }
                "expected_response" => {
                    if let Some((v, sp)) = self.field_uint(f) {
                        if !(100..=999).contains(&v) {
                            self.err(
                                after(sp),
                                "Must specify .expected_response with exactly three digits \
                                 (100 <= x <= 999)",
                            );
                        } else {
                            expected = v as u16;
                        }
                    }
                }
                "timeout" => timeout = self.field_duration(f).unwrap_or(0.0),
                "interval" => interval = self.field_duration(f).unwrap_or(0.0),
                "window" => window = self.field_uint(f),
                "threshold" => threshold = self.field_uint(f),
                "initial" => initial = self.field_uint(f),
                "expect_close" => match &f.value {
                    ast::FieldValue::Expr(ast::Expr {
                        kind: AK::Bool(b), ..
                    }) => expect_close = *b,
                    // vcc_BoolVal's message (Varnish 7.3).
                    ast::FieldValue::Expr(e) => self.err(e.span, "Expected \"true\" or \"false\""),
                    _ => self.err(f.span, "Expected \"true\" or \"false\""),
                },
                "port" => {
                    let sp = match &f.value {
                        ast::FieldValue::Expr(e) => e.span,
                        _ => f.span,
                    };
                    if let Some(v) = self.field_str(f) {
                        match v.parse::<u16>() {
                            Ok(p) if p > 0 && v.bytes().all(|c| c.is_ascii_digit()) => {
                                port = Some(p)
                            }
                            _ => self.err(
                                sp,
                                format!(
                                    "Probe .port must be a port number from 1 to 65535, \
                                     got '\"{v}\"'"
                                ),
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
        let (mut w, mut t) = (8u64, 3u64);
        match (window, threshold) {
            (Some((_, ws)), None) => {
                self.err(ws, "Must specify .threshold with .window");
            }
            (None, Some((tv, ts))) => {
                if tv > 64 {
                    self.err(ts, "Threshold must be 64 or less.");
                }
                t = tv;
                w = tv + 1;
            }
            (Some((wv, ws)), Some((tv, ts))) => {
                if wv > 64 {
                    self.err(ws, "Window must be 64 or less.");
                } else if tv > wv {
                    let w_at = self.where_(ws);
                    self.err_notes(
                        ts,
                        "Threshold can not be greater than window.",
                        vec![format!("window at {w_at}")],
                    );
                }
                w = wv;
                t = tv;
            }
            (None, None) => {}
        }
        if self.errors.len() > n0 {
            return None;
        }
        // vbp_set_defaults
        if w == 0 {
            w = 8;
        }
        if t == 0 {
            t = 3;
        }
        let init = initial.map_or(t.saturating_sub(1), |(v, _)| v).min(t);
        Some(ProbeSpec {
            name: name.map(Into::into),
            request: request.map_or(ProbeRequest::Url("/".into()), |r| r.0),
            expected_response: if expected == 0 { 200 } else { expected },
            timeout: if timeout == 0.0 { 2.0 } else { timeout },
            interval: if interval == 0.0 { 5.0 } else { interval },
            window: w as u32,
            threshold: t as u32,
            initial: init as u32,
            expect_close,
            port,
        })
    }

    fn resolve(&self, host: &str, port: &str) -> Result<Vec<SocketAddr>, String> {
        if let Some(r) = &self.opts.resolver {
            return r(host, port);
        }
        let p: u16 = match port.parse() {
            Ok(p) => p,
            Err(_) => match port {
                "http" => 80,
                "https" => 443,
                _ => return Err("Servname not supported for ai_socktype".into()),
            },
        };
        (host, p)
            .to_socket_addrs()
            .map(|i| i.collect())
            .map_err(|e| {
                let s = e.to_string();
                s.strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&s)
                    .to_string()
            })
    }

    fn backend(&mut self, b: &ast::Backend) -> BackendDef {
        let mut def = BackendDef {
            name: b.name.name.as_str().into(),
            endpoint: Endpoint::None,
            host: None,
            port: "80".into(),
            host_header: "".into(),
            connect_timeout: None,
            first_byte_timeout: None,
            between_bytes_timeout: None,
            max_connections: 0,
            proxy_header: 0,
            preamble: None,
            via: None,
            authority: None,
            wait_limit: None,
            wait_timeout: None,
            probe: None,
        };
        let fields = match &b.def {
            ast::BackendDef::None(_) => return def,
            ast::BackendDef::Fields(f) => f,
        };
        const ALLOWED: &[&str] = &[
            "host",
            "port",
            "path",
            "host_header",
            "connect_timeout",
            "first_byte_timeout",
            "between_bytes_timeout",
            "probe",
            "max_connections",
            "proxy_header",
            "preamble",
            "via",
            "authority",
            "wait_limit",
            "wait_timeout",
        ];
        let fields = self.fields_ok(fields, ALLOWED);
        let mut authority: Option<(String, Span)> = None;
        let mut host_header_span = None;
        let mut addr: Option<(Span, bool)> = None;
        let mut host: Option<(String, Span)> = None;
        let mut path: Option<(String, Span)> = None;
        let mut host_header = None;
        let mut port = None;
        for f in fields {
            let n = f.name.name.as_str();
            match n {
                "host" | "path" => {
                    if let Some((_, _)) = addr {
                        self.err(f.name.span, "Address redefinition at:");
                        continue;
                    }
                    addr = Some((f.name.span, n == "host"));
                    let vs = match &f.value {
                        ast::FieldValue::Expr(e) => e.span,
                        _ => f.span,
                    };
                    if let Some(v) = self.field_str(f) {
                        if n == "host" {
                            host = Some((v, vs));
                        } else {
                            path = Some((v, vs));
                        }
                    }
                }
                "port" => port = self.field_str(f),
                "host_header" => {
                    host_header = self.field_str(f);
                    host_header_span = Some(value_span(f));
                }
                "authority" => authority = self.field_str(f).map(|a| (a, value_span(f))),
                "wait_timeout" => def.wait_timeout = self.field_duration(f),
                "wait_limit" => {
                    if let Some((v, sp)) = self.field_uint(f) {
                        match u32::try_from(v) {
                            Ok(v) => def.wait_limit = Some(v),
                            Err(_) => self.err(sp, "Value too large for .wait_limit"),
                        }
                    }
                }
                "connect_timeout" => def.connect_timeout = self.field_duration(f),
                "first_byte_timeout" => def.first_byte_timeout = self.field_duration(f),
                "between_bytes_timeout" => def.between_bytes_timeout = self.field_duration(f),
                "max_connections" => {
                    if let Some((v, sp)) = self.field_uint(f) {
                        match u32::try_from(v) {
                            Ok(v) => def.max_connections = v,
                            Err(_) => self.err(sp, "Value too large for .max_connections"),
                        }
                    }
                }
                "proxy_header" => {
                    if let Some((v, sp)) = self.field_uint(f) {
                        if v == 1 || v == 2 {
                            def.proxy_header = v as u8;
                        } else {
                            self.err(sp, ".proxy_header must be 1 or 2");
                        }
                    }
                }
                "preamble" => match &f.value {
                    ast::FieldValue::Expr(ast::Expr {
                        kind: AK::Blob(b), ..
                    }) => def.preamble = Some(b.as_slice().into()),
                    ast::FieldValue::Expr(e) => {
                        let t = self.snippet(e.span);
                        self.err(e.span, format!("Expected BLOB got '{t}'"));
                    }
                    _ => self.err(f.span, "Expected BLOB"),
                },
                "via" => match &f.value {
                    ast::FieldValue::Expr(ast::Expr {
                        kind: AK::Path(p),
                        span,
                    }) if p.parts.len() == 1 => {
                        let name = &p.parts[0].name;
                        if self.reference(Kind::Backend, name, *span).is_some() {
                            // Varnish takes an existing symbol: a backend declared before.
                            match self.backends.iter().position(|d| *d.name == **name) {
                                Some(id) if self.backends[id].via.is_some() => {
                                    self.err(*span, "Cannot stack .via backends at");
                                }
                                Some(id) => def.via = Some(id),
                                None => self.err(
                                    *span,
                                    format!(
                                        "Backend '{name}' must be declared before it is used \
                                         in .via"
                                    ),
                                ),
                            }
                        }
                    }
                    _ => self.err(f.span, "Expected a backend name for .via"),
                },
                "probe" => match &f.value {
                    ast::FieldValue::Probe { fields, span } => {
                        if let Some(spec) = self.probe_spec(None, fields, *span) {
                            def.probe = Some(self.probes.len());
                            self.probes.push(spec);
                        }
                    }
                    ast::FieldValue::Expr(ast::Expr {
                        kind: AK::Path(p),
                        span,
                    }) if p.parts.len() == 1 => {
                        let pn = &p.parts[0].name;
                        if pn != "default" {
                            def.probe = self.reference(Kind::Probe, pn, *span);
                        } else if self.default_probe.is_some() {
                            def.probe = self.default_probe;
                        } else {
                            self.err(*span, "No default probe defined");
                        }
                    }
                    ast::FieldValue::Expr(e) => {
                        let t = self.snippet(e.span);
                        self.err(
                            e.span,
                            format!("Expected '{{' or name of probe, got '{t}' at"),
                        );
                    }
                    ast::FieldValue::Strings(_) => {
                        self.err(f.span, "Expected '{' or name of probe");
                    }
                },
                _ => {}
            }
        }
        if addr.is_none() {
            self.err(b.name.span, "Expected .host or .path.");
            return def;
        }
        if def.via.is_some() {
            match (&host, &path) {
                (_, Some(_)) => self.err(b.name.span, "Cannot set both .via and .path."),
                (Some((h, hs)), None) => {
                    // Varnish's VCC: `.authority`, else `.host_header`, else `.host`; never
                    // an IP address; the port is cut; `""` sends no TLV.
                    let (val, sp, from) = match (&authority, &host_header) {
                        (Some((a, sp)), _) => (a.clone(), *sp, None),
                        (None, Some(hh)) => (
                            hh.clone(),
                            host_header_span.unwrap_or(*hs),
                            Some("host_header"),
                        ),
                        (None, None) => (h.clone(), *hs, Some("host")),
                    };
                    if is_ip_literal(&val) {
                        match from {
                            None => self.err(sp, ".authority can not be an ip address with .via."),
                            Some(f) => self.err_notes(
                                sp,
                                format!(
                                    ".{f} used as authority can not be an ip address with .via."
                                ),
                                vec!["Hint: configure .authority explicitly".into()],
                            ),
                        }
                    }
                    let cut = val.split(':').next().unwrap_or("");
                    def.authority = (!cut.is_empty()).then(|| cut.into());
                }
                (None, None) => {}
            }
        }
        if def.probe.is_none() {
            def.probe = self.default_probe;
        }
        if let Some((h, hs)) = host {
            let (name, embedded) = split_host(&h);
            let p = embedded
                .map(str::to_string)
                .or(port.clone())
                .unwrap_or_else(|| "80".into());
            def.port = p.as_str().into();
            def.host_header = host_header.clone().unwrap_or_else(|| h.clone()).into();
            def.host = Some(h.as_str().into());
            let addrs = match name.parse::<IpAddr>() {
                Ok(ip) => match p.parse::<u16>() {
                    Ok(pn) => Ok(vec![SocketAddr::new(ip, pn)]),
                    Err(_) => self.resolve(name, &p),
                },
                Err(_) => self.resolve(name, &p),
            };
            match addrs {
                Err(e) => self.err_notes(
                    hs,
                    format!("Backend host '\"{h}\"' could not be resolved to an IP address:"),
                    vec![
                        format!("\t{e}"),
                        "(Sorry if that error message is gibberish.)".into(),
                    ],
                ),
                Ok(mut list) => {
                    list.sort();
                    list.dedup();
                    let v4: Vec<_> = list.iter().filter(|a| a.is_ipv4()).copied().collect();
                    let v6: Vec<_> = list.iter().filter(|a| a.is_ipv6()).copied().collect();
                    if list.is_empty() {
                        self.err(
                            hs,
                            format!(
                                "Backend host '\"{h}\"': resolves to neither IPv4 nor IPv6 \
                                 addresses."
                            ),
                        );
                    } else if v4.len() > 1 || v6.len() > 1 {
                        let mut notes = vec![
                            "Only one IPv4 and one IPv6 are allowed.".to_string(),
                            "Please specify which exact address you want to use, we found all \
                             of these:"
                                .to_string(),
                        ];
                        notes.extend(list.iter().map(|a| format!("\t{a}")));
                        self.err_notes(
                            hs,
                            format!("Backend host \"{h}\": resolves to too many addresses."),
                            notes,
                        );
                    } else {
                        def.endpoint = Endpoint::Tcp {
                            ipv4: v4.first().copied(),
                            ipv6: v6.first().copied(),
                        };
                    }
                }
            }
        } else if let Some((p, ps)) = path {
            def.host_header = host_header.unwrap_or_else(|| "0.0.0.0".into()).into();
            if self.syntax == Syntax::V40 {
                self.err(
                    ps,
                    "Unix socket backends only supported in VCL4.1 and higher.",
                );
            }
            if !p.starts_with('/') {
                self.err(ps, "Backend path: Must be an absolute path:");
            } else {
                use std::os::unix::fs::FileTypeExt;
                match std::fs::metadata(&p) {
                    Err(e) => {
                        let m = e.to_string();
                        let m = m.split(" (os error").next().unwrap_or(&m).to_string();
                        self.warn(ps, format!("Backend path: Cannot stat: {m}"));
                    }
                    Ok(md) if !md.file_type().is_socket() => {
                        self.err(ps, "Backend path: Not a socket:");
                    }
                    Ok(_) => {}
                }
            }
            def.endpoint = Endpoint::Uds(p.into());
        }
        def
    }

    // -----------------------------------------------------------------------------------------
    // ACLs

    fn acl(&mut self, a: &ast::Acl) -> AclTable {
        let pedantic = !a.flags.iter().any(|f| f.name.name == "pedantic" && !f.on);
        let mut entries = Vec::new();
        for e in &a.entries {
            let addrs: Vec<IpAddr> = match e.addr.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match self.resolve(&e.addr, "0") {
                    Ok(l) => {
                        let mut v: Vec<IpAddr> = l.iter().map(|s| s.ip()).collect();
                        v.sort();
                        v.dedup();
                        v
                    }
                    Err(msg) => {
                        if e.optional {
                            self.warn(e.addr_span, format!("{} ignored -- {msg}", e.addr));
                        } else {
                            self.err(e.addr_span, format!("DNS lookup({}): {msg}", e.addr));
                        }
                        continue;
                    }
                },
            };
            if e.mask.is_some()
                && addrs.iter().any(|a| a.is_ipv4())
                && addrs.iter().any(|a| a.is_ipv6())
            {
                self.err(
                    e.mask_span.unwrap_or(e.addr_span),
                    format!(
                        "Mask (/{}) specified, but string resolves to both IPv4 and IPv6 \
                         addresses.",
                        e.mask.unwrap_or(0)
                    ),
                );
                continue;
            }
            for ip in addrs {
                let width = if ip.is_ipv4() { 32 } else { 128 };
                let mask = e.mask.unwrap_or(width);
                if mask > width {
                    self.err(
                        e.mask_span.unwrap_or(e.addr_span),
                        format!(
                            "Too wide mask (/{mask}) for {} address",
                            if width == 32 { "IPv4" } else { "IPv6" }
                        ),
                    );
                    continue;
                }
                let net = mask_ip(ip, mask);
                if net != ip && pedantic {
                    self.err(
                        e.addr_span,
                        format!("Non-zero bits in masked part, (maybe use {net}/{mask} ?)"),
                    );
                    continue;
                }
                if let Some(prev) = entries
                    .iter()
                    .find(|x: &&AclEntry| x.addr == net && x.prefix == mask)
                {
                    if prev.negated != e.negated {
                        self.err(e.addr_span, "Conflicting ACL entries:");
                    }
                    continue;
                }
                entries.push(AclEntry {
                    addr: net,
                    prefix: mask,
                    negated: e.negated,
                });
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.prefix));
        AclTable {
            name: a.name.name.as_str().into(),
            entries,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Statements

    fn block(&mut self, stmts: &[ast::Stmt]) -> Vec<Stmt> {
        let mut out = Vec::new();
        for s in stmts {
            self.stmt(s, &mut out);
        }
        out
    }

    fn use_(&mut self, u: Use) {
        self.sub_info[self.cur].uses.push(u);
    }

    fn stmt(&mut self, s: &ast::Stmt, out: &mut Vec<Stmt>) {
        match s {
            ast::Stmt::Block(b) => {
                let mut inner = self.block(&b.stmts);
                out.append(&mut inner);
            }
            ast::Stmt::Set(set) => {
                let Some((target, var)) = self.var_target(&set.target) else {
                    return;
                };
                self.use_(Use::Var(var, Access::Write, set.target.span));
                let op = match set.op {
                    ast::AssignOp::Assign => AssignOp::Set,
                    ast::AssignOp::Add => AssignOp::Add,
                    ast::AssignOp::Sub => AssignOp::Sub,
                    ast::AssignOp::Mul => AssignOp::Mul,
                    ast::AssignOp::Div => AssignOp::Div,
                };
                let Some(want) = sym::assign_rhs(var.ty, op) else {
                    self.err(
                        set.op_span,
                        format!("Expected '=' got '{}'", set.op.as_str()),
                    );
                    return;
                };
                if let Some(value) = self.typed(&set.value, want) {
                    out.push(Stmt::Set { target, op, value });
                }
            }
            ast::Stmt::Unset(u) => {
                let Some((target, var)) = self.var_target(&u.target) else {
                    return;
                };
                self.use_(Use::Var(var, Access::Unset, u.target.span));
                out.push(Stmt::Unset(target));
            }
            ast::Stmt::If(i) => {
                let mut branches = Vec::new();
                let c = self.typed(&i.cond, Type::Bool);
                let b = self.block(&i.then.stmts);
                if let Some(c) = c {
                    branches.push((c, b));
                }
                for e in &i.elifs {
                    let c = self.typed(&e.cond, Type::Bool);
                    let b = self.block(&e.block.stmts);
                    if let Some(c) = c {
                        branches.push((c, b));
                    }
                }
                let otherwise = i
                    .else_
                    .as_ref()
                    .map(|b| self.block(&b.stmts))
                    .unwrap_or_default();
                out.push(Stmt::If {
                    branches,
                    otherwise,
                });
            }
            ast::Stmt::Return(r) => self.ret(r, out),
            ast::Stmt::Call(c) => {
                let Some(p) = c.name().filter(|p| p.parts.len() == 1) else {
                    self.err(c.sub.span, "Expected a subroutine name");
                    return;
                };
                let name = &p.parts[0].name;
                if let Some(m) = Method::from_name(name) {
                    let id = self.subs.iter().position(|s| s.method == Some(m));
                    if let Some(id) = id {
                        self.sub_info[self.cur].calls.push((id, p.span));
                        out.push(Stmt::Call(id));
                    }
                    return;
                }
                if let Some(id) = self.reference(Kind::Sub, name, p.span) {
                    self.sub_info[self.cur].calls.push((id, p.span));
                    out.push(Stmt::Call(id));
                }
            }
            ast::Stmt::New(n) => {
                let AK::Call { callee, args } = &n.constructor.kind else {
                    self.err(n.constructor.span, "Expected a constructor call");
                    return;
                };
                let ctor = self.module_path(callee);
                let func = if callee
                    .parts
                    .first()
                    .is_some_and(|p| self.imports.contains_key(&p.name))
                {
                    sym::lookup_constructor(&ctor)
                } else {
                    None
                };
                let Some(func) = func else {
                    self.err(
                        callee.span,
                        format!("Symbol not found: '{}'", callee.dotted()),
                    );
                    return;
                };
                if !func.supported {
                    self.unsupported(callee.span, &ctor);
                }
                let new_span = Span::new(n.span.file, n.span.start, n.span.start + 3);
                self.use_(Use::Restricted(
                    sym::lookup_statement("new").map_or(Method::Init.mask(), |s| s.mask),
                    Access::Action,
                    new_span,
                ));
                let Some(obj) = self
                    .names
                    .get(&n.name.name)
                    .filter(|s| s.kind == Kind::Object && s.span == n.name.span)
                    .map(|s| s.id)
                else {
                    return;
                };
                if let Some(args) = self.bind(func.args, args, n.constructor.span) {
                    out.push(Stmt::New { obj, args });
                }
            }
            ast::Stmt::Expr(es) => {
                if let AK::Call { callee, args } = &es.expr.kind {
                    if callee.parts.len() == 1 {
                        if let Some(st) = sym::lookup_statement(&callee.parts[0].name) {
                            if !st.supported {
                                self.unsupported(callee.span, st.name);
                            }
                            if let Some(params) = st.args {
                                self.use_(Use::Restricted(st.mask, Access::Action, callee.span));
                                let Some(mut a) = self.bind(params, args, es.expr.span) else {
                                    return;
                                };
                                let Some(Some(v)) = a.pop() else { return };
                                out.push(match st.name {
                                    "hash_data" => Stmt::HashData(v),
                                    "synthetic" => Stmt::Synthetic(v),
                                    _ => Stmt::Ban(v),
                                });
                                return;
                            }
                        }
                    }
                }
                if let Some(e) = self.infer(&es.expr, false) {
                    out.push(Stmt::Eval(e));
                }
            }
        }
    }

    fn ret(&mut self, r: &ast::Return, out: &mut Vec<Stmt>) {
        let Some(a) = &r.action else {
            out.push(Stmt::ReturnBare);
            return;
        };
        let Some(mut action) = Action::from_name(&a.name) else {
            self.err(a.span, sym::MSG_EXPECTED_ACTION);
            return;
        };
        let params: &[sym::Arg] = match (action.args(), &r.args) {
            (sym::ActionArgs::None, Some(_)) => {
                self.err(after(a.span), sym::MSG_ARGS_NOT_ALLOWED);
                return;
            }
            (sym::ActionArgs::Required(_), None) => {
                self.err(after(a.span), sym::MSG_MISSING_ARGUMENT);
                return;
            }
            (sym::ActionArgs::Required(p) | sym::ActionArgs::Optional(p), Some(_)) => p,
            _ => &[],
        };
        let mut args = Vec::new();
        if let Some(given) = &r.args {
            if given.len() > params.len() {
                self.err(given[params.len()].span, "Too many arguments");
                return;
            }
            for (i, p) in params.iter().enumerate() {
                match given.get(i) {
                    Some(g) => match self.typed(g, p.ty) {
                        Some(e) => args.push(Some(e)),
                        None => return,
                    },
                    None if p.optional => args.push(None),
                    None => {
                        self.err(a.span, sym::MSG_MISSING_ARGUMENT);
                        return;
                    }
                }
            }
        }
        if action == Action::Fetch && self.subs[self.cur].method == Some(Method::Hit) {
            if let Some(l) = sym::legacy_actions(Method::Hit).first() {
                self.warn(a.span, l.warning);
            }
            action = Action::Miss;
        }
        self.use_(Use::Return(action, a.span));
        out.push(Stmt::Return { action, args });
    }

    /// A resolved variable: refuses the unsupported, lower-cases a header name once.
    fn resolved_var(
        &mut self,
        span: Span,
        name: &str,
        l: sym::VarLookup<'_>,
    ) -> (&'static Var, Option<Box<str>>) {
        let var = l.var();
        // `req`, `bereq`... as a whole (type HTTP) only prefix an attribute whose own lookup
        // reports what is wrong with it.
        if !var.supported && var.ty != Type::Http {
            self.unsupported(span, name);
        }
        let header = match l {
            sym::VarLookup::Header { header, .. } => {
                Some(header.to_ascii_lowercase().into_boxed_str())
            }
            _ => None,
        };
        (var, header)
    }

    /// A `set`/`unset` target.
    fn var_target(&mut self, p: &ast::Path) -> Option<(VarRef, &'static Var)> {
        let name = p.dotted();
        match sym::resolve_var(&name, self.syntax) {
            Ok(l) => {
                let (var, header) = self.resolved_var(p.span, &name, l);
                Some((
                    VarRef {
                        id: var_id(var),
                        header,
                    },
                    var,
                ))
            }
            Err(e) => {
                self.err(p.span, e.message(&name));
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Expressions

    /// Type-checks `e` where a `want` is expected, converting as Varnish does.
    fn typed(&mut self, e: &ast::Expr, want: Type) -> Option<Expr> {
        match want {
            Type::Regex => {
                return self
                    .regex_lit(e)
                    .map(|r| mk(Type::Regex, ExprKind::Regex(r)))
            }
            Type::Enum(vals) => {
                if let AK::Path(p) = &e.kind {
                    if p.parts.len() == 1 {
                        if let Some(v) = vals.iter().find(|v| **v == p.parts[0].name) {
                            return Some(mk(want, ExprKind::Enum(v)));
                        }
                    }
                }
                self.err_notes(
                    e.span,
                    "Wrong enum value.  Expected one of:",
                    vals.iter().map(|v| format!("\t{v}")).collect(),
                );
                return None;
            }
            Type::Acl | Type::Probe => {
                let kind = if want == Type::Acl {
                    Kind::Acl
                } else {
                    Kind::Probe
                };
                if let AK::Path(p) = &e.kind {
                    if p.parts.len() == 1 {
                        let n = &p.parts[0].name;
                        if let (Kind::Probe, "default", Some(id)) =
                            (kind, n.as_str(), self.default_probe)
                        {
                            return Some(mk(want, ExprKind::Probe(id)));
                        }
                        let id = self.reference(kind, n, e.span)?;
                        let k = if kind == Kind::Acl {
                            ExprKind::Acl(id)
                        } else {
                            ExprKind::Probe(id)
                        };
                        return Some(mk(want, k));
                    }
                }
            }
            Type::Header => {
                if let AK::Path(p) = &e.kind {
                    if let Ok(sym::VarLookup::Header { .. }) =
                        sym::resolve_var(&p.dotted(), self.syntax)
                    {
                        let x = self.infer(e, false)?;
                        return Some(Expr {
                            ty: Type::Header,
                            kind: x.kind,
                        });
                    }
                }
                let x = self.infer(e, false)?;
                self.err(
                    e.span,
                    format!("Expression has type {}, expected HEADER", x.ty.name()),
                );
                return None;
            }
            Type::Backend => {
                if let AK::Path(p) = &e.kind {
                    if p.parts.len() == 1 {
                        let n = &p.parts[0].name;
                        if (n == "none" || n == "None") && !self.names.contains_key(n) {
                            return Some(mk(Type::Backend, ExprKind::NoBackend));
                        }
                        match self.names.get(n).map(|s| s.kind) {
                            Some(Kind::Object) => {}
                            _ if sym::resolve_var(n, self.syntax).is_ok() => {}
                            _ => {
                                let id = self.reference(Kind::Backend, n, e.span)?;
                                return Some(mk(Type::Backend, ExprKind::Backend(id)));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let sctx = matches!(want, Type::String | Type::Strands | Type::Body);
        let x = self.infer(e, sctx)?;
        self.coerce(x, want, e.span)
    }

    fn coerce(&mut self, x: Expr, want: Type, span: Span) -> Option<Expr> {
        if norm(x.ty) == norm(want) {
            return Some(x);
        }
        match want {
            Type::String | Type::Strands => {
                if x.ty.to_string_ok() {
                    return Some(mk(Type::String, ExprKind::ToString(Box::new(x))));
                }
                self.err(span, format!("Cannot convert {} to STRING.", x.ty.name()));
                return None;
            }
            Type::Body => {
                if x.ty == Type::Blob {
                    return Some(x);
                }
                if x.ty.to_string_ok() {
                    return Some(mk(Type::String, ExprKind::ToString(Box::new(x))));
                }
            }
            Type::Bool if x.ty.to_bool_ok() => {
                return Some(mk(Type::Bool, ExprKind::ToBool(Box::new(x))));
            }
            Type::Ip if x.ty == Type::String => {
                if let ExprKind::Str(text) = &x.kind {
                    let ip = text.parse::<IpAddr>().ok().or_else(|| {
                        self.resolve(text, "80")
                            .ok()
                            .and_then(|l| l.first().map(|a| a.ip()))
                    });
                    match ip {
                        Some(ip) => return Some(mk(Type::Ip, ExprKind::Ip(ip))),
                        None => {
                            self.err(
                                span,
                                format!("\"{text}\" could not be resolved to an IP address"),
                            );
                            return None;
                        }
                    }
                }
            }
            Type::Real if x.ty == Type::Int => {
                if let ExprKind::Int(n) = x.kind {
                    return Some(mk(Type::Real, ExprKind::Real(n as f64)));
                }
                return Some(mk(Type::Real, ExprKind::IntToReal(Box::new(x))));
            }
            Type::Backend if x.ty == Type::Instance => {
                if let ExprKind::Object(obj) = x.kind {
                    let kind = self.objects[obj].kind;
                    if let Some(m) = sym::lookup_method(kind, "backend") {
                        return Some(mk(
                            Type::Backend,
                            ExprKind::Method {
                                obj,
                                method: m,
                                args: Vec::new(),
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
        let have = match &x.kind {
            ExprKind::Object(o) => format!("directors.{}", self.objects[*o].kind.name()),
            _ => x.ty.name().to_string(),
        };
        self.err(
            span,
            format!("Expression has type {have}, expected {}", want.name()),
        );
        None
    }

    fn regex_lit(&mut self, e: &ast::Expr) -> Option<Arc<super::re::Regex>> {
        fn collect(e: &ast::Expr, out: &mut String) -> bool {
            match &e.kind {
                AK::Str(s) => {
                    out.push_str(&s.value);
                    true
                }
                AK::Binary {
                    op: ast::BinOp::Add,
                    lhs,
                    rhs,
                } => collect(lhs, out) && collect(rhs, out),
                _ => false,
            }
        }
        let mut pat = String::new();
        if !collect(e, &mut pat) {
            let t = self.snippet(e.span);
            self.err(e.span, format!("Expected CSTR got '{t}'"));
            return None;
        }
        if let Some(r) = self.regexes.get(&pat) {
            return Some(r.clone());
        }
        match super::re::Regex::new(&pat, 1 << 22) {
            Ok(r) => {
                let r = Arc::new(r);
                self.regexes.insert(pat, r.clone());
                Some(r)
            }
            Err(err) => {
                let msg = super::re::error_message(err);
                self.err_notes(e.span, "Regexp compilation error:", vec![msg]);
                None
            }
        }
    }

    /// The operator's own span between two operands (for messages that point at it).
    fn op_span(&self, lhs: Span, rhs: Span, op: &str) -> Span {
        if lhs.file == rhs.file && lhs.end <= rhs.start {
            let text = self.map.text(lhs.file);
            if let Some(between) = text.get(lhs.end as usize..rhs.start as usize) {
                if let Some(i) = between.find(op) {
                    let s = lhs.end + i as u32;
                    return Span::new(lhs.file, s, s + op.len() as u32);
                }
            }
        }
        lhs.to(rhs)
    }

    /// The type of an expression from its own shape (`sctx`: a string is expected, so `+`
    /// concatenates any convertible operands).
    fn infer(&mut self, e: &ast::Expr, sctx: bool) -> Option<Expr> {
        Some(match &e.kind {
            AK::Str(s) => mk(Type::String, ExprKind::Str(s.value.as_str().into())),
            AK::Int(n) => mk(Type::Int, ExprKind::Int(*n)),
            AK::Real(r) => mk(Type::Real, ExprKind::Real(*r)),
            AK::Duration(d) => mk(Type::Duration, ExprKind::Duration(d.seconds)),
            AK::Bytes(b) => mk(Type::Bytes, ExprKind::Bytes(b.bytes)),
            AK::Bool(b) => mk(Type::Bool, ExprKind::Bool(*b)),
            AK::Blob(b) => mk(Type::Blob, ExprKind::Blob(b.as_slice().into())),
            AK::Path(p) => return self.path_value(p),
            AK::Call { callee, args } => return self.call(callee, args, e.span),
            AK::Attr { base, name } => {
                let b = self.infer(base, false)?;
                return self.type_method(b, name, false, e.span);
            }
            AK::Method { base, name, args } => {
                let b = self.infer(base, false)?;
                if !args.is_empty() {
                    self.err(args[0].span, "Too many arguments");
                    return None;
                }
                return self.type_method(b, name, true, e.span);
            }
            AK::Unary { op, operand } => match op {
                ast::UnaryOp::Not => {
                    let x = self.typed(operand, Type::Bool)?;
                    if let ExprKind::Bool(b) = x.kind {
                        return Some(mk(Type::Bool, ExprKind::Bool(!b)));
                    }
                    mk(Type::Bool, ExprKind::Not(Box::new(x)))
                }
                ast::UnaryOp::Neg => {
                    let x = self.infer(operand, false)?;
                    match (x.ty, &x.kind) {
                        (_, ExprKind::Int(n)) => mk(Type::Int, ExprKind::Int(n.wrapping_neg())),
                        (_, ExprKind::Real(n)) => mk(Type::Real, ExprKind::Real(-n)),
                        (_, ExprKind::Duration(n)) => mk(Type::Duration, ExprKind::Duration(-n)),
                        (Type::Int | Type::Real | Type::Duration, _) => {
                            mk(x.ty, ExprKind::Neg(Box::new(x)))
                        }
                        (t, _) => {
                            self.err(e.span, format!("Operator - not possible on {}", t.name()));
                            return None;
                        }
                    }
                }
            },
            AK::Binary { op, lhs, rhs } => return self.binary(*op, lhs, rhs, e.span, sctx),
        })
    }

    fn binary(
        &mut self,
        op: ast::BinOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
        sctx: bool,
    ) -> Option<Expr> {
        use ast::BinOp as B;
        let cmp = match op {
            B::Or | B::And => {
                let l = self.typed(lhs, Type::Bool);
                let r = self.typed(rhs, Type::Bool);
                let (l, r) = (Box::new(l?), Box::new(r?));
                let k = if op == B::Or {
                    ExprKind::Or(l, r)
                } else {
                    ExprKind::And(l, r)
                };
                return Some(mk(Type::Bool, k));
            }
            B::Eq => CmpOp::Eq,
            B::Ne => CmpOp::Ne,
            B::Lt => CmpOp::Lt,
            B::Gt => CmpOp::Gt,
            B::Le => CmpOp::Le,
            B::Ge => CmpOp::Ge,
            B::Match => CmpOp::Match,
            B::NoMatch => CmpOp::NoMatch,
            B::Add | B::Sub | B::Mul | B::Div | B::Rem => {
                return self.arith(op, lhs, rhs, span, sctx);
            }
        };
        let l = self.infer(lhs, false)?;
        let lt = norm(l.ty);
        let ops = self.op_span(lhs.span, rhs.span, op.as_str());
        if !sym::compare_ok(l.ty, cmp) {
            self.err(
                ops,
                format!("Operator {} not possible on {}", op.as_str(), lt.name()),
            );
            return None;
        }
        if matches!(cmp, CmpOp::Match | CmpOp::NoMatch) {
            let negate = cmp == CmpOp::NoMatch;
            if lt == Type::Ip {
                let acl = match &rhs.kind {
                    AK::Path(p) if p.parts.len() == 1 => {
                        self.reference(Kind::Acl, &p.parts[0].name, rhs.span)?
                    }
                    _ => {
                        let t = self.snippet(rhs.span);
                        self.err(rhs.span, format!("Expected ID got '{t}'"));
                        return None;
                    }
                };
                return Some(mk(
                    Type::Bool,
                    ExprKind::AclMatch {
                        ip: Box::new(l),
                        acl,
                        negate,
                    },
                ));
            }
            let regex = self.regex_lit(rhs)?;
            return Some(mk(
                Type::Bool,
                ExprKind::RegexMatch {
                    subject: Box::new(l),
                    regex,
                    negate,
                },
            ));
        }
        let r = if lt == Type::Backend {
            self.typed(rhs, Type::Backend)?
        } else {
            self.infer(rhs, is_stringish(lt))?
        };
        let r = if norm(r.ty) != lt && lt == Type::Real && r.ty == Type::Int {
            self.coerce(r, Type::Real, rhs.span)?
        } else {
            r
        };
        if norm(r.ty) != lt {
            self.err(
                ops,
                format!(
                    "Comparison of different types: {} '{}' {}",
                    lt.name(),
                    op.as_str(),
                    norm(r.ty).name()
                ),
            );
            return None;
        }
        Some(mk(
            Type::Bool,
            ExprKind::Cmp {
                op: cmp,
                lhs: Box::new(l),
                rhs: Box::new(r),
            },
        ))
    }

    fn arith(
        &mut self,
        op: ast::BinOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
        sctx: bool,
    ) -> Option<Expr> {
        use ast::BinOp as B;
        let aop = match op {
            B::Add => ArithOp::Add,
            B::Sub => ArithOp::Sub,
            B::Mul => ArithOp::Mul,
            B::Div => ArithOp::Div,
            _ => ArithOp::Rem,
        };
        let l = self.infer(lhs, sctx)?;
        let lt = norm(l.ty);
        if matches!(aop, ArithOp::Mul | ArithOp::Div) && lt.mul_type().is_none() {
            let ops = self.op_span(lhs.span, rhs.span, op.as_str());
            self.err(
                ops,
                format!(
                    "Operator {} not possible on type {}.",
                    op.as_str(),
                    lt.name()
                ),
            );
            return None;
        }
        let r = self.infer(rhs, sctx || (aop == ArithOp::Add && is_stringish(lt)))?;
        let rt = norm(r.ty);
        if let Some(t) = sym::arith_result(aop, lt, rt) {
            return Some(fold(aop, t, l, r));
        }
        if aop == ArithOp::Add && (is_stringish(lt) || sctx) {
            let mut parts = Vec::new();
            for (x, sp) in [(l, lhs.span), (r, rhs.span)] {
                if let ExprKind::Concat(mut v) = x.kind {
                    parts.append(&mut v);
                    continue;
                }
                let x = self.coerce(x, Type::String, sp)?;
                parts.push(x);
            }
            return Some(mk(Type::String, ExprKind::Concat(parts)));
        }
        let ops = self.op_span(lhs.span, rhs.span, op.as_str());
        self.err(
            ops.to(rhs.span),
            format!("{} {} {} not possible.", lt.name(), op.as_str(), rt.name()),
        );
        let _ = span;
        None
    }

    /// A bare name used as a value.
    fn path_value(&mut self, p: &ast::Path) -> Option<Expr> {
        let name = p.dotted();
        if p.parts.len() == 1 {
            let n = &p.parts[0].name;
            if let Some(s) = self.names.get_mut(n) {
                s.refs += 1;
                let (k, id) = (s.kind, s.id);
                return Some(match k {
                    Kind::Backend => mk(Type::Backend, ExprKind::Backend(id)),
                    Kind::Acl => mk(Type::Acl, ExprKind::Acl(id)),
                    Kind::Probe => mk(Type::Probe, ExprKind::Probe(id)),
                    Kind::Object => mk(Type::Instance, ExprKind::Object(id)),
                    Kind::Sub => {
                        self.err(p.span, format!("Symbol '{n}' is a sub, not a value"));
                        return None;
                    }
                });
            }
            if n == "none" || n == "None" {
                return Some(mk(Type::Backend, ExprKind::NoBackend));
            }
        }
        match sym::resolve_var(&name, self.syntax) {
            Ok(l) => {
                let (var, header) = self.resolved_var(p.span, &name, l);
                self.use_(Use::Var(var, Access::Read, p.span));
                let ty = if var.ty == Type::Header {
                    Type::String
                } else {
                    var.ty
                };
                if var.read.is_empty() {
                    self.err(p.span, "Variable cannot be read.");
                    return None;
                }
                Some(mk(
                    ty,
                    ExprKind::Var(VarRef {
                        id: var_id(var),
                        header,
                    }),
                ))
            }
            Err(err) => {
                // `x.attr` on a variable or symbol (`storage.s0.happy`, `b.resolve`).
                if p.parts.len() >= 2 {
                    let base = p.prefix(p.parts.len() - 1);
                    let last = &p.parts[p.parts.len() - 1];
                    let base_ok = (base.parts.len() == 1
                        && self.names.contains_key(&base.parts[0].name))
                        || sym::resolve_var(&base.dotted(), self.syntax).is_ok();
                    if base_ok && !matches!(err, sym::VarError::BadHeader(_)) {
                        let b = self.path_value(&base)?;
                        let id = ast::Ident {
                            name: last.name.clone(),
                            span: last.span,
                        };
                        return self.type_method(b, &id, false, p.span);
                    }
                }
                self.err(p.span, err.message(&name));
                None
            }
        }
    }

    fn type_method(
        &mut self,
        base: Expr,
        name: &ast::Ident,
        call: bool,
        span: Span,
    ) -> Option<Expr> {
        if let ExprKind::Object(obj) = base.kind {
            let kind = self.objects[obj].kind;
            if let Some(m) = sym::lookup_method(kind, &name.name) {
                if !m.args.iter().all(|a| a.omittable()) {
                    self.err(span, "Missing argument.");
                    return None;
                }
                return Some(mk(
                    m.ret,
                    ExprKind::Method {
                        obj,
                        method: m,
                        args: m.args.iter().map(|_| None).collect(),
                    },
                ));
            }
            self.err(
                name.span,
                format!(
                    "Unknown property '{}' for type directors.{}",
                    name.name,
                    kind.name()
                ),
            );
            return None;
        }
        if let Some(m) = sym::lookup_type_method(base.ty, &name.name) {
            if m.call == call && !m.supported {
                self.unsupported(name.span, &format!(".{}", name.name));
            }
        }
        match sym::lookup_type_method(base.ty, &name.name) {
            Some(m) if m.call == call => Some(mk(
                m.ret,
                ExprKind::TypeMethod {
                    on: Box::new(base),
                    method: m,
                },
            )),
            _ => {
                self.err(
                    name.span,
                    format!(
                        "Unknown property '{}' for type {}",
                        name.name,
                        norm(base.ty).name()
                    ),
                );
                None
            }
        }
    }

    fn call(&mut self, callee: &ast::Path, args: &[ast::Arg], span: Span) -> Option<Expr> {
        let full = self.module_path(callee);
        let Some(first) = callee.parts.first().map(|p| &p.name) else {
            self.err(span, "Expected a name");
            return None;
        };
        let imported = callee.parts.len() == 1 || self.imports.contains_key(first);
        if imported {
            if let Some(f) = sym::lookup_func(&full) {
                if !f.supported {
                    self.unsupported(callee.span, &full);
                }
                return self.func_call(f, args, callee.span, span);
            }
        }
        if callee.parts.len() == 2 {
            if let Some(s) = self.names.get(first).filter(|s| s.kind == Kind::Object) {
                let obj = s.id;
                let kind = self.objects[obj].kind;
                let mname = &callee.parts[1];
                let Some(m) = sym::lookup_method(kind, &mname.name) else {
                    self.err(
                        mname.span,
                        format!(
                            "Unknown property '{}' for type directors.{}",
                            mname.name,
                            kind.name()
                        ),
                    );
                    return None;
                };
                if !m.supported {
                    let what = format!("directors.{}.{}", kind.name(), mname.name);
                    self.unsupported(mname.span, &what);
                }
                let a = self.bind(m.args, args, span)?;
                return Some(mk(
                    m.ret,
                    ExprKind::Method {
                        obj,
                        method: m,
                        args: a,
                    },
                ));
            }
        }
        // `VALUE.method()` where VALUE is a variable or symbol.
        if callee.parts.len() >= 2 {
            let base = callee.prefix(callee.parts.len() - 1);
            let last = &callee.parts[callee.parts.len() - 1];
            let base_ok = (base.parts.len() == 1 && self.names.contains_key(&base.parts[0].name))
                || sym::resolve_var(&base.dotted(), self.syntax).is_ok();
            if base_ok {
                if !args.is_empty() {
                    self.err(args[0].span, "Too many arguments");
                    return None;
                }
                let b = self.path_value(&base)?;
                let id = ast::Ident {
                    name: last.name.clone(),
                    span: last.span,
                };
                return self.type_method(b, &id, true, span);
            }
        }
        self.err(
            callee.span,
            format!("Symbol not found: '{}'", callee.dotted()),
        );
        None
    }

    fn func_call(
        &mut self,
        f: &'static Func,
        args: &[ast::Arg],
        name_span: Span,
        span: Span,
    ) -> Option<Expr> {
        if f.restrict != sym::SubMask::ALL {
            self.use_(Use::Restricted(f.restrict, Access::Read, name_span));
        }
        let a = self.bind(f.args, args, span)?;
        Some(mk(f.ret, ExprKind::Call { func: f, args: a }))
    }

    /// Binds call arguments to parameters (positional, then named), types them and fills the
    /// defaults (`vcc_func_args`).
    fn bind(
        &mut self,
        params: &[sym::Arg],
        args: &[ast::Arg],
        span: Span,
    ) -> Option<Vec<Option<Expr>>> {
        let mut slots: Vec<Option<&ast::Arg>> = vec![None; params.len()];
        let mut pos = 0;
        let mut ok = true;
        for a in args {
            match &a.name {
                None => {
                    if pos >= params.len() {
                        self.err(a.span, "Too many arguments");
                        return None;
                    }
                    slots[pos] = Some(a);
                    pos += 1;
                }
                Some(n) => {
                    let Some(i) = params.iter().position(|p| p.name == Some(n.name.as_str()))
                    else {
                        self.err(n.span, format!("Unknown argument '{}'", n.name));
                        return None;
                    };
                    if slots[i].is_some() {
                        self.err(n.span, format!("Argument '{}' already used", n.name));
                        return None;
                    }
                    slots[i] = Some(a);
                }
            }
        }
        let mut out = Vec::with_capacity(params.len());
        for (i, (p, slot)) in params.iter().zip(slots).enumerate() {
            match slot {
                Some(a) => match self.typed(&a.value, p.ty) {
                    Some(e) => out.push(Some(e)),
                    None => ok = false,
                },
                None => match p.default {
                    Some(v) => out.push(default_value(v, p.ty)),
                    None if p.optional => out.push(None),
                    None => {
                        let end = Span::new(span.file, span.end.saturating_sub(1), span.end);
                        match p.name {
                            Some(n) => self.err(end, format!("Argument '{n}' missing")),
                            None => {
                                let _ = i;
                                self.err(end, "Expected ',' got ')'")
                            }
                        }
                        ok = false;
                    }
                },
            }
        }
        ok.then_some(out)
    }

    // -----------------------------------------------------------------------------------------
    // Call graph: per-method checks, recursion; unused and undefined symbols

    fn check_methods(&mut self) {
        for m in Method::ALL {
            let Some(root) = self.subs.iter().position(|s| s.method == Some(m)) else {
                continue;
            };
            let mut stack: Vec<(SubId, Span)> = Vec::new();
            let mut done = HashSet::new();
            self.walk(m, root, &mut stack, &mut done);
        }
    }

    fn walk(
        &mut self,
        m: Method,
        id: SubId,
        stack: &mut Vec<(SubId, Span)>,
        done: &mut HashSet<SubId>,
    ) {
        if stack.iter().any(|(s, _)| *s == id) || stack.len() > 20_000 {
            let def = self.sub_info[id].defs.first().copied();
            if let Some(def) = def {
                let mut notes = Vec::new();
                for (s, at) in stack.iter().rev() {
                    let _ = s;
                    notes.push(format!("...called from {}", self.where_(*at)));
                }
                self.err_notes(def, "Subroutine recurses on", notes);
            }
            return;
        }
        if !done.insert(id) {
            return;
        }
        let called = self.subs[id].method.is_none();
        let uses = self.sub_info[id].uses.clone();
        for u in uses {
            let (span, msg, extra) = match u {
                Use::Var(var, access, span) => {
                    let msg = if called {
                        sym::access_error_from(var, m, access)
                    } else {
                        sym::access_error(var, m, access)
                    };
                    (span, msg, None)
                }
                Use::Restricted(mask, access, span) => {
                    let msg =
                        (!mask.contains(m)).then(|| sym::restriction_error(access, m, called));
                    (span, msg, None)
                }
                Use::Return(action, span) => {
                    if allowed(m, action) {
                        (span, None, None)
                    } else if let Some(l) =
                        sym::legacy_actions(m).iter().find(|l| l.action == action)
                    {
                        self.warn(span, l.warning);
                        (span, None, None)
                    } else {
                        (
                            span,
                            Some(sym::invalid_return_message(action)),
                            Some(sym::legal_returns_message(m)),
                        )
                    }
                }
            };
            if let Some(msg) = msg {
                let mut notes: Vec<String> = extra.into_iter().collect();
                if called {
                    notes.push(format!("...in subroutine \"{}\"", self.subs[id].name));
                    for (s, at) in stack.iter().rev() {
                        notes.push(format!(
                            "...called from \"{}\" {}",
                            self.subs[*s].name,
                            self.where_(*at)
                        ));
                    }
                }
                self.err_notes(span, msg, notes);
            }
        }
        let calls = self.sub_info[id].calls.clone();
        for (callee, at) in calls {
            stack.push((id, at));
            self.walk(m, callee, stack, done);
            stack.pop();
        }
        // Another path may reach `id` again without recursion: only the current path matters
        // for recursion, so allow re-walking from other paths is unnecessary (uses were
        // checked for this method already).
    }

    fn check_refs(&mut self) {
        // The default backend is referenced implicitly: `default`, else the first one.
        let default = if self.names.get("default").map(|s| s.kind) == Some(Kind::Backend) {
            Some("default".to_string())
        } else {
            self.backends.first().map(|b| b.name.to_string())
        };
        let mut unused: Vec<(Span, String)> = Vec::new();
        for (name, s) in &self.names {
            if s.refs > 0 || s.builtin {
                continue;
            }
            let skip = match s.kind {
                Kind::Backend => Some(name) == default.as_ref(),
                Kind::Object => true,
                _ => false,
            };
            if !skip {
                unused.push((s.span, format!("Unused {} {name}, defined:", s.kind.name())));
            }
        }
        unused.sort_by_key(|(s, _)| (s.file, s.start));
        for (span, msg) in unused {
            if self.opts.allow_unused {
                self.warn(span, msg);
            } else {
                self.err(span, msg);
            }
        }
    }
}

fn allowed(m: Method, a: Action) -> bool {
    sym::allowed_actions(m).contains(&a) || (m == Method::Hit && a == Action::Miss)
}

fn default_value(v: sym::Value, ty: Type) -> Option<Expr> {
    Some(match v {
        sym::Value::Str(s) => mk(Type::String, ExprKind::Str(s.into())),
        sym::Value::Int(n) => mk(Type::Int, ExprKind::Int(n)),
        sym::Value::Real(r) => mk(Type::Real, ExprKind::Real(r)),
        sym::Value::Bool(b) => mk(Type::Bool, ExprKind::Bool(b)),
        sym::Value::Duration(d) => mk(Type::Duration, ExprKind::Duration(d)),
        sym::Value::Enum(e) => mk(ty, ExprKind::Enum(e)),
        sym::Value::Null => return None,
    })
}

/// Folds arithmetic between literals.
fn fold(op: ArithOp, ty: Type, l: Expr, r: Expr) -> Expr {
    let num = |e: &Expr| match e.kind {
        ExprKind::Int(n) => Some(n as f64),
        ExprKind::Real(x) | ExprKind::Duration(x) | ExprKind::Bytes(x) => Some(x),
        _ => None,
    };
    if let (ExprKind::Int(a), ExprKind::Int(b)) = (&l.kind, &r.kind) {
        let v = match op {
            ArithOp::Add => a.checked_add(*b),
            ArithOp::Sub => a.checked_sub(*b),
            ArithOp::Mul => a.checked_mul(*b),
            ArithOp::Div => a.checked_div(*b),
            ArithOp::Rem => a.checked_rem(*b),
        };
        if let Some(v) = v {
            return mk(Type::Int, ExprKind::Int(v));
        }
    } else if let (Some(a), Some(b)) = (num(&l), num(&r)) {
        let v = match op {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div => a / b,
            ArithOp::Rem => a % b,
        };
        if v.is_finite() {
            let k = match ty {
                Type::Duration => Some(ExprKind::Duration(v)),
                Type::Real => Some(ExprKind::Real(v)),
                Type::Bytes => Some(ExprKind::Bytes(v)),
                _ => None,
            };
            if let Some(k) = k {
                return mk(ty, k);
            }
        }
    }
    let (l, r) = if ty == Type::Real {
        let c = |e: Expr| {
            if e.ty == Type::Int {
                mk(Type::Real, ExprKind::IntToReal(Box::new(e)))
            } else {
                e
            }
        };
        (c(l), c(r))
    } else {
        (l, r)
    };
    mk(
        ty,
        ExprKind::Arith {
            op,
            lhs: Box::new(l),
            rhs: Box::new(r),
        },
    )
}

/// `"[::1]:8080"` → (`::1`, `8080`); `"host:81"` → (`host`, `81`); an IPv6 literal alone keeps
/// its colons.
fn split_host(h: &str) -> (&str, Option<&str>) {
    if let Some(rest) = h.strip_prefix('[') {
        if let Some((a, b)) = rest.split_once(']') {
            return (a, b.strip_prefix(':').filter(|p| !p.is_empty()));
        }
    }
    if h.matches(':').count() == 1 {
        if let Some((a, b)) = h.split_once(':') {
            return (a, Some(b).filter(|p| !p.is_empty()));
        }
    }
    (h, None)
}

fn mask_ip(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix.min(32) as u32)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix.min(128) as u32)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// The one-byte span just after `s` (Varnish points at the token after a value it consumed).
fn after(s: Span) -> Span {
    Span::new(s.file, s.end, s.end + 1)
}

/// Where a field's value is (the field itself when it is not an expression).
fn value_span(f: &ast::Field) -> Span {
    match &f.value {
        ast::FieldValue::Expr(e) => e.span,
        _ => f.span,
    }
}

/// Varnish's `isip()` for `.authority`: an IPv4 or IPv6 literal, bracketed or not, with or
/// without a port.
fn is_ip_literal(s: &str) -> bool {
    let t = s.trim();
    if t.parse::<IpAddr>().is_ok() || t.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let host = t.rsplit_once(':').map_or(t, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CompileOptions {
        CompileOptions {
            resolver: Some(Arc::new(|h: &str, p: &str| {
                let port: u16 = p.parse().unwrap_or(80);
                match h {
                    "one.test" => Ok(vec![SocketAddr::from(([192, 0, 2, 1], port))]),
                    "two.test" => Ok(vec![
                        SocketAddr::from(([192, 0, 2, 1], port)),
                        SocketAddr::from(([192, 0, 2, 2], port)),
                    ]),
                    _ => Err("Name or service not known".into()),
                }
            })),
            ..Default::default()
        }
    }

    fn compile_text(text: &str) -> Result<Program, Vec<String>> {
        let (mut map, r) = super::super::parser::parse_str("t.vcl", text);
        let vcl = r.map_err(|e| e.iter().map(|d| map.render(d)).collect::<Vec<_>>())?;
        let r = compile(&mut map, &vcl, &opts());
        r.map_err(|e| {
            e.iter()
                .filter(|d| d.is_error())
                .map(|d| map.render(d))
                .collect()
        })
    }

    fn first_err(text: &str) -> String {
        match compile_text(text) {
            Ok(_) => panic!("compiled: {text}"),
            Err(e) => e[0].clone(),
        }
    }

    const B: &str = "vcl 4.1; backend a { .host = \"127.0.0.1\"; }\n";

    #[test]
    fn builtin_alone_compiles_with_a_backend() {
        let p = compile_text(B).unwrap();
        assert_eq!(p.default_backend, Some(0));
        assert!(!p.method(Method::Recv).body.is_empty());
        assert_eq!(p.backends[0].host_header.as_ref(), "127.0.0.1");
        assert_eq!(
            p.backends[0].endpoint,
            Endpoint::Tcp {
                ipv4: Some("127.0.0.1:80".parse().unwrap()),
                ipv6: None
            }
        );
    }

    #[test]
    fn user_code_comes_before_builtin() {
        let p = compile_text(&format!("{B} sub vcl_recv {{ return (pass); }}")).unwrap();
        match &p.method(Method::Recv).body[0] {
            Stmt::Return { action, .. } => assert_eq!(*action, Action::Pass),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn probe_defaults() {
        let p = compile_text(
            "vcl 4.1; probe p { .threshold = 4; } backend a { .host = \"one.test\"; .port = \"8080\"; .probe = p; }",
        )
        .unwrap();
        let pr = &p.probes[0];
        assert_eq!((pr.window, pr.threshold, pr.initial), (5, 4, 3));
        assert_eq!(pr.expected_response, 200);
        assert_eq!(pr.timeout, 2.0);
        assert_eq!(p.backends[0].probe, Some(0));
        assert_eq!(
            p.backends[0].endpoint,
            Endpoint::Tcp {
                ipv4: Some("192.0.2.1:8080".parse().unwrap()),
                ipv6: None
            }
        );
    }

    #[test]
    fn messages() {
        let e = first_err("vcl 4.1; backend a { .host = \"two.test\"; }");
        assert!(e.contains("resolves to too many addresses"), "{e}");
        let e = first_err(&format!(
            "{B} sub vcl_deliver {{ set req.url = \"x\"; set beresp.ttl = 1s; }}"
        ));
        assert!(
            e.contains("Not available in subroutine 'vcl_deliver'") || e.contains("Cannot be set"),
            "{e}"
        );
        let e = first_err(&format!(
            "{B} sub f {{ set beresp.ttl = 1s; }} sub vcl_recv {{ call f; }}"
        ));
        assert!(
            e.contains("Cannot be set from subroutine 'vcl_recv'."),
            "{e}"
        );
        assert!(e.contains("...called from \"vcl_recv\""), "{e}");
        let e = first_err(&format!("{B} sub vcl_recv {{ if (req.url ~ \"(\") {{}} }}"));
        assert!(e.contains("Regexp compilation error"), "{e}");
    }

    #[test]
    fn acl_table() {
        let p = compile_text(&format!(
            "{B} acl x {{ \"10.0.0.0\"/8; !\"10.1.0.0\"/16; \"::1\"; }} sub vcl_recv {{ if (client.ip ~ x) {{}} }}"
        ))
        .unwrap();
        let t = &p.acls[0];
        assert!(t.matches("10.2.3.4".parse().unwrap()));
        assert!(!t.matches("10.1.3.4".parse().unwrap()));
        assert!(t.matches("::1".parse().unwrap()));
        assert!(!t.matches("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn director_object_as_backend() {
        compile_text(&format!(
            "{B} import directors; sub vcl_init {{ new d = directors.round_robin(); new f = directors.fallback(); f.add_backend(d); d.add_backend(a); }} sub vcl_recv {{ set req.backend_hint = f.backend(); }}"
        ))
        .unwrap();
    }

    #[test]
    fn fetch_in_hit_is_miss_with_warning() {
        let p = compile_text(&format!("{B} sub vcl_hit {{ return (fetch); }}")).unwrap();
        assert!(p.warnings.iter().any(|w| w.message.contains("vcl_hit")));
        match &p.method(Method::Hit).body[0] {
            Stmt::Return { action, .. } => assert_eq!(*action, Action::Miss),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn constant_folding() {
        let p = compile_text(&format!(
            "{B} sub vcl_backend_response {{ set beresp.ttl = 1m + 30s; set beresp.grace = -(2h); }}"
        ))
        .unwrap();
        match &p.method(Method::BackendResponse).body[0] {
            Stmt::Set { value, .. } => {
                assert!(matches!(value.kind, ExprKind::Duration(d) if d == 90.0))
            }
            s => panic!("{s:?}"),
        }
    }
}
