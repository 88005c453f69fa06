//! hookgate: a receiver-side webhook gateway. It terminates the sender's connection,
//! throws away everything that is not a genuine, fresh, well-formed delivery, answers each
//! sender with the status its retry contract expects, and forwards the exact payload to an
//! internal upstream.
//!
//! # Layout
//! - [`config`]: read → parse ([`config::from_yaml`]) → validate into runtime types, with
//!   every error's key path; units and `${VAR}` expansion.
//! - [`pipeline`]: the stages as pure functions (route, method, client IP, allowlist,
//!   rate limit, size) and the one [`pipeline::Reject`] type.
//! - [`verify`]: signature schemes (the generic HMAC verifier, its compiled template) and
//!   the preset table.
//! - [`handshake`]: the endpoint-ownership challenges senders make, answered here.
//! - [`forward`]: header rewriting, upstream path and status mapping (pure functions).
//! - [`upstream`]: the HTTP/1.1 upstream client and its keep-alive pools.
//! - [`h1`]: the HTTP/1.1 server (request loop, body, response) and its codec;
//!   [`listener`]: accept, admission, TLS, protocol choice, deadlines, drain.
//! - [`server`]: the listener, the outer and inner request handler, graceful drain.
//! - [`admin`]: `/healthz` and `/readyz` on their own port.
//! - [`log`]: tracing setup and the access-log line.
//! - [`cli`]: the command line; [`sign`]: signed test deliveries for any route;
//!   [`sink`]: a minimal upstream for demos and benchmarks.
//! - [`net`]: CIDR sets.

// The crate's docs are for its developers (`cargo doc --document-private-items`):
// public items may point at the private ones that do their work.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod answer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fields;
pub mod forward;
pub mod fuzzing;
pub mod h1;
pub mod handshake;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod queue;
pub mod reload;
pub mod server;
pub mod sharded;
pub mod sign;
pub mod sink;
pub mod store;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod verify;
