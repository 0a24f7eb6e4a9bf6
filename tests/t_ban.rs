//! Bans over the admin CLI and from VCL: objects matching a ban (on `req.url`, `req.http.*`,
//! `obj.status`, `obj.http.*`, and conjunctions) are never delivered again, wherever they are
//! stored (with two shards, half the keys are owned by the other shard), objects that do not
//! match stay hits, bad bans get varnishd 7.1.1's texts, and `ban.list` shows the list.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

shard_tests!(
    ban_req_url_regex,
    ban_req_http_host,
    ban_obj_status,
    ban_obj_http_header,
    ban_conjunction,
    ban_from_vcl,
    ban_list_retires_what_no_object_needs,
);

/// Keys per group: enough that, with two shards, both own some (the chance that 16 keys all
/// land on one shard is 2^-15).
const N: usize = 16;

fn cli(s: &Server, line: &str) -> CliResponse {
    AdminConn::open(s.admin_addr(), None).cmd(line)
}

fn ban(s: &Server, spec: &str) {
    let r = cli(s, &format!("ban {spec}"));
    assert_eq!((r.status, r.body.as_str()), (200, ""), "ban {spec}");
}

fn urls(prefix: &str) -> Vec<String> {
    (0..N).map(|i| format!("{prefix}{i}")).collect()
}

/// Fetches every URL once (a miss each), then again (a hit each); the origin saw each once.
fn warm(s: &Server, o: &Origin, urls: &[String], headers: &[(&str, &str)]) {
    for u in urls {
        let r = get(s.addr(), u, headers);
        assert_eq!(r.status / 100, if u.contains("missing") { 4 } else { 2 });
    }
    for u in urls {
        let r = get(s.addr(), u, headers);
        assert!(r.is_hit(), "{u} cached: {}", r.summary());
    }
    for u in urls {
        assert_eq!(o.count_url(u), 1, "{u}");
    }
}

/// After a ban: each of `banned` is fetched again (once, then a hit), each of `kept` is still
/// the hit it was.
fn check(s: &Server, o: &Origin, banned: &[String], kept: &[String], headers: &[(&str, &str)]) {
    let before: Vec<usize> = banned.iter().map(|u| o.count_url(u)).collect();
    for (u, n) in banned.iter().zip(before) {
        let r = get(s.addr(), u, headers);
        assert!(!r.is_hit(), "{u} is banned: {}", r.summary());
        assert_eq!(o.count_url(u), n + 1, "{u}: the origin sees a new fetch");
        let r = get(s.addr(), u, headers);
        assert!(
            r.is_hit(),
            "{u}: the new object is not banned: {}",
            r.summary()
        );
    }
    for u in kept {
        let n = o.count_url(u);
        let r = get(s.addr(), u, headers);
        assert!(r.is_hit(), "{u} does not match: {}", r.summary());
        assert_eq!(o.count_url(u), n, "{u}");
    }
}

/// With two shards, lookups crossed shards (so keys owned by the other shard were tested).
fn assert_crossed(s: &Server, cores: usize) {
    if cores > 1 {
        let st = admin_stats(s.admin_addr());
        assert!(st["MAIN.shard_hop"] > 0, "{st:?}");
    }
}

/// An origin answering `200 <url>` (or 404 under /missing), cacheable for an hour, with
/// `X-Tag: red` under /red and `X-Tag: blue` elsewhere.
fn tagging_origin() -> Origin {
    Origin::start(|req, n| {
        let status = if req.url.starts_with("/missing") {
            404
        } else {
            200
        };
        let tag = if req.url.contains("/red") {
            "red"
        } else {
            "blue"
        };
        Reply::new(status)
            .body(format!("{} #{n}", req.url))
            .cc("max-age=3600")
            .header("X-Tag", tag)
    })
}

