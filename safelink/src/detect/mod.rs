//! Detection: rule automata over the sensor's record stream ([`dfa`]) and the benchmark of
//! them ([`bench`]). The ANN classifier (`detect::ann`) comes later and shares the alert type.
pub mod bench;
pub mod dfa;
