//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1), and the bits to write it.
//!
//! Why a byte-level state machine: bodies arrive in arbitrary pieces off the socket, and a
//! decoder that needs a whole chunk-size line or trailer line in one buffer would have to buffer
//! (and bound) them separately. Here every framing byte is consumed exactly once, in whatever
//! split it arrives, and the state carries everything across calls. Chunk *data* is not walked
//! byte by byte: it is moved out of the input with `split_to`, so with a fresh output buffer a
//! chunk costs no copy at all. Parsing is strict because chunk framing is the classic smuggling
//! vector: bare LF line ends, whitespace after the size without an extension, over-long sizes and
//! malformed trailers are all errors, never "repaired".

use bytes::{Buf, BytesMut};

use crate::http::error::ParseError;
use crate::http::request::is_tchar;

/// The terminating zero-size chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// At most this many hex digits in a chunk size (16 digits always fit a u64).
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// SP/HTAB after the size: only `;` may follow.
    SizeWs {
        value: u64,
    },
    /// Inside chunk extensions, skipped up to the CR.
    Ext {
        value: u64,
    },
    /// Saw the CR ending the size line.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    /// Inside a trailer field name (at least one tchar seen).
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// Saw the CR ending a trailer line.
    TrailerLf,
    /// Saw the CR of the final CRLF.
    EndLf,
    Done,
    Failed(&'static str),
}

