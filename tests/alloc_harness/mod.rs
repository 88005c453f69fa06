//! Heap allocations per request on the gateway's request path, counted by a global
//! allocator around the system one. Shared by `tests/allocs.rs` (upper bounds, so that
//! a change that adds an allocation per request fails a test) and `benches/allocs.rs`
//! (the figures, from a release build).
//!
//! The gateway runs in this process on its own thread, one worker, as `hookgate serve`
//! runs it. The sender and the upstream are plain blocking sockets on threads of their
//! own that never allocate once connected: fixed buffers, the request and the answer
//! built before the count starts. So every allocation counted during a run is the
//! gateway's (its runtime's included), and the count divided by the requests is its
//! cost per request. One keep-alive connection sends the requests one after another,
//! after a warm-up that fills the upstream pool and the per-thread caches.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// The global allocator of a test or bench binary that counts: allocations (a
/// `realloc` counts as one) and the bytes asked for; and what is live, by size.
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Live allocations by requested size (the last slot: that size or more).
const SIZES: usize = 4097;
static LIVE: [AtomicI64; SIZES] = [const { AtomicI64::new(0) }; SIZES];
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

fn live(size: usize, count: i64) {
    LIVE[size.min(SIZES - 1)].fetch_add(count, Relaxed);
    LIVE_BYTES.fetch_add(count * size as i64, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        live(layout.size(), 1);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        live(layout.size(), 1);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        live(layout.size(), -1);
        live(new_size, 1);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(layout.size(), -1);
        System.dealloc(ptr, layout)
    }
}

pub const SECRET: &str = "bench-secret-0123456789";
pub const PAYLOAD: &[u8] = include_bytes!("../fixtures/expel-bench-payload.json");

/// What one kind of request cost.
#[derive(Debug, Clone, Copy)]
pub struct PerRequest {
    pub allocs: f64,
    pub bytes: f64,
}

/// The kinds of request measured, in the order `measure_all` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed (Expel HMAC-SHA256), verified and forwarded: 200 from the upstream.
    Forwarded,
    /// The same with a wrong signature: 406, nothing forwarded.
    Forged,
    /// A route with no signature to check (`verify: { none: true }`): forwarded.
    Unsigned,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Forwarded, Kind::Forged, Kind::Unsigned];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Forwarded => "signed, verified, forwarded (200)",
            Kind::Forged => "forged signature (406)",
            Kind::Unsigned => "verify: none, forwarded (200)",
        }
    }

    fn expect(self) -> &'static [u8] {
        match self {
            Kind::Forged => b"HTTP/1.1 406 ",
            _ => b"HTTP/1.1 200 ",
        }
    }

    fn request(self, host: SocketAddr) -> Vec<u8> {
        let sig = match self {
            Kind::Forged => "0".repeat(64),
            _ => hex_hmac(SECRET.as_bytes(), PAYLOAD),
        };
        let path = match self {
            Kind::Unsigned => "/hooks/open",
            _ => "/hooks/expel",
        };
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Expel-Signature-256: sha256={sig}\r\nContent-Length: {}\r\n\r\n",
            PAYLOAD.len()
        )
        .into_bytes();
        r.extend_from_slice(PAYLOAD);
        r
    }
}

fn hex_hmac(key: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bench's gateway config: the Expel route, and an unsigned twin allowed from
/// loopback, both to `upstream`.
fn config(upstream: SocketAddr) -> String {
    format!(
        r#"listen: 127.0.0.1:0
workers: 1
routes:
  - name: expel
    path: /hooks/expel
    verify: {{ preset: expel, secrets: ["{SECRET}"] }}
    upstream: http://{upstream}/expel
  - name: open
    path: /hooks/open
    verify: {{ none: true }}
    allow_ips: [127.0.0.1/32]
    upstream: http://{upstream}/expel
"#
    )
}

/// Reads one HTTP/1.1 message (head, then a Content-Length body) from `s` into `buf`,
/// without allocating; returns its length. Panics on EOF or a message over the buffer.
fn read_message(s: &mut TcpStream, buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        if let Some(end) = find(&buf[..n], b"\r\n\r\n") {
            let head = &buf[..end];
            let len = content_length(head);
            let total = end + 4 + len;
            assert!(total <= buf.len(), "message over the buffer");
            while n < total {
                let r = s.read(&mut buf[n..]).expect("read");
                assert!(r > 0, "EOF inside a message");
                n += r;
            }
            assert_eq!(n, total, "one message at a time");
            return total;
        }
        assert!(n < buf.len(), "head over the buffer");
        let r = s.read(&mut buf[n..]).expect("read");
        assert!(r > 0, "EOF before a message");
        n += r;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let v = std::str::from_utf8(&line[15..]).unwrap().trim();
            return v.parse().unwrap();
        }
    }
    0
}

