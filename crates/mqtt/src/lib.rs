//! MQTT 3.1, 3.1.1 and 5.0: packets on the wire and topic rules, shared
//! by the reference broker and the load harness.
//! Every control packet of every level is in one model ([`Packet`]):
//! wills, the QoS 2 handshake, and MQTT 5's properties ([`Properties`]),
//! reason codes ([`ReasonCode`]), subscription options ([`SubOptions`])
//! and AUTH. A connection's [`Level`] is the one its CONNECT names; the
//! codec decodes and encodes the rest at that level ([`decode_as`],
//! [`Packet::encode_as`]), and the plain [`decode`]/[`Packet::encode`]
//! are 3.1.1.

pub mod packet;
pub mod topic;

pub use packet::{
    decode, decode_as, read_frame, read_packet, read_packet_as, Frame, Level, Packet, PacketError,
    Properties, ReasonCode, RetainHandling, SubOptions, Will,
};
pub use topic::{matches, valid_filter, valid_topic};
