//! Runtime parameters over the admin CLI: `param.show` in its forms, `param.set` and
//! `param.reset` with varnishd 7.1.1's texts and status codes, startup-only parameters refused,
//! and changes that reach the shards for new requests (TTL defaults, timeouts, header limits),
//! with one shard and with two.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

shard_tests!(
    default_ttl_change_applies_to_new_objects,
    first_byte_timeout_change_applies_to_new_fetches,
    timeout_idle_change_applies_to_new_connections,
    header_limit_change_applies_to_new_requests,
    max_retries_change_applies_to_new_fetches,
);

/// Runs `line` on a fresh authenticated-less admin connection.
fn cli(s: &Server, line: &str) -> CliResponse {
    AdminConn::open(s.admin_addr(), None).cmd(line)
}

/// Asserts that `line` answers `status` with exactly `body`.
fn expect(s: &Server, line: &str, status: u16, body: &str) {
    let r = cli(s, line);
    assert_eq!((r.status, r.body.as_str()), (status, body), "{line}");
}

/// An origin counting requests per URL, answering `200 <url> #<n>` with the given headers.
fn counting_origin(headers: &'static [(&'static str, &'static str)]) -> Origin {
    Origin::start(move |req, n| {
        let mut r = Reply::ok(format!("{} #{n}", req.url));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r
    })
}

// Goal: `param.show` answers in varnishd's three forms: the short list of every parameter
// (name column, value, unit, "(default)"), the long form of one (also with -l), and JSON;
// unknown names and extra words get varnishd's errors.
#[test]
fn param_show_forms_and_errors() {
    let o = Origin::fixed("x", &[]);
    let s = Server::for_origin(&o, 1, &[]);
    let r = cli(&s, "param.show");
    assert_eq!(r.status, 200, "{r:?}");
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(lines.len() >= 20, "{}", r.body);
    let ttl = lines
        .iter()
        .find(|l| l.starts_with("default_ttl "))
        .expect("default_ttl line");
    let column = ttl.find("120.000").expect("value");
    assert!(
        lines
            .iter()
            .all(|l| l.len() > column && l.as_bytes()[column - 1] == b' '),
        "every value starts in one column:\n{}",
        r.body
    );
    assert_eq!(&ttl[column..], "120.000 [seconds] (default)");
    let mut names: Vec<&str> = lines.iter().filter_map(|l| l.split(' ').next()).collect();
    let listed = names.clone();
    names.sort_unstable();
    assert_eq!(listed, names, "sorted by name");
    assert!(r.body.contains("\nhttp_req_size"));
    // `-p cores=1` shows as changed.
    let r = cli(&s, "param.show changed");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("cores "), "{}", r.body);
    assert!(r.body.contains("1 [shards]\n"), "{}", r.body);

    let long = cli(&s, "param.show default_ttl");
    assert_eq!(long.status, 200);
    assert!(
        long.body.starts_with(
            "default_ttl\n        Value is: 120.000 [seconds] (default)\n        \
             Minimum is: 0.000\n\n        "
        ),
        "{}",
        long.body
    );
    assert!(long
        .body
        .contains("\n        NB: This parameter is evaluated only when objects are created.\n"));
    assert!(long.body.ends_with("\n\n"));
    assert_eq!(cli(&s, "param.show -l default_ttl"), long);
    let all_long = cli(&s, "param.show -l");
    assert!(
        all_long.body.contains(&long.body),
        "the long list holds each long entry"
    );

    let j = cli(&s, "param.show -j http_req_size");
    assert_eq!(j.status, 200);
    assert!(
        j.body
            .starts_with("[ 2, [\"param.show\", \"-j\", \"http_req_size\"], "),
        "{}",
        j.body
    );
    for want in [
        "  {\n    \"name\": \"http_req_size\",\n    \"implemented\": true,\n    \"value\": 32768,\n",
        "    \"units\": \"bytes\",\n    \"default\": \"32k\",\n    \"minimum\": \"0.25k\",\n",
        "    \"maximum\": \"64M\",\n",
        "    \"flags\": []\n  }\n]\n",
    ] {
        assert!(j.body.contains(want), "{want:?} in {}", j.body);
    }
    let j = cli(&s, "param.show -j cores");
    assert!(
        j.body
            .contains("\"flags\": [\n      \"must_restart\"\n    ]"),
        "{}",
        j.body
    );

    expect(
        &s,
        "param.show nosuch",
        106,
        "Unknown parameter \"nosuch\".",
    );
    expect(
        &s,
        "param.show -l nosuch",
        106,
        "Unknown parameter \"nosuch\".",
    );
    expect(
        &s,
        "param.show -j nosuch",
        106,
        "Unknown parameter \"nosuch\".",
    );
    expect(&s, "param.show a b", 105, "Too many parameters");
    expect(&s, "param.show -l -j x", 105, "Too many parameters\n");
    expect(
        &s,
        "param.show -j -l x",
        106,
        "-l not permitted with param.show -j",
    );
    expect(&s, "param.show a b c", 105, "Too many parameters\n");
}

