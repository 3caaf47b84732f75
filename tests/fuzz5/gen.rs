//! Bad MQTT 5 input for the fuzz tests: valid packets built from parts
//! (fixed header, variable header, a list of raw properties, payload), so
//! a mutation can reach into the property block (a property twice, of the
//! wrong type, unknown, not allowed in the packet, a property length past
//! the packet, a bad variable byte integer), and byte mutations on the
//! encoded packet (flips, truncation, a remaining length that is too
//! long, too short, oversize or five bytes long, random bytes).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// The broker's bound on a remaining length (`emqx_refbroker::MAX_PACKET`).
pub const MAX_PACKET: usize = 1 << 20;

/// A packet in parts, before the remaining length is computed.
#[derive(Debug, Clone)]
pub struct Parts {
    /// Packet type and flags.
    pub header: u8,
    /// The variable header before the property block.
    pub pre: Vec<u8>,
    /// Each property: identifier (a variable byte integer) and value.
    pub props: Vec<Vec<u8>>,
    /// The property length as sent, when not the real one.
    pub prop_len: Option<Vec<u8>>,
    /// What follows the property block (payload, filters...).
    pub post: Vec<u8>,
}

/// What is done to the parts of a packet.
#[derive(Debug, Clone)]
pub enum PropMutation {
    /// A property repeated (a Protocol Error unless it may repeat).
    Duplicate(Index),
    /// A property's value one byte short or long: the next identifier is
    /// read from the wrong place.
    WrongLength(Index, bool),
    /// A property's identifier replaced by one of another type or place.
    WrongId(Index, u8),
    /// A property with an identifier MQTT 5 does not define.
    Unknown(u8),
    /// The property length says more than the packet has.
    LengthPast(u16),
    /// The property length as a variable byte integer of five bytes.
    BadLengthVarint,
    /// A subscription identifier that is zero or five bytes long.
    BadSubscriptionId(bool),
}

/// What is done to the encoded bytes.
#[derive(Debug, Clone)]
pub enum ByteMutation {
    /// XOR a byte.
    Flip(Index, u8),
    /// Cut the packet (the remaining length still says the whole).
    Truncate(Index),
    /// A remaining length above the broker's bound.
    Oversize(u32),
    /// A remaining length of five bytes.
    LongVarint,
    /// A remaining length short by 1..=4 (the rest reads as another
    /// packet).
    Shorter(u8),
    /// Flags of the fixed header replaced.
    Flags(u8),
}

/// A test case: a valid packet, then mutations.
#[derive(Debug, Clone)]
pub struct Case {
    /// The packet before mutation.
    pub parts: Parts,
    /// Mutations of the parts.
    pub props: Vec<PropMutation>,
    /// Mutations of the bytes.
    pub bytes: Vec<ByteMutation>,
    /// Bytes appended (random garbage, or nothing).
    pub tail: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A variable byte integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

fn p_u8(id: u8, v: u8) -> Vec<u8> {
    vec![id, v]
}

fn p_u16(id: u8, v: u16) -> Vec<u8> {
    let mut p = vec![id];
    p.extend_from_slice(&v.to_be_bytes());
    p
}

fn p_u32(id: u8, v: u32) -> Vec<u8> {
    let mut p = vec![id];
    p.extend_from_slice(&v.to_be_bytes());
    p
}

fn p_str(id: u8, s: &str) -> Vec<u8> {
    let mut p = vec![id];
    put_str(&mut p, s.as_bytes());
    p
}

fn p_user(k: &str, v: &str) -> Vec<u8> {
    let mut p = p_str(0x26, k);
    put_str(&mut p, v.as_bytes());
    p
}

fn p_varint(id: u8, v: usize) -> Vec<u8> {
    let mut p = vec![id];
    p.extend(varint(v));
    p
}

impl Parts {
    /// The packet on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let block: Vec<u8> = self.props.concat();
        let mut body = self.pre.clone();
        match &self.prop_len {
            Some(len) => body.extend_from_slice(len),
            None => body.extend(varint(block.len())),
        }
        body.extend(block);
        body.extend_from_slice(&self.post);
        let mut out = vec![self.header];
        out.extend(varint(body.len()));
        out.extend(body);
        out
    }
}