// Goal: `ban req.url ~ REGEX` makes every matching object a miss (tested at lookup, with the
// request) on whichever shard owns it, counts the kills, and leaves other objects hits.
fn ban_req_url_regex(cores: usize) {
    let o = tagging_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let (news, sport) = (urls("/news/"), urls("/sport/"));
    warm(&s, &o, &news, &[]);
    warm(&s, &o, &sport, &[]);
    ban(&s, "req.url ~ ^/news/");
    check(&s, &o, &news, &sport, &[]);
    let st = wait_stats(s.admin_addr(), &[("MAIN.bans_obj_killed", N as u64)]);
    assert_eq!(st["MAIN.bans_obj_killed"], N as u64, "{st:?}");
    assert_eq!(st["MAIN.bans_added"], 1);
    assert!(st["MAIN.bans_tested"] >= 2 * N as u64, "{st:?}");
    assert!(st["MAIN.bans_tests_tested"] >= 2 * N as u64, "{st:?}");
    assert_crossed(&s, cores);
}

// Goal: `ban req.http.host == NAME` bans only that site's objects (same URLs, other Host
// stays cached).
fn ban_req_http_host(cores: usize) {
    let o = tagging_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let u = urls("/page/");
    let a = [("Host", "a.example")];
    let b = [("Host", "b.example")];
    for h in [&a, &b] {
        for x in &u {
            assert_eq!(get(s.addr(), x, h).status, 200);
        }
    }
    assert_eq!(o.request_count(), 2 * N);
    ban(&s, "req.http.host == a.example");
    for x in &u {
        assert!(get(s.addr(), x, &b).is_hit(), "{x} on b.example");
    }
    assert_eq!(o.request_count(), 2 * N);
    for x in &u {
        assert!(!get(s.addr(), x, &a).is_hit(), "{x} on a.example is banned");
        assert!(get(s.addr(), x, &a).is_hit());
    }
    assert_eq!(o.request_count(), 3 * N);
    assert_crossed(&s, cores);
}

// Goal: `ban obj.status == 404` (and ringcache's ordered `obj.status >= 400`) bans by the
// stored status; an obj.* ban may be applied by the background sweep before any lookup, and
// either way the objects are gone.
fn ban_obj_status(cores: usize) {
    let o = tagging_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let (missing, ok) = (urls("/missing/"), urls("/ok/"));
    warm(&s, &o, &missing, &[]);
    warm(&s, &o, &ok, &[]);
    ban(&s, "obj.status == 404");
    check(&s, &o, &missing, &ok, &[]);
    let st = admin_stats(s.admin_addr());
    assert_eq!(
        st["MAIN.bans_obj_killed"] + st["MAIN.bans_lurker_obj_killed"],
        N as u64,
        "{st:?}"
    );
    ban(&s, "obj.status >= 400");
    check(&s, &o, &missing, &ok, &[]);
    assert_crossed(&s, cores);
}

// Goal: `ban obj.http.x-tag ~ red` bans by a stored response header (case-insensitive name).
// The sweep alone removes the objects (no lookup needed): n_object drops.
fn ban_obj_http_header(cores: usize) {
    let o = tagging_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let (red, blue) = (urls("/red/"), urls("/blue/"));
    warm(&s, &o, &red, &[]);
    warm(&s, &o, &blue, &[]);
    let st = wait_stats(s.admin_addr(), &[("MAIN.n_object", 2 * N as u64)]);
    assert_eq!(st["MAIN.n_object"], 2 * N as u64);
    ban(&s, "obj.http.X-TAG ~ ^red$");
    let st = wait_stats(
        s.admin_addr(),
        &[
            ("MAIN.n_object", N as u64),
            ("MAIN.bans_lurker_obj_killed", N as u64),
        ],
    );
    assert_eq!(
        st["MAIN.n_object"], N as u64,
        "the sweep removed them: {st:?}"
    );
    assert_eq!(st["MAIN.bans_lurker_obj_killed"], N as u64, "{st:?}");
    check(&s, &o, &red, &blue, &[]);
}

// Goal: `&&` needs every condition: only objects under /red/a that are tagged red go.
fn ban_conjunction(cores: usize) {
    let o = tagging_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let red_a = urls("/red/a");
    let red_b = urls("/red/b");
    let blue_a = urls("/blue/a");
    for g in [&red_a, &red_b, &blue_a] {
        warm(&s, &o, g, &[]);
    }
    ban(
        &s,
        "req.url ~ /a && obj.http.x-tag == red && obj.status != 500",
    );
    let kept: Vec<String> = red_b.iter().chain(&blue_a).cloned().collect();
    check(&s, &o, &red_a, &kept, &[]);
}

