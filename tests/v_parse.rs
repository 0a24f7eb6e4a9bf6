//! VCL front end: every file of `tests/vcl_corpus/good` parses; every file of
//! `tests/vcl_corpus/bad` fails with the first diagnostic its `# expect:` line names; no mutated
//! input makes the parser panic or report a span outside its file; rendering is exact.
//!
//! `# expect: [FILE:]LINE:COL: message-substring` — FILE (a path suffix) is given when the first
//! error is in an included file.

use std::path::{Path, PathBuf};

use ringcache::vcl::ast::*;
use ringcache::vcl::{parse_file, parse_str, SourceMap, Span};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vcl_corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "vcl"))
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------------
// Spans: every node's span is inside its file.

fn check_span(map: &SourceMap, s: Span, what: &str) {
    let text = map.text(s.file);
    assert!(
        (s.file.0 as usize) < map.len()
            && s.start <= s.end
            && s.end as usize <= text.len()
            && text.is_char_boundary(s.start as usize)
            && text.is_char_boundary(s.end as usize),
        "{what}: bad span {s:?} (file of {} bytes)",
        text.len()
    );
}

fn check_fields(map: &SourceMap, fields: &[Field]) {
    for f in fields {
        check_span(map, f.span, "field");
        check_span(map, f.name.span, "field name");
        match &f.value {
            FieldValue::Expr(e) => check_expr(map, e),
            FieldValue::Probe { fields, span } => {
                check_span(map, *span, "inline probe");
                check_fields(map, fields);
            }
            FieldValue::Strings(list) => list.iter().for_each(|s| check_span(map, s.span, "str")),
        }
    }
}

fn check_path(map: &SourceMap, p: &Path_) {
    check_span(map, p.span, "path");
    for part in &p.parts {
        check_span(map, part.span, "path part");
    }
}

type Path_ = ringcache::vcl::ast::Path;

fn check_args(map: &SourceMap, args: &[Arg]) {
    for a in args {
        check_span(map, a.span, "arg");
        check_expr(map, &a.value);
    }
}

fn check_expr(map: &SourceMap, e: &Expr) {
    check_span(map, e.span, "expr");
    match &e.kind {
        ExprKind::Path(p) => check_path(map, p),
        ExprKind::Call { callee, args } => {
            check_path(map, callee);
            check_args(map, args);
        }
        ExprKind::Attr { base, name } => {
            check_expr(map, base);
            check_span(map, name.span, "attr");
        }
        ExprKind::Method { base, name, args } => {
            check_expr(map, base);
            check_span(map, name.span, "method");
            check_args(map, args);
        }
        ExprKind::Unary { operand, .. } => check_expr(map, operand),
        ExprKind::Binary { lhs, rhs, .. } => {
            check_expr(map, lhs);
            check_expr(map, rhs);
        }
        ExprKind::Str(s) => check_span(map, s.span, "str"),
        _ => {}
    }
}

fn check_block(map: &SourceMap, b: &Block) {
    check_span(map, b.span, "block");
    for s in &b.stmts {
        check_span(map, s.span(), "stmt");
        match s {
            Stmt::Set(s) => {
                check_path(map, &s.target);
                check_expr(map, &s.value);
            }
            Stmt::Unset(u) => check_path(map, &u.target),
            Stmt::If(i) => {
                check_expr(map, &i.cond);
                check_block(map, &i.then);
                for e in &i.elifs {
                    check_span(map, e.span, "elif");
                    check_expr(map, &e.cond);
                    check_block(map, &e.block);
                }
                if let Some(b) = &i.else_ {
                    check_block(map, b);
                }
            }
            Stmt::Return(r) => r.args.iter().flatten().for_each(|a| check_expr(map, a)),
            Stmt::Call(c) => check_expr(map, &c.sub),
            Stmt::New(n) => check_expr(map, &n.constructor),
            Stmt::Expr(e) => check_expr(map, &e.expr),
            Stmt::Block(b) => check_block(map, b),
        }
    }
}

