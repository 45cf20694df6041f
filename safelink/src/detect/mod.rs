//! Rule-based detection: the automata over the sensor's record stream ([`dfa`], one family
//! per attack kind, listed once in [`dfa::FAMILIES`]) and their benchmark ([`bench`]). The
//! neural flow classifier lives in [`crate::ann`] (its detector, model, training and export
//! together); both raise [`crate::alert::Alert`]s and run side by side in
//! [`crate::pipeline`].
pub mod bench;
pub mod dfa;
