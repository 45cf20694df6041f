//! What a failed login attempt looks like without payload: a TCP session to a login service
//! that completed its handshake, in which both sides spoke, that ended quickly, and in which
//! the server sent little (banner, key exchange or greeting, a few refusals). Shared by
//! [`super::ssh_brute_force`] and [`super::login_brute_force`].
use crate::record::FlowRecord;

use super::{
    classify::{self, TCP},
    config::SessionShape,
};

/// True when `f` looks like one failed login session.
pub fn looks_failed(f: &FlowRecord, shape: &SessionShape) -> bool {
    f.proto == TCP
        && classify::tcp_established(f)
        && f.fwd.flags.psh > 0
        && f.rev.flags.psh > 0
        && classify::duration_s(f) <= shape.max_duration_secs as f64
        && f.rev.bytes <= shape.max_server_bytes
        && f.fwd.packets <= shape.max_client_packets
}

/// Size class of a session (server bytes on a log scale, about 19 % per class): attempts of
/// one brute-force run fall into one or two neighbouring classes.
pub fn size_class(f: &FlowRecord) -> u16 {
    if f.rev.bytes == 0 {
        return 0;
    }
    ((f.rev.bytes as f64).log2() * 4.0) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::dfa::testutil::*;

    #[test]
    fn shapes() {
        let shape = SessionShape::default();
        assert!(looks_failed(
            &session("192.0.2.1", 40000, "192.0.2.2", 22, T0, 4, 3300),
            &shape
        ));
        // Too long, too much from the server, never established.
        assert!(!looks_failed(
            &session("192.0.2.1", 40000, "192.0.2.2", 22, T0, 600, 3300),
            &shape
        ));
        assert!(!looks_failed(
            &session("192.0.2.1", 40000, "192.0.2.2", 22, T0, 4, 200_000),
            &shape
        ));
        assert!(!looks_failed(
            &failed_syn("192.0.2.1", "192.0.2.2", 22, T0),
            &shape
        ));
        let a = session("192.0.2.1", 40000, "192.0.2.2", 21, T0, 2, 739);
        let b = session("192.0.2.1", 40001, "192.0.2.2", 21, T0, 2, 871);
        assert_eq!(size_class(&b) - size_class(&a), 1);
    }
}
