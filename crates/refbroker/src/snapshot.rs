//! The broker's state as plain data: what protocol 2 (issue #12) carries
//! to the next release, in one of five [`Schema`]s. Broker-wide state
//! (retained messages, sessions without a connection, wills waiting out
//! their delay, shared subscription groups) and, per connection, the
//! client (listener, peer, protocol level, topic aliases, will) with its
//! session (subscriptions and their options, QoS 1/2 in flight both ways,
//! queue, next packet id, MQTT 5 limits and timers). Importing rebuilds
//! the routing index from the sessions, sends nothing and fires no will.
//! Timers (message and session expiry, will delay) travel as deadlines on
//! the host's monotonic clock, so they continue across the move and never
//! restart. Each client's login travels (refbroker/4) for the importer
//! to check against its own files; the files never do. The broker's own
//! `$SYS/` topics are not carried: the importer
//! has its own. Decoding is strict: a field this broker does not know (a
//! newer exporter's), or one the schema does not carry, refuses the
//! import rather than being dropped, so no state is read as less than it
//! is.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod broker;
mod convert;

/// The name of [`Schema::Tcp`].
pub const SCHEMA: &str = "refbroker/1";
/// The name of [`Schema::Tls`].
pub const SCHEMA_TLS: &str = "refbroker/2";
/// The name of [`Schema::Mqtt5`].
pub const SCHEMA_MQTT5: &str = "refbroker/3";
/// The name of [`Schema::Login`].
pub const SCHEMA_LOGIN: &str = "refbroker/4";
/// The name of [`Schema::WebSocket`].
pub const SCHEMA_WEBSOCKET: &str = "refbroker/5";

/// What a state carries; each schema carries all the one before does.
/// An importer that knows only an older one gets that instead, and what
/// it cannot carry stays and drains (the helper's report says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Schema {
    /// `refbroker/1`: MQTT 3.1.1 sessions over plain TCP.
    Tcp,
    /// `refbroker/2`: and TLS connections, each with its TLS state.
    Tls,
    /// `refbroker/3`: and MQTT 5 sessions, with every timer, alias,
    /// option and property; shared subscription groups.
    Mqtt5,
    /// `refbroker/4`: and each client's login (username, password, or
    /// certificate), which the importer checks against its own files.
    Login,
    /// `refbroker/5`: and WebSocket connections (ws and wss), with their
    /// upgrade, frame reader and framed output.
    WebSocket,
}

impl Schema {
    /// Every schema, the newest first (the order a broker offers them).
    pub const ALL: [Schema; 5] = [
        Schema::WebSocket,
        Schema::Login,
        Schema::Mqtt5,
        Schema::Tls,
        Schema::Tcp,
    ];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Tcp => SCHEMA,
            Schema::Tls => SCHEMA_TLS,
            Schema::Mqtt5 => SCHEMA_MQTT5,
            Schema::Login => SCHEMA_LOGIN,
            Schema::WebSocket => SCHEMA_WEBSOCKET,
        }
    }

    /// The schema named `name`, if this broker knows it.
    pub fn parse(name: &str) -> Option<Schema> {
        Schema::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it carries TLS connections.
    pub fn carries_tls(self) -> bool {
        self >= Schema::Tls
    }

    /// Whether it carries MQTT 5 (and MQTT 3.1) sessions.
    pub fn carries_mqtt5(self) -> bool {
        self >= Schema::Mqtt5
    }

    /// Whether it carries who each client logged in as.
    pub fn carries_login(self) -> bool {
        self >= Schema::Login
    }

    /// Whether it carries WebSocket connections.
    pub fn carries_websocket(self) -> bool {
        self >= Schema::WebSocket
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The MQTT 5 properties a message carries to its subscribers untouched.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ForwardedData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

/// An application message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageData {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// What an MQTT 5 publisher attached (refbroker/3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<ForwardedData>,
    /// When it expires, in milliseconds of the monotonic clock
    /// (refbroker/3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// One outgoing delivery in flight.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum InflightData {
    Sent(MessageData),
    Released,
}

/// The protocol level of 3.1.1, left out of the data.
fn v311() -> u8 {
    4
}

fn is_v311(level: &u8) -> bool {
    *level == 4
}

/// A session, connected or not.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionData {
    pub id: String,
    pub clean: bool,
    /// Each filter with its options byte (MQTT 5 §3.8.3.1; before
    /// refbroker/3 the QoS alone).
    pub subs: Vec<(String, u8)>,
    pub inflight: Vec<(u16, InflightData)>,
    pub queue: Vec<MessageData>,
    /// Sorted.
    pub awaiting_rel: Vec<u16>,
    pub dropped: u64,
    pub next_id: u16,
    /// The protocol level of its client's last CONNECT (3, 4 or 5;
    /// refbroker/3; 4 when left out).
    #[serde(default = "v311", skip_serializing_if = "is_v311")]
    pub level: u8,
    /// Its MQTT 5 state (refbroker/3, level 5 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v5: Option<SessionV5Data>,
    /// The username its client last logged in as (refbroker/4): the
    /// ACL reads for it as that user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// What an MQTT 5 session holds beyond a 3.1.1 one.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionV5Data {
    /// Session expiry interval, seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// Since when it has had no connection (monotonic milliseconds).
    pub offline_since: Option<u64>,
    pub receive_max: u16,
    pub max_packet: Option<u32>,
    /// Each filter's subscription identifier.
    pub sub_ids: Vec<(String, u32)>,
    /// The client's Topic Alias Maximum towards it (capped), and the
    /// topics of the aliases set on its connection, alias 1 first.
    pub alias_max: u16,
    pub aliases: Vec<String>,
}