// Goal: VCL's `ban()` statement and `std.ban()` add to the same list (a BAN request bans its
// URL prefix everywhere); a bad `std.ban()` returns false with its reason in
// `std.ban_error()`, and a bad `ban()` is logged, not fatal.
fn ban_from_vcl(cores: usize) {
    let o = tagging_origin();
    let vcl = format!(
        r#"vcl 4.1;
import std;
{}
sub vcl_recv {{
    if (req.method == "BAN") {{
        ban("req.url ~ ^" + req.url);
        return (synth(200, "Banned"));
    }}
    if (req.method == "STDBAN") {{
        if (std.ban(req.http.x-ban)) {{
            return (synth(200, "Banned"));
        }}
        return (synth(400, std.ban_error()));
    }}
    if (req.method == "BADBAN") {{
        ban("req.url");
        return (synth(204, "Tried"));
    }}
}}
"#,
        vcl_backend("b", o.addr())
    );
    let s = Server::with_vcl(&vcl, cores, &[]);
    let (v, w) = (urls("/v/"), urls("/w/"));
    warm(&s, &o, &v, &[]);
    warm(&s, &o, &w, &[]);
    let r = request(s.addr(), "BAN", "/v/", &[], None);
    assert_eq!((r.status, r.reason.as_str()), (200, "Banned"));
    check(&s, &o, &v, &w, &[]);

    let r = request(
        s.addr(),
        "STDBAN",
        "/",
        &[("X-Ban", "obj.http.x-tag == blue")],
        None,
    );
    assert_eq!((r.status, r.reason.as_str()), (200, "Banned"));
    check(&s, &o, &w, &[], &[]);
    let r = request(s.addr(), "STDBAN", "/", &[("X-Ban", "req.url ~")], None);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Expected second operand.")
    );
    let r = request(s.addr(), "STDBAN", "/", &[("X-Ban", "req.nope == 1")], None);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Unknown or unsupported field \"req.nope\"")
    );
    let r = request(s.addr(), "BADBAN", "/", &[], None);
    assert_eq!(r.status, 204);
    assert!(
        s.wait_for_log(
            "ban(): Expected comparison operator.",
            Duration::from_secs(5)
        ),
        "{}",
        s.stderr_text()
    );
    let list = cli(&s, "ban.list").body;
    assert!(list.contains("  obj.http.x-tag == blue\n"), "{list}");
    let st = admin_stats(s.admin_addr());
    assert_eq!(st["MAIN.bans_added"], 2, "only the good bans: {st:?}");
}

// Goal: bad bans get varnishd 7.1.1's status and text; nothing is added.
#[test]
fn bad_bans_are_refused_with_varnish_texts() {
    let o = tagging_origin();
    let s = Server::for_origin(&o, 1, &[]);
    let check = |line: &str, status: u16, body: &str| {
        let r = cli(&s, line);
        assert_eq!((r.status, r.body.as_str()), (status, body), "{line}");
    };
    check("ban", 104, "Too few parameters\n");
    check("ban req.url", 104, "Too few parameters\n");
    check("ban req.url ~", 104, "Too few parameters\n");
    check("ban req.url ~ a b", 106, "Wrong number of arguments");
    check("ban req.url ~ a b c d", 106, "Wrong number of arguments");
    check(
        "ban req.url ~ a || req.url ~ b",
        106,
        "Found \"||\" expected &&",
    );
    check(
        "ban req.foo ~ a",
        106,
        "Unknown or unsupported field \"req.foo\"",
    );
    check(
        "ban foo == bar",
        106,
        "Unknown or unsupported field \"foo\"",
    );
    check(
        "ban req.url > a",
        106,
        "expected conditional (==, !=, ~ or !~) got \">\"",
    );
    check(
        "ban obj.ttl ~ 1",
        106,
        "expected conditional (==, !=, >, >=, < or <=) got \"~\"",
    );
    check(
        "ban obj.ttl > abc",
        106,
        "expected duration <n.nn>[ms|s|m|h|d|w|y] got \"abc\"",
    );
    check(
        "ban obj.grace == 1.5",
        106,
        "expected duration <n.nn>[ms|s|m|h|d|w|y] got \"1.5\"",
    );
    let r = cli(&s, "ban req.url ~ (");
    assert_eq!(r.status, 106);
    assert!(r.body.starts_with("Regex compile error: "), "{}", r.body);
    check("ban -j req.url ~ a", 102, "JSON unimplemented\n");
    check("ban.list x", 105, "Too many parameters\n");
    check("ban.list -j x", 105, "Too many parameters\n");
    let st = admin_stats(s.admin_addr());
    assert_eq!(st["MAIN.bans_added"], 0);
    assert_eq!(st["MAIN.bans"], 1, "the placeholder only");
    // Good ones, including quoting through the CLI. (With no object in the cache, older bans
    // may be retired at any time: only the newest is sure to be listed.)
    check("ban obj.ttl > 60m && obj.age < 90s", 200, "");
    let list = cli(&s, "ban.list").body;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "Present bans:", "{list}");
    assert!(
        lines[1].ends_with(" -  obj.ttl > 1h && obj.age < 90s"),
        "{list}"
    );
    check("ban obj.http.X-Y == \"q\\\"q\"", 200, "");
    let list = cli(&s, "ban.list").body;
    assert!(
        list.lines()
            .nth(1)
            .is_some_and(|l| l.ends_with(" -  obj.http.X-Y == q\"q")),
        "{list}"
    );
    let j = cli(&s, "ban.list -j").body;
    assert!(j.starts_with("[ 2, [\"ban.list\", \"-j\"], "), "{j}");
    assert!(
        j.contains("    \"completed\": false,\n    \"spec\": \"obj.http.X-Y == q\\\"q\"\n}"),
        "{j}"
    );
}

