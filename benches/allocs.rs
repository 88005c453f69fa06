//! Heap allocations per request, and the heap an idle keep-alive connection holds, from
//! a release build: an in-process gateway (one
//! worker) between a keep-alive sender and a real upstream on 127.0.0.1, every
//! allocation of the process counted (the sender and the upstream make none per
//! request). See tests/alloc_harness/mod.rs for the method and tests/allocs.rs for the
//! bounds the test suite holds the request path to.
//!
//! Run: `cargo bench --bench allocs`.

#[path = "../tests/alloc_harness/mod.rs"]
mod alloc_harness;

use alloc_harness::{idle_connection_heap, measure_all, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (warmup, n) = if quick { (200, 500) } else { (2_000, 20_000) };
    println!("allocations per request ({n} requests after {warmup} of warm-up, one keep-alive connection)");
    println!(
        "{:<36} {:>12} {:>16}",
        "request", "allocations", "bytes allocated"
    );
    for (kind, f) in measure_all(warmup, n) {
        println!("{:<36} {:>12.2} {:>16.0}", kind.label(), f.allocs, f.bytes);
    }
    let conns = 200;
    let idle = idle_connection_heap(conns);
    println!(
        "\nheap held per idle keep-alive connection ({conns} connections, one request each): {:.0} bytes",
        idle.bytes
    );
    for (size, count) in idle.by_size {
        println!("  {count:>5.2} × {size} B");
    }
}
