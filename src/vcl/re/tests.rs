//! The fast forms against the `regex` crate: same `is_match`, same matches in the same order.

use super::*;

fn kind(p: &str) -> &'static str {
    match Regex::new(p, 1 << 22).expect("pattern compiles").fast {
        Fast::Prefix(_) => "prefix",
        Fast::Tail { .. } => "tail",
        Fast::Literal(_) => "literal",
        Fast::Byte(_) => "byte",
        Fast::Regex(Some(_)) => "regex+reject",
        Fast::Regex(None) => "regex",
    }
}

fn matches(re: &Regex, h: &[u8], all: bool) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    re.each_match(h, all, |s, e| v.push((s, e)));
    v
}

const PATTERNS: &[&str] = &[
    // The load test's routing VCL and the built-in VCL.
    ":[0-9]+$",
    r"^(api|rest)\.example\.(com|net)$",
    "^/api/",
    "^/(static|assets|img)/",
    "[?&](utm_[a-z]+|gclid|fbclid)=",
    "(utm_[a-z]+|gclid|fbclid)=[^&]*&?",
    "[?&]$",
    "gzip",
    "[[:upper:]]",
    // Anchors, empties, alternation order, optional parts.
    "",
    "^",
    "$",
    "^$",
    "^a",
    "a$",
    "^a$",
    "^(a|ab)",
    "^(ab|a)",
    "^(a|ab)(c|bcd)",
    "^(|a)",
    "^(a|)",
    "^ab?",
    "^ab??",
    "^a(bc)?",
    "^(?:www\\.)?example\\.com$",
    "(a|ab)$",
    "(ab|b)$",
    "^x{3}",
    "x{2}$",
    "^(a|b){2}c",
    "[0-9]*$",
    "[0-9]+$",
    "^[0-9]+$",
    "^[0-9]*$",
    "x[0-9]*$",
    "[0-9][0-9]+$",
    ":[0-9]{1,3}$",
    ":[0-9]{2}$",
    "(:|;)[0-9]+?$",
    r"\.(jpg|png|gif)$",
    r"(?i)\.(jpg|png|gif)$",
    "(?i)^/API/",
    "(?i)gzip",
    "(?i)kelvin",
    "(?i)^k",
    "(?i)s$",
    "(?m)^a",
    "(?m)a$",
    "(?m)^a$",
    "(?s).$",
    ".$",
    "^.",
    "é",
    "^é",
    "é$",
    "[é]",
    "(?-u)\\xFF",
    "(?-u)^\\xFF",
    "(?-u)[\\x80-\\xFF]",
    "(?-u)[^a]$",
    "[^a]",
    "\\d+$",
    "(?-u)\\d+$",
    "\\bfoo",
    "foo\\b",
    "a|b",
    "ab|cd",
    "[ab]",
    "[?&]",
    "\\?.*$",
    "^[^?]*",
    "a*",
    "a+",
    "\\A/x",
    "/x\\z",
    "(?U)^ab?",
    "(?x) ^ a b $",
    "^/(a|b|c|d|e|f|g|h)(1|2|3|4|5)/",
];

