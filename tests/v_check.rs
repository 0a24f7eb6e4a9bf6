//! VCL checker: every file of `tests/vcl_corpus/good` compiles (except the few varnishd 7.1
//! rejects too, listed with the reason); every file of `tests/vcl_corpus/bad_semantic` fails with
//! the first error its `# expect: LINE:COL: message-substring` line names, through
//! `ringcache -C -f` as a child process; the exit codes of `-C`/`-f`; no mutated input makes the
//! compiler panic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ringcache::vcl::{compile, compile_file, parse_str, CompileOptions};

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

/// Resolves every name to one documentation address (no DNS in tests).
fn fake_dns() -> CompileOptions {
    CompileOptions {
        resolver: Some(Arc::new(|host: &str, port: &str| {
            if host.ends_with(".invalid") {
                return Err("Name or service not known".into());
            }
            let port = port.parse().unwrap_or(80);
            Ok(vec![SocketAddr::from(([192, 0, 2, 10], port))])
        })),
        ..Default::default()
    }
}

/// Good-corpus files varnishd 7.1 rejects too, with the reason; the checker must reject them
/// with this message.
const VARNISH_REJECTS: &[(&str, &str)] = &[
    // Builtin VCL alone has no backend.
    (
        "builtin_71.vcl",
        "No backends or directors found in VCL program",
    ),
    // `.port = 8080` (an INT, Varnish wants a string) and `.ssl` (Varnish Plus only).
    ("seed002_a_backend_fields.vcl", "Expected CSTR got '8080'"),
    // Only backends, and `destination` is never used (7.3 would say the same).
    (
        "seed004_i_via_proxy.vcl",
        "Unused backend destination, defined:",
    ),
    // Varnish accepts these, ringcache refuses them precisely (docs/vcl.md, "Not supported").
    (
        "ug_directors.vcl",
        "'directors.shard_param' is not supported by ringcache",
    ),
];

/// Good-corpus files whose host names need real DNS (checked in-process only).
const NEEDS_DNS: &[&str] = &["seed004_k_health_checks.vcl", "seed004_i_via_proxy.vcl"];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringcache"))
}

