//! Stage: the size limit and the body read. A declared Content-Length over the limit is
//! refused before a byte of the body is read (hyper sends `100 Continue` only once the
//! body is polled, so this costs the client nothing); a chunked body is read up to the
//! limit and refused the moment it passes it. A single-frame body (the common case) is
//! kept as the `Bytes` hyper gave us, without a copy.

use super::Reject;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

/// Stage: refuse a body whose declared length is over `max`.
pub fn check_declared_size(declared: Option<u64>, max: u64) -> Result<(), Reject> {
    match declared {
        Some(len) if len > max => Err(Reject::BodyTooLarge),
        _ => Ok(()),
    }
}

/// Reads the whole body, refusing it as soon as it passes `max` bytes. Trailers are
/// dropped: they are never signed and never forwarded.
pub async fn read_body<B>(mut body: B, max: u64, declared: Option<u64>) -> Result<Bytes, Reject>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Reject::BodyRead)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        total += data.len() as u64;
        if total > max {
            return Err(Reject::BodyTooLarge);
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(data),
            (Some(_), None) => {
                let head = first.take().expect("checked");
                let cap = declared.unwrap_or(0).clamp(total, max) as usize;
                let mut b = BytesMut::with_capacity(cap);
                b.extend_from_slice(&head);
                b.extend_from_slice(&data);
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::body::Frame;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that yields the given chunks, one frame each (like a chunked request).
    struct Chunks(VecDeque<Bytes>);
    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }
    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Bytes::from_static(p)).collect())
    }

    #[test]
    fn declared_size() {
        assert!(check_declared_size(Some(10), 10).is_ok());
        assert_eq!(check_declared_size(Some(11), 10), Err(Reject::BodyTooLarge));
        assert!(check_declared_size(None, 10).is_ok());
    }

    #[tokio::test]
    async fn single_frame_is_not_copied() {
        let data = Bytes::from_static(b"hello");
        let out = read_body(Full::new(data.clone()), 10, Some(5))
            .await
            .unwrap();
        assert_eq!(out.as_ptr(), data.as_ptr());
    }

    #[tokio::test]
    async fn chunks_are_joined_and_cut_at_the_limit() {
        let out = read_body(chunks(&[b"ab", b"cd", b"e"]), 5, None)
            .await
            .unwrap();
        assert_eq!(&out[..], b"abcde");
        let err = read_body(chunks(&[b"ab", b"cd", b"ef"]), 5, None)
            .await
            .unwrap_err();
        assert_eq!(err, Reject::BodyTooLarge);
        let empty = read_body(chunks(&[]), 5, None).await.unwrap();
        assert!(empty.is_empty());
    }
}
