//! ringcast-bench: a thread-per-core fan-out load generator for chat servers,
//! the bare io_uring "ceiling" server it is compared against, and the report
//! that turns run records into tables and charts.
//!
//! # Layout
//! * Generator hot path — [`worker`] (one thread: epoll, sockets, schedule),
//!   [`net`] (syscall wrappers), [`wsframe`] (RFC 6455 client side),
//!   [`target`] (join/publish/receive per system) with [`resp`] and [`nats`],
//!   [`scan`] (the payload stamp and its byte scan).
//! * Measurement — [`sched`] (open-loop schedule), [`track`] (loss, duplicate
//!   and order per stream), [`stats`] (histograms, counters),
//!   [`procstat`] (`/proc` and `getrusage`).
//! * Coordination — [`control`] (shared state), [`run`] (connect ramp, steps,
//!   find-max, overload), [`record`] (the JSON record and the summary).
//! * [`pause`] — stopping the server at set moments of the window (paused runs).
//! * [`placement`] — ringcast room names homed on a chosen shard (cross-shard runs).
//! * [`token`] — JWT connection tokens, made before the connect phase.
//! * [`broker`] — what a cluster's shared Redis did in a window (`INFO commandstats`).
//! * [`ceiling`] — the bare io_uring server; [`report`] — matrix tables and SVG charts.
//! * [`subscriber`] — the counting RESP subscriber of `resp-publish`.
//!
//! # Design
//! The generator must cost less per frame than the servers it measures, so
//! the receive path reads 64 KiB at a time from edge-triggered sockets,
//! parses frames in place and finds three integers with one substring search;
//! nothing on it allocates or parses JSON. Latency is measured from the
//! *scheduled* send time that travels in the payload (no coordinated
//! omission), and loss is counted per publisher stream, so it works the same
//! for servers with and without sequence numbers.
#![warn(missing_docs, unreachable_pub)]

pub mod broker;
pub mod ceiling;
pub mod clock;
pub mod control;
pub mod nats;
pub mod net;
pub mod pause;
pub mod placement;
pub mod procstat;
pub mod record;
pub mod report;
pub mod resp;
pub mod run;
pub mod scan;
pub mod sched;
pub mod stalls;
pub mod stats;
pub mod subscriber;
pub mod target;
pub mod token;
pub mod track;
pub mod worker;
pub mod wsframe;
