//! Stage: the size limit and the body read. A declared Content-Length over the limit is
//! refused before a byte of the body is read (hyper sends `100 Continue` only once the
//! body is polled, so this costs the client nothing); a chunked body is read up to the
//! limit and refused the moment it passes it. A single-frame body (the common case) is
//! kept as the `Bytes` hyper gave us, without a copy.
//!
//! Deadlines cost nothing for a body already in hand: the handler polls the [`Reader`]
//! once without a timer, and only a body that is not complete then is finished by
//! [`read_rest`], under one timer for `body_timeout` and `body_min_rate` together.

use super::Reject;
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Stage: refuse a body whose declared length is over `max`.
pub fn check_declared_size(declared: Option<u64>, max: u64) -> Result<(), Reject> {
    match declared {
        Some(len) if len > max => Err(Reject::BodyTooLarge),
        _ => Ok(()),
    }
}

/// A body that can say how many of its bytes have arrived but are not yet handed out as
/// frames (hookgate's HTTP/1 body reads a Content-Length body into one allocation and
/// hands it out whole). Asked only when a body is late, for its minimum rate.
pub trait Progress {
    fn held(&self) -> u64 {
        0
    }
}

/// hyper's HTTP/2 body hands each DATA frame out as it arrives.
impl Progress for hyper::body::Incoming {}

/// The whole body, read frame by frame, refused as soon as it passes `max` bytes.
/// Trailers are dropped: they are never signed and never forwarded.
pub struct Reader<B> {
    body: B,
    max: u64,
    declared: Option<u64>,
    first: Option<Bytes>,
    buf: Option<BytesMut>,
    /// Bytes handed out by the body so far.
    total: u64,
}

impl<B> Reader<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    pub fn new(body: B, max: u64, declared: Option<u64>) -> Self {
        Reader {
            body,
            max,
            declared,
            first: None,
            buf: None,
            total: 0,
        }
    }

    /// Reads what has arrived; `Ready` with the whole body once it has ended.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, Reject>> {
        loop {
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(Ok(self.take())),
                Some(Err(_)) => return Poll::Ready(Err(Reject::BodyRead)),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            self.total += data.len() as u64;
            if self.total > self.max {
                return Poll::Ready(Err(Reject::BodyTooLarge));
            }
            match (&mut self.first, &mut self.buf) {
                (None, None) => self.first = Some(data),
                (Some(_), None) => {
                    let head = self.first.take().expect("checked");
                    let cap = self.declared.unwrap_or(0).clamp(self.total, self.max) as usize;
                    let mut b = BytesMut::with_capacity(cap);
                    b.extend_from_slice(&head);
                    b.extend_from_slice(&data);
                    self.buf = Some(b);
                }
                (_, Some(b)) => b.extend_from_slice(&data),
            }
        }
    }

    fn take(&mut self) -> Bytes {
        match (self.first.take(), self.buf.take()) {
            (_, Some(b)) => b.freeze(),
            (Some(f), None) => f,
            (None, None) => Bytes::new(),
        }
    }

    /// Bytes of the body received so far, handed out or not.
    pub fn received(&self) -> u64
    where
        B: Progress,
    {
        self.total + self.body.held()
    }
}

/// Reads the whole body (no deadline: see [`read_rest`]).
pub async fn read_body<B>(body: B, max: u64, declared: Option<u64>) -> Result<Bytes, Reject>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut reader = Reader::new(body, max, declared);
    std::future::poll_fn(|cx| reader.poll_read(cx)).await
}

/// A body's deadlines (`limits.body_timeout`, `body_min_rate`, `body_min_rate_grace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub timeout: Duration,
    /// Bytes per second; 0: no minimum.
    pub min_rate: u64,
    pub grace: Duration,
}

impl Deadlines {
    /// When a body that was first waited for at `began` and has `received` bytes falls
    /// behind the minimum rate if nothing more arrives: the grace, plus `1 / min_rate`
    /// seconds per byte received (Apache mod_reqtimeout's `MinRate`). `None`: no minimum.
    pub fn behind_at(&self, began: Instant, received: u64) -> Option<Instant> {
        if self.min_rate == 0 {
            return None;
        }
        let earned = u128::from(received) * 1_000_000_000 / u128::from(self.min_rate);
        let earned = Duration::from_nanos(u64::try_from(earned).unwrap_or(u64::MAX));
        began.checked_add(self.grace)?.checked_add(earned)
    }
}

