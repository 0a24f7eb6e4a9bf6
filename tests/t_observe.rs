//! Observability, black box: counters after known traffic (MAIN with Varnish's meanings, VBE per
//! backend, SHARD per core), `stat -1`/`-j`, the Prometheus endpoint, `ringcache log`, the log
//! file and the access log, each read from the real binary.
//!
//! Method: fake origins and a dead port give every kind of fetch (hit, miss, hit-for-miss,
//! pass, synth, unreachable and sick backends); each request is on a fresh connection, so with
//! two shards hits and misses also cross shards. Counters are polled until they settle (the
//! gauges are refreshed every 250 ms), then compared exactly. The JSON and Prometheus parsers
//! below are strict and written here, independent of ringcache's code.

#[macro_use]
mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

shard_tests!(
    counters_after_known_traffic,
    prometheus_matches_stat,
    access_log_lines,
    vbe_conn_counts_fetches_in_flight,
    vbe_busy_and_helddown,
);

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

fn assert_counters(stats: &HashMap<String, u64>, want: &[(&str, u64)]) {
    for (name, v) in want {
        assert_eq!(
            stats.get(*name),
            Some(v),
            "{name}; non-zero counters: {:?}",
            {
                let mut all: Vec<_> = stats.iter().filter(|(_, v)| **v != 0).collect();
                all.sort();
                all
            }
        );
    }
}

fn value(stats: &HashMap<String, u64>, name: &str) -> u64 {
    *stats
        .get(name)
        .unwrap_or_else(|| panic!("no counter {name}; have {:?}", stats.keys()))
}

/// Sum of `SHARD.<n>.<field>` over shards.
fn shard_sum(stats: &HashMap<String, u64>, cores: usize, field: &str) -> u64 {
    (0..cores)
        .map(|n| value(stats, &format!("SHARD.{n}.{field}")))
        .sum()
}

fn temp_path(name: &str) -> std::path::PathBuf {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "ringcache-observe-{}-{}-{name}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ))
}

/// Removes the file when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Polls `path` until it has at least `n` lines (10 s), returns them.
fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= n
    });
    lines
}

// ------------------------------------------------------------------------------------------
// A strict JSON reader (objects keep their key order)
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Obj(Vec<(String, Json)>),
    Arr(Vec<Json>),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

impl Json {
    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(v) => v.iter().find(|(key, _)| key == k).map(|(_, v)| v),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Json, String> {
        let mut p = (text.as_bytes(), 0usize);
        let v = value_of(&mut p, 0)?;
        skip_ws(&mut p);
        if p.1 != p.0.len() {
            return Err(format!("trailing bytes at {}", p.1));
        }
        Ok(v)
    }
}

fn skip_ws(p: &mut (&[u8], usize)) {
    while p.1 < p.0.len() && matches!(p.0[p.1], b' ' | b'\n' | b'\r' | b'\t') {
        p.1 += 1;
    }
}

fn expect(p: &mut (&[u8], usize), c: u8) -> Result<(), String> {
    skip_ws(p);
    if p.0.get(p.1) == Some(&c) {
        p.1 += 1;
        Ok(())
    } else {
        Err(format!("expected {:?} at {}", c as char, p.1))
    }
}

fn string_of(p: &mut (&[u8], usize)) -> Result<String, String> {
    expect(p, b'"')?;
    let mut out = Vec::new();
    loop {
        let c = *p.0.get(p.1).ok_or("unterminated string")?;
        p.1 += 1;
        match c {
            b'"' => break,
            b'\\' => {
                let e = *p.0.get(p.1).ok_or("bad escape")?;
                p.1 += 1;
                match e {
                    b'"' | b'\\' | b'/' => out.push(e),
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = p.0.get(p.1..p.1 + 4).ok_or("short \\u")?;
                        let v = u32::from_str_radix(
                            std::str::from_utf8(hex).map_err(|e| e.to_string())?,
                            16,
                        )
                        .map_err(|e| e.to_string())?;
                        p.1 += 4;
                        let ch = char::from_u32(v).ok_or("bad \\u")?;
                        out.extend_from_slice(ch.to_string().as_bytes());
                    }
                    _ => return Err(format!("bad escape \\{}", e as char)),
                }
            }
            c if c < 0x20 => return Err("control byte in a string".into()),
            c => out.push(c),
        }
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn value_of(p: &mut (&[u8], usize), depth: usize) -> Result<Json, String> {
    if depth > 32 {
        return Err("too deep".into());
    }
    skip_ws(p);
    match p.0.get(p.1) {
        Some(b'{') => {
            p.1 += 1;
            let mut v = Vec::new();
            skip_ws(p);
            if p.0.get(p.1) == Some(&b'}') {
                p.1 += 1;
                return Ok(Json::Obj(v));
            }
            loop {
                let k = string_of(p)?;
                expect(p, b':')?;
                v.push((k, value_of(p, depth + 1)?));
                skip_ws(p);
                match p.0.get(p.1) {
                    Some(b',') => p.1 += 1,
                    Some(b'}') => {
                        p.1 += 1;
                        return Ok(Json::Obj(v));
                    }
                    _ => return Err(format!("bad object at {}", p.1)),
                }
            }
        }
        Some(b'[') => {
            p.1 += 1;
            let mut v = Vec::new();
            skip_ws(p);
            if p.0.get(p.1) == Some(&b']') {
                p.1 += 1;
                return Ok(Json::Arr(v));
            }
            loop {
                v.push(value_of(p, depth + 1)?);
                skip_ws(p);
                match p.0.get(p.1) {
                    Some(b',') => p.1 += 1,
                    Some(b']') => {
                        p.1 += 1;
                        return Ok(Json::Arr(v));
                    }
                    _ => return Err(format!("bad array at {}", p.1)),
                }
            }
        }
        Some(b'"') => Ok(Json::Str(string_of(p)?)),
        Some(b't') if p.0[p.1..].starts_with(b"true") => {
            p.1 += 4;
            Ok(Json::Bool(true))
        }
        Some(b'f') if p.0[p.1..].starts_with(b"false") => {
            p.1 += 5;
            Ok(Json::Bool(false))
        }
        Some(b'n') if p.0[p.1..].starts_with(b"null") => {
            p.1 += 4;
            Ok(Json::Null)
        }
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let start = p.1;
            while p.1 < p.0.len()
                && matches!(p.0[p.1], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                p.1 += 1;
            }
            let n = String::from_utf8_lossy(&p.0[start..p.1]).into_owned();
            n.parse::<f64>().map_err(|_| format!("bad number {n}"))?;
            Ok(Json::Num(n))
        }
        _ => Err(format!("unexpected input at {}", p.1)),
    }
}

