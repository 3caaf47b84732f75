//! The broker-to-broker stream of protocol 2 (issue #12): a broker's
//! state, in its own schema, as opaque bytes for the broker-wide part and
//! (fd, bytes) per connection, over a SOCK_SEQPACKET socketpair the helper
//! made. Any broker can use it; the bytes mean something only to brokers
//! of the same schema.
//!
//! Frames, one packet each:
//! - `H` header: schema (u8 length + bytes), shared length (u64),
//!   connection count (u64); then the shared bytes in `D` frames;
//! - `B` batch: up to [`MAX_BATCH_FDS`] fds (SCM_RIGHTS), one u64 length
//!   each; then their bytes, concatenated, in `D` frames;
//! - `E` end, after the last batch.
//!
//! The receiver checks every count and length against its [`Bounds`]
//! before it allocates; on any error every fd received is closed (only
//! the receiver's copies: the sender still has its own).

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::{Channel, ChannelError};

/// At most this many fds per packet (the kernel's SCM_MAX_FD).
pub const MAX_BATCH_FDS: usize = 253;
/// Bytes per data frame (well under a unix socket's send buffer).
pub const CHUNK: usize = 32 * 1024;
/// Longest schema name.
pub const MAX_SCHEMA: usize = 64;

const HEADER: u8 = b'H';
const BATCH: u8 = b'B';
const DATA: u8 = b'D';
const END: u8 = b'E';
/// Instead of a header: the sender got the commit and drains instead.
const DRAINS: u8 = b'X';

/// What a receiver accepts.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections in all.
    pub max_conns: usize,
    /// Bytes in all (shared and every connection's).
    pub max_bytes: u64,
}

/// A received state.
#[derive(Debug)]
pub struct Transfer {
    pub schema: String,
    pub shared: Vec<u8>,
    pub conns: Vec<(OwnedFd, Vec<u8>)>,
}

/// Why a transfer failed.
#[derive(Debug)]
pub enum TransferError {
    /// The channel failed; `Channel(Closed)` only before the header (the
    /// sender had nothing to send).
    Channel(ChannelError),
    /// The sender closed in the middle of a state.
    Cut,
    /// A bound passed: what, how many, the bound.
    Bound(&'static str, u64, u64),
    /// Bytes out of the protocol.
    Protocol(String),
    /// The receiving broker refuses what came (its schema, its contents).
    Refused(String),
    /// Instead of a state, the sender said it drains its connections (it
    /// got the commit and cannot export): the receiver serves.
    Drains,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Channel(e) => write!(f, "{e}"),
            TransferError::Cut => f.write_str("the sender closed in the middle of the state"),
            TransferError::Bound(what, n, max) => write!(f, "{n} {what}, more than {max}"),
            TransferError::Protocol(m) => write!(f, "protocol error: {m}"),
            TransferError::Refused(m) => f.write_str(m),
            TransferError::Drains => f.write_str("the sender drains instead"),
        }
    }
}

impl std::error::Error for TransferError {}

impl From<ChannelError> for TransferError {
    fn from(e: ChannelError) -> TransferError {
        TransferError::Channel(e)
    }
}

fn sent(
    ch: &Channel,
    what: &'static str,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ChannelError> {
    ch.send_frame(bytes, fds)
        .map_err(|errno| ChannelError::Send { kind: what, errno })
}

fn send_data(ch: &Channel, bytes: &[u8]) -> Result<(), ChannelError> {
    for chunk in bytes.chunks(CHUNK) {
        let mut frame = Vec::with_capacity(chunk.len() + 1);
        frame.push(DATA);
        frame.extend_from_slice(chunk);
        sent(ch, "state data", &frame, &[])?;
    }
    Ok(())
}

/// A state on its way out, batch by batch: the sender encodes each batch
/// while the receiver takes in the last. The channel's timeout bounds
/// each packet.
pub struct Sender<'a> {
    ch: &'a Channel,
    /// Connections announced and not sent yet.
    owed: u64,
}