#[test]
fn good_corpus_compiles_in_process() {
    let mut failures = Vec::new();
    for f in corpus("good") {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let (map, r) = compile_file(&f, &fake_dns());
        let expected = VARNISH_REJECTS.iter().find(|(n, _)| *n == name);
        match (r, expected) {
            (Ok(_), None) => {}
            (Err(e), Some((_, msg))) => {
                let text = map.render_all(&e);
                if !text.contains(msg) {
                    failures.push(format!("{name}: expected '{msg}', got:\n{text}"));
                }
            }
            (Ok(_), Some(_)) => failures.push(format!("{name}: compiled, Varnish rejects it")),
            (Err(e), None) => failures.push(format!("{name}:\n{}", map.render_all(&e))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn good_corpus_compiles_black_box() {
    for f in corpus("good") {
        let name = f.file_name().unwrap().to_str().unwrap();
        if NEEDS_DNS.contains(&name) || VARNISH_REJECTS.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let out = bin().arg("-C").arg("-f").arg(&f).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{name}: prints on stdout");
        // Anything on stderr is a rendered warning.
        let err = String::from_utf8_lossy(&out.stderr);
        for l in err.lines().filter(|l| l.contains(": warning: ")) {
            assert!(l.contains(name), "{l}");
        }
    }
}

#[test]
fn bad_semantic_corpus() {
    let files = corpus("bad_semantic");
    assert!(files.len() >= 30, "only {} bad cases", files.len());
    let mut failures = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no # expect: line", f.display()));
        let (pos, msg) = {
            let mut it = expect.splitn(3, ':');
            let l = it.next().unwrap();
            let c = it.next().unwrap();
            (format!("{l}:{c}:"), it.next().unwrap().trim().to_string())
        };
        let out = bin().arg("-C").arg("-f").arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let first = err
            .lines()
            .find(|l| !l.contains(": warning: ") && l.starts_with(&*f.to_string_lossy()))
            .unwrap_or("")
            .to_string();
        let want_prefix = format!("{}:{pos} ", f.display());
        if out.status.code() != Some(1) || !first.starts_with(&want_prefix) || !first.contains(&msg)
        {
            failures.push(format!(
                "{}: want {pos} {msg}\n  rc={:?} got: {first}",
                f.display(),
                out.status.code()
            ));
            continue;
        }
        // The source line and the caret follow the message.
        let lines: Vec<&str> = err.lines().collect();
        let i = lines.iter().position(|l| *l == first).unwrap();
        let caret = lines.get(i + 2).copied().unwrap_or("");
        if !caret.trim_start().starts_with('^') {
            failures.push(format!("{}: no caret line:\n{err}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `probe default` is not in the backends' namespace: with `backend default` it compiles, and it
/// is the probe of every backend without its own (the last `probe default` wins, as in varnishd).
#[test]
fn default_probe_applies_to_backends_without_probe() {
    use ringcache::vcl::program::ProbeRequest;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcl_corpus/good");
    let url =
        |p: &ringcache::vcl::Program, id: Option<usize>| match id.map(|i| &p.probes[i].request) {
            Some(ProbeRequest::Url(u)) => u.to_string(),
            other => format!("{other:?}"),
        };

    let (map, r) = compile_file(
        dir.join("own_probe_default_and_backend_default.vcl"),
        &fake_dns(),
    );
    let (p, _) = r.unwrap_or_else(|e| panic!("{}", map.render_all(&e)));
    let d = p.default_probe.expect("default probe");
    assert_eq!(url(&p, Some(d)), "/health");
    let probe_of = |n: &str| p.backends[p.backend_by_name(n).unwrap()].probe;
    assert_eq!(p.backend_by_name("default"), p.default_backend);
    assert_eq!(probe_of("default"), Some(d));
    assert_eq!(probe_of("b"), Some(d));
    assert_eq!(url(&p, probe_of("c")), "/other");

    let (map, r) = compile_file(dir.join("own_probe_default_twice.vcl"), &fake_dns());
    let (p, _) = r.unwrap_or_else(|e| panic!("{}", map.render_all(&e)));
    assert_eq!(url(&p, p.default_probe), "/second");
    assert_eq!(p.backends[0].probe, p.default_probe);

    // Without a default probe a backend has none.
    let (mut map, v) = parse_str("t.vcl", "vcl 4.1;\nbackend default { .host = \"a\"; }\n");
    let p = compile(&mut map, &v.unwrap(), &fake_dns()).unwrap();
    assert_eq!((p.default_probe, p.backends[0].probe), (None, None));
}

/// `.expect_close` (Varnish 7.3+, default true) and `.port` (ringcache: a dedicated health port)
/// reach the compiled probe; without them a probe expects the close and uses the backend's port.
#[test]
fn probe_expect_close_and_port() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vcl_corpus/good/own_probe_expect_close_port.vcl");
    let (map, r) = compile_file(&f, &fake_dns());
    let (p, _) = r.unwrap_or_else(|e| panic!("{}", map.render_all(&e)));
    let probe_of = |n: &str| &p.probes[p.backends[p.backend_by_name(n).unwrap()].probe.unwrap()];
    let app = probe_of("app");
    assert_eq!((app.expect_close, app.port), (false, Some(8081)));
    let plain = probe_of("plain");
    assert_eq!((plain.expect_close, plain.port), (true, None));

    let (mut map, v) = parse_str(
        "t.vcl",
        "vcl 4.1;\nbackend default { .host = \"a\"; .probe = { .url = \"/\"; } }\n",
    );
    let p = compile(&mut map, &v.unwrap(), &fake_dns()).unwrap();
    assert_eq!((p.probes[0].expect_close, p.probes[0].port), (true, None));

    // Out-of-range and non-numeric ports, and a non-boolean expect_close, are errors at the value.
    for (src, msg) in [
        (".port = \"65536\";", "got '\"65536\"'"),
        (".port = \"+80\";", "got '\"+80\"'"),
        (".port = 8080;", "Expected CSTR got '8080'"),
        (".expect_close = \"yes\";", "Expected \"true\" or \"false\""),
        (".expect_close = maybe;", "Expected \"true\" or \"false\""),
    ] {
        let text =
            format!("vcl 4.1;\nbackend default {{ .host = \"a\";\n.probe = {{ {src} }} }}\n");
        let (mut map, v) = parse_str("t.vcl", &text);
        let e = compile(&mut map, &v.unwrap(), &fake_dns()).unwrap_err();
        let out = map.render_all(&e);
        assert!(out.contains(msg), "{src}: {out}");
        let col = 12 + src.find('=').unwrap() + 2;
        assert!(out.contains(&format!("t.vcl:3:{col}:")), "{src}: {out}");
    }
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn exit_codes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcl_corpus");
    let good = dir.join("good/seed004_j_round_robin.vcl");
    let bad = dir.join("bad_semantic/unused_sub.vcl");
    let syntax = dir.join("bad/missing_semicolon.vcl");
    let (g, b, s) = (
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        syntax.to_str().unwrap(),
    );

    let (rc, out, err) = run(&["-C", "-f", g]);
    assert_eq!((rc, out.as_str(), err.as_str()), (Some(0), "", ""));

    let (rc, out, err) = run(&["-C", "-f", b]);
    assert_eq!(rc, Some(1));
    assert!(out.is_empty());
    assert!(err.contains("Unused sub foo, defined:"), "{err}");

    let (rc, _, err) = run(&["-C", "-f", s]);
    assert_eq!(rc, Some(1), "{err}");

    let (rc, _, err) = run(&["-C", "-f", "/nonexistent/x.vcl"]);
    assert_eq!(rc, Some(1));
    assert!(err.contains("Cannot read file"), "{err}");

    let (rc, _, err) = run(&["-a", "127.0.0.1:0", "-b", "127.0.0.1:80", "-f", g]);
    assert_eq!(rc, Some(2));
    assert!(
        err.contains("Only one of -b or -f can be specified"),
        "{err}"
    );

    // Serving with a VCL that does not compile: every error rendered, then a one-line refusal.
    let (rc, _, err) = run(&["-a", "127.0.0.1:0", "-f", b]);
    assert_eq!(rc, Some(1), "{err}");
    assert!(err.contains("unused_sub.vcl:"), "{err}");
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("ringcache: error: VCL compilation failed")),
        "{err}"
    );

    let (rc, _, err) = run(&["-C"]);
    assert_eq!(rc, Some(2));
    assert!(
        err.contains("-C needs either -b <backend> or -f <vcl_file>"),
        "{err}"
    );
}

#[test]
fn warnings_do_not_fail() {
    let f =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcl_corpus/good/seed002_g_grace_hit.vcl");
    let (rc, out, err) = run(&["-C", "-f", f.to_str().unwrap()]);
    assert_eq!(rc, Some(0));
    assert!(out.is_empty());
    assert!(err.contains("warning: return (fetch) in vcl_hit"), "{err}");
}

/// Deterministic xorshift.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SNIPPETS: &[&str] = &[
    "req.url",
    "beresp.ttl",
    "client.ip",
    " ~ ",
    "\"(\"",
    "==",
    " + ",
    "1s",
    "-",
    "!",
    "(",
    ")",
    "{",
    "}",
    ";",
    "return (pass);",
    "call foo;",
    "new x = directors.round_robin();",
    "std.",
    "regsub(",
    "none",
    "default",
    ".probe = default;",
    ".window = 65;",
    "/33",
    "\"::1\"",
    "set req.http.X = ",
    "unset ",
    "hash_data(",
    "synthetic(",
    "10000000000000000000",
    "1.5",
    "obj.ttl",
    "vcl_hit",
    "sub ",
    "acl ",
    "backend ",
    "probe ",
    "\"",
    "0x",
    "ms",
    "elsif",
];

#[test]
fn fuzz_no_panic() {
    let seeds: Vec<String> = corpus("good")
        .iter()
        .chain(corpus("bad_semantic").iter())
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let opts = fake_dns();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..5000 {
        let base = &seeds[i % seeds.len()];
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(4) {
                0 if !bytes.is_empty() => {
                    let len = rng.below(12).min(bytes.len() - at.min(bytes.len()));
                    bytes.drain(at.min(bytes.len())..at.min(bytes.len()) + len);
                }
                1 => {
                    let s = SNIPPETS[rng.below(SNIPPETS.len())];
                    bytes.splice(at..at, s.bytes());
                }
                2 if !bytes.is_empty() => {
                    let j = at.min(bytes.len() - 1);
                    bytes[j] = b" .;(){}\"~!=+-*/0123456789abcxyz_"[rng.below(32)];
                }
                _ => {
                    // Duplicate a chunk.
                    let a = rng.below(bytes.len() + 1);
                    let len = rng.below(40).min(bytes.len() - a);
                    let chunk = bytes[a..a + len].to_vec();
                    bytes.splice(at..at, chunk);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (mut map, parsed) = parse_str("fuzz.vcl", &text);
        if let Ok(vcl) = parsed {
            let r = compile(&mut map, &vcl, &opts);
            let diags = match &r {
                Ok(p) => p.warnings.clone(),
                Err(e) => e.clone(),
            };
            for d in &diags {
                let len = map.text(d.span.file).len() as u32;
                assert!(d.span.start <= d.span.end.max(d.span.start) && d.span.start <= len + 1);
                let _ = map.render(d);
            }
        }
    }
}
