//! The durable store behind `delivery: queued`: one SQLite file in WAL mode, owned by one
//! thread. Callers send it operations over a channel; it takes every operation waiting
//! (up to a batch), runs the writes in one transaction, commits, and only then answers
//! each caller. Concurrent accepts therefore share a commit (group commit), and the 200
//! a sender gets always comes after the commit that holds its delivery. A failed commit
//! fails every operation of its batch; nothing is half-written.
//!
//! A delivery is `pending` until it is delivered (`done`) or given up (`dead`, the
//! dead-letter list). Attempts in progress are not stored: after a crash they are simply
//! pending again, which is what at-least-once delivery means.

use crate::config::StoreSettings;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Operations taken into one transaction at most.
const MAX_BATCH: usize = 512;

/// A delivery to store: everything needed to forward it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub route: String,
    /// The sender's delivery id, if the route's scheme has one.
    pub delivery_id: Option<Vec<u8>>,
    /// The request's query string, appended to the upstream's path.
    pub query: Option<String>,
    /// The request's header fields, `name: value\r\n` each (validated when received).
    pub headers: Vec<u8>,
    pub peer: String,
    pub peer_trusted: bool,
    pub tls: bool,
    pub original_host: Option<Vec<u8>>,
    pub request_id: String,
    pub body: Bytes,
}

/// Where a stored delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Done,
    Dead,
}

impl State {
    fn from_code(c: i64) -> State {
        match c {
            1 => State::Done,
            2 => State::Dead,
            _ => State::Pending,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Dead => "dead",
        }
    }
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub delivery: NewDelivery,
    /// Arrival, in milliseconds since the Unix epoch.
    pub received_ms: i64,
    pub state: State,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        status: u16,
    },
    Retry {
        at_ms: i64,
        status: Option<u16>,
        error: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// Counts per route.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteStats {
    pub route: String,
    pub pending: u64,
    pub dead: u64,
    pub done: u64,
    /// Arrival of the oldest pending delivery (ms since the epoch), if any.
    pub oldest_pending_ms: Option<i64>,
}

/// Why the store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `max_bytes` or `max_deliveries` reached.
    Full,
    /// SQLite failed (disk, I/O, corruption) or the store thread is gone.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Full => f.write_str("the store is full"),
            StoreError::Unavailable(e) => write!(f, "the store is unavailable: {e}"),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Which dead deliveries an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    One(i64),
    /// Every dead delivery, or only a route's, or only those dead for longer than
    /// `older_than` (measured on this process's clock when the operation runs).
    All {
        route: Option<String>,
        older_than: Option<std::time::Duration>,
    },
}

impl Select {
    /// Every dead delivery (of `route`, if given), whatever its age.
    pub fn all(route: Option<String>) -> Self {
        Select::All {
            route,
            older_than: None,
        }
    }
}

