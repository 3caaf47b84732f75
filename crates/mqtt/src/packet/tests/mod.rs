//! Tests of the codec: 3.1.1 as it always was, MQTT 5 packets and their
//! malformed cases, properties, and round trips at every level.

mod levels;
mod props;
mod roundtrip;
mod v311;
mod v5;

use super::encode::put_varint;
use super::*;

/// A packet on the wire: `header`, the remaining length, `body`.
pub(crate) fn wire(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A property block: its length, then `props`.
pub(crate) fn block(props: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, props.len());
    out.extend_from_slice(props);
    out
}

/// Decodes `bytes` at 5, through both the buffer and the stream decoder,
/// which must agree.
pub(crate) fn decode5(bytes: &[u8]) -> Result<Packet, PacketError> {
    let streamed = read_packet_as(&mut &bytes[..], 1 << 20, Level::V5);
    match decode_as(bytes, 1 << 20, Level::V5) {
        Ok(Some((p, n))) => {
            assert_eq!(n, bytes.len(), "{bytes:02x?}");
            assert_eq!(streamed.ok().flatten().as_ref(), Some(&p));
            Ok(p)
        }
        Ok(None) => panic!("incomplete: {bytes:02x?}"),
        Err(e) => {
            let s = streamed.expect_err("the stream decoder accepted it");
            assert_eq!(s.reason_code(), e.reason_code(), "{s} / {e}");
            Err(e)
        }
    }
}

/// The reason code of the error decoding `bytes` at 5 gives.
pub(crate) fn code5(bytes: &[u8]) -> u8 {
    match decode5(bytes) {
        Ok(p) => panic!("accepted {p:?} from {bytes:02x?}"),
        Err(e) => match e.reason_code() {
            Some(c) => c.0,
            None => panic!("no reason code: {e}"),
        },
    }
}

/// Encodes `p` at `level` and decodes it back, which must give `p`.
pub(crate) fn round_at(p: &Packet, level: Level) -> Vec<u8> {
    let bytes = p.encode_as(level);
    let back = decode_as(&bytes, 1 << 20, level);
    assert_eq!(
        back.ok().flatten(),
        Some((p.clone(), bytes.len())),
        "{bytes:02x?}"
    );
    bytes
}

/// What of `p` a round trip through the encoder at `place` gives back:
/// the properties allowed there.
pub(crate) fn only_at(p: &Properties, place: properties::Place) -> Properties {
    let mut out = Vec::new();
    p.encode(place, &mut out);
    Properties::decode(&mut read::Body::new(&out), place).unwrap_or_default()
}