/// `stat -j` as (name, flag, format, value, description), checking varnishstat's schema.
fn stat_json(admin: SocketAddr) -> Vec<(String, String, String, u64, String)> {
    let mut c = AdminConn::open(admin, None);
    let r = c.cmd("stat -j");
    assert_eq!(r.status, 200, "{r:?}");
    let j = Json::parse(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    let Json::Obj(top) = &j else {
        panic!("not an object")
    };
    let keys: Vec<&str> = top.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["version", "timestamp", "counters"]);
    assert_eq!(j.get("version"), Some(&Json::Num("1".into())));
    let Some(Json::Str(ts)) = j.get("timestamp") else {
        panic!("timestamp")
    };
    assert_eq!(ts.len(), 19, "{ts}");
    let Some(Json::Obj(counters)) = j.get("counters") else {
        panic!("counters")
    };
    let mut out = Vec::new();
    for (name, c) in counters {
        let Json::Obj(fields) = c else {
            panic!("{name}")
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["description", "flag", "format", "value"], "{name}");
        let s = |k: &str| match c.get(k) {
            Some(Json::Str(s)) => s.clone(),
            other => panic!("{name}.{k}: {other:?}"),
        };
        let v = match c.get("value") {
            Some(Json::Num(n)) => n.parse::<u64>().unwrap_or_else(|_| panic!("{name}: {n}")),
            other => panic!("{name}.value: {other:?}"),
        };
        let (flag, format) = (s("flag"), s("format"));
        assert!(
            ["c", "g", "b"].contains(&flag.as_str()),
            "{name}: flag {flag}"
        );
        assert!(
            ["i", "B", "d", "b"].contains(&format.as_str()),
            "{name}: format {format}"
        );
        assert!(!s("description").is_empty(), "{name}");
        out.push((name.clone(), flag, format, v, s("description")));
    }
    out
}

// ------------------------------------------------------------------------------------------
// A strict Prometheus text format (0.0.4) reader
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn metric_name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

fn label_name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Parses the exposition; checks HELP/TYPE once per family and before its samples, samples of
/// a family together, names, labels, values. Returns the samples and each family's type.
fn parse_prometheus(text: &str) -> Result<(Vec<Sample>, HashMap<String, String>), String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut done_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (kw, rest) = rest.split_once(' ').ok_or_else(|| at("comment"))?;
            let (name, arg) = rest
                .split_once(' ')
                .ok_or_else(|| at("comment arguments"))?;
            if !metric_name_ok(name) {
                return Err(at("metric name"));
            }
            match kw {
                "HELP" => {
                    let mut chars = arg.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), Some('\\') | Some('n')) {
                            return Err(at("HELP escape"));
                        }
                    }
                    if helps.insert(name.to_string(), arg.to_string()).is_some() {
                        return Err(at("second HELP"));
                    }
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at("TYPE"));
                    }
                    if types.insert(name.to_string(), arg.to_string()).is_some() {
                        return Err(at("second TYPE"));
                    }
                    if samples.iter().any(|s: &Sample| s.name == name) {
                        return Err(at("TYPE after samples"));
                    }
                }
                _ => return Err(at("unknown comment")),
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(at("stray line"));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("sample"))?;
        let name = &line[..name_end];
        if !metric_name_ok(name) {
            return Err(at("metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let b = r.as_bytes();
            let mut j = 0;
            loop {
                if b.get(j) == Some(&b'}') {
                    j += 1;
                    break;
                }
                let eq = r[j..].find('=').ok_or_else(|| at("label"))? + j;
                let lname = &r[j..eq];
                if !label_name_ok(lname) {
                    return Err(at("label name"));
                }
                if b.get(eq + 1) != Some(&b'"') {
                    return Err(at("label quote"));
                }
                let mut k = eq + 2;
                let mut v = String::new();
                loop {
                    match b.get(k) {
                        None => return Err(at("unterminated label value")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            match b.get(k + 1) {
                                Some(b'\\') => v.push('\\'),
                                Some(b'"') => v.push('"'),
                                Some(b'n') => v.push('\n'),
                                _ => return Err(at("label escape")),
                            }
                            k += 2;
                        }
                        Some(_) => {
                            let ch = r[k..].chars().next().ok_or_else(|| at("utf-8"))?;
                            v.push(ch);
                            k += ch.len_utf8();
                        }
                    }
                }
                labels.push((lname.to_string(), v));
                j = k + 1;
                match b.get(j) {
                    Some(b',') => j += 1,
                    Some(b'}') => {}
                    _ => return Err(at("label separator")),
                }
            }
            rest = &r[j..];
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("space before value"))?;
        let mut parts = rest.split(' ');
        let v = parts.next().ok_or_else(|| at("value"))?;
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("value"))?,
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().map_err(|_| at("timestamp"))?;
        }
        if parts.next().is_some() {
            return Err(at("extra fields"));
        }
        if !types.contains_key(name) {
            return Err(at("sample before its TYPE"));
        }
        if current.as_deref() != Some(name) {
            if done_families.iter().any(|f| f == name) {
                return Err(at("family samples not together"));
            }
            if let Some(c) = current.take() {
                done_families.push(c);
            }
            current = Some(name.to_string());
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok((samples, types))
}

