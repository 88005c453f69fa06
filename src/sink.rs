//! A minimal upstream: answers every request with a fixed status and `ok`, optionally
//! printing what it received. For the README's demo and the benchmarks: the cheapest
//! upstream we can write, so that the gateway's own cost shows and the sink's core
//! (shared with the load generator in bench/run.py) is not what limits a run.
//!
//! HTTP/1.1 only, on the gateway's own codec ([`crate::h1::codec`]): keep-alive,
//! pipelining, Content-Length and chunked bodies; a head it refuses gets a 400 and the
//! connection is closed. No per-field allocation, so a gateway that forwards more
//! fields is not charged for them here.

use crate::answer::Answer;
use crate::h1::codec::{self, Chunk, Chunked, Framing};
use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use std::io::{self, Write};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bounds of a request head (the gateway's own defaults are smaller).
const MAX_HEAD: usize = 64 * 1024;
const MAX_FIELDS: usize = 200;

pub async fn run(listen: SocketAddr, status: StatusCode, print: bool) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("sink listening on {}", listener.local_addr()?);
    serve(listener, status, print).await
}

/// Answers every connection `listener` accepts, until accepting fails.
pub async fn serve(listener: TcpListener, status: StatusCode, print: bool) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = connection(stream, status, print).await;
        });
    }
}

/// One connection: requests in order (pipelined ones too), each answered once its
/// body is read.
async fn connection<S>(mut io: S, status: StatusCode, print: bool) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(256);
    let ok = Answer::new(status, Bytes::from_static(b"ok\n"));
    loop {
        let head = loop {
            match codec::parse_head(&mut buf, MAX_HEAD, MAX_FIELDS) {
                Ok(Some(head)) => break head,
                Ok(None) => {
                    if buf.capacity() - buf.len() < 4096 {
                        buf.reserve(16 * 1024);
                    }
                    if io.read_buf(&mut buf).await? == 0 {
                        return Ok(()); // closed between requests or mid-head
                    }
                }
                Err(e) => {
                    out.clear();
                    let refused = Answer::new(StatusCode::BAD_REQUEST, Bytes::new());
                    codec::write_response_head(&mut out, &refused, true, codec::date::now_secs);
                    io.write_all(&out).await?;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")));
                }
            }
        };
        // A client that waits for `100 Continue` (curl does for larger bodies) gets it
        // unless its body is already here.
        if head.expect_continue && !head.framing.in_hand(buf.len()) {
            io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = read_body(&mut io, &mut buf, head.framing).await?;
        if print {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "{} {}", head.method, head.uri);
            for (k, v) in head.fields.iter() {
                let (k, v) = (
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v.as_bytes()),
                );
                let _ = writeln!(stdout, "{k}: {v}");
            }
            let _ = writeln!(stdout, "\n{}\n", String::from_utf8_lossy(&body));
        }
        out.clear();
        let close = !head.keep_alive;
        let bodiless = head.method == http::Method::HEAD;
        codec::write_response_head(&mut out, &ok, close, codec::date::now_secs);
        if !bodiless {
            out.extend_from_slice(&ok.body);
        }
        io.write_all(&out).await?;
        if close {
            return io.shutdown().await;
        }
    }
}

/// The request body as framed, read from `buf` and then the connection; what follows
/// it stays in `buf`.
async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    framing: Framing,
) -> io::Result<BytesMut> {
    let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside a body");
    match framing {
        Framing::Empty => Ok(BytesMut::new()),
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| io::ErrorKind::InvalidData)?;
            while buf.len() < n {
                buf.reserve(n - buf.len());
                if io.read_buf(buf).await? == 0 {
                    return Err(eof());
                }
            }
            Ok(buf.split_to(n))
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            let mut body = BytesMut::new();
            loop {
                match decoder.decode(buf) {
                    Ok(Chunk::Data(data)) => body.extend_from_slice(&data),
                    Ok(Chunk::End) => return Ok(body),
                    Ok(Chunk::NeedMore) => {
                        buf.reserve(16 * 1024);
                        if io.read_buf(buf).await? == 0 {
                            return Err(eof());
                        }
                    }
                    Err(e) => {
                        buf.advance(buf.len());
                        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    async fn sink(status: StatusCode) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, status, false));
        addr
    }

    /// Sends `raw`, half-closes, and reads everything the sink answers.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn pipelined_requests_with_every_framing_are_answered_in_order() {
        let addr = sink(StatusCode::OK).await;
        let raw = b"POST /a HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello\
                    POST /b HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n\
                    3\r\nabc\r\n0\r\n\r\n\
                    GET /c HTTP/1.1\r\nHost: s\r\n\r\n";
        let got = exchange(addr, raw).await;
        assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{got}");
        assert_eq!(got.matches("content-length: 3\r\n").count(), 3, "{got}");
        assert_eq!(got.matches("\r\n\r\nok\n").count(), 3, "{got}");
    }

    #[tokio::test]
    async fn the_configured_status_and_connection_close_are_honoured() {
        let addr = sink(StatusCode::SERVICE_UNAVAILABLE).await;
        let raw = b"POST /a HTTP/1.1\r\nHost: s\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx\
                    POST /never HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\n\r\ny";
        let got = exchange(addr, raw).await;
        assert!(
            got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{got}"
        );
        assert!(got.contains("connection: close\r\n"), "{got}");
        assert_eq!(
            got.matches("HTTP/1.1").count(),
            1,
            "nothing after a close: {got}"
        );
    }

    #[tokio::test]
    async fn a_bad_head_gets_a_400_and_the_connection_ends() {
        let addr = sink(StatusCode::OK).await;
        let got = exchange(addr, b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
        assert!(got.contains("connection: close\r\n"), "{got}");
    }

    #[tokio::test]
    async fn a_client_expecting_100_continue_gets_it_before_sending_the_body() {
        let addr = sink(StatusCode::OK).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .await
        .unwrap();
        let mut interim = [0u8; 25];
        s.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"body").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test]
    async fn a_body_that_ends_early_is_not_answered() {
        let addr = sink(StatusCode::OK).await;
        let got = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 10\r\n\r\nshort",
        )
        .await;
        assert_eq!(got, "");
    }
}