// Goal: `param.set` refuses bad values with varnishd's texts (status 106, the reason, then
// "(attempting to set param ...)"), wrong argument counts with 104/105, unknown names, and
// startup-only parameters with 300; a refused value leaves the parameter as it was.
#[test]
fn param_set_errors_and_reset() {
    let o = Origin::fixed("x", &[]);
    let s = Server::for_origin(&o, 1, &[]);
    expect(
        &s,
        "param.set default_ttl abc",
        106,
        "Invalid number (abc)\n\n(attempting to set param 'default_ttl' to 'abc')",
    );
    expect(
        &s,
        "param.set default_ttl -1",
        106,
        "Must be greater or equal to 0.000\n\n(attempting to set param 'default_ttl' to '-1')",
    );
    expect(
        &s,
        "param.set http_max_hdr 5",
        106,
        "Must be at least 32\n\n(attempting to set param 'http_max_hdr' to '5')",
    );
    expect(
        &s,
        "param.set http_max_hdr abc",
        106,
        "Not a number (abc)\n\n(attempting to set param 'http_max_hdr' to 'abc')",
    );
    expect(
        &s,
        "param.set http_req_size 1q",
        106,
        "Could not convert to bytes.\nUnknown BYTES unit of measurement ([KMGTP][B])\n  Try \
         something like '80k' or '120M'\n\n(attempting to set param 'http_req_size' to '1q')",
    );
    expect(
        &s,
        "param.set cpu_affinity maybe",
        106,
        "use \"on\" or \"off\"\n\n(attempting to set param 'cpu_affinity' to 'maybe')",
    );
    expect(
        &s,
        "param.set nosuch 1",
        106,
        "Unknown parameter \"nosuch\".",
    );
    expect(&s, "param.set", 104, "Too few parameters\n");
    expect(&s, "param.set default_ttl", 104, "Too few parameters\n");
    expect(&s, "param.set a b c", 105, "Too many parameters\n");
    expect(&s, "param.reset", 104, "Too few parameters\n");
    expect(
        &s,
        "param.reset nosuch",
        106,
        "Unknown parameter \"nosuch\".",
    );
    // Startup-only: refused, unless it is the value in force.
    expect(
        &s,
        "param.set cores 3",
        300,
        "parameter \"cores\" cannot be changed at runtime; restart with -p cores=3",
    );
    expect(
        &s,
        "param.set cpu_affinity off",
        300,
        "parameter \"cpu_affinity\" cannot be changed at runtime; restart with -p \
         cpu_affinity=off",
    );
    expect(&s, "param.set cores 1", 200, "");
    let r = cli(&s, "param.show -l cores");
    assert!(
        r.body.contains("        Value is: 1 [shards]\n"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("NB: This parameter cannot be changed while"),
        "{}",
        r.body
    );
    // Nothing above changed default_ttl.
    let r = cli(&s, "param.show default_ttl");
    assert!(
        r.body.contains("Value is: 120.000 [seconds] (default)\n"),
        "{}",
        r.body
    );

    // A good value, shown changed; -j answers with the parameter; reset brings it back.
    expect(&s, "param.set default_ttl 2m", 200, "");
    let r = cli(&s, "param.show default_ttl");
    assert!(
        r.body
            .contains("        Value is: 120.000 [seconds] (default)\n"),
        "2m is 120 s: {}",
        r.body
    );
    expect(&s, "param.set default_ttl 1.5", 200, "");
    let r = cli(&s, "param.show default_ttl");
    assert!(
        r.body
            .contains("        Value is: 1.500 [seconds]\n        Default is: 120.000\n"),
        "{}",
        r.body
    );
    let r = cli(&s, "param.show changed");
    assert!(
        r.body
            .lines()
            .any(|l| l.starts_with("default_ttl ") && l.ends_with("1.500 [seconds]")),
        "{}",
        r.body
    );
    let r = cli(&s, "param.set -j max_restarts 7");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body
            .starts_with("[ 2, [\"param.set\", \"-j\", \"max_restarts\"], "),
        "{}",
        r.body
    );
    assert!(r.body.contains("\"value\": 7,\n"), "{}", r.body);
    expect(&s, "param.reset default_ttl", 200, "");
    let r = cli(&s, "param.show default_ttl");
    assert!(
        r.body.contains("Value is: 120.000 [seconds] (default)\n"),
        "{}",
        r.body
    );
    // ringcache adm passes a leading-dash value through.
    let t = s.admin_addr().to_string();
    let out = run_ringcache(&["adm", "-T", &t, "param.set", "default_grace", "-1"], b"");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("Must be greater or equal to 0.000")
            && out.stderr.contains("Command failed with error code 106"),
        "{out:?}"
    );
}