/// `GET path` on the metrics port: (status, content type, body).
fn http_get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect metrics");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read metrics answer");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    let cl: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    if method != "HEAD" {
        assert_eq!(cl, body.len(), "Content-Length");
    }
    (status, ctype, body.to_string())
}

fn metrics_addr(s: &Server) -> SocketAddr {
    let text = s.stderr_text();
    text.lines()
        .find_map(|l| l.strip_prefix("ringcache: metrics on "))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'ringcache: metrics on' line:\n{text}"))
}

// ------------------------------------------------------------------------------------------
// A streaming `ringcache log` child
// ------------------------------------------------------------------------------------------

struct LogChild {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl LogChild {
    fn start(args: &[&str]) -> LogChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringcache log");
        let out = Arc::new(Mutex::new(String::new()));
        let o2 = out.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            for _ in 0..1_000_000 {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => o2.lock().unwrap().push_str(&line),
                }
            }
        });
        LogChild { child, out }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.text().contains(needle))
    }
}

impl Drop for LogChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// Counters after known traffic
// ------------------------------------------------------------------------------------------

// Goal: after a scripted sequence every MAIN counter it touches has Varnish's value: hits count
// when vcl_hit delivers, misses when vcl_miss fetches (hit-for-miss included), s_fetch counts
// misses and passes, an unreachable backend fails its connect (no backend_req), a sick one is
// not contacted (backend_unhealthy); VBE.<vcl>.<backend>.* split the same traffic by backend
// with its bytes; SHARD.<n>.* add up to MAIN; the gauges (conn, sess_open) come back to 0.
fn counters_after_known_traffic(cores: usize) {
    let b1 = Origin::start(|req, _| match req.url.as_str() {
        "/c" => Reply::ok("cached").cc("max-age=60"),
        "/u" => Reply::ok("u").header("Set-Cookie", "a=1"),
        _ => Reply::ok(format!("got {}", req.body.len())),
    });
    let b2 = Origin::fixed("two", &[("Cache-Control", "max-age=60")]);
    let dead = HeldDeadPort::new();
    let vcl = format!(
        "vcl 4.1;\n{}\n{}\n\
         backend b3 {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n\
         sub vcl_recv {{\n\
           if (req.url == \"/synth\") {{ return (synth(204, \"made here\")); }}\n\
           if (req.url ~ \"^/b2/\") {{ set req.backend_hint = b2; }}\n\
           if (req.url == \"/dead\") {{ set req.backend_hint = b3; }}\n\
         }}\n",
        vcl_backend("b1", b1.addr()),
        vcl_backend("b2", b2.addr()),
        dead.port
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let a = s.addr();
    assert_eq!(get(a, "/c", &[]).body_str(), "cached");
    assert!(get(a, "/c", &[]).is_hit());
    assert!(get(a, "/c", &[]).is_hit());
    let r = request(a, "POST", "/p", &[], Some(b"a=1"));
    assert_eq!(r.body_str(), "got 3");
    assert_eq!(get(a, "/synth", &[]).status, 204);
    assert_eq!(get(a, "/b2/x", &[]).body_str(), "two");
    assert_eq!(get(a, "/dead", &[]).status, 503);
    assert_eq!(get(a, "/u", &[]).body_str(), "u");
    assert_eq!(get(a, "/u", &[]).body_str(), "u");
    let mut adm = AdminConn::open(s.admin_addr(), None);
    assert_eq!(adm.cmd("backend.set_health b2 sick").status, 200);
    assert_eq!(get(a, "/b2/y", &[]).status, 503);

    let b1_body = ("cached".len() + "got 3".len() + 2 * "u".len()) as u64;
    let want = [
        ("MAIN.client_req", 10),
        ("MAIN.sess_conn", 10),
        ("MAIN.cache_hit", 2),
        ("MAIN.cache_hit_grace", 0),
        ("MAIN.cache_hitmiss", 1),
        ("MAIN.cache_hitpass", 0),
        ("MAIN.cache_miss", 6),
        ("MAIN.s_pass", 1),
        ("MAIN.s_synth", 1),
        ("MAIN.s_fetch", 7),
        ("MAIN.s_bgfetch", 0),
        ("MAIN.s_pipe", 0),
        ("MAIN.backend_req", 5),
        ("MAIN.backend_fail", 1),
        ("MAIN.backend_unhealthy", 1),
        ("MAIN.backend_retry", 0),
        ("MAIN.fetch_length", 5),
        ("MAIN.fetch_failed", 2),
        ("MAIN.n_backend", 3),
        ("MAIN.n_vcl", 1),
        ("MAIN.log_dropped", 0),
        ("VBE.boot.b1.req", 4),
        ("VBE.boot.b2.req", 1),
        ("VBE.boot.b3.req", 0),
        ("VBE.boot.b1.fail", 0),
        ("VBE.boot.b3.fail", 1),
        ("VBE.boot.b3.fail_econnrefused", 1),
        ("VBE.boot.b2.unhealthy", 1),
        ("VBE.boot.b1.unhealthy", 0),
        ("VBE.boot.b1.bereq_bodybytes", 3),
        ("VBE.boot.b2.bereq_bodybytes", 0),
        ("VBE.boot.b1.beresp_bodybytes", b1_body),
        ("VBE.boot.b2.beresp_bodybytes", 3),
        ("VBE.boot.b1.conn", 0),
        ("VBE.boot.b2.conn", 0),
        ("VBE.boot.b1.happy", 0),
        ("SHARD.0.sess_open", 0),
    ];
    let st = wait_stats(s.admin_addr(), &want);
    assert_counters(&st, &want);
    assert_eq!(
        value(&st, "MAIN.backend_conn") + value(&st, "MAIN.backend_reuse"),
        value(&st, "MAIN.backend_req"),
        "each request went out on a new or a reused connection"
    );
    assert!(
        value(&st, "MAIN.backend_conn") >= 2,
        "b1 and b2 each had one"
    );
    assert!(value(&st, "MAIN.s_req_hdrbytes") > 0);
    assert!(value(&st, "MAIN.s_resp_bodybytes") > 0);
    assert!(value(&st, "MAIN.n_object") >= 2);
    for b in ["b1", "b2"] {
        assert!(
            value(&st, &format!("VBE.boot.{b}.bereq_hdrbytes")) > 0,
            "{b}"
        );
        assert!(
            value(&st, &format!("VBE.boot.{b}.beresp_hdrbytes")) > 0,
            "{b}"
        );
    }
    assert_eq!(value(&st, "VBE.boot.b3.bereq_hdrbytes"), 0);
    // MAIN is the sum of the shards.
    let open: Vec<String> = (0..cores).map(|n| format!("SHARD.{n}.sess_open")).collect();
    let idle: Vec<(&str, u64)> = open.iter().map(|k| (k.as_str(), 0)).collect();
    let st = wait_stats(s.admin_addr(), &idle);
    for field in [
        "client_req",
        "sess_conn",
        "cache_hit",
        "cache_miss",
        "n_object",
        "storage_bytes",
    ] {
        assert_eq!(
            shard_sum(&st, cores, field),
            value(&st, &format!("MAIN.{field}")),
            "SHARD.*.{field}"
        );
    }
    assert_eq!(shard_sum(&st, cores, "sess_open"), 0);
    assert_eq!(
        shard_sum(&st, cores, "shard_hop"),
        shard_sum(&st, cores, "shard_hop_answered"),
        "every hop asked is answered"
    );
    assert_eq!(
        value(&st, "MAIN.shard_hop"),
        shard_sum(&st, cores, "shard_hop")
    );
    if cores == 1 {
        assert_eq!(value(&st, "MAIN.shard_hop"), 0);
    }
    assert!(
        !st.contains_key("MAIN.sess_open"),
        "sess_open is per shard only"
    );
    assert!(!st.contains_key(&format!("SHARD.{cores}.client_req")));
}

// Goal: VBE rows come and go with the VCLs that declare the backends (vcl.load, vcl.discard),
// a backend shared by two VCLs shows its one set of numbers under both names, and n_vcl /
// n_backend follow; the poller's lateness is there as POLLER gauges.
#[test]
fn vbe_rows_follow_vcl_load_and_discard() {
    let o = Origin::fixed("x", &[]);
    let s = Server::with_vcl(
        &format!(
            "vcl 4.1;\n{}\nsub vcl_recv {{ return (pass); }}\n",
            vcl_backend("b1", o.addr())
        ),
        1,
        &[],
    );
    let admin = s.admin_addr();
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
    let mut adm = AdminConn::open(admin, None);
    let v2 = VclFile::new(&format!(
        "vcl 4.1;\n{}\n{}\nsub vcl_recv {{\n\
           if (req.url == \"/extra\") {{ set req.backend_hint = extra; }}\n\
           return (pass);\n\
         }}\n",
        vcl_backend("b1", o.addr()),
        vcl_backend("extra", o.addr())
    ));
    assert_eq!(
        adm.cmd(&format!("vcl.load v2 {}", v2.path_str())).status,
        200
    );
    let st = wait_stats(admin, &[("VBE.boot.b1.req", 1), ("MAIN.n_vcl", 2)]);
    assert_counters(
        &st,
        &[
            ("VBE.boot.b1.req", 1),
            ("VBE.v2.b1.req", 1),
            ("VBE.v2.extra.req", 0),
            ("MAIN.n_vcl", 2),
            ("MAIN.n_backend", 3),
        ],
    );
    for f in [
        "probes",
        "lateness_p50_us",
        "lateness_p99_us",
        "lateness_max_us",
    ] {
        assert!(st.contains_key(&format!("POLLER.{f}")), "POLLER.{f}");
    }
    assert_eq!(adm.cmd("vcl.use v2").status, 200);
    assert_eq!(adm.cmd("vcl.discard boot").status, 200);
    let st = admin_stats(admin);
    assert!(!st.keys().any(|k| k.starts_with("VBE.boot.")), "{st:?}");
    assert_counters(
        &st,
        &[
            ("VBE.v2.b1.req", 1),
            ("MAIN.n_vcl", 1),
            ("MAIN.n_backend", 2),
        ],
    );
}

// ------------------------------------------------------------------------------------------
// stat -1 / -j
// ------------------------------------------------------------------------------------------

// Goal: `stat -j` is varnishstat 7.1's JSON (version 1, timestamp, counters with description,
// flag, format, value; bitmaps flag and format `b`, durations `d`, bytes `B`) with unique names
// of the four families, and it agrees with `stat -1`, whose lines are varnishstat's `NAME VALUE
// RATE DESCRIPTION` (rate `.` for gauges and bitmaps); `ringcache stat -1 -f` prints the same.
#[test]
fn stat_json_and_once_agree() {
    let o = Origin::fixed("x", &[("Cache-Control", "max-age=60")]);
    let s = Server::for_origin(&o, 2, &[]);
    let admin = s.admin_addr();
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
    let quiet = [
        ("VBE.boot.default.conn", 0),
        ("MAIN.backend_recycle", 1),
        ("SHARD.0.sess_open", 0),
        ("SHARD.1.sess_open", 0),
    ];
    assert_counters(&wait_stats(admin, &quiet), &quiet);
    let json = stat_json(admin);
    let mut c = AdminConn::open(admin, None);
    let once = c.cmd("stat -1").body;
    let lines: Vec<&str> = once.lines().collect();
    assert_eq!(lines.len(), json.len(), "same counters in -1 and -j");
    let mut seen = std::collections::HashSet::new();
    for ((name, flag, format, value, desc), line) in json.iter().zip(&lines) {
        assert!(seen.insert(name.clone()), "duplicate {name}");
        let family = name.split('.').next().unwrap_or("");
        assert!(
            ["MAIN", "VBE", "SHARD", "POLLER"].contains(&family),
            "{name}"
        );
        let parts = name.split('.').count();
        let want_parts = match family {
            "VBE" => 4,
            "SHARD" => 3,
            _ => 2,
        };
        assert_eq!(parts, want_parts, "{name}");
        assert_eq!(flag == "b", format == "b", "{name}");
        if name.ends_with(".happy") {
            assert_eq!((flag.as_str(), format.as_str()), ("b", "b"));
        }
        if name.ends_with("bytes") {
            assert_eq!(format, "B", "{name}");
        }
        // NAME VALUE RATE DESCRIPTION, as varnishstat -1.
        let mut w = line.split_whitespace();
        assert_eq!(w.next(), Some(name.as_str()), "{line}");
        let v: u64 = w.next().and_then(|v| v.parse().ok()).expect("value");
        let rate = w.next().expect("rate");
        if flag == "c" {
            assert!(
                rate.parse::<f64>().is_ok() && rate.split('.').nth(1).map(str::len) == Some(2),
                "{line}"
            );
        } else {
            assert_eq!(rate, ".", "{line}");
        }
        assert_eq!(w.collect::<Vec<_>>().join(" "), *desc, "{line}");
        let moving = name == "MAIN.uptime" || family == "POLLER";
        if !moving {
            assert_eq!(v, *value, "{name}");
        }
    }
    assert_eq!(json[0].0, "MAIN.uptime");
    assert_eq!(json[0].2, "d");
    for want in [
        "VBE.boot.default.req",
        "SHARD.0.client_req",
        "SHARD.1.client_req",
        "POLLER.probes",
    ] {
        assert!(seen.contains(want), "{want}");
    }
    let r = run_ringcache(
        &["stat", "-T", &admin.to_string(), "-1", "-f", "VBE.*"],
        b"",
    );
    assert!(r.status.success(), "{r:?}");
    let names: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("VBE.boot.default.")),
        "{names:?}"
    );
    let req = r
        .stdout
        .lines()
        .find(|l| l.starts_with("VBE.boot.default.req "))
        .expect("req line");
    assert_eq!(req.split_whitespace().nth(1), Some("1"), "{req}");
}