// Goal: `ban.list` shows bans newest first (time, object count, C for completed, spec); an
// identical ban completes the older one; bans that no object still has to be tested against
// are retired (the newest stays), counted in bans_deleted.
fn ban_list_retires_what_no_object_needs(cores: usize) {
    let o = tagging_origin();
    let s = Server::for_origin(&o, cores, &[]);
    let boot = cli(&s, "ban.list").body;
    let lines: Vec<&str> = boot.lines().collect();
    assert_eq!(lines.len(), 2, "{boot}");
    let words: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(words.len(), 3, "placeholder: time, count, C: {boot}");
    assert!(words[0].contains('.') && words[0].split('.').nth(1).map(str::len) == Some(6));
    assert_eq!((words[1], words[2]), ("0", "C"));
    assert!(lines[1].ends_with(" C  "), "{boot:?}");

    let u = urls("/x/");
    warm(&s, &o, &u, &[]);
    ban(&s, "req.url ~ ^/x/1");
    ban(&s, "req.url ~ ^/nothing");
    ban(&s, "req.url ~ ^/x/1");
    let list = cli(&s, "ban.list").body;
    let specs: Vec<String> = list
        .lines()
        .skip(1)
        .map(|l| l.split("  ").last().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        &specs[..3],
        &["req.url ~ ^/x/1", "req.url ~ ^/nothing", "req.url ~ ^/x/1"],
        "{list}"
    );
    let flags: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(
        &flags[..3],
        &["-", "-", "C"],
        "the older duplicate is completed: {list}"
    );
    // The objects still sit at the placeholder: it is referenced N times.
    let refs = |list: &str| -> Vec<u64> {
        list.lines()
            .skip(1)
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    };
    let referenced = wait_until(Duration::from_secs(5), || {
        refs(&cli(&s, "ban.list").body).last() == Some(&(N as u64))
    });
    assert!(referenced, "{}", cli(&s, "ban.list").body);
    // Looking every object up tests it against all bans: nothing needs the old ones.
    for x in &u {
        get(s.addr(), x, &[]);
    }
    let retired = wait_until(Duration::from_secs(5), || {
        cli(&s, "ban.list").body.lines().count() == 2
    });
    let list = cli(&s, "ban.list").body;
    assert!(retired, "{list}");
    assert!(list.ends_with("  req.url ~ ^/x/1\n"), "{list}");
    assert_eq!(refs(&list), vec![N as u64], "{list}");
    let st = admin_stats(s.admin_addr());
    assert_eq!(st["MAIN.bans"], 1, "{st:?}");
    assert_eq!(st["MAIN.bans_deleted"], 3, "{st:?}");
    assert_eq!(st["MAIN.bans_dups"], 1, "{st:?}");
    assert_eq!(st["MAIN.bans_added"], 3, "{st:?}");
}
