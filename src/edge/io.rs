//! The connection's byte stream between TLS and the HTTP dispatcher.
//!
//! [`EdgeIo`] passes bytes through unchanged, with two exceptions at the edge of what actix
//! lets an application shape:
//!
//! - It holds the connection's verified certificate, its [`ConnectionSlot`] (or its refusal
//!   mark), so the slot is freed exactly when the dispatcher drops the connection.
//! - A connection refused under its partner's cap that has sent no byte of a request within
//!   [`REFUSED_GRACE`] reads as closed, so the dispatcher drops it then rather than after
//!   `server.request_timeout_ms`: refused connections are the ones a partner over its cap
//!   opens, and each holds a file descriptor for as long as it is open. A client that sends its
//!   request promptly still gets the 429 saying why.
//! - When actix's HTTP/1 parser refuses a request (a malformed request line or header, a NUL or
//!   other control byte in a header, an HTTP/1.1 request without `Host`, a head beyond the
//!   size or header-count limits, or a head that did not arrive in time), the dispatcher
//!   answers by itself with an empty 400, 431 or 408, without the application ever seeing the
//!   request: no JSON body, no `Request-Id`. actix offers no hook for these answers, so
//!   `EdgeIo` recognises such an answer as it is written (status 400, 408 or 431, an empty
//!   body, no `Request-Id`: every answer of the application carries a `Request-Id`, so none of
//!   them can match) and writes the gateway's JSON error in its place, with a fresh
//!   `Request-Id` and `Connection: close` (the dispatcher closes these connections anyway). The
//!   request id is left in the [`ConnectionScope`] so the log line about the refusal names it.
//!   Anything that does not match exactly (another status, a body, more bytes than one head)
//!   passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limiter::{Admission, ConnectionRefused, ConnectionSlot};
use super::{ConnectionScope, RefusedRequest};
use crate::domain::Code;
use crate::error::ErrorBody;
use crate::tls::PeerCertificate;

/// How long a connection refused under its partner's cap may take to send the first byte of
/// its request (which is answered 429 `too_many_connections`); after that it reads as closed.
pub const REFUSED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A connection's stream: `T` (the TLS stream) plus the connection's cap slot and the rewriting
/// of the parser's own refusals (see the module documentation).
#[derive(Debug)]
pub struct EdgeIo<T> {
    inner: T,
    peer: Option<PeerCertificate>,
    _slot: Option<ConnectionSlot>,
    refused: Option<ConnectionRefused>,
    /// For a refused connection that has sent nothing yet: when it reads as closed.
    refused_until: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Replacement bytes still to be written to `inner`, and how many were.
    pending: Vec<u8>,
    pending_written: usize,
}

