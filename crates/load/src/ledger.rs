//! Message accounting: every message a load client publishes is a numbered
//! entry of its stream, and each delivery is checked against it: lost,
//! duplicated beyond what its QoS allows, out of order per publisher.
//!
//! A message is *pending* once the broker took it (PUBACK, PUBREC, or
//! written for QoS 0) and until its subscriber gets it. It is *excused*
//! when the subscriber's session ended before it could arrive (a clean
//! session closed, or a persistent session the broker no longer had):
//! MQTT 3.1.1 promises nothing then, so it is counted apart from the lost.
//!
//! A stream of a shared subscription goes to a group of subscribers: each
//! message must reach one of them (once at QoS 1 and 2), and the order is
//! checked per subscriber (the group's connections interleave).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::class::Class;
use crate::stats::{ClassStats, Stats};

const SENT: u8 = 1;
const ACKED: u8 = 2;
const RECEIVED: u8 = 4;
const EXCUSED: u8 = 8;
/// Given up in flight (publisher's session gone): never acked now.
const ABANDONED: u8 = 16;

/// One publisher's messages, delivered to one subscriber (or one of a
/// shared subscription's group).
struct Stream {
    class: Class,
    subscribers: Vec<usize>,
    /// Flags of message `seq` at `seq - 1`.
    flags: Vec<u8>,
    /// Highest sequence number delivered so far, per subscriber.
    max_seen: Vec<u64>,
    /// Below this every message is received, excused or abandoned.
    settled: usize,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    First,
    /// Already delivered once.
    Duplicate,
    /// Not a message of this stream, or for another subscriber.
    Misrouted,
}

/// All streams of a run; owned by the event loop.
pub struct Ledger {
    streams: Vec<Stream>,
    stats: Arc<Stats>,
}

impl Ledger {
    pub fn new(stats: Arc<Stats>) -> Ledger {
        Ledger {
            streams: Vec::new(),
            stats,
        }
    }

    /// A new stream of `class` delivered to client `subscriber`.
    pub fn add(&mut self, class: Class, subscriber: usize) -> usize {
        self.add_group(class, vec![subscriber])
    }

    /// A new stream of `class` delivered to one of the clients of
    /// `group` (a shared subscription).
    pub fn add_group(&mut self, class: Class, group: Vec<usize>) -> usize {
        self.streams.push(Stream {
            class,
            max_seen: vec![0; group.len()],
            subscribers: group,
            flags: Vec::new(),
            settled: 0,
        });
        self.streams.len() - 1
    }

    /// Whether any subscriber of stream `st` is connected.
    fn any_online(st: &Stream, online: &impl Fn(usize) -> bool) -> bool {
        st.subscribers.iter().any(|s| online(*s))
    }

    /// The counters of `class`.
    pub fn class_stats(&self, class: Class) -> &ClassStats {
        self.stats.class(class)
    }

    fn class(&self, s: usize) -> &ClassStats {
        let class = self.streams.get(s).map_or(Class::live(0), |st| st.class);
        self.stats.class(class)
    }

