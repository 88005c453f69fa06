//! Replay protection: a bounded, expiring set of delivery ids per route. A delivery id
//! is *in flight* from the moment its first copy passes verification until the forward
//! ends; then it is *done* for the route's window if the upstream accepted it, and
//! forgotten if not, so that the sender's retry goes through. A copy that arrives while
//! the first is in flight is refused with a retryable status, so it is never forwarded
//! twice. Memory is bounded by `max_entries` (oldest go first); every operation is O(1)
//! amortised (a hash map plus an insertion-ordered queue with generation checks).

use super::Reject;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default bound on remembered ids per route.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The most of an id we keep (longer ids are compared by this prefix and their length).
const MAX_ID: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done { until: Instant },
}

#[derive(Debug)]
struct Entry {
    state: State,
    generation: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Box<[u8]>, Entry>,
    /// Ids in insertion order, with the generation they were inserted at; an item whose
    /// generation no longer matches the map's is stale and skipped.
    order: VecDeque<(Box<[u8]>, u64)>,
    next_generation: u64,
}

/// One route's remembered delivery ids.
#[derive(Debug)]
pub struct DedupStore {
    inner: Mutex<Inner>,
    window: Duration,
    max_entries: usize,
}

/// What a delivery id's arrival means.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time (or forgotten): go ahead; settle the ticket when the forward ends.
    New,
    /// Already accepted within the window: answer 200, forward nothing.
    Done,
    /// The first copy is being forwarded right now.
    InFlight,
}

fn key(id: &[u8]) -> Box<[u8]> {
    if id.len() <= MAX_ID {
        id.into()
    } else {
        let mut k = id[..MAX_ID].to_vec();
        k.extend_from_slice(&(id.len() as u64).to_le_bytes());
        k.into()
    }
}

impl DedupStore {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        DedupStore {
            inner: Mutex::new(Inner::default()),
            window,
            max_entries: max_entries.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the arrival of `id` at `now`.
    pub fn arrive(&self, id: &[u8], now: Instant) -> Seen {
        let Ok(mut inner) = self.inner.lock() else {
            return Seen::New;
        };
        let k = key(id);
        if let Some(e) = inner.map.get(&k) {
            match e.state {
                State::InFlight => return Seen::InFlight,
                State::Done { until } if until > now => return Seen::Done,
                State::Done { .. } => {}
            }
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.map.insert(
            k.clone(),
            Entry {
                state: State::InFlight,
                generation,
            },
        );
        inner.order.push_back((k, generation));
        self.evict(&mut inner, now);
        Seen::New
    }

    /// The forward of `id` was accepted: remember it for the window.
    pub fn accept(&self, id: &[u8], now: Instant) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(e) = inner.map.get_mut(&key(id)) {
                e.state = State::Done {
                    until: now + self.window,
                };
            }
        }
    }

    /// The forward of `id` failed (or was abandoned): forget it, so a retry goes through.
    pub fn forget(&self, id: &[u8]) {
        if let Ok(mut inner) = self.inner.lock() {
            let k = key(id);
            if matches!(
                inner.map.get(&k),
                Some(Entry {
                    state: State::InFlight,
                    ..
                })
            ) {
                inner.map.remove(&k);
            }
        }
    }