// Goal: default_ttl (and default_grace) set at runtime apply to objects stored afterwards, on
// every shard: a new object lives 1 s then is fetched again; an object stored before the
// change keeps its 120 s (Varnish's obj_sticky).
fn default_ttl_change_applies_to_new_objects(cores: usize) {
    let o = counting_origin(&[]);
    let s = Server::for_origin(&o, cores, &[]);
    let before: Vec<String> = (0..8).map(|i| format!("/old/{i}")).collect();
    for u in &before {
        assert_eq!(get(s.addr(), u, &[]).status, 200);
    }
    expect(&s, "param.set default_ttl 1", 200, "");
    expect(&s, "param.set default_grace 0", 200, "");
    let after: Vec<String> = (0..8).map(|i| format!("/new/{i}")).collect();
    let t0 = Instant::now();
    for u in &after {
        let r = get(s.addr(), u, &[]);
        assert_eq!(r.status, 200);
        assert!(!r.is_hit(), "{}", r.summary());
    }
    for u in after.iter().chain(&before) {
        let r = get(s.addr(), u, &[]);
        if t0.elapsed() < Duration::from_millis(900) {
            assert!(r.is_hit(), "{u} within its TTL: {}", r.summary());
        }
    }
    // Once a second has passed, every new object is fetched again; the old ones still hit.
    let refetched = wait_until(Duration::from_secs(10), || {
        after.iter().all(|u| {
            get(s.addr(), u, &[]);
            o.count_url(u) >= 2
        })
    });
    assert!(refetched, "new objects expire after 1 s");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "not before their TTL"
    );
    for u in &before {
        let r = get(s.addr(), u, &[]);
        assert!(
            r.is_hit(),
            "{u} keeps the TTL it was stored with: {}",
            r.summary()
        );
        assert_eq!(o.count_url(u), 1, "{u}");
    }
}

