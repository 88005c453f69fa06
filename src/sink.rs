//! A minimal upstream: answers every request with a fixed status and `ok`, optionally
//! printing what it received. For the README's demo and the benchmarks (the fastest
//! possible upstream, so that the gateway's own cost shows).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::io::Write;
use std::net::SocketAddr;

pub async fn run(listen: SocketAddr, status: StatusCode, print: bool) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("sink listening on {}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    if print {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{} {}", parts.method, parts.uri);
                        for (k, v) in &parts.headers {
                            let _ = writeln!(out, "{k}: {}", String::from_utf8_lossy(v.as_bytes()));
                        }
                        let _ = writeln!(out, "\n{}\n", String::from_utf8_lossy(&body));
                    }
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    *resp.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(resp)
                },
            );
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
