//! Between the broker's live state and its data, in one [`Schema`]: what
//! the schema does not carry is left out on export (and counted), and
//! refused on import; every value another process wrote is checked
//! against this broker's rules and bounds before it is used.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use emqx_auth::Fingerprint;
use emqx_mqtt::{topic, Level, Properties, SubOptions, Will};

use super::{
    Clock, ForwardedData, ImportError, InflightData, LoginData, MessageData, Schema, SessionData,
    SessionV5Data, WillData, WillPropsData,
};
use crate::broker::Login;
use crate::session::{Inflight, Message, OutAliases, Props, Session, MAX_INFLIGHT, OUT_ALIAS_CAP};

/// The largest subscription identifier (MQTT 5 §3.8.2.1.2).
const MAX_SUB_ID: u32 = 268_435_455;

/// One export or import: its schema and its reading of the clocks.
pub struct Translator {
    pub schema: Schema,
    pub clock: Clock,
    /// Messages whose MQTT 5 properties or expiry the schema could not
    /// carry (an older importer's).
    pub stripped: Cell<usize>,
}

fn invalid(what: impl Into<String>) -> ImportError {
    ImportError::Invalid(what.into())
}

fn forwarded_data(p: &Properties) -> ForwardedData {
    ForwardedData {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
    }
}

fn forwarded(d: &ForwardedData) -> Result<Properties, ImportError> {
    if d.payload_format_indicator.is_some_and(|f| f > 1) {
        return Err(invalid("a payload format indicator above 1"));
    }
    if d.response_topic
        .as_deref()
        .is_some_and(|t| !topic::valid_topic(t))
    {
        return Err(invalid("an invalid response topic"));
    }
    Ok(Properties {
        payload_format_indicator: d.payload_format_indicator,
        content_type: d.content_type.clone(),
        response_topic: d.response_topic.clone(),
        correlation_data: d.correlation_data.clone(),
        user_properties: d.user_properties.clone(),
        ..Properties::default()
    })
}

/// The longest username or password MQTT can carry.
const MAX_FIELD: usize = u16::MAX as usize;

/// A carried username, checked as CONNECT's would be.
fn username(u: Option<&str>) -> Result<(), ImportError> {
    match u {
        Some(u) if u.len() > MAX_FIELD || u.contains('\0') => Err(invalid("a username")),
        _ => Ok(()),
    }
}

/// A protocol level byte as the level.
fn level(b: u8) -> Result<Level, ImportError> {
    Level::ALL
        .into_iter()
        .find(|l| l.byte() == b)
        .ok_or_else(|| invalid(format!("protocol level {b}")))
}

impl Translator {
    pub fn new(schema: Schema) -> Translator {
        Translator {
            schema,
            clock: Clock::now(),
            stripped: Cell::new(0),
        }
    }

    pub fn message_data(&self, m: &Message) -> MessageData {
        let (props, expires_at) = match (&m.props, self.schema.carries_mqtt5()) {
            (Some(p), true) => (
                (!p.forwarded.is_empty()).then(|| forwarded_data(&p.forwarded)),
                p.expires.map(|(at, _)| self.clock.to_mono(at)),
            ),
            (Some(_), false) => {
                self.stripped.set(self.stripped.get() + 1);
                (None, None)
            }
            (None, _) => (None, None),
        };
        MessageData {
            topic: m.topic.to_string(),
            payload: m.payload.to_vec(),
            qos: m.qos,
            retain: m.retain,
            props,
            expires_at,
        }
    }

    pub fn message(&self, m: &MessageData) -> Result<Message, ImportError> {
        if m.qos > 2 || !topic::valid_topic(&m.topic) {
            return Err(invalid(format!("message on {:?}", m.topic)));
        }
        let v5 = m.props.is_some() || m.expires_at.is_some();
        if v5 && !self.schema.carries_mqtt5() {
            return Err(invalid(format!("MQTT 5 properties in {}", self.schema)));
        }
        let props = match v5 {
            false => None,
            true => {
                let forwarded = match &m.props {
                    Some(d) => forwarded(d)?,
                    None => Properties::default(),
                };
                let expires = match m.expires_at {
                    Some(ms) => {
                        let at = self.clock.from_mono(ms)?;
                        let left = at.saturating_duration_since(self.clock.now);
                        Some((at, left.as_secs().min(u64::from(u32::MAX)) as u32))
                    }
                    None => None,
                };
                Some(Rc::new(Props { forwarded, expires }))
            }
        };
        Ok(Message {
            topic: m.topic.as_str().into(),
            payload: Rc::from(&m.payload[..]),
            qos: m.qos,
            retain: m.retain,
            props,
        })
    }