/// A will, as CONNECT gave it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WillData {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// Its MQTT 5 properties (refbroker/3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<WillPropsData>,
}

/// A will's MQTT 5 properties: intervals as CONNECT gave them (they
/// start when the connection ends).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct WillPropsData {
    pub delay: Option<u32>,
    pub expiry: Option<u32>,
    pub forwarded: ForwardedData,
}

/// A will waiting out its delay (MQTT 5).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PendingWillData {
    pub client: String,
    /// When it is published (monotonic milliseconds).
    pub due: u64,
    pub message: MessageData,
}

/// A shared subscription group: its members in turn order, and whose
/// turn it is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupData {
    /// `$share/GROUP/FILTER`.
    pub filter: String,
    pub members: Vec<String>,
    pub next: usize,
}

/// Everything that is not one connection's.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SharedState {
    /// Sorted by topic.
    pub retained: Vec<MessageData>,
    /// Sessions without a connection, sorted by client id.
    pub offline: Vec<SessionData>,
    /// refbroker/3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wills: Vec<PendingWillData>,
    /// refbroker/3, sorted by filter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupData>,
}

/// One connection's broker-side state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientState {
    pub listener: String,
    pub peer: Option<SocketAddr>,
    /// None before its CONNECT.
    pub session: Option<SessionData>,
    pub will: Option<WillData>,
    /// Its CONNECT's protocol level (refbroker/3; 4 when left out).
    #[serde(default = "v311", skip_serializing_if = "is_v311")]
    pub level: u8,
    /// The topic aliases it set (MQTT 5, refbroker/3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<(u16, String)>,
    /// What it logged in with (refbroker/4; none before its CONNECT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginData>,
}

/// A connection's login: checked again by the importer, whose files
/// may differ. The password is its client's (mosquitto keeps it too, to
/// check connected clients again on reload); it travels only on the
/// brokers' own channel, never to disk or a log.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoginData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Vec<u8>>,
    /// The username is the client certificate's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_certificate: bool,
    /// The fingerprint of the password-file entry the exporter verified
    /// the password against (32 bytes; not the entry): an importer whose
    /// entry has the same one need not hash the password again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vec<u8>>,
}

/// Never shows the password.
impl fmt::Debug for LoginData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginData")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "..."))
            .field("by_certificate", &self.by_certificate)
            .field("verified", &self.verified.is_some())
            .finish()
    }
}

/// Why an import was refused; the importer's state is then unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// A bound of this broker is exceeded (what, how many, the bound).
    Bound(&'static str, usize, usize),
    /// The data is not a state this broker could have been in.
    Invalid(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Bound(what, n, max) => write!(f, "{n} {what}, at most {max} here"),
            ImportError::Invalid(m) => write!(f, "invalid state: {m}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// The furthest ahead a carried deadline may be: the longest interval
/// MQTT 5 has (`u32::MAX` seconds).
const MAX_AHEAD_MS: u64 = u32::MAX as u64 * 1000;

/// One reading of both clocks, to turn a deadline of this process
/// ([`Instant`]) into one of the host's monotonic clock, which every
/// process of one boot shares, and back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: Instant,
    /// The monotonic clock at `now`, in milliseconds.
    mono: u64,
}

impl Clock {
    /// Both clocks now.
    pub fn now() -> Clock {
        let now = Instant::now();
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::from(t).as_millis() as u64)
            .unwrap_or(0);
        Clock { now, mono }
    }

    /// `at` on the monotonic clock, in milliseconds.
    pub fn to_mono(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.now) {
            Some(ahead) => self.mono.saturating_add(ahead.as_millis() as u64),
            None => self
                .mono
                .saturating_sub(self.now.duration_since(at).as_millis() as u64),
        }
    }

    /// Monotonic milliseconds `ms` as an [`Instant`]; an error for one
    /// further ahead than any MQTT interval (never a panic on a byte
    /// another process wrote).
    pub fn from_mono(&self, ms: u64) -> Result<Instant, ImportError> {
        let too_far = || ImportError::Invalid(format!("a deadline {ms} ms on the monotonic clock"));
        if ms >= self.mono {
            let ahead = ms - self.mono;
            if ahead > MAX_AHEAD_MS {
                return Err(too_far());
            }
            return self
                .now
                .checked_add(Duration::from_millis(ahead))
                .ok_or_else(too_far);
        }
        // In the past: as far back as this process's clock goes.
        let behind = Duration::from_millis(self.mono - ms);
        Ok(self.now.checked_sub(behind).unwrap_or(self.now))
    }
}
