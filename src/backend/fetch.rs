//! One backend fetch: connect or reuse, send the request, read the response head, then hand
//! the body out piece by piece.
//!
//! Why this shape: the caller decides what to do with the body (store it whole, or stream it to
//! the client for pass and uncacheable responses), so the body is a `BodyReader` that yields
//! `Bytes` pieces and, only when the response was completely and properly framed and the
//! backend allows keep-alive, gives its connection back to the pool. A reused connection that
//! fails before any response byte is retried once on a fresh connection (the backend may have
//! closed it while idle); a request with a body that is not idempotent is never retried.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use crate::http::chunked::ChunkedDecoder;
use crate::http::request::BodyFraming;
use crate::http::response::{self, RespLimits, ResponseHead};
use crate::server::io::{read_timeout, write_all_timeout, Read, Write};
use crate::stats::{ShardCounters, C};

use super::conn::{self, ConnectError, Endpoint, Stream};
use super::pool::Pool;

/// Why a fetch failed. Every kind ends as a 503 for the client.
#[derive(Debug)]
pub enum FetchError {
    Connect(std::io::Error),
    ConnectTimeout,
    Send(std::io::Error),
    FirstByteTimeout,
    BetweenBytesTimeout,
    Closed,
    Read(std::io::Error),
    BadResponse(&'static str),
    TooLarge,
    /// At `.max_connections` (after waiting in its queue, if it has one).
    Busy,
    /// Connects to the endpoint are held down after a refused or failed connect.
    HeldDown,
}

impl FetchError {
    /// Nothing reached the backend: another backend may take the request.
    pub fn before_send(&self) -> bool {
        matches!(
            self,
            FetchError::Connect(_)
                | FetchError::ConnectTimeout
                | FetchError::Busy
                | FetchError::HeldDown
        )
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(e) => write!(f, "connect failed: {e}"),
            FetchError::ConnectTimeout => f.write_str("connect timeout"),
            FetchError::Send(e) => write!(f, "send failed: {e}"),
            FetchError::FirstByteTimeout => f.write_str("first byte timeout"),
            FetchError::BetweenBytesTimeout => f.write_str("between bytes timeout"),
            FetchError::Closed => f.write_str("backend closed the connection"),
            FetchError::Read(e) => write!(f, "read failed: {e}"),
            FetchError::BadResponse(why) => write!(f, "bad response: {why}"),
            FetchError::TooLarge => f.write_str("response body too large to store"),
            FetchError::Busy => f.write_str("busy (max_connections reached)"),
            FetchError::HeldDown => f.write_str("held down after a failed connect"),
        }
    }
}

/// Timeouts and limits for one fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
    pub resp: RespLimits,
}

/// A response head with its body still to read.
pub struct Fetched {
    pub head: ResponseHead,
    pub body: BodyReader,
}

/// Where one fetch goes: the endpoint (its pool key) and, for a `.proxy_header` backend, the
/// PROXY header this fetch's client gets (then the connection is fresh and never pooled).
pub struct Target<'a> {
    pub endpoint: &'a Endpoint,
    pub proxy: Option<Vec<u8>>,
}

/// Sends `request` (head and body already serialised) to `to` and reads the response head.
///
/// `retryable`: the request may be sent twice (idempotent method or no body); only then is a
/// failure on a reused connection retried on a fresh one.
pub async fn fetch(
    pool: &std::cell::RefCell<Pool>,
    counters: &ShardCounters,
    to: &Target<'_>,
    request: Bytes,
    head_request: bool,
    retryable: bool,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    let poolable = to.proxy.is_none();
    let pooled = if poolable {
        pool.borrow_mut().take(to.endpoint, Instant::now())
    } else {
        None
    };
    if let Some(stream) = pooled {
        counters.inc(C::backend_reuse);
        match exchange(stream, request.clone(), head_request, limits, true).await {
            Ok(f) => return Ok(f),
            Err(Attempt::BeforeResponse(e)) if retryable => {
                counters.inc(C::backend_retry);
                let _ = e;
            }
            Err(Attempt::BeforeResponse(e)) | Err(Attempt::After(e)) => return Err(e),
        }
    }
    let stream =
        match conn::connect(&to.endpoint.dest, limits.connect, conn::Purpose::Traffic).await {
            Ok(s) => s,
            Err(e) => {
                counters.inc(C::backend_fail);
                return Err(match e {
                    ConnectError::Failed(e) => FetchError::Connect(e),
                    ConnectError::TimedOut => FetchError::ConnectTimeout,
                });
            }
        };
    counters.inc(C::backend_conn);
    // A new connection starts with the endpoint's preamble and this fetch's PROXY header.
    let first = match (&to.endpoint.preamble, &to.proxy) {
        (None, None) => request,
        (pre, proxy) => {
            let pre = pre.as_deref().unwrap_or_default();
            let proxy = proxy.as_deref().unwrap_or_default();
            let mut v = Vec::with_capacity(pre.len() + proxy.len() + request.len());
            v.extend_from_slice(pre);
            v.extend_from_slice(proxy);
            v.extend_from_slice(&request);
            Bytes::from(v)
        }
    };
    exchange(stream, first, head_request, limits, poolable)
        .await
        .map_err(|a| match a {
            Attempt::BeforeResponse(e) | Attempt::After(e) => e,
        })
}

