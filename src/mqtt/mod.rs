//! MQTT 3.1.1: packets on the wire and topic rules, shared by the reference
//! broker and the load harness.

mod packet;
pub mod topic;

pub use packet::{read_packet, Packet, PacketError};
