//! The reason code the MQTT 5 specification names for a case with one
//! mutation whose effect is certain (a property twice, unknown, a
//! property length past the packet, a bad variable byte integer, an
//! oversize remaining length, wrong fixed-header flags).

use super::gen::{ByteMutation, Case, PropMutation};

/// Malformed Packet.
pub const MALFORMED: u8 = 0x81;
/// Protocol Error.
pub const PROTOCOL: u8 = 0x82;
/// Packet too large.
pub const TOO_LARGE: u8 = 0x95;

/// What the spec says of `case`: `Some(None)` valid, `Some(Some(code))`
/// refused with that reason code, `None` when it cannot be told without
/// decoding.
pub fn expected(case: &Case) -> Option<Option<u8>> {
    if !case.tail.is_empty() || case.props.len() + case.bytes.len() > 1 {
        return None;
    }
    let kind = case.parts.header >> 4;
    let has_props = !case.parts.props.is_empty();
    if let Some(m) = case.props.first() {
        return match m {
            // §2.2.2.2: "It is a Protocol Error to include [it] more than
            // once"; User Property may repeat.
            PropMutation::Duplicate(i) if has_props => {
                let id = case.parts.props[i.index(case.parts.props.len())][0];
                Some((id != 0x26).then_some(PROTOCOL))
            }
            PropMutation::Duplicate(_) => Some(None),
            // §2.2.2.2: an identifier not valid for the packet type is
            // a Malformed Packet; so is a length past the packet, and a
            // variable byte integer of more than four bytes (§1.5.5).
            PropMutation::Unknown(_)
            | PropMutation::LengthPast(_)
            | PropMutation::BadLengthVarint
            | PropMutation::BadSubscriptionId(false) => Some(Some(MALFORMED)),
            // §3.3.2.3.8, §3.8.2.1.2: a Subscription Identifier of 0 is a
            // Protocol Error where it may appear, malformed elsewhere.
            PropMutation::BadSubscriptionId(true) if kind == 3 || kind == 8 => Some(Some(PROTOCOL)),
            PropMutation::BadSubscriptionId(true) => Some(Some(MALFORMED)),
            PropMutation::WrongLength(..) | PropMutation::WrongId(..) => None,
        };
    }
    match case.bytes.first() {
        None => Some(None),
        // §3.2.2.3.6 / §4.13: past the server's maximum: 0x95.
        Some(ByteMutation::Oversize(_)) => Some(Some(TOO_LARGE)),
        Some(ByteMutation::LongVarint) => Some(Some(MALFORMED)),
        // §2.1.3: reserved flags other than the packet's are malformed.
        Some(ByteMutation::Flags(f)) if kind != 3 => {
            let want = if matches!(kind, 6 | 8 | 10) { 2 } else { 0 };
            Some((*f != want).then_some(MALFORMED))
        }
        Some(_) => None,
    }
}