enum Attempt {
    /// Failed before any response byte arrived: safe to retry on a fresh connection.
    BeforeResponse(FetchError),
    After(FetchError),
}

/// `poolable`: the connection may go back to a pool after a complete response.
async fn exchange(
    mut stream: Stream,
    request: Bytes,
    head_request: bool,
    limits: &FetchLimits,
    poolable: bool,
) -> Result<Fetched, Attempt> {
    match write_all_timeout(&mut stream, request, limits.first_byte).await {
        Write::Done(_) => {}
        Write::TimedOut => return Err(Attempt::After(FetchError::FirstByteTimeout)),
        Write::Failed(e) => return Err(Attempt::BeforeResponse(FetchError::Send(e))),
    }
    let mut buf = BytesMut::with_capacity(8192);
    let mut first = true;
    loop {
        let limit = if first {
            limits.first_byte
        } else {
            limits.between_bytes
        };
        buf = match read_timeout(&mut stream, buf, limit).await {
            Read::Data(_, b) => b,
            Read::Eof(_) if first => return Err(Attempt::BeforeResponse(FetchError::Closed)),
            Read::Eof(_) => return Err(Attempt::After(FetchError::Closed)),
            Read::TimedOut if first => return Err(Attempt::After(FetchError::FirstByteTimeout)),
            Read::TimedOut => return Err(Attempt::After(FetchError::BetweenBytesTimeout)),
            Read::Failed(e) if first => {
                return Err(Attempt::BeforeResponse(FetchError::Read(e)));
            }
            Read::Failed(e) => return Err(Attempt::After(FetchError::Read(e))),
        };
        first = false;
        match response::parse_response(&mut buf, &limits.resp) {
            Ok(None) => continue,
            Err(e) => return Err(Attempt::After(FetchError::BadResponse(e.detail()))),
            Ok(Some(head)) => {
                if head.status < 200 {
                    // 1xx interim responses (100 Continue) are skipped; the final one follows.
                    if buf.is_empty() {
                        first = true;
                    } else if let Ok(Some(h)) = response::parse_response(&mut buf, &limits.resp) {
                        return finish_head(stream, buf, h, head_request, limits, poolable);
                    }
                    continue;
                }
                return finish_head(stream, buf, head, head_request, limits, poolable);
            }
        }
    }
}

fn finish_head(
    stream: Stream,
    buf: BytesMut,
    head: ResponseHead,
    head_request: bool,
    limits: &FetchLimits,
    poolable: bool,
) -> Result<Fetched, Attempt> {
    let framing = response::response_framing(head_request, &head)
        .map_err(|e| Attempt::After(FetchError::BadResponse(e.detail())))?;
    let keep_alive = poolable
        && response::response_keep_alive(&head)
        && !matches!(framing, BodyFraming::UntilClose);
    let remaining = match framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    let chunked = matches!(framing, BodyFraming::Chunked).then(|| ChunkedDecoder::new(16 * 1024));
    let done = matches!(framing, BodyFraming::None) || matches!(framing, BodyFraming::Length(0));
    Ok(Fetched {
        head,
        body: BodyReader {
            stream: Some(stream),
            buf,
            framing,
            remaining,
            chunked,
            done,
            keep_alive,
            between_bytes: limits.between_bytes,
        },
    })
}

/// The body of a backend response, read piece by piece.
pub struct BodyReader {
    stream: Option<Stream>,
    buf: BytesMut,
    framing: BodyFraming,
    remaining: u64,
    chunked: Option<ChunkedDecoder>,
    done: bool,
    keep_alive: bool,
    between_bytes: Duration,
}

impl BodyReader {
    /// How the body is framed on the wire.
    pub fn framing(&self) -> &BodyFraming {
        &self.framing
    }

