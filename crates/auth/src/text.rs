//! Reading lines the way mosquitto's C code does: `isspace` in the C
//! locale, lines up to `\n`, each line UTF-8 (usernames and topics are).

/// Whether `c` is a space for C's `isspace` in the "C" locale.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// `s` without C spaces at either end (mosquitto's `misc__trimblanks`).
pub(crate) fn trim_c(s: &str) -> &str {
    s.trim_matches(is_c_space)
}

/// The lines of `bytes` (split at `\n`) with their 1-based numbers, each
/// UTF-8 or the number of the first that is not. A last line without its
/// `\n` counts, as `fgets` reads it.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<&str, ()>)> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let all = if bytes.is_empty() { None } else { Some(body) };
    all.into_iter()
        .flat_map(|b| b.split(|&c| c == b'\n'))
        .enumerate()
        .map(|(i, line)| (i + 1, std::str::from_utf8(line).map_err(|_| ())))
}

#[cfg(test)]
mod tests {
    //! Line splitting and C-style trimming.

    use super::*;

    #[test]
    fn lines_are_numbered_from_one_and_a_last_line_needs_no_newline() {
        let got: Vec<_> = lines(b"a\n\nb").collect();
        assert_eq!(got, vec![(1, Ok("a")), (2, Ok("")), (3, Ok("b"))]);
        assert_eq!(lines(b"a\n").count(), 1);
        assert_eq!(lines(b"").count(), 0);
        let bad: Vec<_> = lines(b"ok\n\xff\n").collect();
        assert_eq!(bad[1], (2, Err(())));
    }

    #[test]
    fn trimming_is_c_isspace() {
        assert_eq!(trim_c("\x0b\t a b\r\x0c "), "a b");
        assert_eq!(trim_c("\u{a0}x"), "\u{a0}x");
    }
}
