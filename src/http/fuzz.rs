//! Deterministic fuzz-style test of the wire parsers.
//!
//! Why in-tree and dependency-free: a seeded xorshift generator makes every run (and every CI
//! failure) reproducible without cargo-fuzz or a corpus, and 20,000 random and mutated messages
//! run in well under a second. It checks the properties that matter for a proxy on hostile
//! input: no panic, nothing lost or duplicated (head + remaining buffer == input), nothing
//! consumed unless a head is returned, prefixes of an acceptable head never rejected, and the
//! chunked decoder never producing more than it was given.

use bytes::BytesMut;

use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{parse_request, BodyFraming, Limits};
use crate::http::response::{parse_response, response_framing, response_keep_alive, RespLimits};

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

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\nCookie: a=b; c=d\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nHEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc",
];

const RESPONSE_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 304 Not Modified\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n",
];

const SNIPPETS: &[&[u8]] = &[
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 6\r\n",
    b"Content-Length: +5\r\n",
    b"Host: other\r\n",
    b" folded\r\n",
    b"X : y\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b":",
    b";",
    b"HTTP/2.0",
    b"0\r\n\r\n",
    b"ffffffffffffffffff\r\n",
];

fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                input.truncate(i);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(16)).min(len);
                input.drain(a..b);
            }
            4 => {
                // Duplicate a line.
                let lines: Vec<usize> = input
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1)
                    .collect();
                if lines.len() >= 2 {
                    let k = rng.below(lines.len() - 1);
                    let line = input[lines[k]..lines[k + 1]].to_vec();
                    let at = lines[rng.below(lines.len())];
                    input.splice(at..at, line);
                }
            }
            5 => {
                let i = rng.below(len + 1);
                let c = [b'\r', b'\n', 0, b' ', b'\t', b':', b',', 0x7f, 0xff][rng.below(9)];
                input.insert(i, c);
            }
            6 => {
                let i = rng.below(len + 1);
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                input.splice(i..i, s.iter().copied());
            }
            7 => {
                let n = rng.below(8);
                for _ in 0..n {
                    input.push(rng.byte());
                }
            }
            _ => {
                // Insert right after a line end, where a field would start.
                if let Some(i) = input.iter().position(|&b| b == b'\n') {
                    let s = SNIPPETS[rng.below(SNIPPETS.len())];
                    input.splice(i + 1..i + 1, s.iter().copied());
                }
            }
        }
    }
}

fn random_bytes(rng: &mut XorShift) -> Vec<u8> {
    let n = rng.below(200);
    let alphabet: &[u8] = b"GETPOST /HTP1.0:\r\n\t ;,chunkedabcdef0123456789\0\xff";
    (0..n)
        .map(|_| {
            if rng.below(4) == 0 {
                rng.byte()
            } else {
                alphabet[rng.below(alphabet.len())]
            }
        })
        .collect()
}

fn limits(rng: &mut XorShift) -> Limits {
    if rng.below(3) == 0 {
        Limits {
            req_size: 16 + rng.below(200),
            hdr_len: 4 + rng.below(80),
            max_hdr: rng.below(6),
        }
    } else {
        Limits::default()
    }
}

fn check_request(input: &[u8], lim: &Limits, rng: &mut XorShift) {
    let mut buf = BytesMut::from(input);
    match parse_request(&mut buf, lim) {
        Ok(Some(h)) => {
            assert!(h.head_len <= lim.req_size);
            assert_eq!(h.head_len + buf.len(), input.len());
            assert_eq!(&input[h.head_len..], &buf[..], "nothing lost");
            let head = &input[..h.head_len];
            let within = |b: &[u8]| b.is_empty() || head.windows(b.len()).any(|w| w == b);
            assert!(within(&h.url) && within(&h.method_raw));
            assert!(h.headers.len() <= lim.max_hdr);
            for f in h.headers.iter() {
                assert!(within(&f.name) && within(&f.value));
            }
            assert_ne!(h.body, BodyFraming::UntilClose);
            // Every prefix of an accepted head needs more bytes; none is an error.
            for _ in 0..3 {
                let cut = rng.below(h.head_len);
                let mut p = BytesMut::from(&input[..cut]);
                let r = parse_request(&mut p, lim);
                assert!(
                    matches!(r, Ok(None)),
                    "prefix {cut} of an accepted head: {:?} ({:?})",
                    r.map(|o| o.is_some()),
                    String::from_utf8_lossy(input)
                );
                assert_eq!(&p[..], &input[..cut]);
            }
            if h.body == BodyFraming::Chunked {
                check_chunked(&buf, rng);
            }
        }
        Ok(None) | Err(_) => assert_eq!(&buf[..], input, "nothing consumed"),
    }
}