/// A keep-alive upstream that answers every request `200` with a short body, one thread
/// per connection, no allocation per request.
fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let answer =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let mut peek = [0u8; 1];
                    match conn.peek(&mut peek) {
                        Ok(1) => {}
                        _ => return,
                    }
                    read_message(&mut conn, &mut buf);
                    if conn.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Starts the gateway on its own thread (a current-thread runtime, as one worker runs);
/// returns its address.
fn start_gateway(upstream: SocketAddr) -> SocketAddr {
    let yaml = config(upstream);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let env = |_: &str| None;
            let config = hookgate::config::load_str(&yaml, &env).expect("bench config");
            let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(public.local_addr().unwrap()).unwrap();
            let listeners = hookgate::server::Listeners {
                public,
                admin: None,
            };
            hookgate::server::run(config, listeners, std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}

/// Sends `warmup` then `n` requests of `kind` over one keep-alive connection and counts
/// the allocations made during the `n`.
fn measure(gateway: SocketAddr, kind: Kind, warmup: usize, n: usize) -> PerRequest {
    let request = kind.request(gateway);
    let expect = kind.expect();
    let mut s = TcpStream::connect(gateway).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut one = |s: &mut TcpStream| {
        s.write_all(&request).unwrap();
        let len = read_message(s, &mut buf);
        assert!(
            buf[..len].starts_with(expect),
            "{kind:?}: {:?}",
            String::from_utf8_lossy(&buf[..len.min(200)])
        );
    };
    for _ in 0..warmup {
        one(&mut s);
    }
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..n {
        one(&mut s);
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    PerRequest {
        allocs: (a1 - a0) as f64 / n as f64,
        bytes: (b1 - b0) as f64 / n as f64,
    }
}

/// Every kind, each after its own warm-up, against one gateway and upstream.
pub fn measure_all(warmup: usize, n: usize) -> Vec<(Kind, PerRequest)> {
    let upstream = start_upstream();
    let gateway = start_gateway(upstream);
    Kind::ALL
        .iter()
        .map(|&k| (k, measure(gateway, k, warmup, n)))
        .collect()
}

/// What an idle keep-alive connection holds on the heap: `bytes` in all, and the live
/// allocations that came with it, as (requested size, count per connection).
pub struct IdleHeap {
    pub bytes: f64,
    pub by_size: Vec<(usize, f64)>,
}

/// Opens `n` connections to a fresh gateway, sends one signed request on each and reads
/// its answer, keeps them all open, and measures the heap that stays with them. `n`
/// stays under the default `max_connections_per_ip` (256).
pub fn idle_connection_heap(n: usize) -> IdleHeap {
    let upstream = start_upstream();
    let gateway = start_gateway(upstream);
    let request = Kind::Forwarded.request(gateway);
    let mut buf = vec![0u8; 64 * 1024];
    let mut one = |s: &mut TcpStream| {
        s.write_all(&request).unwrap();
        let len = read_message(s, &mut buf);
        assert!(buf[..len].starts_with(b"HTTP/1.1 200 "));
    };
    // Warm-up: the upstream pool, the per-thread caches, the lazily built statics.
    let mut first = TcpStream::connect(gateway).unwrap();
    for _ in 0..20 {
        one(&mut first);
    }
    let settle = || std::thread::sleep(std::time::Duration::from_millis(200));
    settle();
    let before: Vec<i64> = LIVE.iter().map(|c| c.load(Relaxed)).collect();
    let bytes_before = LIVE_BYTES.load(Relaxed);
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(gateway).unwrap();
        one(&mut s);
        open.push(s);
    }
    settle();
    let per = |d: i64| d as f64 / n as f64;
    let by_size = LIVE
        .iter()
        .zip(&before)
        .enumerate()
        .map(|(size, (now, then))| (size, per(now.load(Relaxed) - then)))
        .filter(|(_, count)| count.abs() >= 0.5)
        .collect();
    IdleHeap {
        bytes: per(LIVE_BYTES.load(Relaxed) - bytes_before),
        by_size,
    }
}