/// Decodes one chunked body, incrementally.
///
/// `max_chunk_ext_and_trailer_bytes` bounds, on each chunk-size line, the bytes between the
/// size digits and the CR (OWS, `;` and extensions), and separately the trailer fields of the
/// whole body (each line with its CRLF; the final empty line is free). Beyond it decoding fails,
/// so 0 means "no extensions, no trailers".
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    limit: usize,
    /// Extension bytes on the current size line, or trailer bytes so far.
    extra: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(max_chunk_ext_and_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            limit: max_chunk_ext_and_trailer_bytes,
            extra: 0,
        }
    }

    /// Consumes bytes from the front of `input`, appends decoded body bytes to `out`.
    ///
    /// Returns `Ok(true)` once the last chunk, trailers and final CRLF are consumed (`input` may
    /// then hold the next message, untouched); `Ok(false)` when it needs more input (all of
    /// `input` was consumed). Errors are sticky: the body cannot be resynchronised.
    ///
    /// When `out` is empty, the first chunk's data replaces it without copying (it then shares
    /// `input`'s allocation); later data is appended with `unsplit`, which is free when the
    /// pieces are contiguous and a `memcpy` otherwise.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, ParseError> {
        loop {
            match self.state {
                State::Done => return Ok(true),
                State::Failed(why) => return Err(ParseError::BadRequest(why)),
                State::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let data = input.split_to(n);
                    if out.is_empty() {
                        *out = data;
                    } else {
                        out.unsplit(data);
                    }
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                }
                _ => {
                    let Some(&b) = input.first() else {
                        return Ok(false);
                    };
                    input.advance(1);
                    if let Err(why) = self.step(b) {
                        self.state = State::Failed(why);
                        return Err(ParseError::BadRequest(why));
                    }
                }
            }
        }
    }

    /// True once the whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn count_extra(&mut self) -> Result<(), &'static str> {
        self.extra += 1;
        if self.extra > self.limit {
            Err("chunk extension or trailer section too long")
        } else {
            Ok(())
        }
    }

    /// Advances the framing state by one byte.
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        const BAD_SIZE: &str = "bad chunk size";
        self.state = match self.state {
            State::Size { value, digits } => match (hex_val(b), b) {
                (Some(d), _) => {
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(BAD_SIZE);
                    }
                    State::Size {
                        value: (value << 4) | u64::from(d),
                        digits: digits + 1,
                    }
                }
                (None, _) if digits == 0 => return Err(BAD_SIZE),
                (None, b' ' | b'\t') => {
                    self.count_extra()?;
                    State::SizeWs { value }
                }
                (None, b';') => {
                    self.count_extra()?;
                    State::Ext { value }
                }
                (None, b'\r') => State::SizeLf { value },
                (None, _) => return Err(BAD_SIZE),
            },
            State::SizeWs { value } => match b {
                b' ' | b'\t' => {
                    self.count_extra()?;
                    State::SizeWs { value }
                }
                b';' => {
                    self.count_extra()?;
                    State::Ext { value }
                }
                _ => return Err(BAD_SIZE),
            },
            State::Ext { value } => match b {
                b'\r' => State::SizeLf { value },
                b'\t' | b' '..=0x7e | 0x80..=0xff => {
                    self.count_extra()?;
                    State::Ext { value }
                }
                _ => return Err("bad chunk extension"),
            },
            State::SizeLf { value } => match b {
                b'\n' if value == 0 => {
                    self.extra = 0;
                    State::TrailerStart
                }
                b'\n' => State::Data { remaining: value },
                _ => return Err("bad chunk size line ending"),
            },
            // Data is handled in `decode`; reaching here would be a bug, not bad input.
            State::Data { remaining } => State::Data { remaining },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err("missing CRLF after chunk data"),
            },
            State::DataLf => match b {
                b'\n' => {
                    self.extra = 0;
                    State::Size {
                        value: 0,
                        digits: 0,
                    }
                }
                _ => return Err("missing CRLF after chunk data"),
            },
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                _ if is_tchar(b) => {
                    self.count_extra()?;
                    State::TrailerName
                }
                _ => return Err("bad trailer field"),
            },
            State::TrailerName => {
                self.count_extra()?;
                match b {
                    b':' => State::TrailerValue,
                    _ if is_tchar(b) => State::TrailerName,
                    _ => return Err("bad trailer field"),
                }
            }
            State::TrailerValue => {
                self.count_extra()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\t' | b' '..=0x7e | 0x80..=0xff => State::TrailerValue,
                    _ => return Err("bad trailer field"),
                }
            }
            State::TrailerLf => {
                self.count_extra()?;
                match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err("bad trailer line ending"),
                }
            }
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err("bad final CRLF"),
            },
            State::Done => State::Done,
            State::Failed(why) => return Err(why),
        };
        Ok(())
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes a chunk-size line, `"<lowercase hex>\r\n"`, for a chunk of `len` bytes.
pub fn write_chunk_header(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut v = len;
    loop {
        i -= 1;
        buf[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of the given sizes (cycled); returns (done, body, rest).
    fn feed(
        input: &[u8],
        sizes: &[usize],
        limit: usize,
    ) -> Result<(bool, Vec<u8>, Vec<u8>), ParseError> {
        let mut d = ChunkedDecoder::new(limit);
        let mut pending = BytesMut::new();
        let mut out = BytesMut::new();
        let mut body = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        let mut done = false;
        while pos < input.len() && !done {
            let n = sizes[k % sizes.len()].max(1).min(input.len() - pos);
            k += 1;
            pending.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            done = d.decode(&mut pending, &mut out)?;
            body.extend_from_slice(&out);
            out.clear();
            if !done {
                assert!(
                    pending.is_empty(),
                    "needs more input only after consuming it all"
                );
            }
        }
        assert_eq!(done, d.is_done());
        let mut rest = pending.to_vec();
        rest.extend_from_slice(&input[pos..]);
        Ok((done, body, rest))
    }

    const MSG: &[u8] = b"4\r\nWiki\r\n5;name=val\r\npedia\r\nE \t;x\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn whole_message() {
        let (done, body, rest) = feed(MSG, &[MSG.len()], 1024).unwrap();
        assert!(done);
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn one_byte_at_a_time() {
        let (done, body, rest) = feed(MSG, &[1], 1024).unwrap();
        assert!(done);
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn random_splits() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..500 {
            let mut sizes = Vec::new();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                sizes.push((x % 9) as usize + 1);
            }
            let (done, body, rest) = feed(MSG, &sizes, 1024).unwrap();
            assert!(done);
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(rest, b"NEXT");
        }
    }

    #[test]
    fn whole_chunk_is_moved_without_copy() {
        let mut input = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        let base = input.as_ptr() as usize;
        let mut out = BytesMut::new();
        let mut d = ChunkedDecoder::new(64);
        assert!(d.decode(&mut input, &mut out).unwrap());
        assert_eq!(&out[..], b"hello");
        assert_eq!(
            out.as_ptr() as usize,
            base + 3,
            "data is a view of the input buffer"
        );
    }

    #[test]
    fn appends_to_existing_output() {
        let mut input = BytesMut::from(&b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"[..]);
        let mut out = BytesMut::from(&b">"[..]);
        let mut d = ChunkedDecoder::new(64);
        assert!(d.decode(&mut input, &mut out).unwrap());
        assert_eq!(&out[..], b">abcde");
        // Done is sticky and consumes nothing more.
        let mut more = BytesMut::from(&b"xyz"[..]);
        assert!(d.decode(&mut more, &mut out).unwrap());
        assert_eq!(&more[..], b"xyz");
    }

    #[test]
    fn sizes() {
        assert!(
            feed(b"00000000000000A\r\n0123456789\r\n0\r\n\r\n", &[100], 64)
                .unwrap()
                .0
        );
        assert!(feed(b"0000000000000000\r\n\r\n", &[100], 64).unwrap().0);
        // 17 digits, even if they are zeros.
        assert!(feed(b"00000000000000000\r\n\r\n", &[100], 64).is_err());
        // u64::MAX is a valid size (needs more input).
        let (done, _, _) = feed(b"ffffffffffffffff\r\nabc", &[100], 64).unwrap();
        assert!(!done);
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"0x1\r\n",
            b" 1\r\n",
            b"1 \r\nx\r\n0\r\n\r\n",
            b"1 x\r\n",
            b"1\n",
            b"1\r\r\n",
            b";ext\r\n",
            b"1;a\nb\r\n",
            b"1;a\0\r\n",
        ] {
            let r = feed(bad, &[100], 64);
            assert!(
                matches!(r, Err(ParseError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            feed(b"g\r\n", &[1], 64).unwrap_err(),
            ParseError::BadRequest("bad chunk size")
        );
    }

    #[test]
    fn extensions_are_bounded() {
        let ok = b"1;aaaaaaaa\r\nx\r\n0;bbbbbbbb\r\n\r\n";
        assert!(feed(ok, &[3], 9).unwrap().0);
        assert!(feed(ok, &[3], 8).is_err());
    }

    #[test]
    fn chunk_data_must_end_with_crlf() {
        assert!(feed(b"3\r\nabcd\r\n0\r\n\r\n", &[100], 64).is_err());
        assert!(feed(b"3\r\nabc\n0\r\n\r\n", &[100], 64).is_err());
        assert!(feed(b"3\r\nabc\r0\r\n\r\n", &[100], 64).is_err());
    }

    #[test]
    fn trailers() {
        let (done, body, rest) = feed(b"1\r\na\r\n0\r\nA: b\r\nC-D:\r\n\r\n", &[1], 64).unwrap();
        assert!(done);
        assert_eq!((body, rest), (b"a".to_vec(), Vec::new()));
        for bad in [
            &b"0\r\nA b\r\n\r\n"[..],
            b"0\r\n: b\r\n\r\n",
            b"0\r\n b: c\r\n\r\n",
            b"0\r\nA: b\nC: d\r\n\r\n",
            b"0\r\nA: b\0\r\n\r\n",
            b"0\r\nA: b\r\r\n\r\n",
            b"0\r\n\n",
            b"0\r\n\rx",
            b"0\n\r\n",
        ] {
            assert!(
                feed(bad, &[100], 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // The trailer section is bounded (including line ends).
        let t = b"0\r\nA: bcd\r\n\r\n";
        assert!(feed(t, &[100], 8).unwrap().0);
        assert!(feed(t, &[100], 7).is_err());
        assert!(feed(b"1\r\nx\r\n0\r\n\r\n", &[1], 0).unwrap().0);
        assert!(feed(b"1 ;\r\nx\r\n0\r\n\r\n", &[1], 0).is_err());
        // Whitespace after the size is bounded too.
        let mut ws = b"1".to_vec();
        ws.extend_from_slice(&[b' '; 100]);
        assert!(feed(&ws, &[7], 64).is_err());
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new(64);
        let mut out = BytesMut::new();
        assert!(d.decode(&mut BytesMut::from(&b"z"[..]), &mut out).is_err());
        assert!(d
            .decode(&mut BytesMut::from(&b"0\r\n\r\n"[..]), &mut out)
            .is_err());
        assert!(!d.is_done());
    }

    #[test]
    fn chunk_headers() {
        let mut v = Vec::new();
        write_chunk_header(0, &mut v);
        write_chunk_header(10, &mut v);
        write_chunk_header(0x1234abcd, &mut v);
        write_chunk_header(usize::MAX, &mut v);
        assert_eq!(v, b"0\r\na\r\n1234abcd\r\nffffffffffffffff\r\n");
        assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
    }

    #[test]
    fn round_trip() {
        let mut wire = Vec::new();
        let mut expect = Vec::new();
        for n in [1usize, 15, 16, 255, 4096] {
            write_chunk_header(n, &mut wire);
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            wire.extend_from_slice(&data);
            wire.extend_from_slice(b"\r\n");
            expect.extend_from_slice(&data);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let (done, body, rest) = feed(&wire, &[7, 1000, 1, 3], 64).unwrap();
        assert!(done && rest.is_empty());
        assert_eq!(body, expect);
    }
}