    pub fn will_data(&self, w: &Will) -> WillData {
        let p = &w.properties;
        let props = WillPropsData {
            delay: p.will_delay_interval,
            expiry: p.message_expiry_interval,
            forwarded: forwarded_data(p),
        };
        let carried = self.schema.carries_mqtt5() && props != WillPropsData::default();
        WillData {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: w.qos,
            retain: w.retain,
            props: carried.then_some(props),
        }
    }

    pub fn will(&self, d: &WillData) -> Result<Will, ImportError> {
        if d.qos > 2 || !topic::valid_topic(&d.topic) {
            return Err(invalid(format!("a will on {:?}", d.topic)));
        }
        let mut will = Will::new(d.topic.clone(), d.payload.clone(), d.qos, d.retain);
        if let Some(p) = &d.props {
            if !self.schema.carries_mqtt5() {
                return Err(invalid(format!("will properties in {}", self.schema)));
            }
            will.properties = Properties {
                will_delay_interval: p.delay,
                message_expiry_interval: p.expiry,
                ..forwarded(&p.forwarded)?
            };
        }
        Ok(will)
    }

    /// Session `s` of client `id`; a 3.1 session as 3.1.1 before
    /// refbroker/3 (the caller keeps MQTT 5 sessions from older schemas).
    pub fn session_data(&self, id: &str, s: &Session) -> SessionData {
        let v5 = self.schema.carries_mqtt5();
        let mut awaiting_rel: Vec<u16> = s.awaiting_rel.iter().copied().collect();
        awaiting_rel.sort_unstable();
        let inflight = s.inflight.iter().map(|(id, f)| {
            let f = match f {
                Inflight::Sent(m) => InflightData::Sent(self.message_data(m)),
                Inflight::Released => InflightData::Released,
            };
            (*id, f)
        });
        SessionData {
            id: id.to_string(),
            clean: s.clean(),
            subs: s
                .subs
                .iter()
                .map(|(f, o)| (f.clone(), if v5 { o.byte() } else { o.qos }))
                .collect(),
            inflight: inflight.collect(),
            queue: s.queue.iter().map(|m| self.message_data(m)).collect(),
            awaiting_rel,
            dropped: s.dropped,
            next_id: s.next_id,
            level: if v5 { s.level.byte() } else { 4 },
            v5: (v5 && s.level.is_v5()).then(|| SessionV5Data {
                expiry: s.expiry,
                offline_since: s.offline_since.map(|t| self.clock.to_mono(t)),
                receive_max: s.receive_max,
                max_packet: s.max_packet,
                sub_ids: s.sub_ids.clone(),
                alias_max: s.out_aliases.max,
                aliases: s.out_aliases.topics.iter().map(|t| t.to_string()).collect(),
            }),
            username: match self.schema.carries_login() {
                true => s.username.as_deref().map(str::to_string),
                false => None,
            },
        }
    }

    /// A connection's login, if the schema carries it.
    pub fn login_data(&self, l: &Login) -> Option<LoginData> {
        self.schema.carries_login().then(|| LoginData {
            username: l.username.as_deref().map(str::to_string),
            password: l.password.as_deref().map(<[u8]>::to_vec),
            by_certificate: l.by_certificate,
            verified: l.verified.map(|f| f.0.to_vec()),
        })
    }

    /// A moved connection's login, checked (none: anonymous).
    pub fn login(&self, d: Option<&LoginData>) -> Result<Login, ImportError> {
        let Some(d) = d else {
            return Ok(Login::default());
        };
        if !self.schema.carries_login() {
            return Err(invalid(format!("a login in {}", self.schema)));
        }
        username(d.username.as_deref())?;
        let long = d.password.as_ref().is_some_and(|p| p.len() > MAX_FIELD);
        if long || (d.by_certificate && d.password.is_some()) {
            return Err(invalid("a password too long, or with a certificate"));
        }
        let verified = match d.verified.as_deref() {
            None => None,
            Some(f) if d.password.is_some() => {
                Some(Fingerprint(f.try_into().map_err(|_| {
                    invalid("a fingerprint that is not 32 bytes")
                })?))
            }
            Some(_) => return Err(invalid("a fingerprint without a password")),
        };
        Ok(Login {
            username: d.username.as_deref().map(Rc::from),
            password: d.password.clone().map(Vec::into_boxed_slice),
            by_certificate: d.by_certificate,
            verified,
        })
    }

