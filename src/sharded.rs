//! Counters the request path adds to on every request, split per thread. A single
//! atomic shared by every worker moves its cache line between cores on each add (and
//! `prometheus-client`'s histogram takes a lock per observation); here each thread adds
//! to its own cache-line-sized shard and a reader (a scrape, the shutdown log) sums
//! them. Threads get shards round-robin on first use; with more threads than shards
//! some share one, which is still correct.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Atomic;
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const SHARDS: usize = 16;

/// This thread's shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    MINE.with(|m| *m)
}

/// Two cache lines, so that the adjacent-line prefetcher does not pair shards either.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// A `u64` counter in shards (a `prometheus-client` counter's storage).
#[derive(Debug, Default)]
pub struct ShardedU64([Padded<AtomicU64>; SHARDS]);

impl Atomic<u64> for ShardedU64 {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    /// Returns the previous value of this thread's shard, not the sum.
    fn inc_by(&self, v: u64) -> u64 {
        self.0[shard()].0.fetch_add(v, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |s, c| s.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

/// A level (requests in flight): up on one thread, down on another if need be.
#[derive(Debug, Default)]
pub struct ShardedLevel([Padded<AtomicI64>; SHARDS]);

impl ShardedLevel {
    pub fn add(&self, v: i64) {
        self.0[shard()].0.fetch_add(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// Up to this many bucket bounds (the latency histogram has 14).
const MAX_BUCKETS: usize = 14;

#[derive(Debug, Default)]
struct HistShard {
    count: AtomicU64,
    sum_nanos: AtomicU64,
    /// One per bound, and one past the last (`+Inf`).
    buckets: [AtomicU64; MAX_BUCKETS + 1],
}

/// A histogram of durations in shards, exposed as a Prometheus histogram in seconds
/// (what `prometheus-client`'s `Histogram` exposes, without its lock). Clones share it.
#[derive(Debug, Clone)]
pub struct ShardedHistogram(Arc<Hist>);

#[derive(Debug)]
struct Hist {
    bounds: Vec<f64>,
    shards: [Padded<HistShard>; SHARDS],
}

impl ShardedHistogram {
    /// `bounds`: the buckets' upper bounds in seconds, ascending, at most 14.
    pub fn new(bounds: &[f64]) -> ShardedHistogram {
        assert!(bounds.len() <= MAX_BUCKETS && bounds.windows(2).all(|w| w[0] < w[1]));
        ShardedHistogram(Arc::new(Hist {
            bounds: bounds.to_vec(),
            shards: Default::default(),
        }))
    }

    pub fn observe(&self, took: std::time::Duration) {
        let s = &self.0.shards[shard()].0;
        s.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        s.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let i = self.0.bounds.iter().position(|&b| secs <= b);
        s.buckets[i.unwrap_or(self.0.bounds.len())].fetch_add(1, Ordering::Relaxed);
    }

    /// Sum (seconds), count, and each bucket's own count (not cumulative), summed over
    /// the shards; the last bucket, bounded by `f64::MAX`, is the encoder's `+Inf`.
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let (mut nanos, mut count) = (0u64, 0u64);
        let bounds = self.0.bounds.iter().copied().chain([f64::MAX]);
        let mut buckets: Vec<(f64, u64)> = bounds.map(|b| (b, 0)).collect();
        for s in self.0.shards.iter() {
            count = count.wrapping_add(s.0.count.load(Ordering::Relaxed));
            nanos = nanos.wrapping_add(s.0.sum_nanos.load(Ordering::Relaxed));
            for (b, c) in buckets.iter_mut().zip(&s.0.buckets) {
                b.1 += c.load(Ordering::Relaxed);
            }
        }
        (nanos as f64 / 1e9, count, buckets)
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn adds_from_many_threads_sum_up() {
        let c = std::sync::Arc::new(ShardedU64::default());
        let level = std::sync::Arc::new(ShardedLevel::default());
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let (c, level) = (c.clone(), level.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                        level.add(1);
                    }
                    level.add(-500);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 20 threads on 16 shards: some share one, and nothing is lost.
        assert_eq!(c.get(), 20_000);
        assert_eq!(level.get(), 10_000);
        // Down on another thread than up.
        std::thread::spawn({
            let level = level.clone();
            move || level.add(-10_000)
        })
        .join()
        .unwrap();
        assert_eq!(level.get(), 0);
    }

    #[test]
    fn the_histogram_buckets_and_sums_in_seconds() {
        let h = ShardedHistogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on a bound: that bucket
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(2)); // over every bound: +Inf
        let (sum, count, buckets) = h.get();
        assert_eq!(count, 4);
        assert!((sum - 2.0515).abs() < 1e-9, "{sum}");
        assert_eq!(buckets, [(0.001, 2), (0.01, 0), (0.1, 1), (f64::MAX, 1)]);
    }
}
