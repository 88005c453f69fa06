//! What a request to the upstream costs the kernel in each shape it can leave in:
//! the head and body copied into one buffer and sent with one `send`, or the two slices
//! sent with one `writev` and no copy. Both over a real TCP connection on 127.0.0.1
//! (`TCP_NODELAY`, as the upstream pool sets), each write read back whole on the other
//! end before the next, all on one thread; the two shapes alternate over the rounds so
//! that drift in the machine hits both alike.
//!
//! This is the measurement behind `COALESCE_BODY` in src/upstream.rs: up to the size
//! where the copy stops paying, a body is copied behind its head.
//!
//! Run: `taskset -c 1 cargo bench --bench send_shapes` (a quiet core; figures are
//! medians over the rounds of the time per write and read-back, in µs).

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const HEAD: usize = 420; // about hookgate's forwarded head for the bench request
const BODIES: [usize; 7] = [1682, 4096, 8192, 12288, 16384, 32768, 65536];

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `-- --quick`) runs it
    // briefly.
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--quick");
    let (rounds, n) = if quick { (2, 200) } else { (15, 4000) };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut rx, _) = listener.accept().unwrap();
    tx.set_nodelay(true).unwrap();
    let head = vec![b'h'; HEAD];
    let mut sink = vec![0u8; 1 << 17];
    println!("one write and its read-back over loopback TCP, head {HEAD} B, median of {rounds} rounds of {n}");
    println!(
        "{:>8} {:>16} {:>16} {:>14}",
        "body B", "copy + send µs", "writev µs", "writev ÷ copy"
    );
    for body_len in BODIES {
        let body = vec![b'b'; body_len];
        let mut out = Vec::with_capacity(HEAD + body_len);
        let (mut copy, mut vectored) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for shape in [Shape::Copy, Shape::Writev] {
                let t = Instant::now();
                for _ in 0..n {
                    match shape {
                        Shape::Copy => {
                            out.clear();
                            out.extend_from_slice(&head);
                            out.extend_from_slice(&body);
                            tx.write_all(&out).unwrap();
                        }
                        Shape::Writev => write_all_vectored(&mut tx, &head, &body),
                    }
                    read_exactly(&mut rx, &mut sink, HEAD + body_len);
                }
                let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
                match shape {
                    Shape::Copy => copy.push(per),
                    Shape::Writev => vectored.push(per),
                }
            }
        }
        let (c, v) = (median(&mut copy), median(&mut vectored));
        println!("{body_len:>8} {c:>16.3} {v:>16.3} {:>13.3}×", v / c);
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Copy,
    Writev,
}

/// `writev` of head and body, on until both are written (as tokio's `write_all_buf`).
fn write_all_vectored(tx: &mut TcpStream, head: &[u8], body: &[u8]) {
    let total = head.len() + body.len();
    let mut done = 0;
    while done < total {
        let n = if done < head.len() {
            tx.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(body)])
        } else {
            tx.write(&body[done - head.len()..])
        }
        .unwrap();
        assert!(n > 0, "the connection closed");
        done += n;
    }
}

fn read_exactly(rx: &mut TcpStream, sink: &mut [u8], mut left: usize) {
    let cap = sink.len();
    while left > 0 {
        let n = rx.read(&mut sink[..left.min(cap)]).unwrap();
        assert!(n > 0, "the connection closed");
        left -= n;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