fn subjects() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "",
        "a",
        "ab",
        "abc",
        "abcd",
        "abbcd",
        "ba",
        "b",
        "xa",
        "aa",
        "a\n",
        "\na",
        "a\nb",
        "b\na\n",
        "127.0.0.1:6081",
        "127.0.0.1",
        "example.com:80",
        ":",
        ":1",
        "1:2:3",
        "::12",
        "a:1b",
        "api.example.com",
        "rest.example.net",
        "api.example.com:8080",
        "API.example.com",
        "xapi.example.com",
        "api.example.co",
        "www.example.com",
        "example.com",
        "/api/v1",
        "/API/v1",
        "/ap",
        "/static/x.css",
        "/img/",
        "/imgs/",
        "/obj",
        "/obj?",
        "/obj?a=1&",
        "/p?utm_source=x&b=1",
        "/p?a=1&gclid=abc",
        "/p?fbclid=1&utm_medium=2&c=3",
        "/p?UTM_source=x",
        "gzip, deflate",
        "GZIP",
        "deflate",
        "br, gzip",
        "gzi",
        "Host.Example",
        "lower",
        "K",
        "k",
        "\u{212A}",
        "\u{17F}",
        "s",
        "S",
        "é",
        "aé",
        "éa",
        "e\u{301}",
        "x.jpg",
        "x.JPG",
        "x.jpgx",
        "xxx",
        "xx",
        "xxxx",
        "aac",
        "abc",
        "bac",
        "12345",
        "x12",
        "x",
        "00",
        "foo bar",
        "foobar",
        "barfoo",
        "cd",
        "acd",
        "/a1/",
        "/h5/x",
        "/i1/",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(vec![0xFF]);
    v.push(vec![b'a', 0xFF]);
    v.push(vec![0xFF, b'a']);
    v.push(vec![0x80, b':', b'1']);
    v.push(vec![b'1'; 300]);
    v.push(b"x".iter().chain([b'7'; 50].iter()).copied().collect());
    v
}

#[test]
fn fast_forms_agree_with_the_regex_crate() {
    let subjects = subjects();
    for p in PATTERNS {
        let fast = Regex::new(p, 1 << 22).expect("pattern compiles");
        let plain = regex::bytes::Regex::new(p).expect("pattern compiles");
        for h in &subjects {
            let want: Vec<(usize, usize)> =
                plain.find_iter(h).map(|m| (m.start(), m.end())).collect();
            let ctx = || format!("pattern {p:?} ({}) on {:?}", kind(p), h.escape_ascii());
            assert_eq!(fast.is_match(h), plain.is_match(h), "is_match: {}", ctx());
            assert_eq!(matches(&fast, h, true), want, "all matches: {}", ctx());
            assert_eq!(
                matches(&fast, h, false),
                want.iter().copied().take(1).collect::<Vec<_>>(),
                "first match: {}",
                ctx()
            );
        }
    }
}

#[test]
fn the_routing_patterns_take_a_fast_form() {
    assert_eq!(kind(":[0-9]+$"), "tail");
    assert_eq!(kind(r"^(api|rest)\.example\.(com|net)$"), "tail");
    assert_eq!(kind("^/api/"), "prefix");
    assert_eq!(kind("^/(static|assets|img)/"), "prefix");
    assert_eq!(kind("[?&](utm_[a-z]+|gclid|fbclid)="), "regex+reject");
    assert_eq!(kind("(utm_[a-z]+|gclid|fbclid)=[^&]*&?"), "regex+reject");
    assert_eq!(kind("[?&]$"), "tail");
    assert_eq!(kind("gzip"), "literal");
    assert_eq!(kind("[[:upper:]]"), "byte");
    assert_eq!(kind(r"(?i)\.(jpg|png|gif)$"), "tail");
    assert_eq!(kind("(?i)^/API/"), "prefix");
}

#[test]
fn what_cannot_be_translated_exactly_is_left_to_the_regex_crate() {
    // Unicode case folding reaches beyond ASCII (K: KELVIN SIGN, s: LONG S).
    assert!(kind("(?i)kelvin").starts_with("regex"));
    assert!(kind("(?i)s$").starts_with("regex"));
    // Multi-line anchors, Unicode classes, word boundaries.
    assert!(kind("(?m)^a").starts_with("regex"));
    assert!(kind(".$").starts_with("regex"));
    assert!(kind("\\d+$").starts_with("regex"));
    assert!(kind("\\bfoo").starts_with("regex"));
    assert!(kind("a*").starts_with("regex"));
    assert!(kind("").starts_with("regex"));
    // Too many alternatives, too long, too many byte sets.
    let many: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    assert!(kind(&format!("^/({})/", many.join("|"))).starts_with("regex"));
    assert!(kind(&format!("^{}", "a".repeat(300))).starts_with("regex"));
    assert_eq!(kind(&format!("^{}", "a".repeat(200))), "prefix");
    let long: Vec<String> = (0..30)
        .map(|i| format!("{}{i:02}", "abcdefghij".repeat(4)))
        .collect();
    assert!(kind(&format!("(?i)^({})$", long.join("|"))).starts_with("regex"));
    assert_eq!(kind(&format!("(?i)^({})$", long[..20].join("|"))), "tail");
}