// ------------------------------------------------------------------------------------------
// Prometheus
// ------------------------------------------------------------------------------------------

/// The Prometheus name and labels a `stat -j` counter must have (docs/counters.md).
fn prom_of(name: &str, flag: &str, format: &str) -> (String, Vec<(String, String)>) {
    let p: Vec<&str> = name.split('.').collect();
    let (group, field, labels) = match p[0] {
        "MAIN" => ("main", p[1], vec![]),
        "POLLER" => ("poller", p[1], vec![]),
        "SHARD" => ("shard", p[2], vec![("shard".to_string(), p[1].to_string())]),
        "VBE" => (
            "backend",
            p[3],
            vec![
                ("vcl".to_string(), p[1].to_string()),
                ("backend".to_string(), p[2].to_string()),
            ],
        ),
        other => panic!("family {other}"),
    };
    let mut m = format!("ringcache_{group}_{field}");
    if format == "d" {
        m.push_str("_seconds");
    }
    match flag {
        "c" => m.push_str("_total"),
        "b" => m.push_str("_count"),
        _ => {}
    }
    (m, labels)
}

// Goal: GET /metrics (-p metrics_listen) answers the text format 0.0.4 (strictly parsed here),
// with one sample for every `stat` counter, named as documented and equal to it; counters are
// TYPE counter, gauges TYPE gauge; other paths are 404, other methods 405.
fn prometheus_matches_stat(cores: usize) {
    let o = Origin::fixed("x", &[("Cache-Control", "max-age=60")]);
    let s = Server::for_origin(&o, cores, &["-p", "metrics_listen=127.0.0.1:0"]);
    let admin = s.admin_addr();
    for _ in 0..3 {
        assert_eq!(get(s.addr(), "/m", &[]).status, 200);
    }
    wait_stats(
        admin,
        &[
            ("MAIN.cache_hit", 2),
            ("MAIN.backend_recycle", 1),
            ("VBE.boot.default.conn", 0),
        ],
    );
    let m = metrics_addr(&s);
    let (status, ctype, body) = http_get(m, "GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let (samples, types) = parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let json = stat_json(admin);
    assert_eq!(samples.len(), json.len(), "one sample per counter");
    for (name, flag, format, value, _) in &json {
        let (metric, labels) = prom_of(name, flag, format);
        let sample = samples
            .iter()
            .find(|s| s.name == metric && s.labels == labels)
            .unwrap_or_else(|| panic!("{name}: no sample {metric}{labels:?}"));
        let want_type = if flag == "c" { "counter" } else { "gauge" };
        assert_eq!(
            types.get(&metric).map(String::as_str),
            Some(want_type),
            "{metric}"
        );
        if name == "MAIN.uptime" || name.starts_with("POLLER.") {
            continue;
        }
        let want = if flag == "b" {
            value.count_ones() as f64
        } else {
            *value as f64
        };
        assert_eq!(sample.value, want, "{name} = {metric}");
    }
    let hit = samples
        .iter()
        .find(|s| s.name == "ringcache_main_cache_hit_total")
        .expect("cache_hit");
    assert_eq!(hit.value, 2.0);
    assert!(samples
        .iter()
        .any(|s| s.name == "ringcache_backend_req_total"
            && s.labels
                == [
                    ("vcl".to_string(), "boot".to_string()),
                    ("backend".to_string(), "default".to_string())
                ]
            && s.value == 1.0));
    let (st, _, _) = http_get(m, "GET", "/");
    assert_eq!(st, 404);
    let (st, _, _) = http_get(m, "POST", "/metrics");
    assert_eq!(st, 405);
    let (st, ctype, body) = http_get(m, "HEAD", "/metrics");
    assert_eq!((st, ctype.is_empty(), body.as_str()), (200, false, ""));
}

// Goal: a bad -p metrics_listen is refused at startup with one line; without it no metrics
// port is opened.
#[test]
fn metrics_listen_refusals() {
    let (st, err) = Server::start_expect_fail(&[
        "-a",
        "127.0.0.1:0",
        "-b",
        "127.0.0.1:1",
        "-p",
        "metrics_listen=127.0.0.1:x",
    ]);
    assert!(!st.success());
    assert!(err.contains("-p metrics_listen=127.0.0.1:x: "), "{err}");
    let o = Origin::fixed("x", &[]);
    let s = Server::for_origin(&o, 1, &[]);
    assert!(!s.stderr_text().contains("metrics on"));
}

// ------------------------------------------------------------------------------------------
// Logs
// ------------------------------------------------------------------------------------------

// Goal: `ringcache log -i Backend_health` streams new events as they happen: after it has shown
// a probe's "Still healthy", stopping the origin makes it print "Went sick"; `ringcache log -d
// -i FetchError` prints the kept FetchError lines of the shards and exits; `-i` keeps other
// tags out.
#[test]
fn log_client_streams_events() {
    let mut o = Origin::fixed("ok", &[]);
    let vcl = format!(
        "vcl 4.1;\nbackend be {{ .host = \"127.0.0.1\"; .port = \"{}\";\n\
           .probe = {{ .url = \"/\"; .interval = 0.1s; .timeout = 1s; .window = 3;\n\
                       .threshold = 2; .initial = 3; }} }}\n",
        o.addr().port()
    );
    let s = Server::with_vcl(&vcl, 1, &[]);
    let t = s.admin_addr().to_string();
    let log = LogChild::start(&["log", "-T", &t, "-i", "Backend_health"]);
    assert!(
        log.wait_for(
            "Backend_health - be Still healthy ",
            Duration::from_secs(10)
        ),
        "streamed: {:?}",
        log.text()
    );
    o.shutdown();
    assert!(
        log.wait_for("Backend_health - be Went sick ", Duration::from_secs(10)),
        "streamed: {:?}",
        log.text()
    );
    assert!(
        log.text()
            .lines()
            .all(|l| l.starts_with("Backend_health - be ")),
        "{}",
        log.text()
    );
    // The backend is sick now: a fetch is not attempted, and the FetchError reaches the log.
    assert_eq!(get(s.addr(), "/x", &[]).status, 503);
    let mut lines = String::new();
    wait_until(Duration::from_secs(5), || {
        let r = run_ringcache(&["log", "-T", &t, "-d", "-i", "FetchError"], b"");
        assert!(r.status.success(), "{r:?}");
        lines = r.stdout;
        !lines.is_empty()
    });
    assert!(
        lines.lines().all(|l| l.starts_with("FetchError "))
            && lines.contains("backend be: unhealthy"),
        "{lines:?}"
    );
    let r = run_ringcache(&["log", "-T", "127.0.0.1:1", "-d"], b"");
    assert_eq!(r.status.code(), Some(2), "{r:?}");
}

// Goal: with -p log_file the event lines (here VCL_Log and FetchError from the shards) go to
// the file, each stamped with the local time, not to stderr; log.read has them too.
#[test]
fn log_file_gets_the_event_lines() {
    let path = temp_path("events.log");
    let _cleanup = TempFile(path.clone());
    let dead = HeldDeadPort::new();
    let vcl = format!(
        "vcl 4.1;\nimport std;\nbackend b {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n\
         sub vcl_recv {{ std.log(\"seen \" + req.url); }}\n",
        dead.port
    );
    let arg = format!("log_file={}", path.display());
    let s = Server::with_vcl(&vcl, 1, &["-p", &arg]);
    assert_eq!(get(s.addr(), "/logged", &[]).status, 503);
    let lines = wait_lines(&path, 2);
    let log_line = lines
        .iter()
        .find(|l| l.contains(" VCL_Log ") && l.ends_with(" seen /logged"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let stamp = log_line.split(' ').next().unwrap_or("");
    assert_eq!(
        stamp.len(),
        "2026-11-21T13:36:38.123456".len(),
        "{log_line}"
    );
    assert_eq!(&stamp[10..11], "T");
    assert!(
        lines.iter().any(|l| l.contains(" FetchError ")),
        "{lines:?}"
    );
    assert!(!s.stderr_text().contains("VCL_Log"), "{}", s.stderr_text());
    let mut adm = AdminConn::open(s.admin_addr(), None);
    let r = adm.cmd("log.read -i VCL_Log");
    assert!(
        r.body.lines().any(|l| l.ends_with(" seen /logged")),
        "{r:?}"
    );
}

#[test]
fn unwritable_log_file_fails_startup() {
    for p in ["log_file", "access_log"] {
        let arg = format!("{p}=/nonexistent-ringcache-dir/x.log");
        let (st, err) =
            Server::start_expect_fail(&["-a", "127.0.0.1:0", "-b", "127.0.0.1:1", "-p", &arg]);
        assert!(!st.success());
        assert!(
            err.contains(&format!(
                "-p {p}=/nonexistent-ringcache-dir/x.log: cannot open: "
            )),
            "{err}"
        );
    }
}

/// Splits an NCSA line into fields: bare words, `[...]` and `"..."` (with `\"` escapes).
fn ncsa_fields(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' => i += 1,
            b'"' => {
                let mut f = String::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        f.push(b[i + 1] as char);
                        i += 2;
                    } else {
                        f.push(b[i] as char);
                        i += 1;
                    }
                }
                i += 1;
                out.push(f);
            }
            b'[' => {
                let end = line[i..].find(']').map_or(b.len(), |e| i + e);
                out.push(line[i..=end.min(b.len() - 1)].to_string());
                i = end + 1;
            }
            _ => {
                let end = line[i..].find(' ').map_or(b.len(), |e| i + e);
                out.push(line[i..end].to_string());
                i = end;
            }
        }
    }
    out
}