impl<'a> Sender<'a> {
    /// Sends the header (schema, broker-wide bytes, connection count).
    pub fn begin(
        ch: &'a Channel,
        schema: &str,
        shared: &[u8],
        count: usize,
    ) -> Result<Sender<'a>, ChannelError> {
        // The old broker is frozen: nothing sent yet.
        injected(crate::faults::step("old::frozen"), "state header")?;
        let name = schema.as_bytes();
        if name.len() > MAX_SCHEMA {
            return Err(ChannelError::Send {
                kind: "state header (schema name too long)",
                errno: nix::errno::Errno::ENAMETOOLONG,
            });
        }
        let mut head = vec![HEADER, name.len() as u8];
        head.extend_from_slice(name);
        head.extend_from_slice(&(shared.len() as u64).to_le_bytes());
        head.extend_from_slice(&(count as u64).to_le_bytes());
        sent(ch, "state header", &head, &[])?;
        send_data(ch, shared)?;
        Ok(Sender {
            ch,
            owed: count as u64,
        })
    }

    /// Sends connections (their sockets and states), in packets of at
    /// most [`MAX_BATCH_FDS`] fds.
    pub fn batch(&mut self, conns: &[(BorrowedFd<'_>, &[u8])]) -> Result<(), ChannelError> {
        if conns.len() as u64 > self.owed {
            return Err(ChannelError::Send {
                kind: "state batch (more connections than announced)",
                errno: nix::errno::Errno::EINVAL,
            });
        }
        for batch in conns.chunks(MAX_BATCH_FDS) {
            let mut frame = Vec::with_capacity(1 + 8 * batch.len());
            frame.push(BATCH);
            for (_, bytes) in batch {
                frame.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            }
            let fds: Vec<BorrowedFd<'_>> = batch.iter().map(|(fd, _)| *fd).collect();
            sent(self.ch, "state batch", &frame, &fds)?;
            let all: Vec<u8> = batch.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            send_data(self.ch, &all)?;
            self.owed -= batch.len() as u64;
            injected(crate::faults::step("old::exported"), "state batch")?;
        }
        Ok(())
    }

    /// Ends the state; every connection announced must have been sent.
    pub fn end(self) -> Result<(), ChannelError> {
        if self.owed != 0 {
            return Err(ChannelError::Send {
                kind: "state end (connections announced and not sent)",
                errno: nix::errno::Errno::EINVAL,
            });
        }
        sent(self.ch, "state end", &[END], &[])
    }
}

/// Sends a whole state at once.
pub fn send(
    ch: &Channel,
    schema: &str,
    shared: &[u8],
    conns: &[(BorrowedFd<'_>, &[u8])],
) -> Result<(), ChannelError> {
    let mut sender = Sender::begin(ch, schema, shared, conns.len())?;
    sender.batch(conns)?;
    sender.end()
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Receives `len` bytes of data frames.
fn recv_data(ch: &Channel, len: u64) -> Result<Vec<u8>, TransferError> {
    let len =
        usize::try_from(len).map_err(|_| TransferError::Bound("bytes", len, usize::MAX as u64))?;
    // Grown as data comes, not on the header's word.
    let mut out = Vec::new();
    while out.len() < len {
        let (frame, fds) = ch.recv_frame(CHUNK + 1, 0)?;
        drop(fds);
        match frame.split_first() {
            Some((&DATA, [])) => return Err(TransferError::Protocol("an empty data frame".into())),
            Some((&DATA, rest)) if out.len() + rest.len() <= len => out.extend_from_slice(rest),
            Some((&DATA, _)) => {
                return Err(TransferError::Protocol("more data than announced".into()))
            }
            _ => return Err(TransferError::Protocol("expected a data frame".into())),
        }
    }
    Ok(out)
}

/// One received connection: its socket and its state.
pub type Conn = (OwnedFd, Vec<u8>);

/// A state coming in, batch by batch, each checked against the bounds
/// before anything is allocated for it; the broker imports a batch while
/// the next one comes.
pub struct Receiver<'a> {
    ch: &'a Channel,
    bounds: Bounds,
    /// The schema of the state.
    pub schema: String,
    /// The broker-wide bytes.
    pub shared: Vec<u8>,
    count: u64,
    got: u64,
    total: u64,
    ended: bool,
    /// The sockets received so far (device, inode): one twice is refused.
    seen: std::collections::HashSet<(u64, u64)>,
}

fn cut(e: TransferError) -> TransferError {
    match e {
        TransferError::Channel(ChannelError::Closed) => TransferError::Cut,
        e => e,
    }
}

impl<'a> Receiver<'a> {
    /// Receives the header and the broker-wide bytes.
    pub fn begin(ch: &'a Channel, bounds: &Bounds) -> Result<Receiver<'a>, TransferError> {
        let (head, _) = ch.recv_frame(2 + MAX_SCHEMA + 16, 0)?;
        if head.as_slice() == [DRAINS] {
            return Err(TransferError::Drains);
        }
        let (Some(&HEADER), Some(&n)) = (head.first(), head.get(1)) else {
            return Err(TransferError::Protocol("expected a state header".into()));
        };
        let n = usize::from(n);
        let schema = head
            .get(2..2 + n)
            .and_then(|s| std::str::from_utf8(s).ok())
            .ok_or_else(|| TransferError::Protocol("bad schema name".into()))?
            .to_string();
        let (Some(shared_len), Some(count)) = (u64_at(&head, 2 + n), u64_at(&head, 10 + n)) else {
            return Err(TransferError::Protocol("short state header".into()));
        };
        if count > bounds.max_conns as u64 {
            return Err(TransferError::Bound(
                "connections",
                count,
                bounds.max_conns as u64,
            ));
        }
        if shared_len > bounds.max_bytes {
            return Err(TransferError::Bound(
                "bytes of state",
                shared_len,
                bounds.max_bytes,
            ));
        }
        let shared = recv_data(ch, shared_len).map_err(cut)?;
        Ok(Receiver {
            ch,
            bounds: *bounds,
            schema,
            shared,
            count,
            got: 0,
            total: shared_len,
            ended: false,
            seen: std::collections::HashSet::new(),
        })
    }

    /// Connections announced in the header.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The next batch of connections; `None` once the end came.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Conn>>, TransferError> {
        if self.ended {
            return Ok(None);
        }
        let batch = self.next().map_err(cut)?;
        if batch.is_some() {
            crate::faults::step("new::imported_batch")
                .map_err(|e| TransferError::Refused(e.to_string()))?;
        }
        Ok(batch)
    }

    fn next(&mut self) -> Result<Option<Vec<Conn>>, TransferError> {
        if self.got == self.count {
            return match self.ch.recv_frame(1, 0)?.0.as_slice() {
                [END] => {
                    self.ended = true;
                    Ok(None)
                }
                _ => Err(TransferError::Protocol("expected the end".into())),
            };
        }
        let (frame, fds) = self.ch.recv_frame(1 + 8 * MAX_BATCH_FDS, MAX_BATCH_FDS)?;
        let lens: Vec<u64> = match frame.split_first() {
            Some((&BATCH, rest)) if rest.len() % 8 == 0 => {
                rest.chunks(8).filter_map(|c| u64_at(c, 0)).collect()
            }
            _ => return Err(TransferError::Protocol("expected a batch".into())),
        };
        if lens.len() != fds.len() || lens.is_empty() {
            return Err(TransferError::Protocol(format!(
                "a batch of {} lengths with {} fds",
                lens.len(),
                fds.len()
            )));
        }
        if self.got + lens.len() as u64 > self.count {
            return Err(TransferError::Protocol(
                "more connections than announced".into(),
            ));
        }
        let batch: u64 = lens
            .iter()
            .try_fold(0u64, |a, l| a.checked_add(*l))
            .unwrap_or(u64::MAX);
        self.total = self.total.saturating_add(batch);
        if self.total > self.bounds.max_bytes {
            return Err(TransferError::Bound(
                "bytes of state",
                self.total,
                self.bounds.max_bytes,
            ));
        }
        for (i, fd) in fds.iter().enumerate() {
            let n = self.got + i as u64;
            let id = tcp_socket(fd)
                .map_err(|why| TransferError::Protocol(format!("connection {n}: {why}")))?;
            if !self.seen.insert(id) {
                return Err(TransferError::Protocol(format!(
                    "connection {n}: a socket already received"
                )));
            }
        }
        let data = recv_data(self.ch, batch)?;
        let mut at = 0usize;
        let mut conns = Vec::with_capacity(lens.len());
        for (fd, len) in fds.into_iter().zip(&lens) {
            // The lengths sum to the data received: each slice is in it.
            let end = at + *len as usize;
            conns.push((fd, data.get(at..end).unwrap_or_default().to_vec()));
            at = end;
        }
        self.got += conns.len() as u64;
        Ok(Some(conns))
    }
}

/// The (device, inode) of `fd` when it is a connected TCP socket (what
/// a connection is); why not otherwise.
fn tcp_socket(fd: &OwnedFd) -> Result<(u64, u64), &'static str> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike};
    use std::os::fd::AsRawFd;
    let kind = getsockopt(fd, sockopt::SockType).map_err(|_| "not a socket")?;
    let addr: nix::sys::socket::SockaddrStorage =
        getsockname(fd.as_raw_fd()).map_err(|_| "not a socket")?;
    let inet = matches!(
        addr.family(),
        Some(AddressFamily::Inet | AddressFamily::Inet6)
    );
    if kind != nix::sys::socket::SockType::Stream || !inet {
        return Err("not a TCP socket");
    }
    if getsockopt(fd, sockopt::AcceptConn).unwrap_or(true) {
        return Err("a listening socket");
    }
    let st = nix::sys::stat::fstat(fd).map_err(|_| "not a socket")?;
    Ok((st.st_dev, st.st_ino))
}

/// Receives a whole state within `bounds`.
pub fn recv(ch: &Channel, bounds: &Bounds) -> Result<Transfer, TransferError> {
    let mut rx = Receiver::begin(ch, bounds)?;
    let mut conns = Vec::new();
    while let Some(batch) = rx.next_batch()? {
        conns.extend(batch);
    }
    Ok(Transfer {
        schema: std::mem::take(&mut rx.schema),
        shared: std::mem::take(&mut rx.shared),
        conns,
    })
}

/// Tells the receiver, instead of a state, that this broker got the
/// commit and drains its connections (it could not export them): the
/// receiver is to serve, and to say `going` first (without it the sender
/// serves on).
pub fn send_drains(ch: &Channel) {
    let _ = sent(ch, "drains", &[DRAINS], &[]);
}

/// An injected fault as the send of `kind` failing.
fn injected(
    step: Result<(), crate::faults::Injected>,
    kind: &'static str,
) -> Result<(), ChannelError> {
    step.map_err(|_| ChannelError::Send {
        kind,
        errno: nix::errno::Errno::ECANCELED,
    })
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