/// xorshift64*, for the generated cases below (fixed seed: reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn gen_atom(rng: &mut Rng, depth: usize) -> String {
    const ATOMS: &[&str] = &[
        "a",
        "b",
        ":",
        "1",
        r"\.",
        "é",
        "k",
        "[ab]",
        "[0-9]",
        "[^a]",
        "[a-z]",
        "(?i:a)",
        "(?i:k)",
        "(?-u:[^a])",
        r"(?-u:\xFF)",
        "[?&]",
        ".",
        r"\d",
    ];
    if depth < 2 && rng.below(4) == 0 {
        let n = 1 + rng.below(3);
        let alts: Vec<String> = (0..n).map(|_| gen_seq(rng, depth + 1)).collect();
        let open = if rng.below(2) == 0 { "(" } else { "(?:" };
        return format!("{open}{})", alts.join("|"));
    }
    rng.pick(ATOMS).to_string()
}

fn gen_seq(rng: &mut Rng, depth: usize) -> String {
    const QUANT: &[&str] = &["", "", "", "?", "??", "+", "*", "{2}", "{1,2}", "+?"];
    let n = rng.below(4);
    (0..n)
        .map(|_| format!("{}{}", gen_atom(rng, depth), rng.pick(QUANT)))
        .collect()
}

#[test]
fn generated_patterns_agree_with_the_regex_crate() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let alphabet: &[&[u8]] = &[
        b"a",
        b"b",
        b":",
        b"1",
        b".",
        "é".as_bytes(),
        b"k",
        b"A",
        b"\n",
        b"&",
        b"\xFF",
        "\u{212A}".as_bytes(),
    ];
    let mut fast_seen = 0;
    for _ in 0..3000 {
        let flags = ["", "", "(?m)", "(?i)"][rng.below(4)];
        let start = if rng.below(2) == 0 { "^" } else { "" };
        let end = if rng.below(2) == 0 { "$" } else { "" };
        let p = format!("{flags}{start}{}{end}", gen_seq(&mut rng, 0));
        let Ok(plain) = regex::bytes::Regex::new(&p) else {
            continue;
        };
        let fast = Regex::new(&p, 1 << 22).expect("compiles like the plain one");
        if !fast.is_general() {
            fast_seen += 1;
        }
        for _ in 0..40 {
            let n = rng.below(7);
            let h: Vec<u8> = (0..n)
                .flat_map(|_| alphabet[rng.below(alphabet.len())].to_vec())
                .collect();
            let want: Vec<(usize, usize)> =
                plain.find_iter(&h).map(|m| (m.start(), m.end())).collect();
            let ctx = || format!("pattern {p:?} ({}) on {:?}", kind(&p), h.escape_ascii());
            assert_eq!(fast.is_match(&h), plain.is_match(&h), "is_match: {}", ctx());
            assert_eq!(matches(&fast, &h, true), want, "all matches: {}", ctx());
            assert_eq!(
                matches(&fast, &h, false),
                want.iter().copied().take(1).collect::<Vec<_>>(),
                "first match: {}",
                ctx()
            );
        }
    }
    // The generator must exercise the fast forms, not only the fallback.
    assert!(
        fast_seen > 500,
        "only {fast_seen} generated patterns took a fast form"
    );
}