fn check_vcl(map: &SourceMap, v: &Vcl) {
    check_span(map, v.version.span, "version");
    for item in &v.items {
        check_span(map, item.span(), "item");
        check_span(map, item.name().span, "item name");
        match item {
            Item::Backend(b) => {
                if let BackendDef::Fields(f) = &b.def {
                    check_fields(map, f);
                }
            }
            Item::Probe(p) => check_fields(map, &p.fields),
            Item::Acl(a) => a.entries.iter().for_each(|e| {
                check_span(map, e.span, "acl entry");
                check_span(map, e.addr_span, "acl addr");
            }),
            Item::Sub(s) => check_block(map, &s.body),
            Item::Import(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn good_corpus_parses() {
    let files = corpus("good");
    assert!(files.len() >= 30, "only {} good files", files.len());
    let mut failures = String::new();
    for f in &files {
        let (map, r) = parse_file(f);
        match r {
            Ok(v) => check_vcl(&map, &v),
            Err(d) => failures.push_str(&map.render_all(&d)),
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn builtin_vcl_has_the_builtin_subs() {
    let f = corpus("good")
        .into_iter()
        .find(|p| p.ends_with("builtin_71.vcl"))
        .unwrap();
    let (_, r) = parse_file(f);
    let v = r.unwrap();
    assert_eq!(v.version.version, VclVersion::V40);
    let names: Vec<&str> = v.subs().map(|s| s.name.name.as_str()).collect();
    for want in [
        "vcl_recv",
        "vcl_pipe",
        "vcl_pass",
        "vcl_hash",
        "vcl_purge",
        "vcl_hit",
        "vcl_miss",
        "vcl_deliver",
        "vcl_synth",
        "vcl_backend_fetch",
        "vcl_backend_response",
        "vcl_backend_error",
        "vcl_init",
        "vcl_fini",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
}

#[test]
fn includes_are_spliced_with_their_own_spans() {
    let f = corpus("good")
        .into_iter()
        .find(|p| p.ends_with("own_includes.vcl"))
        .unwrap();
    let (map, r) = parse_file(f);
    let v = r.unwrap();
    let files: Vec<&str> = v.includes.iter().map(|i| map.name(i.file)).collect();
    let want = [
        "inc/backends.inc.vcl",
        "inc/nested.inc.vcl",
        "inc/glob/10-a.inc.vcl",
        "inc/glob/20-b.inc.vcl",
        "inc/office.acl.inc.vcl",
        "inc/recv_body.inc.vcl",
    ];
    assert_eq!(files.len(), want.len(), "{files:?}");
    for (f, w) in files.iter().zip(want) {
        assert!(f.ends_with(w), "{f} is not {w}");
    }
    assert_eq!(
        v.includes[0].version.map(|d| d.version),
        Some(VclVersion::V41)
    );
    assert_eq!(v.includes[3].written, "inc/glob/*.inc.vcl");
    let names: Vec<&str> = v.items.iter().map(|i| i.name().name.as_str()).collect();
    assert_eq!(
        names,
        [
            "app1",
            "app2",
            "trusted",
            "app3",
            "pick_app3",
            "office",
            "vcl_recv"
        ]
    );
    // The ACL came from the nested include and points into it.
    let acl = &v.items[2];
    assert_eq!(acl.span().file, v.includes[1].file);
    assert_eq!(map.snippet(acl.name().span), "trusted");
    // ACL entries from a file included inside the acl body.
    let Some(Item::Acl(office)) = v.items.get(5) else {
        panic!()
    };
    let addrs: Vec<&str> = office.entries.iter().map(|e| e.addr.as_str()).collect();
    assert_eq!(addrs, ["127.0.0.1", "192.0.2.0", "192.0.2.1"]);
    assert_eq!(office.entries[1].span.file, v.includes[4].file);
    // The statements included into vcl_recv point into their file.
    let Some(Item::Sub(s)) = v.items.get(6) else {
        panic!()
    };
    assert_eq!(s.body.stmts.len(), 4);
    assert_eq!(s.body.stmts[0].span().file, v.includes[5].file);
    assert_eq!(s.body.stmts[2].span().file, s.span.file);
}

#[test]
fn invalid_utf8_in_a_string_is_a_warning_in_a_comment_nothing() {
    let f = corpus("good")
        .into_iter()
        .find(|p| p.ends_with("own_latin1.vcl"))
        .unwrap();
    let (map, r) = parse_file(f);
    let v = r.unwrap();
    assert_eq!(v.warnings.len(), 1);
    let text = map.render(&v.warnings[0]);
    assert!(
        text.contains(":8:32: warning: Invalid UTF-8 in string (replaced by U+FFFD)\n"),
        "{text}"
    );
}

/// `parse_without_includes` (the fuzz target's entry point) never reads a file: an include of
/// an existing file, or a glob matching some, is reported missing.
#[test]
fn parse_without_includes_reads_nothing() {
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcl_corpus/good");
    let inc = good.join("own_strings_comments.vcl");
    let text = format!(
        "vcl 4.1;\ninclude \"{}\";\ninclude +glob \"{}/*.vcl\";\n",
        inc.display(),
        good.display()
    );
    let mut map = SourceMap::new();
    let id = map.add_bytes("t.vcl", None, text.as_bytes());
    let e = ringcache::vcl::parser::parse_without_includes(&mut map, id).unwrap_err();
    let all = map.render_all(&e);
    assert!(all.contains("Cannot read file"), "{all}");
    assert!(all.contains("glob pattern matched no files."), "{all}");
    assert_eq!(map.len(), 1, "{all}");
    // The same text through `parse_str` reads them.
    let (map, _) = parse_str("t.vcl", &text);
    assert!(map.len() > 2);
}

struct Expect {
    file: Option<String>,
    line: u32,
    col: u32,
    msg: String,
}

fn parse_expect(path: &Path) -> Expect {
    let text = std::fs::read(path).unwrap();
    let first = String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: no '# expect:' line", path.display()));
    let mut parts = rest.splitn(4, ':');
    let a = parts.next().unwrap().trim();
    let (file, line, col, msg) = if a.parse::<u32>().is_ok() {
        let col = parts.next().unwrap().trim();
        let msg = [parts.next().unwrap_or(""), parts.next().unwrap_or("")]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(":");
        (None, a, col.to_string(), msg)
    } else {
        let line = parts.next().unwrap().trim();
        let col = parts.next().unwrap().trim().to_string();
        (
            Some(a.to_string()),
            line,
            col,
            parts.next().unwrap_or("").to_string(),
        )
    };
    Expect {
        file,
        line: line.parse().unwrap(),
        col: col.parse().unwrap(),
        msg: msg.trim().to_string(),
    }
}

#[test]
fn bad_corpus_fails_at_the_expected_place() {
    let files = corpus("bad");
    assert!(files.len() >= 25, "only {} bad files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let exp = parse_expect(f);
        let (map, r) = parse_file(f);
        let Err(diags) = r else {
            failures.push(format!("{}: parsed without error", f.display()));
            continue;
        };
        // The first error (warnings, if any, may come before it).
        let Some(d) = diags.iter().find(|d| d.is_error()) else {
            failures.push(format!("{}: only warnings", f.display()));
            continue;
        };
        let (line, col) = map.line_col(d.span.file, d.span.start);
        let name = map.name(d.span.file);
        let file_ok = match &exp.file {
            Some(suffix) => name.ends_with(suffix.as_str()),
            None => Path::new(name) == f.as_path(),
        };
        if !file_ok || line != exp.line || col != exp.col || !d.message.contains(&exp.msg) {
            failures.push(format!(
                "{}: expected {}{}:{}: {}\ngot:\n{}",
                f.display(),
                exp.file
                    .as_deref()
                    .map(|s| format!("{s}:"))
                    .unwrap_or_default(),
                exp.line,
                exp.col,
                exp.msg,
                map.render(d)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rendering_is_exact() {
    let src = "vcl 4.1;\nbackend default { .host = \"127.0.0.1\"; }\nsub vcl_recv {\n\tset req.http.x = \"a\" \"b\";\n}\n";
    let (map, r) = parse_str("default.vcl", src);
    let d = r.unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(
        map.render(&d[0]),
        "default.vcl:4:23: Expected ';' got '\"b\"'\n\
         \tset req.http.x = \"a\" \"b\";\n\
         \t                     ^~~\n"
    );
    // Several errors, with notes, separated by a blank line.
    let (map, r) = parse_str("x.vcl", "backend b { }\n");
    let d = r.unwrap_err();
    assert_eq!(
        map.render_all(&d),
        "x.vcl:1:1: VCL version declaration missing\n\
         backend b { }\n\
         ^~~~~~~\n\
         Update your VCL to Version 4 syntax, and add\n\
         \tvcl 4.1;\n\
         on the first line of the VCL files.\n"
    );
    let (map, r) = parse_str("y.vcl", "vcl 4.1;\nsub a { set x = ; }\nsub b { foo; }\n");
    let d = r.unwrap_err();
    assert_eq!(
        map.render_all(&d),
        "y.vcl:2:17: Unknown token ';' when looking for an expression\n\
         sub a { set x = ; }\n\
         \x20               ^\n\
         \n\
         y.vcl:3:9: Expected an action, 'if', '{' or '}' got 'foo'\n\
         sub b { foo; }\n\
         \x20       ^~~\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzz: deterministic mutations of the good corpus.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const SNIPPETS: &[&[u8]] = &[
    b"\"",
    b"{\"",
    b"\"}",
    b"\"\"\"",
    b"/*",
    b"*/",
    b"//",
    b"#",
    b"C{",
    b"}C",
    b"{",
    b"}",
    b"(",
    b")",
    b";",
    b".",
    b",",
    b"=",
    b"==",
    b"!",
    b"!~",
    b"~",
    b"-",
    b"+",
    b"*",
    b"/",
    b"%",
    b"&&",
    b"||",
    b"\n",
    b" ",
    b"\t",
    b":",
    b":AAAA:",
    b"10s",
    b"1.5",
    b"9999999999999999",
    b"vcl 4.1;",
    b"vcl 9.9;",
    b"include \"nope.vcl\";",
    b"include",
    b"sub x { }",
    b"if (",
    b"else",
    b"elsif",
    b"set ",
    b"return (",
    b"new ",
    b"acl a { \"1.2.3.4\"/33; }",
    b".probe = {",
    b"\xc3\xa9",
    b"\xff",
    b"\0",
    b"@",
    b"backend",
    b"none",
    b"req.http.",
    b"\"a/b\"",
];

fn mutate(rng: &mut XorShift, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                // flip a byte
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            1 if len > 0 => {
                // truncate
                v.truncate(rng.below(len));
            }
            2 if len > 0 => {
                // duplicate a slice
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let at = rng.below(len + 1);
                let s: Vec<u8> = v[a..b].to_vec();
                v.splice(at..at, s);
            }
            3 if len > 0 => {
                // delete a slice
                let a = rng.below(len);
                let b = (a + rng.below(16)).min(len);
                v.drain(a..b);
            }
            4 => {
                // insert a VCL-ish snippet
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, s.iter().copied());
            }
            5 if len > 0 => {
                // replace a byte with a punctuation byte
                let i = rng.below(len);
                let punct = b"{}()\";./*#=!~-+\n";
                v[i] = punct[rng.below(punct.len())];
            }
            _ => {
                // repeat a nesting opener
                let at = rng.below(len + 1);
                let s = [b"(", b"{", b"-", b"!"][rng.below(4)].repeat(rng.below(300));
                v.splice(at..at, s);
            }
        }
    }
    v
}

#[test]
fn fuzz_mutations_never_panic_and_spans_stay_inside_files() {
    let bases: Vec<Vec<u8>> = corpus("good")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let (mut ok, mut err) = (0, 0);
    for i in 0..20_000 {
        let base = &bases[rng.below(bases.len())];
        let input = mutate(&mut rng, base);
        let text = String::from_utf8_lossy(&input).into_owned();
        let result = std::panic::catch_unwind(|| parse_str("fuzz.vcl", &text));
        let Ok((map, r)) = result else {
            panic!("iteration {i}: parser panicked on:\n{text}");
        };
        match r {
            Ok(v) => {
                ok += 1;
                check_vcl(&map, &v);
            }
            Err(diags) => {
                err += 1;
                assert!(
                    diags.iter().any(|d| d.is_error()),
                    "iteration {i}: Err without an error"
                );
                for d in &diags {
                    check_span(&map, d.span, &format!("iteration {i}: {}", d.message));
                    let _ = map.render(d);
                }
            }
        }
    }
    // The mutations exercise both outcomes.
    assert!(ok > 100 && err > 10_000, "ok {ok} err {err}");
}
