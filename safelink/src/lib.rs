//! SafeLink userspace: the sensor daemon, the offline replay path and their shared record types.
//!
//! Data flow: [`capture`] (XDP program, ring buffer, idle-flow sweeper) and [`replay`] (pcap
//! files through the same parser and feature code) both produce [`record::Record`] values.
pub mod alert;
pub mod ann;
pub mod api;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod expiry;
pub mod learn;
pub mod privacy;
pub mod record;
pub mod replay;
pub mod store;
pub mod table;
pub mod telemetry;