fn check_response(input: &[u8], rng: &mut XorShift) {
    let lim = RespLimits::default();
    let mut buf = BytesMut::from(input);
    match parse_response(&mut buf, &lim) {
        Ok(Some(h)) => {
            assert_eq!(&input[h.head_len..], &buf[..]);
            assert!((100..=999).contains(&h.status));
            let framing = response_framing(rng.below(2) == 0, &h);
            if response_keep_alive(&h) {
                assert!(matches!(
                    response_framing(false, &h),
                    Ok(BodyFraming::None | BodyFraming::Length(_) | BodyFraming::Chunked)
                ));
            }
            if framing == Ok(BodyFraming::Chunked) {
                check_chunked(&buf, rng);
            }
        }
        Ok(None) | Err(_) => assert_eq!(&buf[..], input),
    }
}

/// Feeds `input` to a decoder in random pieces: no panic, output never larger than input, and
/// the same verdict as feeding it whole.
fn check_chunked(input: &[u8], rng: &mut XorShift) {
    let whole = {
        let mut d = ChunkedDecoder::new(64);
        let mut i = BytesMut::from(input);
        let mut out = BytesMut::new();
        d.decode(&mut i, &mut out)
            .map(|done| (done, out.to_vec(), i.len()))
    };
    let mut d = ChunkedDecoder::new(64);
    let mut pending = BytesMut::new();
    let mut body = Vec::new();
    let mut pos = 0;
    let mut verdict = Ok(false);
    while pos < input.len() {
        let n = (1 + rng.below(12)).min(input.len() - pos);
        pending.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        let mut out = BytesMut::new();
        verdict = d.decode(&mut pending, &mut out);
        body.extend_from_slice(&out);
        match verdict {
            Ok(true) | Err(_) => break,
            Ok(false) => assert!(pending.is_empty()),
        }
    }
    assert!(body.len() <= input.len());
    match (whole, verdict) {
        (Ok((true, wbody, wrest)), Ok(true)) => {
            assert_eq!(wbody, body);
            assert_eq!(wrest, pending.len() + input.len() - pos);
        }
        (Ok((false, wbody, _)), Ok(false)) => assert_eq!(wbody, body),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (w, v) => panic!("split changed the verdict: {w:?} vs {v:?}"),
    }
}

#[test]
fn fuzz_parsers() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut accepted = 0;
    for i in 0..20_000 {
        let input = if i % 5 == 0 {
            random_bytes(&mut rng)
        } else if i % 7 == 0 {
            let mut v = RESPONSE_SEEDS[rng.below(RESPONSE_SEEDS.len())].to_vec();
            mutate(&mut rng, &mut v);
            v
        } else {
            let mut v = SEEDS[rng.below(SEEDS.len())].to_vec();
            if rng.below(10) != 0 {
                mutate(&mut rng, &mut v);
            }
            v
        };
        let lim = limits(&mut rng);
        check_request(&input, &lim, &mut rng);
        check_response(&input, &mut rng);
        check_chunked(&input, &mut rng);
        let mut b = BytesMut::from(&input[..]);
        if let Ok(Some(_)) = parse_request(&mut b, &lim) {
            accepted += 1;
        }
    }
    // The mutations must leave a fair share valid, or the test only exercises error paths.
    assert!(accepted > 1000, "only {accepted} inputs accepted");
}

#[test]
fn fuzz_chunked_bodies() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    for _ in 0..5_000 {
        let mut v = Vec::new();
        for _ in 0..rng.below(4) {
            let n = rng.below(40);
            crate::http::chunked::write_chunk_header(n, &mut v);
            v.extend((0..n).map(|_| rng.byte()));
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n");
        if rng.below(2) == 0 {
            v.extend_from_slice(b"T: v\r\n");
        }
        v.extend_from_slice(b"\r\n");
        if rng.below(3) != 0 {
            mutate(&mut rng, &mut v);
        }
        check_chunked(&v, &mut rng);
    }
}