    /// The exact body length when known in advance.
    pub fn known_length(&self) -> Option<u64> {
        match self.framing {
            BodyFraming::Length(n) => Some(n),
            BodyFraming::None => Some(0),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next piece of the body, or `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            if self.done {
                return Ok(None);
            }
            // Serve what is already buffered first.
            match &self.framing {
                BodyFraming::None => {
                    self.done = true;
                    return Ok(None);
                }
                BodyFraming::Length(_) => {
                    if !self.buf.is_empty() {
                        let n = (self.remaining as usize).min(self.buf.len());
                        let piece = self.buf.split_to(n).freeze();
                        self.remaining -= n as u64;
                        if self.remaining == 0 {
                            self.done = true;
                            if !self.buf.is_empty() {
                                // Bytes beyond the framed body: the connection is not reusable.
                                self.keep_alive = false;
                            }
                        }
                        return Ok(Some(piece));
                    }
                }
                BodyFraming::Chunked => {
                    if !self.buf.is_empty() {
                        let mut out = BytesMut::new();
                        let finished = match self.chunked.as_mut() {
                            Some(dec) => dec
                                .decode(&mut self.buf, &mut out)
                                .map_err(|e| FetchError::BadResponse(e.detail()))?,
                            None => return Err(FetchError::BadResponse("chunked state lost")),
                        };
                        if finished {
                            self.done = true;
                            if !self.buf.is_empty() {
                                self.keep_alive = false;
                            }
                        }
                        if !out.is_empty() {
                            return Ok(Some(out.freeze()));
                        }
                        if self.done {
                            return Ok(None);
                        }
                    }
                }
                BodyFraming::UntilClose => {
                    if !self.buf.is_empty() {
                        let piece = self.buf.split().freeze();
                        return Ok(Some(piece));
                    }
                }
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into the buffer (one read, bounded by between_bytes_timeout).
    async fn fill(&mut self) -> Result<(), FetchError> {
        let stream = match self.stream.as_mut() {
            Some(s) => s,
            None => return Err(FetchError::Closed),
        };
        let buf = std::mem::take(&mut self.buf);
        match read_timeout(stream, buf, self.between_bytes).await {
            Read::Data(_, b) => {
                self.buf = b;
                Ok(())
            }
            Read::Eof(b) => {
                self.buf = b;
                self.stream = None;
                if matches!(self.framing, BodyFraming::UntilClose) {
                    self.done = true;
                    Ok(())
                } else {
                    Err(FetchError::Closed)
                }
            }
            Read::TimedOut => {
                self.stream = None;
                Err(FetchError::BetweenBytesTimeout)
            }
            Read::Failed(e) => {
                self.stream = None;
                Err(FetchError::Read(e))
            }
        }
    }

    /// Reads the whole body into one exact-size buffer, failing past `limit` bytes.
    pub async fn read_all(&mut self, limit: usize) -> Result<Bytes, FetchError> {
        if let Some(n) = self.known_length() {
            if n as usize > limit {
                return Err(FetchError::TooLarge);
            }
        }
        if let BodyFraming::Length(n) = self.framing {
            if !self.done {
                return self.read_exact_length(n as usize).await;
            }
        }
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        while let Some(p) = self.next().await? {
            total += p.len();
            if total > limit {
                return Err(FetchError::TooLarge);
            }
            pieces.push(p);
        }
        if pieces.len() == 1 {
            let p = pieces.pop().unwrap_or_default();
            // A piece may be a small window into a large read buffer; store it at its own size
            // so the cache's byte accounting is true.
            return Ok(Bytes::copy_from_slice(&p));
        }
        let mut out = Vec::with_capacity(total);
        for p in pieces {
            out.extend_from_slice(&p);
        }
        Ok(Bytes::from(out))
    }

    /// A Content-Length body read straight into one buffer of exactly its size: the kernel
    /// writes into the buffer the cache will keep, so there is no copy and no transient read
    /// buffer (which would otherwise interleave with stored bodies in the allocator).
    async fn read_exact_length(&mut self, n: usize) -> Result<Bytes, FetchError> {
        let mut body = BytesMut::with_capacity(n);
        let first = self.buf.len().min(self.remaining as usize);
        body.extend_from_slice(&self.buf.split_to(first));
        self.remaining -= first as u64;
        while body.len() < n {
            let Some(stream) = self.stream.as_mut() else {
                return Err(FetchError::Closed);
            };
            let len = body.len();
            let fut = stream.read(body.slice_mut(len..n));
            match monoio::time::timeout(self.between_bytes, fut).await {
                Err(_) => {
                    self.stream = None;
                    return Err(FetchError::BetweenBytesTimeout);
                }
                Ok((Ok(0), _)) => {
                    self.stream = None;
                    return Err(FetchError::Closed);
                }
                Ok((Ok(got), slice)) => {
                    body = slice.into_inner();
                    self.remaining -= got as u64;
                }
                Ok((Err(e), _)) => {
                    self.stream = None;
                    return Err(FetchError::Read(e));
                }
            }
        }
        debug_assert_eq!(body.len(), n);
        debug_assert_eq!(self.remaining, 0);
        self.done = true;
        if !self.buf.is_empty() {
            // Bytes beyond the framed body: the connection is not reusable.
            self.keep_alive = false;
        }
        Ok(body.freeze())
    }

    /// Ends the fetch: a completely read, keep-alive response returns its connection to `pool`.
    /// Returns true if the connection was recycled.
    pub fn release(mut self, pool: &mut Pool, ep: &Endpoint, counters: &ShardCounters) -> bool {
        if self.done && self.keep_alive && self.buf.is_empty() {
            if let Some(stream) = self.stream.take() {
                pool.put(ep, stream, Instant::now());
                counters.inc(C::backend_recycle);
                return true;
            }
        }
        false
    }
}
