//! One load client's life on the event loop: a connection attempt
//! (connect, CONNACK, SUBSCRIBE until SUBACK and the retained version),
//! the established connection, and what follows its end, for each kind of
//! client (storm, idle, clean-session publisher, persistent session,
//! denied probe: [`probe`]), at MQTT 3.1.1 or 5 ([`v5`]).

use std::time::{Duration, Instant};

use emqx_mqtt::Packet;
use mio::{Registry, Token};

mod packets;
mod probe;
mod v5;
mod why;

use why::Why;

use crate::conn::{Conn, Io};
use crate::ledger::Ledger;
use crate::stats::{Outcome, Stats};
use crate::traffic::Traffic;
use crate::transport::Transport;
use crate::LoadOptions;

/// Keep alive the clients announce, in seconds.
pub const KEEP_ALIVE: u16 = 30;
/// Packet id of the attempt's SUBSCRIBE.
const SUBSCRIBE_ID: u16 = 1;
/// Pause after a storm attempt failed, so a dead port is probed, not
/// flooded.
const STORM_PAUSE: Duration = Duration::from_millis(10);
/// Pause of the other clients after a failed attempt or a lost connection.
const PAUSE: Duration = Duration::from_millis(50);
/// How long a graceful close waits for the broker's FIN.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Before leaving abruptly, a session stops acknowledging deliveries for
/// this long, so the broker holds some in flight to redeliver.
const MUTE: Duration = Duration::from_millis(100);

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connect, see the version, DISCONNECT; again, with a new client id.
    Storm,
    /// Holds a connection without traffic (keep-alive pings only).
    Idle,
    /// Clean session, publishing to itself.
    Live,
    /// `clean_session=0`: leaves and comes back, expecting its session.
    Session,
    /// With [`LoadOptions::auth`]: tries the denied topic about once a
    /// second ([`probe`]).
    Probe,
}

/// Where a client is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not connected; the next attempt is due at `at` (None: never).
    Offline {
        at: Option<Instant>,
    },
    Connecting,
    ConnAck,
    SubAck {
        subacked: bool,
        version: Option<String>,
    },
    Running,
    /// Our DISCONNECT is sent; waiting for the broker's FIN.
    Closing {
        until: Instant,
    },
}

impl Phase {
    /// In a connection attempt.
    pub fn attempting(&self) -> bool {
        matches!(
            self,
            Phase::Connecting | Phase::ConnAck | Phase::SubAck { .. }
        )
    }
}

/// What a client needs from the loop for one step.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub ledger: &'a mut Ledger,
    pub stats: &'a Stats,
    pub opts: &'a LoadOptions,
    /// The TLS clients' configuration, when [`LoadOptions::tls`] is set.
    pub tls: Option<&'a emqx_tls::TlsConfig>,
    /// The transports clients take in turn, by slot.
    pub transports: &'a [Transport],
    pub now: Instant,
    /// The run is ending: no new publishing, storms or session cycles.
    pub stopping: bool,
}

/// One client.
pub struct Client {
    pub kind: Kind,
    pub slot: usize,
    /// Bumped per connection; part of the token, so a late event of a
    /// closed connection never reaches the next one.
    pub gen: u32,
    name: String,
    attempts: u64,
    conn: Option<Conn>,
    pub phase: Phase,
    started: Instant,
    deadline: Instant,
    held: bool,
    last_write: Instant,
    last_read: Instant,
    pub traffic: Option<Traffic>,
    /// Session: its SUBSCRIBE got a SUBACK, so the broker holds the
    /// subscription while the session lasts.
    subscribed: bool,
    /// Session: excuse what was sent to it before its SUBACK (nothing
    /// subscribed to it then: the first connection, or the session gone).
    excuse_at_suback: bool,
    /// Deliveries were left unacknowledged on this connection.
    withheld: bool,
    online_until: Option<Instant>,
    next_leave_graceful: bool,
    /// The timer the loop has queued for this client.
    pub scheduled: Option<Instant>,
    /// MQTT 5: what this connection's broker set up and owes.
    v5: Option<crate::v5::V5Conn>,
    /// With [`LoadOptions::auth`]: the number of the user it connects as
    /// ([`crate::LoadAuth::username`]); its slot unless set.
    pub user: usize,
    /// A denied probe's state.
    probe: Option<probe::Probe>,
}