/// An MQTT 5 CONNECT (clean start, no session expiry: nothing it leaves
/// outlives its connection) with CONNECT properties.
pub fn connect(client_id: &str, user: Option<&str>) -> Parts {
    let mut pre = Vec::new();
    put_str(&mut pre, b"MQTT");
    pre.push(5);
    pre.push(if user.is_some() { 0xc2 } else { 0x02 });
    pre.extend_from_slice(&30u16.to_be_bytes());
    let mut post = Vec::new();
    put_str(&mut post, client_id.as_bytes());
    if let Some(u) = user {
        put_str(&mut post, u.as_bytes());
        put_str(&mut post, b"secret");
    }
    Parts {
        header: 0x10,
        pre,
        props: vec![
            p_u16(0x21, 10),
            p_u32(0x27, 65_536),
            p_u16(0x22, 4),
            p_u8(0x17, 1),
            p_user("agent", "fuzz"),
        ],
        prop_len: None,
        post,
    }
}

fn publish(qos: u8, alias: Option<u16>, topic: &str) -> Parts {
    let mut pre = Vec::new();
    put_str(&mut pre, topic.as_bytes());
    if qos > 0 {
        pre.extend_from_slice(&7u16.to_be_bytes());
    }
    let mut props = vec![
        p_u8(0x01, 1),
        p_u32(0x02, 60),
        p_str(0x03, "text/plain"),
        p_str(0x08, "fuzz/reply"),
        p_str(0x09, "corr"),
        p_user("k", "v"),
        p_user("k", "w"),
    ];
    props.extend(alias.map(|a| p_u16(0x23, a)));
    Parts {
        header: 0x30 | (qos << 1),
        pre,
        props,
        prop_len: None,
        post: b"hello fuzz".to_vec(),
    }
}

fn subscribe() -> Parts {
    let mut post = Vec::new();
    put_str(&mut post, b"fuzz/s/+");
    post.push(0x01 | 0x04 | 0x08 | 0x10);
    put_str(&mut post, b"fuzz/s2/#");
    post.push(0x22);
    Parts {
        header: 0x82,
        pre: 9u16.to_be_bytes().to_vec(),
        props: vec![p_varint(0x0b, 300), p_user("s", "1")],
        prop_len: None,
        post,
    }
}

fn unsubscribe() -> Parts {
    let mut post = Vec::new();
    put_str(&mut post, b"fuzz/s/+");
    Parts {
        header: 0xa2,
        pre: 9u16.to_be_bytes().to_vec(),
        props: vec![p_user("u", "1")],
        prop_len: None,
        post,
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`kind` 4..=7) with a reason string.
fn ack(kind: u8) -> Parts {
    let mut pre = 7u16.to_be_bytes().to_vec();
    pre.push(0);
    Parts {
        header: (kind << 4) | if kind == 6 { 2 } else { 0 },
        pre,
        props: vec![p_str(0x1f, "fine"), p_user("a", "b")],
        prop_len: None,
        post: Vec::new(),
    }
}

fn disconnect() -> Parts {
    Parts {
        header: 0xe0,
        pre: vec![0x04],
        props: vec![p_str(0x1f, "bye"), p_user("d", "1")],
        prop_len: None,
        post: Vec::new(),
    }
}

fn auth() -> Parts {
    let mut data = vec![0x16];
    put_str(&mut data, b"\x01\x02");
    Parts {
        header: 0xf0,
        pre: vec![0x18],
        props: vec![p_str(0x15, "SCRAM-SHA-1"), data],
        prop_len: None,
        post: Vec::new(),
    }
}

/// Every packet a client sends after its CONNECT, valid at MQTT 5.
pub fn session_packet() -> impl Strategy<Value = Parts> {
    prop_oneof![
        4 => (0u8..3, proptest::option::of(1u16..=4), any::<bool>()).prop_map(|(q, a, empty)| {
            let topic = if empty && a.is_some() { "" } else { "fuzz/p" };
            publish(q, a, topic)
        }),
        2 => Just(subscribe()),
        1 => Just(unsubscribe()),
        2 => (4u8..8).prop_map(ack),
        1 => Just(disconnect()),
        1 => Just(auth()),
        1 => Just(Parts { header: 0xc0, pre: vec![], props: vec![], prop_len: Some(vec![]), post: vec![] }),
    ]
}

/// Identifiers MQTT 5 does not define.
static UNKNOWN: [u8; 10] = [0x00, 0x04, 0x07, 0x0a, 0x10, 0x14, 0x1b, 0x20, 0x2b, 0x7f];
/// Identifiers of every type (byte, u16, u32, varint, string, pair).
static KNOWN: [u8; 10] = [0x01, 0x13, 0x02, 0x0b, 0x03, 0x26, 0x16, 0x21, 0x12, 0x24];

fn prop_mutation() -> impl Strategy<Value = PropMutation> {
    prop_oneof![
        any::<Index>().prop_map(PropMutation::Duplicate),
        (any::<Index>(), any::<bool>()).prop_map(|(i, l)| PropMutation::WrongLength(i, l)),
        (any::<Index>(), proptest::sample::select(&KNOWN[..]))
            .prop_map(|(i, id)| PropMutation::WrongId(i, id)),
        proptest::sample::select(&UNKNOWN[..]).prop_map(PropMutation::Unknown),
        (1u16..400).prop_map(PropMutation::LengthPast),
        Just(PropMutation::BadLengthVarint),
        any::<bool>().prop_map(PropMutation::BadSubscriptionId),
    ]
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..).prop_map(|(i, x)| ByteMutation::Flip(i, x)),
        2 => any::<Index>().prop_map(ByteMutation::Truncate),
        1 => ((MAX_PACKET as u32 + 1)..=268_435_455).prop_map(ByteMutation::Oversize),
        1 => Just(ByteMutation::LongVarint),
        1 => (1u8..=4).prop_map(ByteMutation::Shorter),
        1 => (0u8..16).prop_map(ByteMutation::Flags),
    ]
}