/// The `finished_ms` a dead delivery must be below for `older_than` (None: any).
fn died_before(older_than: Option<std::time::Duration>, now: i64) -> Option<i64> {
    older_than.map(|d| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

enum Op {
    Enqueue(Box<NewDelivery>, Reply<i64>),
    Record(i64, Outcome, Reply<()>),
    Oldest {
        route: String,
        limit: usize,
        exclude: Vec<i64>,
        reply: Reply<Vec<Stored>>,
    },
    Get(i64, Reply<Option<Stored>>),
    Stats(Reply<Vec<RouteStats>>),
    ListDead(Option<String>, usize, Reply<Vec<Stored>>),
    Replay(Select, Reply<u64>),
    Purge(Select, Reply<u64>),
    Sweep(i64, Reply<u64>),
}

/// A handle on the store thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
    /// A random id made when the file was created: with a row id it names a delivery
    /// uniquely even across stores (`X-Hookgate-Delivery-Id`).
    pub instance: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("instance", &self.instance)
            .finish()
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    delivery_id BLOB,
    query TEXT,
    headers BLOB NOT NULL,
    peer TEXT NOT NULL,
    peer_trusted INTEGER NOT NULL,
    tls INTEGER NOT NULL,
    original_host BLOB,
    request_id TEXT NOT NULL,
    body BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    finished_ms INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (route, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (state, finished_ms);
";

const COLUMNS: &str =
    "id, route, delivery_id, query, headers, peer, peer_trusted, tls, original_host, \
     request_id, body, received_ms, state, attempts, next_attempt_ms, last_status, last_error";

impl Store {
    /// Opens (or creates) the store and starts its thread.
    pub fn open(settings: &StoreSettings) -> Result<Store, String> {
        let path = &settings.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
        let instance = init(&conn, settings)
            .map_err(|e| format!("cannot prepare the store {}: {e}", path.display()))?;
        let undelivered = count_undelivered(&conn)
            .map_err(|e| format!("cannot read the store {}: {e}", path.display()))?;
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker {
            conn,
            settings: settings.clone(),
            undelivered,
        };
        std::thread::Builder::new()
            .name("hookgate-store".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| format!("cannot start the store thread: {e}"))?;
        Ok(Store { tx, instance })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?
    }

    /// Stores a delivery durably: resolves after the commit that holds it.
    pub async fn enqueue(&self, d: NewDelivery) -> Result<i64, StoreError> {
        self.call(|r| Op::Enqueue(Box::new(d), r)).await
    }

    /// Records an attempt's outcome.
    pub async fn record(&self, id: i64, outcome: Outcome) -> Result<(), StoreError> {
        self.call(|r| Op::Record(id, outcome, r)).await
    }

    /// The oldest pending deliveries of `route`, leaving out `exclude` (those in flight).
    pub async fn oldest(
        &self,
        route: &str,
        limit: usize,
        exclude: Vec<i64>,
    ) -> Result<Vec<Stored>, StoreError> {
        let route = route.to_string();
        self.call(|reply| Op::Oldest {
            route,
            limit,
            exclude,
            reply,
        })
        .await
    }

    pub async fn get(&self, id: i64) -> Result<Option<Stored>, StoreError> {
        self.call(|r| Op::Get(id, r)).await
    }

    pub async fn stats(&self) -> Result<Vec<RouteStats>, StoreError> {
        self.call(Op::Stats).await
    }

    /// Dead deliveries, oldest first, at most `limit`.
    pub async fn list_dead(
        &self,
        route: Option<String>,
        limit: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        self.call(|r| Op::ListDead(route, limit, r)).await
    }

    /// Makes dead deliveries pending again (attempts reset); returns how many.
    pub async fn replay(&self, which: Select) -> Result<u64, StoreError> {
        self.call(|r| Op::Replay(which, r)).await
    }

    /// Deletes dead deliveries; returns how many.
    pub async fn purge(&self, which: Select) -> Result<u64, StoreError> {
        self.call(|r| Op::Purge(which, r)).await
    }

    /// Deletes delivered rows finished before `before_ms`; returns how many.
    pub async fn sweep(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.call(|r| Op::Sweep(before_ms, r)).await
    }
}

fn init(conn: &Connection, s: &StoreSettings) -> rusqlite::Result<String> {
    // WAL: readers never block the writer; the synchronous level decides durability.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", s.synchronous.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match existing {
        Some(i) => Ok(i),
        None => {
            let instance = random_hex();
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('instance', ?1)",
                params![instance],
            )?;
            Ok(instance)
        }
    }
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

struct Worker {
    conn: Connection,
    settings: StoreSettings,
    /// Pending and dead rows, kept in step with every commit.
    undelivered: u64,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.batch(batch);
        }
    }

    /// Runs a batch in one transaction and answers each operation after the commit.
    fn batch(&mut self, batch: Vec<Op>) {
        // Three PRAGMA reads: only when the batch stores something.
        let full = batch.iter().any(|op| matches!(op, Op::Enqueue(..))) && self.over_size();
        let before = self.undelivered;
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let tx = match self.conn.unchecked_transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for op in batch {
                    fail(op, &msg);
                }
                return;
            }
        };
        for op in batch {
            answers.push(apply(&tx, op, full, &self.settings, &mut self.undelivered));
        }
        match tx.commit() {
            Ok(()) => answers.into_iter().for_each(|a| a(None)),
            Err(e) => {
                self.undelivered = before;
                let msg = e.to_string();
                tracing::error!(error = %msg, "store commit failed; the batch is refused");
                answers.into_iter().for_each(|a| a(Some(&msg)));
            }
        }
    }

    fn over_size(&self) -> bool {
        let pages = |p: &str| -> i64 {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .unwrap_or(0)
        };
        let used = (pages("page_count") - pages("freelist_count")).max(0) * pages("page_size");
        used as u64 >= self.settings.max_bytes
    }
}

