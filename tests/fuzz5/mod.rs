//! The parts of `tests/mqtt5_fuzz.rs`: the cases (`gen`), what the
//! specification says of some of them (`spec`), and a live broker fed
//! with them (`live`).

pub mod gen;
pub mod live;
pub mod spec;
