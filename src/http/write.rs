//! Writing response heads and Varnish's synthetic error page.
//!
//! Why plain `Vec<u8>` appenders: a response head is built once per response into a buffer that
//! is then handed to io_uring as is, so the helpers only append bytes, never allocate beyond the
//! buffer's growth, and never format through `core::fmt` (numbers are written by hand). The error
//! page reproduces Varnish's builtin `vcl_synth` / `vcl_backend_error` body byte for byte, with
//! "ringcache" in place of "Varnish cache server", so clients and tests that look at it see the
//! familiar Guru Meditation.

/// Writes `HTTP/1.1 <status> <reason>\r\n`. We always speak HTTP/1.1, even to 1.0 clients
/// (RFC 9110 §6.2).
pub fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// Writes `<name>: <value>\r\n`.
pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `v` in decimal without allocating.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Varnish's builtin synthetic error body for `status`/`reason` and transaction id `xid`.
/// Like Varnish, `reason` is inserted verbatim (it comes from VCL or our own code, not from the
/// client).
pub fn synthetic_error_page(status: u16, reason: &str, xid: u64) -> String {
    format!(
        "<!DOCTYPE html>
<html>
  <head>
    <title>{status} {reason}</title>
  </head>
  <body>
    <h1>Error {status} {reason}</h1>
    <p>{reason}</p>
    <h3>Guru Meditation:</h3>
    <p>XID: {xid}</p>
    <hr>
    <p>ringcache</p>
  </body>
</html>
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_and_headers() {
        let mut out = Vec::new();
        write_status_line(&mut out, 200, b"OK");
        write_header(&mut out, b"Content-Length", b"5");
        write_status_line(&mut out, 404, b"");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nHTTP/1.1 404 \r\n"
        );
    }

    #[test]
    fn numbers() {
        for v in [0u64, 7, 10, 99, 100, 12345, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn guru_meditation() {
        let expected = "<!DOCTYPE html>\n<html>\n  <head>\n    <title>503 Backend fetch failed</title>\n  </head>\n  <body>\n    <h1>Error 503 Backend fetch failed</h1>\n    <p>Backend fetch failed</p>\n    <h3>Guru Meditation:</h3>\n    <p>XID: 7</p>\n    <hr>\n    <p>ringcache</p>\n  </body>\n</html>\n";
        assert_eq!(
            synthetic_error_page(503, "Backend fetch failed", 7),
            expected
        );
    }
}
