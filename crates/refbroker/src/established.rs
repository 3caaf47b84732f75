//! How many established TCP connections this host has on given local
//! ports, from `/proc/net/tcp` and `/proc/net/tcp6`: a broker started to
//! take over another's connections counts those of its TLS listeners
//! before the move, to make their TLS connections ahead (a hint: a wrong
//! count costs time or memory, never a connection).

use std::fs::File;
use std::io::Read;

/// The kernel's state number of an established connection.
const ESTABLISHED: &str = "01";
/// The most bytes read of each table (about 150 bytes a connection).
const MAX_TABLE: u64 = 64 << 20;

/// Established connections whose local port is one of `ports`, on this
/// host's IPv4 and IPv6 tables (0 where a table cannot be read).
pub fn on_ports(ports: &[u16]) -> usize {
    if ports.is_empty() {
        return 0;
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|path| {
            let mut text = String::new();
            match File::open(path).and_then(|f| f.take(MAX_TABLE).read_to_string(&mut text)) {
                Ok(_) => count(&text, ports),
                Err(_) => 0,
            }
        })
        .sum()
}

/// Established rows of one table whose local port is one of `ports`.
fn count(table: &str, ports: &[u16]) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let mut fields = row.split_whitespace();
            let local = fields.nth(1);
            let state = fields.nth(1);
            let port = local
                .and_then(|l| l.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            state == Some(ESTABLISHED) && port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:22B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:22B3 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 20 4 30 10 -1
   2: 0100007F:A1B2 0100007F:22B3 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 0100007F:22B3 0100007F:A1B3 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0 0 0 0 0 0
   4: 0100007F:075B 0100007F:A1B4 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0 20 4 30 10 -1
   5: 0100007F:22B3 0100007F:A1B5 01 00000000:00000000 00:00000000 00000000  1000        0 5 1 0 20 4 30 10 -1
";

    #[test]
    fn counts_established_rows_on_the_local_port_only() {
        // 0x22B3 = 8883: rows 1 and 5 (0 listens, 2 is the client's end,
        // 3 is in TIME_WAIT); 0x075B = 1883: row 4.
        assert_eq!(count(TABLE, &[8883]), 2);
        assert_eq!(count(TABLE, &[8883, 1883]), 3);
        assert_eq!(count(TABLE, &[9999]), 0);
        assert_eq!(count("", &[8883]), 0);
        assert_eq!(count("header\n garbage line\n1: x y z\n", &[8883]), 0);
    }

    #[test]
    fn reads_this_hosts_tables() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let accepted: Vec<_> = (0..3).map(|_| listener.accept().unwrap()).collect();
        assert_eq!(on_ports(&[port]), 3);
        drop((clients, accepted));
    }
}
