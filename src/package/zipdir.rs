//! A zip's central directory read raw, to find duplicate names: the zip
//! reader keeps one entry per name, so it cannot tell.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};

const CENTRAL_HEADER: u32 = 0x0201_4b50;

/// The first name that the central directory starting at `start` lists
/// twice, reading at most `max` headers.
pub fn duplicate_name(
    reader: &mut (impl Read + Seek),
    start: u64,
    max: u64,
) -> io::Result<Option<String>> {
    reader.seek(SeekFrom::Start(start))?;
    let mut seen = HashSet::new();
    let mut fixed = [0u8; 46];
    for _ in 0..max {
        match reader.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]) != CENTRAL_HEADER {
            break;
        }
        let field = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]) as usize;
        let (name_len, extra_len, comment_len) = (field(28), field(30), field(32));
        let mut name = vec![0u8; name_len];
        reader.read_exact(&mut name)?;
        reader.seek(SeekFrom::Current((extra_len + comment_len) as i64))?;
        if !seen.insert(name.clone()) {
            return Ok(Some(String::from_utf8_lossy(&name).into_owned()));
        }
    }
    Ok(None)
}