    fn flags(&mut self, s: usize, seq: u64) -> Option<&mut u8> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.streams.get_mut(s)?.flags.get_mut(i)
    }

    /// Numbers the next message of stream `s`.
    pub fn publish(&mut self, s: usize) -> u64 {
        let Some(st) = self.streams.get_mut(s) else {
            return 0;
        };
        st.flags.push(SENT);
        let (seq, qos) = (st.flags.len() as u64, st.class.qos);
        let c = self.class(s);
        c.sent.fetch_add(1, Relaxed);
        if qos > 0 {
            c.in_flight.fetch_add(1, Relaxed);
        }
        seq
    }

    /// The broker took message `seq` (for QoS 0: it was written).
    pub fn acked(&mut self, s: usize, seq: u64) {
        let Some(f) = self.flags(s, seq) else { return };
        if *f & (ACKED | ABANDONED) != 0 {
            return;
        }
        *f |= ACKED;
        let (excused, received) = (*f & EXCUSED != 0, *f & RECEIVED != 0);
        let qos = self.streams[s].class.qos;
        let c = self.class(s);
        c.acked.fetch_add(1, Relaxed);
        if qos > 0 {
            c.in_flight.fetch_sub(1, Relaxed);
        }
        if excused && !received {
            c.lost_at_close.fetch_add(1, Relaxed);
        }
    }

    /// Gives up message `seq` in flight (its publisher's session ended):
    /// counted as unacknowledged at a close.
    pub fn abandon(&mut self, s: usize, seq: u64) {
        let Some(f) = self.flags(s, seq) else { return };
        if *f & (ACKED | ABANDONED) != 0 {
            return;
        }
        *f |= ABANDONED | EXCUSED;
        let c = self.class(s);
        c.in_flight.fetch_sub(1, Relaxed);
        c.unacked_at_close.fetch_add(1, Relaxed);
    }

    /// Client `receiver` got message `seq` of stream `s`; `dup` is the
    /// packet's DUP flag.
    pub fn delivered(&mut self, s: usize, seq: u64, receiver: usize, dup: bool) -> Delivery {
        let who = self
            .streams
            .get(s)
            .and_then(|st| st.subscribers.iter().position(|c| *c == receiver));
        let Some(flags) = self.flags(s, seq).map(|f| *f) else {
            // Unknown stream: counted with the first class.
            self.class(s).misrouted.fetch_add(1, Relaxed);
            return Delivery::Misrouted;
        };
        let stats = Arc::clone(&self.stats);
        let c = stats.class(self.streams[s].class);
        let Some(who) = who else {
            c.misrouted.fetch_add(1, Relaxed);
            return Delivery::Misrouted;
        };
        if dup {
            c.redelivered.fetch_add(1, Relaxed);
        }
        if flags & RECEIVED != 0 {
            c.duplicates.fetch_add(1, Relaxed);
            if self.streams[s].class.qos != 1 {
                c.dup_beyond_qos.fetch_add(1, Relaxed);
            }
            return Delivery::Duplicate;
        }
        c.received.fetch_add(1, Relaxed);
        if flags & (EXCUSED | ACKED) == EXCUSED | ACKED {
            // An excuse withdrawn: it arrived after all.
            c.lost_at_close.fetch_sub(1, Relaxed);
        }
        if let Some(max) = self.streams[s].max_seen.get_mut(who) {
            if seq < *max {
                c.out_of_order.fetch_add(1, Relaxed);
            }
            *max = (*max).max(seq);
        }
        if let Some(f) = self.flags(s, seq) {
            *f |= RECEIVED;
        }
        Delivery::First
    }

    /// A QoS 2 retransmission (same packet id, before PUBREL) of a message
    /// of stream `s`: counted as redelivered, not delivered again.
    pub fn redelivered(&mut self, s: usize) {
        self.class(s).redelivered.fetch_add(1, Relaxed);
    }

    /// Excuses message `seq` of stream `s` if not yet received.
    pub fn excuse(&mut self, s: usize, seq: u64) {
        let Some(f) = self.flags(s, seq) else { return };
        if *f & (RECEIVED | EXCUSED) != 0 {
            return;
        }
        *f |= EXCUSED;
        if *f & ACKED != 0 {
            self.class(s).lost_at_close.fetch_add(1, Relaxed);
        }
    }

    /// Excuses every message of stream `s` sent so far and not received:
    /// its subscriber's session ended (or was found gone).
    pub fn excuse_sent(&mut self, s: usize) {
        let Some(st) = self.streams.get_mut(s) else {
            return;
        };
        let mut newly = 0u64;
        for f in &mut st.flags[st.settled..] {
            if *f & (RECEIVED | EXCUSED) == 0 {
                *f |= EXCUSED;
                if *f & ACKED != 0 {
                    newly += 1;
                }
            }
        }
        st.settled = st.flags.len();
        self.class(s).lost_at_close.fetch_add(newly, Relaxed);
    }

    /// Messages taken by the broker and still on their way, over all
    /// streams whose subscriber `online` says is connected.
    pub fn pending(&mut self, online: impl Fn(usize) -> bool) -> u64 {
        let mut n = 0;
        for st in self
            .streams
            .iter_mut()
            .filter(|st| Ledger::any_online(st, &online))
        {
            while st
                .flags
                .get(st.settled)
                .is_some_and(|f| f & (RECEIVED | EXCUSED) != 0)
            {
                st.settled += 1;
            }
            n += st.flags[st.settled..]
                .iter()
                .filter(|f| *f & (ACKED | RECEIVED | EXCUSED) == ACKED)
                .count() as u64;
        }
        n
    }

    /// The end of the run: what is still pending is lost when its
    /// subscriber is connected (`online`), else undelivered at stop; what
    /// is still in flight is unacknowledged at stop. Afterwards, for QoS 1
    /// and 2: sent = acked + unacked at close + unacked at stop.
    pub fn finish(&mut self, online: impl Fn(usize) -> bool) {
        for s in 0..self.streams.len() {
            let on = Ledger::any_online(&self.streams[s], &online);
            let (mut lost, mut undelivered, mut unacked) = (0u64, 0u64, 0u64);
            let st = &mut self.streams[s];
            for f in &mut st.flags {
                if *f & (ACKED | ABANDONED) == 0 {
                    unacked += 1;
                } else if *f & (ACKED | RECEIVED | EXCUSED) == ACKED {
                    if on {
                        lost += 1;
                    } else {
                        undelivered += 1;
                    }
                }
                *f |= ABANDONED | EXCUSED;
            }
            st.settled = st.flags.len();
            let qos = st.class.qos;
            let c = self.class(s);
            c.lost.fetch_add(lost, Relaxed);
            c.undelivered_at_stop.fetch_add(undelivered, Relaxed);
            if qos > 0 {
                c.unacked_at_stop.fetch_add(unacked, Relaxed);
                c.in_flight.fetch_sub(unacked as i64, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each way a message can end: delivered, duplicated, out of order,
    //! misrouted, excused and withdrawn, lost, abandoned in flight.

    use super::*;

    fn get(l: &Ledger, class: Class) -> crate::stats::ClassCounts {
        l.stats.class(class).counts()
    }

    #[test]
    fn delivered_once_in_order_is_clean() {
        let mut l = Ledger::new(Arc::default());
        let s = l.add(Class::live(1), 7);
        for _ in 0..3 {
            let seq = l.publish(s);
            l.acked(s, seq);
            assert_eq!(l.delivered(s, seq, 7, false), Delivery::First);
        }
        assert_eq!(l.pending(|_| true), 0);
        l.finish(|_| true);
        let c = get(&l, Class::live(1));
        assert_eq!((c.sent, c.acked, c.received, c.in_flight), (3, 3, 3, 0));
        assert_eq!(c.lost + c.duplicates + c.out_of_order, 0);
    }

    #[test]
    fn duplicates_are_allowed_only_at_qos_1() {
        let mut l = Ledger::new(Arc::default());
        let one = l.add(Class::session(1), 0);
        let two = l.add(Class::session(2), 0);
        for s in [one, two] {
            let seq = l.publish(s);
            l.acked(s, seq);
            l.delivered(s, seq, 0, false);
            assert_eq!(l.delivered(s, seq, 0, true), Delivery::Duplicate);
        }
        let (c1, c2) = (get(&l, Class::session(1)), get(&l, Class::session(2)));
        assert_eq!(
            (c1.duplicates, c1.dup_beyond_qos, c1.redelivered),
            (1, 0, 1)
        );
        assert_eq!((c2.duplicates, c2.dup_beyond_qos), (1, 1));
    }

    #[test]
    fn out_of_order_and_misrouted_are_counted() {
        let mut l = Ledger::new(Arc::default());
        let s = l.add(Class::live(0), 1);
        let (a, b) = (l.publish(s), l.publish(s));
        l.delivered(s, b, 1, false);
        l.delivered(s, a, 1, false);
        assert_eq!(l.delivered(s, a, 2, false), Delivery::Misrouted);
        assert_eq!(l.delivered(s, 99, 1, false), Delivery::Misrouted);
        let c = get(&l, Class::live(0));
        assert_eq!((c.out_of_order, c.misrouted, c.received), (1, 2, 2));
    }

    #[test]
    fn excused_when_the_session_ended_and_withdrawn_when_it_arrives() {
        let mut l = Ledger::new(Arc::default());
        let s = l.add(Class::live(1), 0);
        let (a, b, c) = (l.publish(s), l.publish(s), l.publish(s));
        l.acked(s, a);
        l.acked(s, b);
        l.excuse_sent(s);
        assert_eq!(get(&l, Class::live(1)).lost_at_close, 2);
        l.delivered(s, b, 0, false);
        assert_eq!(get(&l, Class::live(1)).lost_at_close, 1);
        // Acked after the excuse: lost with the session too.
        l.acked(s, c);
        let n = get(&l, Class::live(1));
        assert_eq!((n.lost_at_close, n.in_flight), (2, 0));
        l.finish(|_| true);
        assert_eq!(get(&l, Class::live(1)).lost, 0);
    }

    #[test]
    fn the_end_splits_lost_undelivered_and_unacked() {
        let mut l = Ledger::new(Arc::default());
        let on = l.add(Class::session(2), 0);
        let off = l.add(Class::session(2), 1);
        for s in [on, off] {
            let a = l.publish(s);
            l.acked(s, a);
            l.publish(s);
        }
        assert_eq!(l.pending(|c| c == 0), 1);
        l.finish(|c| c == 0);
        let c = get(&l, Class::session(2));
        assert_eq!(
            (c.lost, c.undelivered_at_stop, c.unacked_at_stop),
            (1, 1, 2)
        );
        assert_eq!(c.in_flight, 0);
    }

    #[test]
    fn one_message_excused_and_withdrawn() {
        let mut l = Ledger::new(Arc::default());
        let s = l.add(Class::session(2), 0);
        let (a, b) = (l.publish(s), l.publish(s));
        l.acked(s, a);
        l.excuse(s, a);
        l.excuse(s, a);
        assert_eq!(get(&l, Class::session(2)).lost_at_close, 1);
        l.delivered(s, a, 0, false);
        l.excuse(s, b);
        l.acked(s, b);
        let c = get(&l, Class::session(2));
        assert_eq!((c.lost_at_close, c.received, c.in_flight), (1, 1, 0));
        l.finish(|_| true);
        assert_eq!(get(&l, Class::session(2)).lost, 0);
    }

    #[test]
    fn a_group_gets_each_message_once_in_order_per_member() {
        let mut l = Ledger::new(Arc::default());
        let s = l.add_group(Class::v5_shared(2), vec![4, 5]);
        let seqs: Vec<u64> = (0..4).map(|_| l.publish(s)).collect();
        for seq in &seqs {
            l.acked(s, *seq);
        }
        // Members interleave: 2 reaches 5 before 1 reaches 4.
        assert_eq!(l.delivered(s, seqs[1], 5, false), Delivery::First);
        assert_eq!(l.delivered(s, seqs[0], 4, false), Delivery::First);
        assert_eq!(l.delivered(s, seqs[2], 4, false), Delivery::First);
        assert_eq!(l.delivered(s, seqs[2], 5, false), Delivery::Duplicate);
        assert_eq!(l.delivered(s, seqs[3], 6, false), Delivery::Misrouted);
        assert_eq!(l.pending(|c| c == 9), 0, "no member online");
        assert_eq!(l.pending(|c| c == 5), 1);
        l.finish(|c| c == 4);
        let c = get(&l, Class::v5_shared(2));
        assert_eq!((c.received, c.out_of_order, c.lost), (3, 0, 1));
        assert_eq!((c.duplicates, c.dup_beyond_qos, c.misrouted), (1, 1, 1));
    }

    #[test]
    fn abandoned_in_flight_never_counts_as_acked() {
        let mut l = Ledger::new(Arc::default());
        let s = l.add(Class::live(2), 0);
        let a = l.publish(s);
        l.abandon(s, a);
        l.acked(s, a);
        l.finish(|_| true);
        let c = get(&l, Class::live(2));
        assert_eq!(
            (c.acked, c.unacked_at_close, c.lost, c.in_flight),
            (0, 1, 0, 0)
        );
    }
}