/// A packet and its mutations; about one case in eight is left valid.
pub fn case(packet: impl Strategy<Value = Parts>) -> impl Strategy<Value = Case> {
    let props = vec(prop_mutation(), 0..3);
    let bytes = vec(byte_mutation(), 0..3);
    let tail = prop_oneof![6 => Just(Vec::new()), 1 => vec(any::<u8>(), 1..48)];
    (packet, props, bytes, tail).prop_map(|(parts, props, bytes, tail)| Case {
        parts,
        props,
        bytes,
        tail,
    })
}

/// Applies one mutation to the parts.
pub fn mutate_parts(p: &mut Parts, m: &PropMutation) {
    let n = p.props.len();
    match m {
        PropMutation::Duplicate(i) if n > 0 => {
            let dup = p.props[i.index(n)].clone();
            p.props.push(dup);
        }
        PropMutation::WrongLength(i, longer) if n > 0 => {
            let prop = &mut p.props[i.index(n)];
            if *longer {
                prop.push(0x01);
            } else if prop.len() > 1 {
                prop.pop();
            }
        }
        PropMutation::WrongId(i, id) if n > 0 => p.props[i.index(n)][0] = *id,
        PropMutation::Unknown(id) => p.props.push(vec![*id, 0, 0, 0, 0]),
        PropMutation::LengthPast(extra) => {
            let real: usize = p.props.iter().map(Vec::len).sum();
            let declared = real + p.post.len() + usize::from(*extra);
            p.prop_len = Some(varint(declared));
        }
        PropMutation::BadLengthVarint => p.prop_len = Some(vec![0xff, 0xff, 0xff, 0xff, 0x01]),
        PropMutation::BadSubscriptionId(zero) => p.props.push(if *zero {
            vec![0x0b, 0x00]
        } else {
            vec![0x0b, 0x80, 0x80, 0x80, 0x80, 0x01]
        }),
        _ => {}
    }
}

/// The remaining length's bytes of an encoded packet: where they end.
fn header_end(bytes: &[u8]) -> usize {
    let mut at = 1;
    while at < bytes.len().min(5) && bytes[at] & 0x80 != 0 {
        at += 1;
    }
    (at + 1).min(bytes.len())
}

/// Applies one mutation to the bytes.
pub fn mutate_bytes(b: &mut Vec<u8>, m: &ByteMutation) {
    if b.is_empty() {
        return;
    }
    match m {
        ByteMutation::Flip(i, x) => {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        ByteMutation::Truncate(i) => b.truncate(i.index(b.len()).max(1)),
        ByteMutation::Oversize(n) => {
            let end = header_end(b);
            b.splice(1..end, varint(*n as usize));
        }
        ByteMutation::LongVarint => {
            let end = header_end(b);
            b.splice(1..end, [0x80, 0x80, 0x80, 0x80, 0x01]);
        }
        ByteMutation::Shorter(k) => {
            let end = header_end(b);
            let len = (b.len() - end).saturating_sub(usize::from(*k));
            b.splice(1..end, varint(len));
        }
        ByteMutation::Flags(f) => b[0] = (b[0] & 0xf0) | f,
    }
}

impl Case {
    /// The bytes to send.
    pub fn bytes(&self) -> Vec<u8> {
        let mut parts = self.parts.clone();
        for m in &self.props {
            mutate_parts(&mut parts, m);
        }
        let mut bytes = parts.encode();
        for m in &self.bytes {
            mutate_bytes(&mut bytes, m);
        }
        bytes.extend_from_slice(&self.tail);
        bytes
    }
}