/// Finishes reading a body that was not all in hand at the first poll, under one timer:
/// set to the earlier of the body deadline and the moment the body falls behind the
/// minimum rate, and moved on from the bytes received each time it fires. A body that
/// keeps up costs one timer wake-up per deadline reached, not one per read.
pub async fn read_rest<B>(reader: &mut Reader<B>, deadlines: Deadlines) -> Result<Bytes, Reject>
where
    B: hyper::body::Body<Data = Bytes> + Progress + Unpin,
{
    let began = Instant::now();
    let end = began + deadlines.timeout;
    let due = |received| match deadlines.behind_at(began, received) {
        Some(behind) => behind.min(end),
        None => end,
    };
    let timer = tokio::time::sleep_until(due(reader.received()));
    tokio::pin!(timer);
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(result) = reader.poll_read(cx) {
            return Poll::Ready(result);
        }
        ready!(timer.as_mut().poll(cx));
        let now = Instant::now();
        if now >= end {
            return Poll::Ready(Err(Reject::BodyTimeout));
        }
        let next = due(reader.received());
        if now >= next {
            return Poll::Ready(Err(Reject::BodyTooSlow));
        }
        timer.as_mut().reset(next);
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::body::Frame;
    use std::collections::VecDeque;

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
    impl Progress for Chunks {}
    impl Progress for Full<Bytes> {}

    /// A body fed by the test through a channel: pending until the next chunk is sent.
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<Bytes>);
    impl hyper::body::Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }
    impl Progress for Fed {}

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

    #[test]
    fn a_body_earns_time_by_the_bytes_it_sends() {
        let d = Deadlines {
            timeout: Duration::from_secs(30),
            min_rate: 1024,
            grace: Duration::from_secs(5),
        };
        let t = Instant::now();
        assert_eq!(d.behind_at(t, 0), Some(t + Duration::from_secs(5)));
        assert_eq!(d.behind_at(t, 2048), Some(t + Duration::from_secs(7)));
        assert_eq!(d.behind_at(t, 512), Some(t + Duration::from_millis(5500)));
        // No minimum: never behind; a huge count saturates instead of overflowing.
        let off = Deadlines { min_rate: 0, ..d };
        assert_eq!(off.behind_at(t, 1 << 40), None);
        let slowest = Deadlines { min_rate: 1, ..d };
        let _ = slowest.behind_at(t, u64::MAX);
    }

    #[tokio::test]
    async fn a_late_body_is_refused_as_too_slow_or_timed_out_and_a_fast_one_passes() {
        let d = Deadlines {
            timeout: Duration::from_millis(600),
            min_rate: 1000,
            grace: Duration::from_millis(100),
        };
        // Nothing arrives: behind the rate once the grace is over.
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = Reader::new(Fed(rx), 1 << 20, None);
        let started = Instant::now();
        assert_eq!(read_rest(&mut reader, d).await, Err(Reject::BodyTooSlow));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(500),
            "{took:?}"
        );
        // Without a minimum rate, only the body deadline applies.
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = Reader::new(Fed(rx), 1 << 20, None);
        let off = Deadlines { min_rate: 0, ..d };
        let started = Instant::now();
        assert_eq!(read_rest(&mut reader, off).await, Err(Reject::BodyTimeout));
        assert!(started.elapsed() >= Duration::from_millis(600));
        // 100 bytes every 20 ms (5000 B/s) keeps ahead of 1000 B/s.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = Reader::new(Fed(rx), 1 << 20, None);
        let feeder = tokio::spawn(async move {
            for _ in 0..15 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send(Bytes::from_static(&[b'x'; 100])).unwrap();
            }
        });
        let body = read_rest(&mut reader, d).await.unwrap();
        assert_eq!(body.len(), 1500);
        feeder.await.unwrap();
    }
}