impl<T> EdgeIo<T> {
    /// Wraps `inner`, whose handshake presented `peer`, with the outcome of its partner's
    /// connection cap (`None` when the certificate names no partner, which the handshake does
    /// not let through).
    pub fn new(inner: T, peer: Option<PeerCertificate>, admission: Option<Admission>) -> Self {
        let (slot, refused) = match admission {
            Some(Admission::Admitted(s)) => (Some(s), None),
            Some(Admission::Refused(r)) => (None, Some(r)),
            None => (None, None),
        };
        Self {
            inner,
            peer,
            _slot: slot,
            refused_until: refused
                .is_some()
                .then(|| Box::pin(tokio::time::sleep(REFUSED_GRACE))),
            refused,
            pending: Vec::new(),
            pending_written: 0,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The verified client certificate of the connection.
    pub fn peer(&self) -> Option<&PeerCertificate> {
        self.peer.as_ref()
    }

    /// The refusal mark, when the connection is over its partner's cap.
    pub fn refused(&self) -> Option<&ConnectionRefused> {
        self.refused.as_ref()
    }
}

impl<T: AsyncWrite + Unpin> EdgeIo<T> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.pending.get(self.pending_written..)
            && !rest.is_empty()
        {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_written += n;
        }
        self.pending.clear();
        self.pending_written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(until) = this.refused_until.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // The request has started: it is answered 429, however long it takes.
                this.refused_until = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if until.as_mut().poll(cx).is_ready() => {
                // Nothing in time: end of stream, and the dispatcher drops the connection.
                this.refused_until = None;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some((replacement, refused)) = replacement_for(buf) {
            ConnectionScope::note_refused_request(refused);
            this.pending = replacement;
            this.pending_written = 0;
            // The original bytes are taken in full; the replacement goes out now or with the
            // next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The status, code and message of each parser refusal the gateway rewrites.
fn refusal_text(status: u16) -> Option<(&'static str, Code, &'static str)> {
    Some(match status {
        400 => (
            "Bad Request",
            Code::MalformedRequest,
            "the gateway could not read this HTTP request: a malformed request line or header, \
             a NUL or other control byte in a header, an HTTP/1.1 request without `Host`, or a \
             body it cannot frame; send a well-formed HTTP/1.1 request (this connection is \
             closed)",
        ),
        408 => (
            "Request Timeout",
            Code::RequestTimeout,
            "the request line and headers did not arrive in time; send them promptly after \
             connecting (this connection is closed)",
        ),
        431 => (
            "Request Header Fields Too Large",
            Code::HeadersTooLarge,
            "the request head is too large (at most 96 headers and 128 KiB of head are read); \
             send fewer or shorter headers (this connection is closed)",
        ),
        _ => return None,
    })
}

/// If `buf` is exactly one answer written by actix's HTTP/1 dispatcher for a request its
/// parser refused, the gateway's answer to write instead.
fn replacement_for(buf: &[u8]) -> Option<(Vec<u8>, RefusedRequest)> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut head = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = head.parse(buf).ok()? else {
        return None;
    };
    if len != buf.len() {
        return None;
    }
    let status = head.code?;
    let (reason, code, message) = refusal_text(status)?;
    let mut empty = false;
    let mut date = None;
    for h in head.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("request-id") || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            empty = h.value == b"0";
        } else if name.eq_ignore_ascii_case("date") {
            date = std::str::from_utf8(h.value).ok();
        }
    }
    if !empty {
        return None;
    }
    let request_id = uuid::Uuid::now_v7();
    let body = serde_json::to_vec(&ErrorBody {
        code: code.as_str().to_owned(),
        message: message.to_owned(),
        details: None,
    })
    .ok()?;
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         content-length: {len}\r\n\
         content-type: application/json\r\n\
         cache-control: no-store\r\n\
         request-id: {request_id}\r\n\
         x-content-type-options: nosniff\r\n\
         strict-transport-security: max-age=31536000\r\n\
         connection: close\r\n",
        len = body.len(),
    );
    if let Some(d) = date {
        out.push_str(&format!("date: {d}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Some((
        bytes,
        RefusedRequest {
            request_id,
            status,
            code,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[test]
    fn the_dispatchers_empty_refusals_become_json_with_a_request_id() {
        for (status, reason, code) in [
            (400, "Bad Request", "malformed_request"),
            (408, "Request Timeout", "request_timeout"),
            (431, "Request Header Fields Too Large", "headers_too_large"),
        ] {
            let raw = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\
                 date: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n"
            );
            let (out, refused) = replacement_for(raw.as_bytes()).expect("rewritten");
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains(&format!("request-id: {}", refused.request_id)));
            assert!(
                head.contains("date: Tue, 01 Dec 2026 10:00:00 GMT"),
                "{head}"
            );
            assert!(head.contains("connection: close"), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["code"], code);
            assert_eq!(refused.status, status);
        }
    }

    #[test]
    fn the_applications_answers_pass_untouched() {
        for raw in [
            // Any answer of the application carries a Request-Id.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nrequest-id: x\r\n\r\n",
            // Has a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n",
            // Another status.
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            // Not one complete head.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK",
            "garbage",
        ] {
            assert!(replacement_for(raw.as_bytes()).is_none(), "{raw}");
        }
    }

    #[tokio::test]
    async fn a_replacement_is_written_in_full_even_through_small_writes() {
        let (client, mut server) = tokio::io::duplex(7);
        let mut io = EdgeIo::new(client, None, None);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut out)
                .await
                .unwrap();
            out
        });
        let n = io
            .write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(n, 47);
        io.shutdown().await.unwrap();
        drop(io);
        let out = String::from_utf8(reader.await.unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.ends_with('}'), "{out}");
        assert!(out.contains("malformed_request"), "{out}");
    }
}