    /// Checks `d` against this broker's bounds and rebuilds the session.
    pub fn session(&self, d: &SessionData, max_queued: usize) -> Result<Session, ImportError> {
        if d.id.is_empty() {
            return Err(invalid("a session without a client id"));
        }
        if d.inflight.len() > MAX_INFLIGHT {
            let n = d.inflight.len();
            return Err(ImportError::Bound("deliveries in flight", n, MAX_INFLIGHT));
        }
        if d.queue.len() > max_queued {
            let n = d.queue.len();
            return Err(ImportError::Bound("queued messages", n, max_queued));
        }
        let level = level(d.level)?;
        if (level != Level::V311 && !self.schema.carries_mqtt5()) || level.is_v5() != d.v5.is_some()
        {
            return Err(invalid(format!(
                "a level {} session in {}",
                d.level, self.schema
            )));
        }
        if d.awaiting_rel.contains(&0) {
            return Err(invalid("packet id 0 awaiting PUBREL"));
        }
        let mut s = Session::new(d.clean);
        s.level = level;
        s.subs = self.subs(d, level)?;
        s.inflight = self.inflight(d)?;
        s.queue = d
            .queue
            .iter()
            .map(|m| self.message(m))
            .collect::<Result<_, _>>()?;
        if s.queue.iter().any(|m| m.qos == 0) {
            return Err(invalid("a QoS 0 message queued"));
        }
        s.awaiting_rel = d.awaiting_rel.iter().copied().collect();
        if d.username.is_some() && !self.schema.carries_login() {
            return Err(invalid(format!("a username in {}", self.schema)));
        }
        username(d.username.as_deref())?;
        s.username = d.username.as_deref().map(Rc::from);
        s.dropped = d.dropped;
        s.next_id = d.next_id;
        if let Some(v5) = &d.v5 {
            self.session_v5(&mut s, v5, d.clean)?;
        }
        Ok(s)
    }

    fn subs(
        &self,
        d: &SessionData,
        level: Level,
    ) -> Result<Vec<(String, SubOptions)>, ImportError> {
        d.subs
            .iter()
            .map(|(f, o)| {
                let options = match level {
                    Level::V5 => SubOptions::from_byte(*o),
                    _ => (*o <= 2).then(|| SubOptions::qos(*o)),
                };
                let valid = topic::valid_filter(f) || crate::router::shared::split(f).is_some();
                match options {
                    Some(options) if valid => Ok((f.clone(), options)),
                    _ => Err(invalid(format!("subscription {f:?} ({o:#04x})"))),
                }
            })
            .collect()
    }

    fn inflight(&self, d: &SessionData) -> Result<VecDeque<(u16, Inflight)>, ImportError> {
        let mut ids = HashSet::new();
        let mut inflight = VecDeque::with_capacity(d.inflight.len());
        for (id, f) in &d.inflight {
            if *id == 0 || !ids.insert(*id) {
                return Err(invalid(format!("packet id {id} in flight")));
            }
            let f = match f {
                InflightData::Sent(m) if m.qos == 0 => {
                    return Err(invalid("a QoS 0 message in flight"))
                }
                InflightData::Sent(m) => Inflight::Sent(self.message(m)?),
                InflightData::Released => Inflight::Released,
            };
            inflight.push_back((*id, f));
        }
        Ok(inflight)
    }

    fn session_v5(
        &self,
        s: &mut Session,
        d: &SessionV5Data,
        clean: bool,
    ) -> Result<(), ImportError> {
        if clean != (d.expiry == 0) {
            return Err(invalid("a clean session with an expiry, or the opposite"));
        }
        if d.receive_max == 0 || d.max_packet == Some(0) {
            return Err(invalid("a receive maximum or maximum packet size of 0"));
        }
        let subscribed = |f: &str| s.subs.iter().any(|(g, _)| g == f);
        if let Some((f, id)) = d
            .sub_ids
            .iter()
            .find(|(f, id)| *id == 0 || *id > MAX_SUB_ID || !subscribed(f))
        {
            return Err(invalid(format!("subscription identifier {id} of {f:?}")));
        }
        if d.alias_max > OUT_ALIAS_CAP
            || d.aliases.len() > usize::from(d.alias_max)
            || d.aliases.iter().any(|t| !topic::valid_topic(t))
        {
            return Err(invalid("topic aliases past their maximum, or invalid"));
        }
        s.expiry = d.expiry;
        s.offline_since = d
            .offline_since
            .map(|ms| self.clock.from_mono(ms))
            .transpose()?;
        s.receive_max = d.receive_max;
        s.max_packet = d.max_packet;
        s.sub_ids = d.sub_ids.clone();
        s.out_aliases = OutAliases {
            max: d.alias_max,
            topics: d.aliases.iter().map(|t| Rc::from(t.as_str())).collect(),
        };
        Ok(())
    }
}