    /// Drops the oldest entries beyond the bound, and expired ones at the front. An id
    /// in flight is never dropped (that would let its duplicate through): it goes to the
    /// back of the queue instead; there are at most as many as requests in flight.
    fn evict(&self, inner: &mut Inner, now: Instant) {
        let mut rotations = inner.order.len();
        while let Some((k, generation)) = inner.order.front() {
            let live = match inner.map.get(k) {
                Some(e) if e.generation == *generation => Some(e.state),
                _ => None,
            };
            let over = inner.map.len() > self.max_entries;
            let drop = match live {
                None => true, // stale queue item
                Some(State::InFlight) if over && rotations > 0 => {
                    rotations -= 1;
                    let item = inner.order.pop_front().expect("front exists");
                    inner.order.push_back(item);
                    continue;
                }
                Some(State::InFlight) => false,
                Some(_) if over => true,
                Some(State::Done { until }) => until <= now,
            };
            if !drop {
                break;
            }
            let (k, generation) = inner.order.pop_front().expect("front exists");
            if inner
                .map
                .get(&k)
                .is_some_and(|e| e.generation == generation)
            {
                inner.map.remove(&k);
            }
        }
        // Stale items (forgotten ids) could still pile up behind a live front entry;
        // compact when the queue is much longer than the map.
        if inner.order.len() > 2 * inner.map.len() + 1024 {
            let map = &inner.map;
            inner
                .order
                .retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

/// A delivery in flight; unless accepted, dropping it forgets the id (a failed or
/// abandoned forward must not block the sender's retry).
pub struct Ticket {
    store: Arc<DedupStore>,
    id: Box<[u8]>,
    settled: bool,
}

impl Ticket {
    /// Registers `id`; `Err` is the answer for a duplicate.
    pub fn take(store: &Arc<DedupStore>, id: &[u8], now: Instant) -> Result<Ticket, Reject> {
        match store.arrive(id, now) {
            Seen::New => Ok(Ticket {
                store: store.clone(),
                id: id.into(),
                settled: false,
            }),
            Seen::Done => Err(Reject::Duplicate),
            Seen::InFlight => Err(Reject::DuplicateInFlight),
        }
    }

    /// The upstream accepted the delivery.
    pub fn accept(mut self, now: Instant) {
        self.store.accept(&self.id, now);
        self.settled = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.store.forget(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    #[test]
    fn done_in_flight_and_forgotten() {
        let s = Arc::new(DedupStore::new(W, 10));
        let t0 = Instant::now();
        let t = Ticket::take(&s, b"evt-1", t0).unwrap();
        assert_eq!(
            Ticket::take(&s, b"evt-1", t0).err(),
            Some(Reject::DuplicateInFlight)
        );
        t.accept(t0);
        assert_eq!(
            Ticket::take(&s, b"evt-1", t0 + Duration::from_secs(59)).err(),
            Some(Reject::Duplicate)
        );
        // After the window it is new again.
        assert!(Ticket::take(&s, b"evt-1", t0 + Duration::from_secs(61)).is_ok());
        // A failed forward (ticket dropped unsettled) is forgotten at once.
        let t = Ticket::take(&s, b"evt-2", t0).unwrap();
        drop(t);
        assert!(Ticket::take(&s, b"evt-2", t0).is_ok());
    }

    #[test]
    fn bounded_oldest_first() {
        let s = Arc::new(DedupStore::new(W, 3));
        let t0 = Instant::now();
        for id in [b"a", b"b", b"c", b"d"] {
            Ticket::take(&s, id, t0).unwrap().accept(t0);
        }
        assert_eq!(s.len(), 3);
        assert!(Ticket::take(&s, b"a", t0).is_ok(), "the oldest went first");
        assert_eq!(Ticket::take(&s, b"d", t0).err(), Some(Reject::Duplicate));
    }

    #[test]
    fn ids_in_flight_are_never_evicted() {
        let s = Arc::new(DedupStore::new(W, 2));
        let t0 = Instant::now();
        let first = Ticket::take(&s, b"slow", t0).unwrap();
        for id in [b"a", b"b", b"c"] {
            Ticket::take(&s, id, t0).unwrap().accept(t0);
        }
        assert_eq!(
            Ticket::take(&s, b"slow", t0).err(),
            Some(Reject::DuplicateInFlight)
        );
        first.accept(t0);
        assert_eq!(Ticket::take(&s, b"slow", t0).err(), Some(Reject::Duplicate));
    }

    #[test]
    fn expired_entries_leave_and_stale_items_do_not_pile_up() {
        let s = Arc::new(DedupStore::new(Duration::from_secs(1), 1_000_000));
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            Ticket::take(&s, &i.to_le_bytes(), t0).unwrap().accept(t0);
        }
        // One arrival after the window sweeps the expired front.
        Ticket::take(&s, b"late", t0 + Duration::from_secs(2))
            .unwrap()
            .accept(t0);
        assert_eq!(s.len(), 1);
        // Forgotten ids leave queue items behind; compaction keeps them bounded.
        for i in 0..50_000u32 {
            drop(Ticket::take(&s, &i.to_be_bytes(), t0).unwrap());
        }
        let inner = s.inner.lock().unwrap();
        assert!(
            inner.order.len() <= 2 * inner.map.len() + 1025,
            "{}",
            inner.order.len()
        );
    }

    #[test]
    fn long_ids_are_bounded() {
        let s = Arc::new(DedupStore::new(W, 10));
        let t0 = Instant::now();
        let long = vec![b'x'; 10_000];
        Ticket::take(&s, &long, t0).unwrap().accept(t0);
        assert_eq!(Ticket::take(&s, &long, t0).err(), Some(Reject::Duplicate));
        let mut other = long.clone();
        other.push(b'y');
        assert!(
            Ticket::take(&s, &other, t0).is_ok(),
            "length is part of the key"
        );
    }
}
