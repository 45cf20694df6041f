//! SafeLink userspace: the sensor daemon, the offline replay path and their shared record types.
//!
//! Data flow, one way: [`capture`] (XDP program, ring buffer, idle-flow sweeper) and [`replay`]
//! (pcap files through the same parser and feature code) both produce [`record::Record`]
//! values; the [`pipeline`] takes them through the rule automata ([`detect`]) and the ANN
//! ([`ann`]) to [`alert`]s in the [`store`] and labelled samples for the learner ([`learn`]).
//! The [`daemon`] drives it live, `safelink analyze` and `learn ingest` from replay.
pub mod alert;
pub mod ann;
pub mod api;
pub mod capture;
pub mod clock;
pub mod config;
pub mod context;
pub mod daemon;
pub mod detect;
pub mod eval;
pub mod expiry;
pub mod fleet;
pub mod learn;
pub mod pipeline;
pub mod privacy;
pub mod record;
pub mod replay;
pub mod shipped;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod tunnel;