/// An operation's answer, sent once the transaction's fate is known (`Some(error)` if
/// the commit failed).
type Answer = Box<dyn FnOnce(Option<&str>)>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |commit_error: Option<&str>| {
        let result = match commit_error {
            Some(e) => Err(StoreError::Unavailable(e.to_string())),
            None => result,
        };
        let _ = reply.send(result);
    })
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn fail(op: Op, msg: &str) {
    let e = StoreError::Unavailable(msg.to_string());
    match op {
        Op::Enqueue(_, r) => drop(r.send(Err(e))),
        Op::Record(_, _, r) => drop(r.send(Err(e))),
        Op::Oldest { reply, .. } => drop(reply.send(Err(e))),
        Op::Get(_, r) => drop(r.send(Err(e))),
        Op::Stats(r) => drop(r.send(Err(e))),
        Op::ListDead(_, _, r) => drop(r.send(Err(e))),
        Op::Replay(_, r) | Op::Purge(_, r) | Op::Sweep(_, r) => drop(r.send(Err(e))),
    }
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    op: Op,
    full: bool,
    settings: &StoreSettings,
    undelivered: &mut u64,
) -> Answer {
    match op {
        Op::Enqueue(d, reply) => {
            let result = if full || *undelivered >= settings.max_deliveries {
                Err(StoreError::Full)
            } else {
                insert(tx, &d).map_err(unavailable)
            };
            if result.is_ok() {
                *undelivered += 1;
            }
            answer(reply, result)
        }
        Op::Record(id, outcome, reply) => {
            let result = record(tx, id, &outcome).map_err(unavailable);
            if let (Ok(true), Outcome::Done { .. }) = (&result, &outcome) {
                *undelivered = undelivered.saturating_sub(1);
            }
            answer(reply, result.map(|_| ()))
        }
        Op::Oldest {
            route,
            limit,
            exclude,
            reply,
        } => answer(
            reply,
            oldest(tx, &route, limit, &exclude).map_err(unavailable),
        ),
        Op::Get(id, reply) => answer(reply, get(tx, id).map_err(unavailable)),
        Op::Stats(reply) => answer(reply, stats(tx).map_err(unavailable)),
        Op::ListDead(route, limit, reply) => answer(
            reply,
            list_dead(tx, route.as_deref(), limit).map_err(unavailable),
        ),
        Op::Replay(which, reply) => answer(reply, replay(tx, &which).map_err(unavailable)),
        Op::Purge(which, reply) => {
            let result = purge(tx, &which).map_err(unavailable);
            if let Ok(n) = result {
                *undelivered = undelivered.saturating_sub(n);
            }
            answer(reply, result)
        }
        Op::Sweep(before, reply) => {
            let result = tx
                .execute(
                    "DELETE FROM deliveries WHERE state = 1 AND finished_ms < ?1",
                    params![before],
                )
                .map(|n| n as u64);
            // The periodic sweep also counts the undelivered rows again, so that rows
            // another process changed in the file (`hookgate dlq purge|replay --store`
            // on a gateway without an admin listener) count within a sweep interval.
            let result = result.and_then(|n| {
                *undelivered = count_undelivered(tx)?;
                Ok(n)
            });
            answer(reply, result.map_err(unavailable))
        }
    }
}