// Goal: -p access_log writes one NCSA combined line per request, with the handling and the
// grace marker: a miss, a hit, a pass, a synth, a pipe and a grace hit, with the fields
// varnishncsa prints (request line rebuilt from Host, status, body bytes, Referer, User-Agent).
fn access_log_lines(cores: usize) {
    let path = temp_path("access.log");
    let _cleanup = TempFile(path.clone());
    let o = Origin::start(|req, _| match req.url.as_str() {
        "/g" => Reply::ok("graced").cc("max-age=1"),
        _ => Reply::ok("body!").cc("max-age=60"),
    });
    let vcl = format!(
        "vcl 4.1;\n{}\nsub vcl_recv {{\n\
           if (req.url == \"/synth\") {{ return (synth(418, \"Teapot\")); }}\n\
           if (req.url == \"/pipe\") {{ return (pipe); }}\n\
         }}\n",
        vcl_backend("o", o.addr())
    );
    let arg = format!("access_log={}", path.display());
    let s = Server::with_vcl(&vcl, cores, &["-p", &arg]);
    let a = s.addr();
    let ua = [
        ("Host", "example.com"),
        ("User-Agent", "tester/1.0"),
        ("Referer", "http://ref.example/"),
    ];
    assert_eq!(get(a, "/c", &ua).status, 200);
    assert!(get(a, "/c", &[("Host", "example.com")]).is_hit());
    assert_eq!(request(a, "POST", "/p", &[], Some(b"x")).status, 200);
    assert_eq!(get(a, "/synth", &[]).status, 418);
    let mut c = Client::connect(a);
    let r = c.request("GET", "/pipe", &[("Connection", "close")], None);
    assert_eq!(r.status, 200);
    drop(c);
    assert_eq!(get(a, "/g", &[]).body_str(), "graced");
    // Past max-age=1, inside the default grace: delivered stale.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(get(a, "/g", &[]).body_str(), "graced");
    let lines = wait_lines(&path, 7);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let f: Vec<Vec<String>> = lines.iter().map(|l| ncsa_fields(l)).collect();
    for (l, fields) in lines.iter().zip(&f) {
        assert_eq!(fields.len(), 11, "{l}");
        assert_eq!(fields[0], "127.0.0.1", "{l}");
        assert_eq!((fields[1].as_str(), fields[2].as_str()), ("-", "-"), "{l}");
        let t = &fields[3];
        assert!(
            t.starts_with('[') && t.ends_with(']') && t.len() == 28,
            "{l}"
        );
        assert_eq!(&t[3..4], "/", "{l}");
    }
    let row = |i: usize| -> Vec<&str> { f[i][4..].iter().map(String::as_str).collect() };
    // Requests are logged when they end; each one here ended before the next began.
    assert_eq!(
        row(0),
        [
            "GET http://example.com/c HTTP/1.1",
            "200",
            "5",
            "http://ref.example/",
            "tester/1.0",
            "miss",
            "-"
        ]
    );
    assert_eq!(
        row(1),
        [
            "GET http://example.com/c HTTP/1.1",
            "200",
            "5",
            "-",
            "-",
            "hit",
            "-"
        ]
    );
    assert_eq!(
        row(2),
        [
            "POST http://localhost/p HTTP/1.1",
            "200",
            "5",
            "-",
            "-",
            "pass",
            "-"
        ]
    );
    let synth = row(3);
    assert_eq!(synth[..2], ["GET http://localhost/synth HTTP/1.1", "418"]);
    assert!(synth[2].parse::<u64>().is_ok_and(|n| n > 0), "{synth:?}");
    assert_eq!(synth[3..], ["-", "-", "synth", "-"]);
    assert_eq!(
        row(4),
        [
            "GET http://localhost/pipe HTTP/1.1",
            "-",
            "-",
            "-",
            "-",
            "pipe",
            "-"
        ]
    );
    assert_eq!(
        row(5),
        [
            "GET http://localhost/g HTTP/1.1",
            "200",
            "6",
            "-",
            "-",
            "miss",
            "-"
        ]
    );
    assert_eq!(
        row(6),
        [
            "GET http://localhost/g HTTP/1.1",
            "200",
            "6",
            "-",
            "-",
            "hit",
            "grace"
        ]
    );
    let st = admin_stats(s.admin_addr());
    assert_eq!(st.get("MAIN.access_log_dropped"), Some(&0));
    assert_eq!(st.get("MAIN.cache_hit_grace"), Some(&1));
}