/// The poll token of a client's connection.
pub fn token(slot: usize, gen: u32) -> Token {
    Token((gen as usize) << 32 | slot)
}

impl Client {
    pub fn new(kind: Kind, slot: usize, name: String, traffic: Option<Traffic>) -> Client {
        let now = Instant::now();
        // A shared subscription's group gets what is sent after its first
        // member subscribed.
        let shared = traffic.as_ref().is_some_and(|t| t.is_shared());
        Client {
            kind,
            slot,
            gen: 0,
            name,
            attempts: 0,
            conn: None,
            phase: Phase::Offline { at: Some(now) },
            started: now,
            deadline: now,
            held: false,
            last_write: now,
            last_read: now,
            traffic,
            subscribed: false,
            excuse_at_suback: kind == Kind::Session || shared,
            withheld: false,
            online_until: None,
            next_leave_graceful: slot.is_multiple_of(2),
            scheduled: None,
            v5: None,
            user: slot,
            probe: None,
        }
    }

    /// Its name: the client id (a storm client's ids add the attempt).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connected past CONNACK and serving its traffic.
    pub fn online(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Nothing of this client is waiting for the broker.
    pub fn settled(&self) -> bool {
        match self.phase {
            Phase::Running => self.traffic.as_ref().is_none_or(|t| t.in_flight() == 0),
            Phase::Offline { at } => at.is_none(),
            _ => false,
        }
    }

    fn client_id(&self) -> String {
        match self.kind {
            Kind::Storm => format!("{}-{}", self.name, self.attempts),
            _ => self.name.clone(),
        }
    }

    /// Starts a connection attempt.
    pub fn start(&mut self, cx: &mut Ctx) {
        self.attempts += 1;
        self.gen = self.gen.wrapping_add(1);
        self.started = cx.now;
        self.deadline = cx.now + cx.opts.connect_timeout;
        let storm = self.kind == Kind::Storm;
        let (transport, addr) =
            crate::transport::choose(cx.opts, cx.transports, self.slot, self.attempts, storm);
        let tls = cx.tls.filter(|_| transport.is_tls());
        let path = cx.opts.ws.as_ref().map(|w| w.path.as_str());
        let ws = path.filter(|_| transport.is_websocket());
        match Conn::open(addr, cx.registry, token(self.slot, self.gen), tls, ws) {
            Ok(mut c) => {
                c.set_level(self.level());
                self.conn = Some(c);
                self.phase = Phase::Connecting;
            }
            Err(e) => {
                self.phase = Phase::Connecting;
                self.end(cx, Why::Io("connect", e));
            }
        }
    }

    /// A readiness event of the current connection.
    pub fn on_event(&mut self, cx: &mut Ctx) {
        if self.phase == Phase::Connecting {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match conn.check_connected() {
                Ok(false) => return,
                Ok(true) => {
                    let connect = self.connect_packet(cx.opts.auth.as_ref());
                    if let Some(conn) = self.conn.as_mut() {
                        conn.send(&connect);
                    }
                    self.phase = Phase::ConnAck;
                }
                Err(e) => return self.end(cx, Why::Io("connect", e)),
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let io = conn.fill();
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match conn.packet() {
                Ok(Some(p)) => {
                    self.last_read = cx.now;
                    if let Err(why) = self.on_packet(cx, p) {
                        return self.end(cx, why);
                    }
                }
                Ok(None) => break,
                Err(e) => return self.end(cx, Why::Packet(e)),
            }
        }
        match io {
            Io::Open => self.flush(cx),
            Io::Eof => self.end(cx, Why::Eof),
            Io::Failed(e) => self.end(cx, Why::Io("reading", e)),
        }
    }

    /// Writes what is queued; a failure ends the connection.
    fn flush(&mut self, cx: &mut Ctx) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.backlog() == 0 {
            return self.v5_flushed();
        }
        self.last_write = cx.now;
        match conn.flush() {
            Io::Failed(e) => self.end(cx, Why::Io("writing", e)),
            _ if conn.backlog() == 0 => self.v5_flushed(),
            _ => {}
        }
    }

    fn hold(&mut self, cx: &Ctx, on: bool) {
        if self.held != on {
            self.held = on;
            cx.stats.hold(if on { 1 } else { -1 });
        }
    }

    /// Drops the connection (ours to close) and waits until `at`.
    fn close(&mut self, cx: &mut Ctx, at: Option<Instant>) {
        self.conn = None;
        self.v5 = None;
        if let Some(p) = self.probe.as_mut() {
            p.forget();
        }
        self.online_until = None;
        self.withheld = false;
        self.hold(cx, false);
        self.phase = Phase::Offline { at };
    }

    /// The connection ended without us closing it.
    fn end(&mut self, cx: &mut Ctx, why: Why) {
        let phase = std::mem::replace(&mut self.phase, Phase::Offline { at: None });
        match &phase {
            Phase::Connecting | Phase::ConnAck | Phase::SubAck { .. } => {
                let waiting = match &phase {
                    Phase::Connecting => "connect",
                    Phase::ConnAck => "CONNACK",
                    _ => "SUBACK and the version",
                };
                let outcome = why.outcome(waiting);
                if matches!(phase, Phase::SubAck { .. }) && outcome != Outcome::TimedOut {
                    cx.stats.closed(why.reset(), &why.reason());
                }
                cx.stats.record(&outcome);
            }
            Phase::Running => cx.stats.closed(why.reset(), &why.reason()),
            Phase::Closing { .. } | Phase::Offline { .. } => {}
        }
        if self.kind == Kind::Live {
            if let Some(t) = self.traffic.as_mut() {
                t.clean_end(cx.ledger);
            }
        }
        let at = match (&phase, cx.stopping, self.kind) {
            (Phase::Closing { .. }, _, _) => Some(back_from_leave(cx)),
            // A session the broker closed as the run ends still comes back
            // once; a failed attempt then is the end.
            (Phase::Running, true, Kind::Session) => Some(cx.now),
            (_, true, _) => None,
            (_, false, Kind::Storm) => Some(cx.now + STORM_PAUSE),
            (_, false, _) => Some(cx.now + PAUSE),
        };
        self.close(cx, at);
    }

    /// Whether deliveries get their PUBACK/PUBREC now: not after our
    /// DISCONNECT, nor just before an abrupt leave.
    fn answering(&self, cx: &Ctx) -> bool {
        match self.phase {
            Phase::Closing { .. } => false,
            _ if self.kind != Kind::Session || cx.stopping || self.next_leave_graceful => true,
            _ => self.online_until.is_none_or(|t| cx.now + MUTE < t),
        }
    }

    /// A session leaves for a while: DISCONNECT, or (in turn) one more
    /// message published and the socket closed without waiting for
    /// anything, as a crashing client would. `graceful` overrides the turn.
    fn leave(&mut self, cx: &mut Ctx, graceful: Option<bool>) {
        let graceful = graceful.unwrap_or(self.next_leave_graceful);
        self.next_leave_graceful = !graceful;
        let back = Some(cx.now + cx.opts.session_offline);
        let stats = self.session_stats(cx);
        let Some(conn) = self.conn.as_mut() else {
            return self.close(cx, back);
        };
        if !graceful {
            stats.left_abruptly.fetch_add(1, relaxed());
            if let Some(t) = self.traffic.as_mut() {
                t.publish_one(conn, cx.ledger);
            }
            let _ = conn.flush();
            return self.close(cx, back);
        }
        conn.send(&Packet::disconnect());
        let flushed = matches!(conn.flush(), Io::Open) && conn.backlog() == 0;
        if !flushed {
            // The DISCONNECT did not go out: this is an abrupt leave.
            stats.left_abruptly.fetch_add(1, relaxed());
            return self.close(cx, back);
        }
        stats.left_gracefully.fetch_add(1, relaxed());
        conn.shutdown_write();
        self.phase = Phase::Closing {
            until: cx.now + CLOSE_WAIT,
        };
    }

    /// The run ends: no new attempts but a session's return, and a session
    /// that withheld acknowledgements leaves and returns so the broker
    /// redelivers them (3.1.1 redelivers only on a new connection).
    pub fn on_stop(&mut self, cx: &mut Ctx) {
        match self.phase {
            Phase::Offline { at: Some(_) } => {
                let at = (self.kind == Kind::Session).then_some(cx.now);
                self.phase = Phase::Offline { at };
            }
            Phase::Running if self.withheld => self.leave(cx, Some(true)),
            _ => {}
        }
    }

    /// The client's timers: attempt deadline, publishing, pings, session
    /// cycle, the broker's silence.
    pub fn on_timer(&mut self, cx: &mut Ctx) {
        let ka = Duration::from_secs(u64::from(KEEP_ALIVE));
        match self.phase {
            _ if self.phase.attempting() && cx.now >= self.deadline => self.end(cx, Why::TimedOut),
            Phase::Closing { until } if cx.now >= until => {
                let back = back_from_leave(cx);
                self.close(cx, Some(back));
            }
            Phase::Running => {
                if cx.now.duration_since(self.last_read) > 2 * ka {
                    return self.end(cx, Why::Silent);
                }
                if self.kind == Kind::Session
                    && !cx.stopping
                    && self.online_until.is_some_and(|t| cx.now >= t)
                {
                    return self.leave(cx, None);
                }
                let Some(conn) = self.conn.as_mut() else {
                    return;
                };
                if let (Some(t), false) = (self.traffic.as_mut(), cx.stopping) {
                    t.publish_due(cx.now, conn, cx.ledger);
                }
                if let (Some(p), false) = (self.probe.as_mut(), cx.stopping) {
                    p.probe_due(cx, conn);
                }
                if conn.backlog() == 0 && cx.now.duration_since(self.last_write) >= ka / 2 {
                    conn.send(&Packet::PingReq);
                }
                self.flush(cx);
            }
            _ => {}
        }
    }

    /// When [`Client::on_timer`] has something to do next.
    pub fn next_wake(&self, stopping: bool) -> Option<Instant> {
        let ka = Duration::from_secs(u64::from(KEEP_ALIVE));
        match &self.phase {
            Phase::Offline { at } => *at,
            Phase::Closing { until } => Some(*until),
            p if p.attempting() => Some(self.deadline),
            _ => {
                let mut t = (self.last_write + ka / 2).min(self.last_read + 2 * ka + ka / 10);
                if !stopping {
                    if let Some(p) = self.traffic.as_ref().and_then(|t| t.next_publish()) {
                        t = t.min(p);
                    }
                    if self.kind == Kind::Session {
                        t = self.online_until.map_or(t, |o| t.min(o));
                    }
                    if let Some(p) = self.probe.as_ref() {
                        t = t.min(p.next());
                    }
                }
                Some(t)
            }
        }
    }

    /// The run's end: DISCONNECT on an established connection, then close.
    pub fn finish(&mut self, cx: &mut Ctx) {
        let bye = self.goodbye();
        if let (Phase::Running, Some(conn)) = (&self.phase, self.conn.as_mut()) {
            conn.send(&bye);
            let _ = conn.flush();
        }
        self.close(cx, None);
    }
}

/// When a session that left comes back: after the offline period, or at
/// once to collect what its session holds when the run ends.
fn back_from_leave(cx: &Ctx) -> Instant {
    if cx.stopping {
        cx.now
    } else {
        cx.now + cx.opts.session_offline
    }
}

fn relaxed() -> std::sync::atomic::Ordering {
    std::sync::atomic::Ordering::Relaxed
}