/// Rows not yet delivered (pending, in flight or dead): what `max_deliveries` caps.
fn count_undelivered(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM deliveries WHERE state != 1",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

fn insert(tx: &rusqlite::Transaction<'_>, d: &NewDelivery) -> rusqlite::Result<i64> {
    let now = now_ms();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO deliveries (route, delivery_id, query, headers, peer, peer_trusted, tls, \
         original_host, request_id, body, received_ms, next_attempt_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )?;
    stmt.execute(params![
        d.route,
        d.delivery_id,
        d.query,
        d.headers,
        d.peer,
        d.peer_trusted,
        d.tls,
        d.original_host,
        d.request_id,
        &d.body[..],
        now,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Returns whether a pending row was updated.
fn record(tx: &rusqlite::Transaction<'_>, id: i64, o: &Outcome) -> rusqlite::Result<bool> {
    let now = now_ms();
    let n = match o {
        Outcome::Done { status } => tx.execute(
            "UPDATE deliveries SET state = 1, attempts = attempts + 1, last_status = ?2, \
             last_error = NULL, finished_ms = ?3 WHERE id = ?1 AND state = 0",
            params![id, status, now],
        )?,
        Outcome::Retry {
            at_ms,
            status,
            error,
        } => tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_ms = ?2, \
             last_status = ?3, last_error = ?4 WHERE id = ?1 AND state = 0",
            params![id, at_ms, status, error],
        )?,
        Outcome::Dead { status, error } => tx.execute(
            "UPDATE deliveries SET state = 2, attempts = attempts + 1, last_status = ?2, \
             last_error = ?3, finished_ms = ?4 WHERE id = ?1 AND state = 0",
            params![id, status, error, now],
        )?,
    };
    Ok(n > 0)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    let body: Vec<u8> = r.get(10)?;
    Ok(Stored {
        id: r.get(0)?,
        delivery: NewDelivery {
            route: r.get(1)?,
            delivery_id: r.get(2)?,
            query: r.get(3)?,
            headers: r.get(4)?,
            peer: r.get(5)?,
            peer_trusted: r.get(6)?,
            tls: r.get(7)?,
            original_host: r.get(8)?,
            request_id: r.get(9)?,
            body: Bytes::from(body),
        },
        received_ms: r.get(11)?,
        state: State::from_code(r.get(12)?),
        attempts: r.get::<_, i64>(13)?.max(0) as u32,
        next_attempt_ms: r.get(14)?,
        last_status: r.get::<_, Option<i64>>(15)?.map(|s| s as u16),
        last_error: r.get(16)?,
    })
}

fn oldest(
    tx: &rusqlite::Transaction<'_>,
    route: &str,
    limit: usize,
    exclude: &[i64],
) -> rusqlite::Result<Vec<Stored>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE route = ?1 AND state = 0 ORDER BY id LIMIT ?2"
    ))?;
    // In-flight rows are few (the route's concurrency): fetch that many more and skip them.
    let rows = stmt.query_map(params![route, (limit + exclude.len()) as i64], row)?;
    let mut out = Vec::with_capacity(limit);
    for r in rows {
        let r = r?;
        if !exclude.contains(&r.id) {
            out.push(r);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

fn get(tx: &rusqlite::Transaction<'_>, id: i64) -> rusqlite::Result<Option<Stored>> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"),
        params![id],
        row,
    )
    .optional()
}

fn stats(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Vec<RouteStats>> {
    let mut stmt = tx.prepare_cached(
        "SELECT route, \
         sum(state = 0), sum(state = 2), sum(state = 1), min(CASE WHEN state = 0 THEN received_ms END) \
         FROM deliveries GROUP BY route ORDER BY route",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(RouteStats {
            route: r.get(0)?,
            pending: r.get::<_, i64>(1)?.max(0) as u64,
            dead: r.get::<_, i64>(2)?.max(0) as u64,
            done: r.get::<_, i64>(3)?.max(0) as u64,
            oldest_pending_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

fn list_dead(
    tx: &rusqlite::Transaction<'_>,
    route: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Stored>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE state = 2 AND (?1 IS NULL OR route = ?1) \
         ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![route, limit as i64], row)?;
    rows.collect()
}

fn replay(tx: &rusqlite::Transaction<'_>, which: &Select) -> rusqlite::Result<u64> {
    let now = now_ms();
    let set = "state = 0, attempts = 0, next_attempt_ms = ?1, finished_ms = NULL";
    let n = match which {
        Select::One(id) => tx.execute(
            &format!("UPDATE deliveries SET {set} WHERE state = 2 AND id = ?2"),
            params![now, id],
        )?,
        Select::All { route, older_than } => tx.execute(
            &format!(
                "UPDATE deliveries SET {set} WHERE state = 2 AND (?2 IS NULL OR route = ?2) \
                 AND (?3 IS NULL OR finished_ms < ?3)"
            ),
            params![now, route, died_before(*older_than, now)],
        )?,
    };
    Ok(n as u64)
}

fn purge(tx: &rusqlite::Transaction<'_>, which: &Select) -> rusqlite::Result<u64> {
    let n = match which {
        Select::One(id) => tx.execute(
            "DELETE FROM deliveries WHERE state = 2 AND id = ?1",
            params![id],
        )?,
        Select::All { route, older_than } => tx.execute(
            "DELETE FROM deliveries WHERE state = 2 AND (?1 IS NULL OR route = ?1) \
             AND (?2 IS NULL OR finished_ms < ?2)",
            params![route, died_before(*older_than, now_ms())],
        )?,
    };
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use std::time::Duration;

    pub(crate) fn settings(tag: &str) -> (StoreSettings, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "hookgate-store-{tag}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        (
            StoreSettings {
                path: dir.join("q.db"),
                synchronous: Synchronous::Normal,
                max_bytes: 1 << 30,
                max_deliveries: 1000,
                retain: Duration::from_secs(3600),
            },
            dir,
        )
    }

    fn delivery(route: &str, body: &'static [u8]) -> NewDelivery {
        NewDelivery {
            route: route.into(),
            delivery_id: Some(b"evt-1".to_vec()),
            query: Some("a=1".into()),
            headers: b"content-type: application/json\r\n".to_vec(),
            peer: "192.0.2.1".into(),
            peer_trusted: false,
            tls: true,
            original_host: Some(b"hooks.example.com".to_vec()),
            request_id: "req-1".into(),
            body: Bytes::from_static(body),
        }
    }

    #[tokio::test]
    async fn deliveries_survive_a_reopen_and_move_through_their_states() {
        let (s, dir) = settings("states");
        let store = Store::open(&s).unwrap();
        let a = store.enqueue(delivery("r", b"\x00\xffone")).await.unwrap();
        let b = store.enqueue(delivery("r", b"two")).await.unwrap();
        let c = store.enqueue(delivery("other", b"three")).await.unwrap();
        assert!(a < b && b < c);
        let instance = store.instance.clone();
        drop(store);

        let store = Store::open(&s).unwrap();
        assert_eq!(
            store.instance, instance,
            "the instance id is kept in the file"
        );
        let got = store.oldest("r", 10, vec![]).await.unwrap();
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(got[0].delivery, delivery("r", b"\x00\xffone"));
        assert_eq!(got[0].state, State::Pending);
        let got = store.oldest("r", 10, vec![a]).await.unwrap();
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![b]);

        let later = now_ms() + 60_000;
        store
            .record(
                a,
                Outcome::Retry {
                    at_ms: later,
                    status: Some(503),
                    error: "upstream 503".into(),
                },
            )
            .await
            .unwrap();
        let a_row = store.get(a).await.unwrap().unwrap();
        assert_eq!(
            (a_row.attempts, a_row.next_attempt_ms, a_row.last_status),
            (1, later, Some(503))
        );
        store
            .record(b, Outcome::Done { status: 200 })
            .await
            .unwrap();
        store
            .record(
                c,
                Outcome::Dead {
                    status: Some(400),
                    error: "upstream 400".into(),
                },
            )
            .await
            .unwrap();
        // A second outcome for a finished delivery changes nothing.
        store
            .record(
                b,
                Outcome::Dead {
                    status: None,
                    error: "late".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(store.get(b).await.unwrap().unwrap().state, State::Done);

        let stats = store.stats().await.unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(
            (stats[1].route.as_str(), stats[1].pending, stats[1].done),
            ("r", 1, 1)
        );
        assert_eq!((stats[0].route.as_str(), stats[0].dead), ("other", 1));

        let dead = store.list_dead(None, 10).await.unwrap();
        assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), vec![c]);
        assert_eq!(store.replay(Select::One(c)).await.unwrap(), 1);
        let c_row = store.get(c).await.unwrap().unwrap();
        assert_eq!((c_row.state, c_row.attempts), (State::Pending, 0));
        store
            .record(
                c,
                Outcome::Dead {
                    status: None,
                    error: "again".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(store.purge(Select::all(Some("r".into()))).await.unwrap(), 0);
        // Dead for a moment only: an age filter of an hour keeps it, of zero takes it.
        let hour = Select::All {
            route: None,
            older_than: Some(Duration::from_secs(3600)),
        };
        assert_eq!(store.purge(hour.clone()).await.unwrap(), 0);
        assert_eq!(store.replay(hour).await.unwrap(), 0);
        std::thread::sleep(Duration::from_millis(5));
        let zero = Select::All {
            route: None,
            older_than: Some(Duration::ZERO),
        };
        assert_eq!(store.purge(zero).await.unwrap(), 1);
        assert_eq!(store.sweep(now_ms() + 1).await.unwrap(), 1, "the done row");
        assert!(store.get(b).await.unwrap().is_none());
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn concurrent_enqueues_share_commits_and_a_full_store_refuses() {
        let (mut s, dir) = settings("group");
        s.max_deliveries = 150;
        let store = Store::open(&s).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let st = store.clone();
            tasks.push(tokio::spawn(async move {
                st.enqueue(delivery("r", b"x")).await
            }));
        }
        let mut ok = 0;
        let mut full = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Full) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, full), (150, 50));
        // Delivering frees room.
        let first = store.oldest("r", 1, vec![]).await.unwrap()[0].id;
        store
            .record(first, Outcome::Done { status: 200 })
            .await
            .unwrap();
        assert!(store.enqueue(delivery("r", b"y")).await.is_ok());
        assert_eq!(
            store.enqueue(delivery("r", b"z")).await,
            Err(StoreError::Full)
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_sweep_sees_rows_another_process_deleted() {
        let (mut s, dir) = settings("recount");
        s.max_deliveries = 2;
        let store = Store::open(&s).unwrap();
        store.enqueue(delivery("r", b"a")).await.unwrap();
        store.enqueue(delivery("r", b"b")).await.unwrap();
        assert_eq!(
            store.enqueue(delivery("r", b"c")).await,
            Err(StoreError::Full)
        );
        // Another process (the CLI on the file) deletes a row behind the store's back.
        let other = Connection::open(&s.path).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        let gone = other
            .execute(
                "DELETE FROM deliveries WHERE id = (SELECT min(id) FROM deliveries)",
                [],
            )
            .unwrap();
        assert_eq!(gone, 1);
        drop(other);
        // Unseen until the next sweep, which counts again.
        assert_eq!(
            store.enqueue(delivery("r", b"c")).await,
            Err(StoreError::Full)
        );
        assert_eq!(store.sweep(now_ms()).await.unwrap(), 0);
        store.enqueue(delivery("r", b"c")).await.unwrap();
        assert_eq!(
            store.enqueue(delivery("r", b"d")).await,
            Err(StoreError::Full)
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_unusable_path_is_a_clear_error() {
        let (mut s, _) = settings("bad");
        s.path = "/proc/no-such-dir/q.db".into();
        let err = Store::open(&s).unwrap_err();
        assert!(err.contains("/proc/no-such-dir"), "{err}");
    }
}
