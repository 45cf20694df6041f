//! Runtime configuration of the flow pipeline (timeouts) with documented defaults.
use std::time::Duration;

/// When a flow is considered finished and exported as a [`crate::record::FlowRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// No packet for this long: the flow ends (default 60 s, Suricata's TCP new/closed timeout).
    pub idle: Duration,
    /// A flow older than this is exported and restarted (default 1800 s, nfstream's default).
    pub active: Duration,
    /// After the first FIN/RST, wait this long for the closing packets (default 5 s).
    pub closed_linger: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60),
            active: Duration::from_secs(1800),
            closed_linger: Duration::from_secs(5),
        }
    }
}
