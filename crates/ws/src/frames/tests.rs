//! Frames split anywhere, packed together, moved mid-frame through
//! their serialized state, and every refusal with its close code.

use proptest::prelude::*;

use super::*;

const MAX: u64 = 1 << 20;
const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// Feeds `bytes` as a server in the chunks `cuts` makes, moving the
/// reader through JSON between chunks when `moved`.
fn read(bytes: &[u8], cuts: &[usize], moved: bool) -> (Vec<u8>, Vec<Control>, Reader) {
    let (mut data, mut controls, mut r) = (Vec::new(), Vec::new(), Reader::default());
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(at, bytes.len());
        r.feed(Side::Server, &bytes[at..cut], MAX, &mut data, &mut controls)
            .unwrap();
        if moved {
            r = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        }
        at = cut;
    }
    (data, controls, r)
}

/// A client's stream: MQTT bytes in frames of `sizes`, the last one
/// fragmented in two, a ping in between.
fn stream(mqtt: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = mqtt;
    for &n in sizes {
        let n = n.min(rest.len());
        binary(&rest[..n], MASK, &mut out);
        rest = &rest[n..];
        let mut ping = Vec::new();
        frame(OpCode::Control(Ctl::Ping), b"hi", MASK, &mut ping);
        out.extend(ping);
    }
    // The rest as a message of two fragments (binary, continuation).
    let half = rest.len() / 2;
    let mut first = FrameHeader {
        is_final: false,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(Data::Binary),
        mask: MASK,
    };
    for (part, last) in [(&rest[..half], false), (&rest[half..], true)] {
        first.is_final = last;
        let _ = first.format(part.len() as u64, &mut out);
        let at = out.len();
        out.extend_from_slice(part);
        apply_mask(&mut out[at..], MASK.unwrap());
        first.opcode = OpCode::Data(Data::Continue);
    }
    out
}

proptest! {
    #[test]
    fn split_and_packed_frames_give_back_the_stream(
        mqtt in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(0usize..400, 0..6),
        mut cuts in proptest::collection::vec(0usize..5000, 0..8),
        moved in any::<bool>(),
    ) {
        cuts.sort();
        let bytes = stream(&mqtt, &sizes);
        let (data, controls, r) = read(&bytes, &cuts, moved);
        prop_assert_eq!(data, mqtt);
        prop_assert_eq!(controls.len(), sizes.len());
        prop_assert!(controls.iter().all(|c| *c == Control::Ping(b"hi".to_vec())));
        prop_assert_eq!(r, Reader::default());
    }

    #[test]
    fn garbage_is_refused_or_waited_for_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (mut data, mut controls, mut r) = (Vec::new(), Vec::new(), Reader::default());
        let _ = r.feed(Side::Server, &bytes, 64, &mut data, &mut controls);
        prop_assert!(r.partial.len() <= 14 + 64 + bytes.len().min(300));
    }
}

#[test]
fn a_move_in_the_middle_of_a_frame_and_a_message_carries_both() {
    let bytes = stream(b"\x30\x05\x00\x01tpay", &[]);
    let (data, _, r) = read(&bytes[..bytes.len() - 3], &[], false);
    assert!(r.continuing && !r.partial.is_empty(), "{r:?}");
    assert_eq!(data.len(), 4, "the first fragment");
    let json = serde_json::to_string(&r).unwrap();
    let mut moved: Reader = serde_json::from_str(&json).unwrap();
    let (mut rest, mut controls) = (Vec::new(), Vec::new());
    moved
        .feed(
            Side::Server,
            &bytes[bytes.len() - 3..],
            MAX,
            &mut rest,
            &mut controls,
        )
        .unwrap();
    assert_eq!([data, rest].concat(), b"\x30\x05\x00\x01tpay");
    // Unknown fields are refused, not dropped.
    assert!(serde_json::from_str::<Reader>(r#"{"partial":[],"x":1}"#).is_err());
}

fn refused(bytes: &[u8], side: Side) -> FrameError {
    let (mut data, mut controls, mut r) = (Vec::new(), Vec::new(), Reader::default());
    r.feed(side, bytes, 100, &mut data, &mut controls)
        .unwrap_err()
}

#[test]
fn each_bad_frame_gets_its_close_code() {
    let mut text = Vec::new();
    frame(OpCode::Data(Data::Text), b"hi", MASK, &mut text);
    assert_eq!(refused(&text, Side::Server).close_code(), 1003);
    let mut unmasked = Vec::new();
    binary(b"x", None, &mut unmasked);
    assert_eq!(refused(&unmasked, Side::Server), FrameError::Unmasked);
    let mut masked = Vec::new();
    binary(b"x", MASK, &mut masked);
    assert_eq!(refused(&masked, Side::Client), FrameError::Masked);
    let mut big = Vec::new();
    binary(&[0; 101], MASK, &mut big);
    let e = refused(&big[..10], Side::Server);
    assert_eq!(
        (e.clone(), e.close_code()),
        (FrameError::TooLarge(101), 1009),
        "on the header alone"
    );
    let mut long_ping = Vec::new();
    frame(OpCode::Control(Ctl::Ping), &[0; 126], MASK, &mut long_ping);
    assert_eq!(refused(&long_ping, Side::Server), FrameError::BadControl);
    let mut cont = Vec::new();
    frame(OpCode::Data(Data::Continue), b"x", MASK, &mut cont);
    assert_eq!(refused(&cont, Side::Server), FrameError::BadContinuation);
    let mut rsv = masked.clone();
    rsv[0] |= 0x40;
    assert_eq!(refused(&rsv, Side::Server), FrameError::Reserved);
    let mut reserved_op = masked.clone();
    reserved_op[0] = 0x83;
    assert_eq!(refused(&reserved_op, Side::Server).close_code(), 1002);
    let mut after = Vec::new();
    close(1000, MASK, &mut after);
    binary(b"x", MASK, &mut after);
    assert_eq!(refused(&after, Side::Server), FrameError::AfterClose);
    // Lengths: 5 bytes in the 16-bit form, 200 in the 64-bit form, and a
    // 64-bit length with its top bit set are protocol errors (1002), not
    // frames too big.
    let short_in_16 = [0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4];
    assert_eq!(refused(&short_in_16, Side::Server), FrameError::BadLength);
    let mid_in_64 = [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4];
    assert_eq!(refused(&mid_in_64, Side::Server), FrameError::BadLength);
    let top_bit = [0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    let e = refused(&top_bit, Side::Server);
    assert_eq!((e.clone(), e.close_code()), (FrameError::BadLength, 1002));
}

#[test]
fn ping_and_close_are_reported_and_answered_frames_read_back() {
    let mut bytes = Vec::new();
    frame(OpCode::Control(Ctl::Ping), b"p", MASK, &mut bytes);
    close(1001, MASK, &mut bytes);
    let (data, controls, r) = read(&bytes, &[1, 3], true);
    assert!(data.is_empty());
    assert_eq!(
        controls,
        [Control::Ping(b"p".to_vec()), Control::Close(Some(1001))]
    );
    assert!(r.close_received);
    // What a server writes, a client reads.
    let mut out = Vec::new();
    pong(b"p", None, &mut out);
    binary(b"\xd0\x00", None, &mut out);
    close(1000, None, &mut out);
    let (mut data, mut controls, mut c) = (Vec::new(), Vec::new(), Reader::default());
    c.feed(Side::Client, &out, MAX, &mut data, &mut controls)
        .unwrap();
    assert_eq!(data, b"\xd0\x00");
    assert_eq!(
        controls,
        [Control::Pong(b"p".to_vec()), Control::Close(Some(1000))]
    );
}
