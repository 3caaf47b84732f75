//! MQTT 3.1.1: packets on the wire and topic rules, shared by the reference
//! broker and the load harness.
//! Every control packet of 3.1.1 is in the model, wills and the QoS 2
//! handshake (PUBREC/PUBREL/PUBCOMP) included.

pub mod packet;
pub mod topic;

pub use packet::{decode, read_frame, read_packet, Frame, Packet, PacketError, Will};
pub use topic::{matches, valid_filter, valid_topic};