// Goal: first_byte_timeout set at runtime applies to fetches that start afterwards on every
// shard: a 1.5 s slow origin is fine with the default 60 s, fails (503) under 0.3 s, and works
// again once raised.
fn first_byte_timeout_change_applies_to_new_fetches(cores: usize) {
    let o = Origin::start(|req, _| {
        let r = Reply::ok(req.url.clone()).cc("no-store");
        if req.url.starts_with("/slow") {
            r.delay_ms(1500)
        } else {
            r
        }
    });
    let s = Server::for_origin(&o, cores, &[]);
    assert_eq!(get(s.addr(), "/slow/0", &[]).status, 200);
    expect(&s, "param.set first_byte_timeout 0.3", 200, "");
    for i in 1..=4 {
        let r = get(s.addr(), &format!("/slow/{i}"), &[]);
        assert_eq!(r.status, 503, "{}", r.summary());
    }
    assert_eq!(get(s.addr(), "/fast", &[]).status, 200);
    expect(&s, "param.set first_byte_timeout 10", 200, "");
    for i in 5..=6 {
        let r = get(s.addr(), &format!("/slow/{i}"), &[]);
        assert_eq!(r.status, 200, "{}", r.summary());
    }
}

// Goal: timeout_idle set at runtime applies to connections: an idle client connection is
// closed after the new 0.5 s, long before the default 5 s.
fn timeout_idle_change_applies_to_new_connections(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let s = Server::for_origin(&o, cores, &[]);
    expect(&s, "param.set timeout_idle 0.5", 200, "");
    // Several connections, so each shard's listener gets some.
    for _ in 0..4 {
        let mut c = Client::connect(s.addr());
        let closed = c.wait_closed(Duration::from_secs(3));
        assert!(
            closed.is_ok(),
            "idle connection closed by the new timeout: {closed:?}"
        );
    }
    // A keep-alive connection is closed after its request too.
    let mut c = Client::connect(s.addr());
    assert_eq!(c.get("/", &[]).status, 200);
    assert!(c.wait_closed(Duration::from_secs(3)).is_ok());
}

// Goal: http_max_hdr set at runtime applies to the next request heads: 40 header fields pass
// with the default 64 and get 431 with 32; raising it back lets them through.
fn header_limit_change_applies_to_new_requests(cores: usize) {
    let o = Origin::fixed("x", &[]);
    let s = Server::for_origin(&o, cores, &[]);
    let names: Vec<String> = (0..40).map(|i| format!("X-H{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    assert_eq!(get(s.addr(), "/", &headers).status, 200);
    expect(&s, "param.set http_max_hdr 32", 200, "");
    for _ in 0..4 {
        let r = send_raw_expect_close(s.addr(), &build_request("GET", "/", &headers, None));
        assert_eq!(r.status, 431, "{}", r.summary());
    }
    assert_eq!(get(s.addr(), "/", &[]).status, 200);
    expect(&s, "param.set http_max_hdr 64", 200, "");
    for _ in 0..4 {
        assert_eq!(get(s.addr(), "/", &headers).status, 200);
    }
}

// Goal: max_retries set at runtime bounds `return (retry)` for new fetches: a VCL that always
// retries makes 1 + max_retries backend requests per client request.
fn max_retries_change_applies_to_new_fetches(cores: usize) {
    let o = Origin::start(|_, _| Reply::ok("x").cc("no-store"));
    let vcl = format!(
        "vcl 4.1;\n{}\nsub vcl_backend_response {{ return (retry); }}\n",
        vcl_backend("b", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let r = get(s.addr(), "/a", &[]);
    assert_eq!(r.status, 503, "{}", r.summary());
    assert_eq!(o.count_url("/a"), 5, "1 + the default 4 retries");
    expect(&s, "param.set max_retries 1", 200, "");
    for u in ["/b", "/c", "/d"] {
        assert_eq!(get(s.addr(), u, &[]).status, 503);
        assert_eq!(o.count_url(u), 2, "{u}: 1 + 1 retry");
    }
}
