//! The harness's one event loop: every client on one mio poll, their
//! timers in a heap, a bound on attempts in progress, and the drain that
//! ends a run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::class::Class;
use crate::client::{Client, Ctx, Kind, Phase};
use crate::ledger::Ledger;
use crate::stats::Outcome;
use crate::traffic::Traffic;
use crate::Shared;

/// Most attempts in progress at once (a listen backlog holds more, but a
/// burst of thousands of SYNs would only time out in it).
const MAX_ATTEMPTS: usize = 256;
/// Longest poll wait, so a stop request is seen promptly.
const TICK: Duration = Duration::from_millis(20);
/// Past the connect timeout, how long the drain at the end may take.
const DRAIN_SLACK: Duration = Duration::from_secs(1);

struct Loop<'a> {
    shared: &'a Shared,
    poll: Poll,
    clients: Vec<Client>,
    ledger: Ledger,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    admission: VecDeque<usize>,
    queued: Vec<bool>,
    attempting: usize,
    stopping: bool,
}

/// Runs every client of the run until it stops, then drains and closes.
pub fn run(shared: &Shared) {
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("creating the event loop: {e}");
            return shared.stats.record(&Outcome::Other(msg));
        }
    };
    let mut ledger = Ledger::new(Arc::clone(&shared.stats));
    let clients = build(shared, &mut ledger);
    let n = clients.len();
    let mut lp = Loop {
        shared,
        poll,
        clients,
        ledger,
        timers: BinaryHeap::new(),
        admission: VecDeque::new(),
        queued: vec![false; n],
        attempting: 0,
        stopping: false,
    };
    for slot in 0..n {
        lp.reschedule(slot);
    }
    lp.serve();
    lp.finish();
}

/// QoS `i` of a list given in turn.
fn qos_of(list: &[u8], i: usize, lo: u8) -> u8 {
    list.get(i % list.len().max(1)).copied().unwrap_or(lo)
}

/// A ring of persistent sessions of one class, each publishing to the
/// next: those of `count` whose QoS in `qos` is the class's.
struct Ring<'o> {
    class: Class,
    count: usize,
    qos: &'o [u8],
    tag: &'static str,
}

impl Ring<'_> {
    fn build(&self, shared: &Shared, ledger: &mut Ledger, clients: &mut Vec<Client>) {
        let o = &shared.opts;
        let run = &shared.run_id;
        let prefix = format!("{run}/");
        let ring: Vec<usize> = (0..self.count)
            .filter(|i| qos_of(self.qos, *i, 2).clamp(1, 2) == self.class.qos)
            .collect();
        let base = clients.len();
        let streams: Vec<usize> = (0..ring.len())
            .map(|j| ledger.add(self.class, base + (j + 1) % ring.len()))
            .collect();
        for (j, i) in ring.iter().enumerate() {
            let input = streams[(j + ring.len() - 1) % ring.len()];
            let t = Traffic::new(self.class, streams[j], Some(input), &prefix, o.publish_rate);
            shared.stats.class(self.class).clients.fetch_add(1, Relaxed);
            let slot = clients.len();
            let name = format!("{run}-{}{i}", self.tag);
            clients.push(Client::new(Kind::Session, slot, name, Some(t)));
        }
    }
}

/// Shared subscription `g` at `qos`: a publisher, and a group of
/// subscribers of `$share/<run>-g<g>/<its topic>` receiving its stream.
fn shared_group(
    shared: &Shared,
    ledger: &mut Ledger,
    clients: &mut Vec<Client>,
    g: usize,
    qos: u8,
) {
    let o = &shared.opts;
    let run = &shared.run_id;
    let prefix = format!("{run}/");
    let class = Class::v5_shared(qos);
    let publisher = clients.len();
    let members: Vec<usize> = (1..=o.v5.group.max(1)).map(|m| publisher + m).collect();
    let s = ledger.add_group(class, members.clone());
    let t = Traffic::new(class, s, None, &prefix, o.publish_rate);
    shared.stats.class(class).clients.fetch_add(1, Relaxed);
    let name = format!("{run}-v5p{g}");
    clients.push(Client::new(Kind::Live, publisher, name, Some(t)));
    for (m, slot) in members.into_iter().enumerate() {
        let t = Traffic::new(class, s, Some(s), &prefix, 0.0).shared(format!("{run}-g{g}"));
        let name = format!("{run}-v5s{g}-{m}");
        let mut member = Client::new(Kind::Live, slot, name, Some(t));
        // With auth the group's topic names one receiving user.
        member.user = publisher;
        clients.push(member);
    }
}