// Goal: a request that never reaches a fetch still gets its line promptly (the log is written
// off the request path, and flushed whenever the queue runs empty).
#[test]
fn access_log_is_flushed_without_more_traffic() {
    let path = temp_path("flush.log");
    let _cleanup = TempFile(path.clone());
    let o = Origin::fixed("x", &[]);
    let arg = format!("access_log={}", path.display());
    let s = Server::for_origin(&o, 1, &["-p", &arg]);
    let started = Instant::now();
    assert_eq!(get(s.addr(), "/one", &[]).status, 200);
    let lines = wait_lines(&path, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        lines[0].contains("\"GET http://localhost/one HTTP/1.1\" 200 1 "),
        "{lines:?}"
    );
}

// ------------------------------------------------------------------------------------------
// The live view
// ------------------------------------------------------------------------------------------

// Goal: `ringcache stat` without -1/-j on a terminal draws the live view (alternate screen,
// header with uptime and hit rate, NAME CURRENT CHANGE AVERAGE columns), redraws it every
// second, quits on `q` with status 0 and leaves the terminal as it found it.
// Method: a pseudo-terminal made here (openpty) is the client's stdin and stdout.
#[test]
fn live_stat_view_on_a_terminal() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let o = Origin::fixed("x", &[("Cache-Control", "max-age=60")]);
    let s = Server::for_origin(&o, 1, &[]);
    for _ in 0..2 {
        assert_eq!(get(s.addr(), "/", &[]).status, 200);
    }
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes the two descriptors into the ints we pass and reads `ws`; all
    // outlive the call; the name and termios arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut term_in = std::fs::File::from(master.try_clone().expect("dup"));
    let term_out = std::fs::File::from(master);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["stat", "-T", &s.admin_addr().to_string()])
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringcache stat");
    let screen = Arc::new(Mutex::new(String::new()));
    let sc = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut f = term_out;
        let mut buf = [0u8; 4096];
        for _ in 0..100_000 {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sc
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    let frames = |t: &str| t.matches("\x1b[H\x1b[2J").count();
    let two = wait_until(Duration::from_secs(10), || {
        frames(&screen.lock().unwrap()) >= 2
    });
    let text = screen.lock().unwrap().clone();
    assert!(two, "no second frame: {text:?}");
    assert!(text.starts_with("\x1b[?1049h\x1b[?25l"), "{text:?}");
    assert!(text.contains("ringcache stat "), "{text:?}");
    assert!(text.contains("Hit rate: since start 50.00%"), "{text:?}");
    let header = text
        .lines()
        .find(|l| l.starts_with("NAME "))
        .expect("header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "CURRENT", "CHANGE", "AVERAGE"]
    );
    let hit = text
        .lines()
        .rev()
        .find(|l| l.starts_with("MAIN.cache_hit "))
        .expect("cache_hit line");
    let cols: Vec<&str> = hit.split_whitespace().collect();
    assert_eq!(cols[..3], ["MAIN.cache_hit", "1", "0.00"], "{hit:?}");
    term_in.write_all(b"q").expect("press q");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "q did not quit the view");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    drop(term_in);
    wait_until(Duration::from_secs(2), || {
        screen.lock().unwrap().contains("\x1b[?1049l")
    });
    assert!(screen.lock().unwrap().ends_with("\x1b[?25h\x1b[?1049l"));
    let _ = reader.join();
}

