//! The subject common name (OID 2.5.4.3) of an X.509 certificate in DER:
//! a peer's identity, which s2n does not restore after a move, so the
//! broker carries it in the connection's state.

/// One DER element: its tag and contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// The common name's OID, 2.5.4.3, encoded.
const CN: &[u8] = &[0x55, 0x04, 0x03];

/// The subject's common name, when the certificate has one as a string.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version, present in v2 and v3 certificates.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut subject, _) = element(rest)? else {
        return None;
    };
    while !subject.is_empty() {
        let (tag, rdn, next) = element(subject)?;
        subject = next;
        if tag != SET {
            return None;
        }
        let mut attrs = rdn;
        while !attrs.is_empty() {
            let (_, attr, more) = element(attrs)?;
            attrs = more;
            let (tag, oid, value) = element(attr)?;
            if tag == OID && oid == CN {
                let (_, text, _) = element(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element of `tag` around `body`.
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if body.len() < 0x80 {
            v.push(body.len() as u8);
        } else {
            v.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
        }
        v.extend_from_slice(body);
        v
    }

    fn name(cn: &str) -> Vec<u8> {
        let o = tlv(
            SET,
            &tlv(
                SEQUENCE,
                &[tlv(OID, &[0x55, 4, 10]), tlv(0x0c, b"org")].concat(),
            ),
        );
        let c = tlv(
            SET,
            &tlv(SEQUENCE, &[tlv(OID, CN), tlv(0x0c, cn.as_bytes())].concat()),
        );
        tlv(SEQUENCE, &[o, c].concat())
    }

    fn cert(subject: Vec<u8>) -> Vec<u8> {
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[0x01, 0x02]),
            tlv(SEQUENCE, &tlv(OID, &[0x2a])),
            name("issuer"),
            tlv(SEQUENCE, &[0u8; 200]),
            subject,
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat(),
        )
    }

    #[test]
    fn the_subject_cn_is_found_past_the_issuers() {
        assert_eq!(
            common_name(&cert(name("device-7"))).as_deref(),
            Some("device-7")
        );
    }

    #[test]
    fn no_cn_or_bad_der_is_none() {
        let no_cn = tlv(SEQUENCE, &[]);
        assert_eq!(common_name(&cert(no_cn)), None);
        let good = cert(name("x"));
        for cut in 0..good.len() {
            assert_eq!(common_name(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
