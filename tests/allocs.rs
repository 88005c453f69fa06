//! Heap allocations per request stay within bounds: the request path allocates only what
//! a request needs (its buffer, its body, its answer), never what load time could have
//! done (issue #3). The harness (tests/alloc_harness) counts every allocation the
//! process makes while one keep-alive sender's requests go through an in-process
//! gateway to a real upstream on 127.0.0.1; the sender and the upstream allocate nothing
//! per request. `cargo bench --bench allocs` prints the same figures from a release
//! build.
//!
//! The bounds are today's counts (debug build) plus about two: adding an allocation
//! per request to any of these paths fails here, with the figures printed.

mod alloc_harness;

use alloc_harness::{measure_all, Counting, Kind};

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn allocations_per_request_stay_within_bounds() {
    let figures = measure_all(500, 2_000);
    let mut report = String::new();
    for (kind, f) in &figures {
        report += &format!(
            "{:<36} {:>6.2} allocations, {:>8.0} bytes per request\n",
            kind.label(),
            f.allocs,
            f.bytes
        );
    }
    eprint!("{report}");
    for (kind, f) in &figures {
        let bound = match kind {
            Kind::Forwarded => 8.0,
            Kind::Forged => 6.0,
            Kind::Unsigned => 8.0,
        };
        assert!(
            f.allocs <= bound,
            "{}: {:.2} allocations per request, bound {bound}\n{report}",
            kind.label(),
            f.allocs
        );
    }
}