// Goal: VBE.<vcl>.<backend>.conn counts a fetch while it is in flight (here the backend's
// first, so nothing else made its counters yet) and comes back to 0 when it is done.
fn vbe_conn_counts_fetches_in_flight(cores: usize) {
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r2 = release.clone();
    let o = Origin::start(move |_, _| {
        wait_until(Duration::from_secs(20), || {
            r2.load(std::sync::atomic::Ordering::SeqCst)
        });
        Reply::ok("slow")
    });
    let s = Server::for_origin(&o, cores, &[]);
    let a = s.addr();
    let t = std::thread::spawn(move || get(a, "/slow", &[]).status);
    let st = wait_stats(s.admin_addr(), &[("VBE.boot.default.conn", 1)]);
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_counters(&st, &[("VBE.boot.default.conn", 1)]);
    assert_eq!(t.join().expect("client"), 200);
    let want = [("VBE.boot.default.conn", 0), ("VBE.boot.default.req", 1)];
    assert_counters(&wait_stats(s.admin_addr(), &want), &want);
}

// Goal: VBE.<vcl>.<backend>.busy counts a fetch refused at .max_connections and .helddown one
// not tried while connects to the backend are held down (after a refused connect, whose
// VBE.fail_econnrefused counts), each with its MAIN counterpart.
fn vbe_busy_and_helddown(cores: usize) {
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r2 = release.clone();
    let slow = Origin::start(move |_, _| {
        wait_until(Duration::from_secs(20), || {
            r2.load(std::sync::atomic::Ordering::SeqCst)
        });
        Reply::ok("slow")
    });
    let dead = HeldDeadPort::new();
    let vcl = format!(
        "vcl 4.1;\n\
         backend slow {{ .host = \"127.0.0.1\"; .port = \"{}\"; .max_connections = 1; }}\n\
         backend dead {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n\
         sub vcl_recv {{\n\
           if (req.url ~ \"^/dead\") {{ set req.backend_hint = dead; }}\n\
           return (pass);\n\
         }}\n",
        slow.addr().port(),
        dead.port
    );
    let s = Server::with_vcl(&vcl, cores, &["-p", "backend_remote_error_holddown=60"]);
    let a = s.addr();
    let t = std::thread::spawn(move || get(a, "/slow", &[]).status);
    let st = wait_stats(s.admin_addr(), &[("VBE.boot.slow.conn", 1)]);
    assert_counters(&st, &[("VBE.boot.slow.conn", 1)]);
    assert_eq!(get(a, "/slow2", &[]).status, 503);
    assert_eq!(get(a, "/dead", &[]).status, 503);
    assert_eq!(get(a, "/dead2", &[]).status, 503);
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(t.join().expect("client"), 200);
    let want = [
        ("VBE.boot.slow.busy", 1),
        ("MAIN.backend_busy", 1),
        ("VBE.boot.slow.conn", 0),
        ("VBE.boot.slow.req", 1),
        ("VBE.boot.dead.fail", 1),
        ("VBE.boot.dead.fail_econnrefused", 1),
        ("VBE.boot.dead.helddown", 1),
        ("MAIN.backend_helddown", 1),
        ("VBE.boot.dead.req", 0),
        ("MAIN.backend_req", 1),
    ];
    assert_counters(&wait_stats(s.admin_addr(), &want), &want);
}
