//! Tests of the broker-to-broker stream.

use super::*;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

fn pair() -> (Channel, Channel) {
    let (a, b) = Channel::pair().unwrap();
    b.set_timeout(Duration::from_secs(5)).unwrap();
    (a, b)
}

const ROOMY: Bounds = Bounds {
    max_conns: 10_000,
    max_bytes: 1 << 30,
};

/// `n` connected TCP sockets (the client ends; the server ends are
/// returned too, to keep the connections open).
fn connections(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (0..n)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            (c, l.accept().unwrap().0)
        })
        .unzip()
}

/// A socket's local port.
fn port(fd: BorrowedFd<'_>) -> u16 {
    let s = TcpStream::from(fd.try_clone_to_owned().unwrap());
    s.local_addr().unwrap().port()
}

#[test]
fn a_state_of_many_connections_arrives_whole_and_in_order() {
    let (a, b) = pair();
    let (files, _servers) = connections(600);
    // Sizes from empty to larger than several data frames.
    let states: Vec<Vec<u8>> = (0..600usize)
        .map(|i| (0..(i * 517) % 150_000).map(|j| (i + j) as u8).collect())
        .collect();
    let shared: Vec<u8> = (0..100_000).map(|i| i as u8).collect();
    let conns: Vec<(BorrowedFd<'_>, &[u8])> = files
        .iter()
        .zip(&states)
        .map(|(f, s)| (f.as_fd(), &s[..]))
        .collect();
    let sender = std::thread::scope(|sc| {
        let h = sc.spawn(|| send(&a, "refbroker/1", &shared, &conns));
        let got = recv(&b, &ROOMY).unwrap();
        h.join().unwrap().unwrap();
        got
    });
    assert_eq!(sender.schema, "refbroker/1");
    assert_eq!(sender.shared, shared);
    assert_eq!(sender.conns.len(), 600);
    for (i, (fd, bytes)) in sender.conns.iter().enumerate() {
        assert_eq!(bytes, &states[i], "state {i}");
        assert_eq!(
            port(fd.as_fd()),
            port(files[i].as_fd()),
            "fd {i} is the right socket"
        );
    }
}

#[test]
fn past_a_bound_or_off_the_protocol_is_an_error() {
    let f = tempfile::tempfile().unwrap();
    let big = vec![7u8; 5000];
    let cases: [(Bounds, &str); 2] = [
        (
            Bounds {
                max_conns: 1,
                max_bytes: 1 << 20,
            },
            "connections",
        ),
        (
            Bounds {
                max_conns: 10,
                max_bytes: 4000,
            },
            "bytes of state",
        ),
    ];
    for (bounds, what) in cases {
        let (a, b) = pair();
        let conns = [(f.as_fd(), &big[..]), (f.as_fd(), &big[..])];
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let _ = send(&a, "s/1", b"x", &conns);
                drop(a);
            });
            match recv(&b, &bounds) {
                Err(TransferError::Bound(w, _, _)) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
            drop(b);
        });
    }
    let (a, b) = pair();
    a.send_frame(b"Hgarbage", &[]).unwrap();
    assert!(matches!(recv(&b, &ROOMY), Err(TransferError::Protocol(_))));
    let (a, b) = pair();
    send_data(&a, b"no header").unwrap();
    assert!(matches!(recv(&b, &ROOMY), Err(TransferError::Protocol(_))));
    // An empty data frame cannot keep the receiver waiting.
    let (a, b) = pair();
    let mut head = vec![HEADER, 1, b's'];
    head.extend_from_slice(&10u64.to_le_bytes());
    head.extend_from_slice(&0u64.to_le_bytes());
    a.send_frame(&head, &[]).unwrap();
    a.send_frame(&[DATA], &[]).unwrap();
    assert!(matches!(recv(&b, &ROOMY), Err(TransferError::Protocol(_))));
    // A schema name past the bound is refused by the sender.
    let (a, _b) = pair();
    assert!(send(&a, &"s".repeat(MAX_SCHEMA + 1), b"", &[]).is_err());
    // The sender dies midway: an error, not a hang.
    let (a, b) = pair();
    let mut head = vec![HEADER, 1, b's'];
    head.extend_from_slice(&10u64.to_le_bytes());
    head.extend_from_slice(&0u64.to_le_bytes());
    a.send_frame(&head, &[]).unwrap();
    drop(a);
    assert!(matches!(recv(&b, &ROOMY), Err(TransferError::Cut)));
    // Nothing at all: closed before the header, told apart.
    let (a, b) = pair();
    drop(a);
    assert!(matches!(
        recv(&b, &ROOMY),
        Err(TransferError::Channel(ChannelError::Closed))
    ));
}

#[test]
fn the_same_socket_twice_or_a_socket_that_is_no_connection_is_refused() {
    let (conns, _servers) = connections(2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let file = tempfile::tempfile().unwrap();
    let twice = conns[0].try_clone().unwrap();
    let cases: [(&str, [BorrowedFd<'_>; 2]); 4] = [
        (
            "a socket already received",
            [conns[0].as_fd(), twice.as_fd()],
        ),
        ("not a TCP socket", [conns[1].as_fd(), unix.as_fd()]),
        ("not a socket", [conns[1].as_fd(), file.as_fd()]),
        ("a listening socket", [conns[1].as_fd(), listener.as_fd()]),
    ];
    for (why, fds) in cases {
        let (a, b) = pair();
        let conns = [(fds[0], &b"x"[..]), (fds[1], &b"y"[..])];
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let _ = send(&a, "s/1", b"", &conns);
                drop(a);
            });
            match recv(&b, &ROOMY) {
                Err(TransferError::Protocol(m)) => {
                    assert_eq!(m, format!("connection 1: {why}"))
                }
                other => panic!("{why}: {other:?}"),
            }
            drop(b);
        });
    }
}
