//! MQTT 3.1.1: packets on the wire and topic rules, shared by the reference
//! broker and the load harness.
//!
//! QoS 2 handshakes (PUBREC/PUBREL/PUBCOMP) are outside the model: a
//! PUBLISH at QoS 2 decodes, the packets of its handshake are refused.

pub mod packet;
pub mod topic;

pub use packet::{decode, read_frame, read_packet, Frame, Packet, PacketError};
pub use topic::{matches, valid_filter, valid_topic};