/// The clients of a run, their streams registered in `ledger`.
fn build(shared: &Shared, ledger: &mut Ledger) -> Vec<Client> {
    let o = &shared.opts;
    let run = &shared.run_id;
    let prefix = format!("{run}/");
    let mut clients = Vec::new();
    let classes = &shared.stats;
    // Persistent sessions: one ring per QoS, each publishing to the next.
    for qos in [1u8, 2] {
        let ring = Ring {
            class: Class::session(qos),
            count: o.sessions,
            qos: &o.session_qos,
            tag: "c",
        };
        ring.build(shared, ledger, &mut clients);
        let ring = Ring {
            class: Class::v5_session(qos),
            count: o.v5.sessions,
            qos: &o.v5.session_qos,
            tag: "v5c",
        };
        ring.build(shared, ledger, &mut clients);
    }
    for (g, qos) in o.v5.shared_qos.iter().enumerate() {
        shared_group(shared, ledger, &mut clients, g, (*qos).min(2));
    }
    for i in 0..o.persistent {
        let class = Class::live(qos_of(&o.qos, i, 1).min(2));
        let slot = clients.len();
        let s = ledger.add(class, slot);
        let t = Traffic::new(class, s, Some(s), &prefix, o.publish_rate);
        classes.class(class).clients.fetch_add(1, Relaxed);
        clients.push(Client::new(
            Kind::Live,
            slot,
            format!("{run}-p{i}"),
            Some(t),
        ));
    }
    for (kind, n, tag) in [(Kind::Idle, o.idle, "i"), (Kind::Storm, o.storm, "s")] {
        for i in 0..n {
            let slot = clients.len();
            clients.push(Client::new(kind, slot, format!("{run}-{tag}{i}"), None));
        }
    }
    if let Some(auth) = &o.auth {
        for i in 0..crate::DENIED_PROBES {
            let slot = clients.len();
            let v5 = i >= crate::DENIED_PROBES / 2;
            clients.push(Client::probe(slot, format!("{run}-d{i}"), v5));
        }
        crate::auth::name_topics(&mut clients, auth, &prefix);
    }
    clients
}

impl Loop<'_> {
    /// Runs one client step with the loop's context, then keeps the
    /// attempt count and the client's timer right.
    fn step(&mut self, slot: usize, f: impl FnOnce(&mut Client, &mut Ctx)) {
        let Some(c) = self.clients.get_mut(slot) else {
            return;
        };
        let was = c.phase.attempting();
        let mut cx = Ctx {
            registry: self.poll.registry(),
            ledger: &mut self.ledger,
            stats: &self.shared.stats,
            opts: &self.shared.opts,
            tls: self.shared.tls.as_ref(),
            transports: &self.shared.transports,
            now: Instant::now(),
            stopping: self.stopping,
        };
        f(c, &mut cx);
        match (was, c.phase.attempting()) {
            (false, true) => self.attempting += 1,
            (true, false) => self.attempting -= 1,
            _ => {}
        }
        self.reschedule(slot);
    }

    fn reschedule(&mut self, slot: usize) {
        let c = &mut self.clients[slot];
        let wake = c.next_wake(self.stopping);
        if wake != c.scheduled {
            c.scheduled = wake;
            if let Some(t) = wake {
                self.timers.push(Reverse((t, slot)));
            }
        }
    }

    /// Starts queued attempts while fewer than [`MAX_ATTEMPTS`] run.
    fn admit(&mut self) {
        while self.attempting < MAX_ATTEMPTS {
            let Some(slot) = self.admission.pop_front() else {
                return;
            };
            self.queued[slot] = false;
            let c = &mut self.clients[slot];
            if !matches!(c.phase, Phase::Offline { at: Some(_) }) {
                continue;
            }
            if self.stopping && c.kind != Kind::Session {
                c.phase = Phase::Offline { at: None };
                continue;
            }
            self.step(slot, |c, cx| c.start(cx));
        }
    }

    fn serve(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut stop_by = None;
        loop {
            let now = Instant::now();
            if !self.stopping && self.shared.should_stop() {
                stop_by = Some(now + self.shared.opts.connect_timeout + DRAIN_SLACK);
                self.begin_stop();
            }
            if let Some(by) = stop_by {
                if now >= by || self.drained() {
                    return;
                }
            }
            self.admit();
            let wait = self.timers.peek().map_or(TICK, |Reverse((t, _))| {
                t.saturating_duration_since(now).min(TICK)
            });
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                let msg = format!("polling: {e}");
                return self.shared.stats.record(&Outcome::Other(msg));
            }
            for ev in &events {
                let (slot, gen) = (ev.token().0 & 0xffff_ffff, (ev.token().0 >> 32) as u32);
                if self.clients.get(slot).is_some_and(|c| c.gen == gen) {
                    self.step(slot, |c, cx| c.on_event(cx));
                }
            }
            self.timers_due();
        }
    }

    fn timers_due(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, slot))) = self.timers.peek() {
            if t > now {
                return;
            }
            self.timers.pop();
            if self.clients[slot].scheduled != Some(t) {
                continue;
            }
            self.clients[slot].scheduled = None;
            if let Phase::Offline { at: Some(_) } = self.clients[slot].phase {
                if !self.queued[slot] {
                    self.queued[slot] = true;
                    self.admission.push_back(slot);
                }
                continue;
            }
            self.step(slot, |c, cx| c.on_timer(cx));
        }
    }

    /// The run ends: no new storms; offline sessions come back at once to
    /// collect what their sessions hold.
    fn begin_stop(&mut self) {
        self.stopping = true;
        for slot in 0..self.clients.len() {
            self.step(slot, |c, cx| c.on_stop(cx));
        }
    }

    /// Every client settled and no message on its way to a connected one.
    fn drained(&mut self) -> bool {
        if !self.clients.iter().all(Client::settled) {
            return false;
        }
        let online: Vec<bool> = self.clients.iter().map(Client::online).collect();
        self.ledger.pending(|s| online[s]) == 0
    }

    /// Counts what never arrived, then closes every connection.
    fn finish(&mut self) {
        let online: Vec<bool> = self.clients.iter().map(Client::online).collect();
        self.ledger.finish(|s| online[s]);
        for slot in 0..self.clients.len() {
            self.step(slot, |c, cx| c.finish(cx));
        }
    }
}
