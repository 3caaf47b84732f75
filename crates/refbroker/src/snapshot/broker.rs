//! The broker's side of a move: what it exports in a schema (and what
//! stays because the schema cannot carry it), and how it takes in
//! another broker's state, all checked before anything changes.

use std::collections::HashSet;
use std::rc::Rc;

use emqx_mqtt::{Level, ReasonCode};

use super::convert::Translator;
use super::{ClientState, GroupData, ImportError, PendingWillData, Schema, SharedState};
use crate::broker::{Broker, Client};
use crate::session::Session;

impl Broker {
    /// Retained messages, offline sessions, waiting wills and shared
    /// groups, as far as `schema` carries them; what it cannot carry
    /// stays here, and is logged.
    pub fn export_shared(&self, schema: Schema) -> SharedState {
        let t = Translator::new(schema);
        let carried = |s: &Session| schema.carries_mqtt5() || !s.level.is_v5();
        let mut retained: Vec<_> = self
            .router
            .all_retained()
            .filter(|m| !m.topic.starts_with("$SYS/"))
            .map(|m| t.message_data(m))
            .collect();
        retained.sort_by(|a, b| a.topic.cmp(&b.topic));
        let mut offline: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none() && carried(s))
            .map(|(id, s)| t.session_data(id, s))
            .collect();
        offline.sort_by(|a, b| a.id.cmp(&b.id));
        let stay = self
            .sessions
            .values()
            .filter(|s| s.conn.is_none() && !carried(s))
            .count();
        let mut shared = SharedState {
            retained,
            offline,
            ..SharedState::default()
        };
        if schema.carries_mqtt5() {
            shared.wills = self.export_wills(&t);
            shared.groups = self.export_groups();
        }
        let wills = self.pending_wills.len() - shared.wills.len();
        if stay + wills > 0 {
            self.log(format_args!(
                "{stay} offline MQTT 5 sessions and {wills} delayed wills stay here: {schema} carries none (they end with this broker)"
            ));
        }
        let stripped = t.stripped.get();
        if stripped > 0 {
            self.log(format_args!(
                "{stripped} retained messages lose their MQTT 5 properties and expiry: {schema} carries none"
            ));
        }
        shared
    }

    fn export_wills(&self, t: &Translator) -> Vec<PendingWillData> {
        self.pending_wills
            .iter()
            .map(|(id, due, m)| PendingWillData {
                client: id.to_string(),
                due: t.clock.to_mono(*due),
                message: t.message_data(m),
            })
            .collect()
    }

    fn export_groups(&self) -> Vec<GroupData> {
        let mut groups: Vec<GroupData> = self
            .router
            .shared
            .groups()
            .map(|(filter, members, next)| GroupData {
                filter: filter.to_string(),
                members: members.map(|m| m.to_string()).collect(),
                next,
            })
            .collect();
        groups.sort_by(|a, b| a.filter.cmp(&b.filter));
        groups
    }

    /// Whether connection `conn` has a client here.
    pub fn has_client(&self, conn: usize) -> bool {
        self.clients.contains_key(&conn)
    }

    /// Connection `conn`'s state in `schema`, if the broker knows it (the
    /// caller keeps MQTT 5 clients from older schemas). Messages that
    /// lose their MQTT 5 properties in an older schema are counted in
    /// `stripped`.
    pub fn export_client(
        &self,
        conn: usize,
        schema: Schema,
        stripped: &mut usize,
    ) -> Option<ClientState> {
        let t = Translator::new(schema);
        let c = self.clients.get(&conn)?;
        let session =
            c.id.as_ref()
                .and_then(|id| Some(t.session_data(id, self.sessions.get(id)?)));
        let v5 = schema.carries_mqtt5();
        // A login goes with a session (the importer refuses one without).
        let login = session.as_ref().and_then(|_| t.login_data(&c.login));
        let state = ClientState {
            listener: c.listener.to_string(),
            peer: c.peer,
            session,
            will: c.will.as_ref().map(|w| t.will_data(w)),
            level: if v5 { c.level.byte() } else { 4 },
            aliases: match v5 {
                true => c.aliases.iter().map(|(a, t)| (*a, t.to_string())).collect(),
                false => Vec::new(),
            },
            login,
        };
        *stripped += t.stripped.get();
        Some(state)
    }

    /// Adds retained messages, offline sessions, waiting wills and the
    /// groups' turn order, all in `schema`. All checked first: on an
    /// error nothing changed.
    pub fn import_shared(
        &mut self,
        state: &SharedState,
        schema: Schema,
    ) -> Result<(), ImportError> {
        let t = Translator::new(schema);
        let mqtt5_only = !state.wills.is_empty() || !state.groups.is_empty();
        if mqtt5_only && !schema.carries_mqtt5() {
            return Err(ImportError::Invalid(format!("MQTT 5 state in {schema}")));
        }
        // The importer's own `$SYS/` topics are never overwritten.
        let retained: Vec<_> = state
            .retained
            .iter()
            .filter(|m| !m.topic.starts_with("$SYS/"))
            .map(|m| t.message(m))
            .collect::<Result<_, _>>()?;
        let mut sessions = Vec::with_capacity(state.offline.len());
        let mut seen = HashSet::new();
        for d in &state.offline {
            if self.sessions.contains_key(d.id.as_str()) || !seen.insert(d.id.as_str()) {
                return Err(ImportError::Invalid(format!("client {:?} twice", d.id)));
            }
            sessions.push((d.id.as_str(), t.session(d, self.max_queued)?));
        }
        let mut wills: Vec<(String, std::time::Instant, crate::session::Message)> =
            Vec::with_capacity(state.wills.len());
        for w in &state.wills {
            if w.client.is_empty() || wills.iter().any(|(c, ..)| c == &w.client) {
                return Err(ImportError::Invalid("a delayed will twice".into()));
            }
            wills.push((
                w.client.clone(),
                t.clock.from_mono(w.due)?,
                t.message(&w.message)?,
            ));
        }
        for m in &retained {
            self.router.retain(m);
        }
        for (id, s) in sessions {
            self.adopt(id.into(), s, None);
        }
        for (id, due, m) in wills {
            self.pending_wills.push((id.into(), due, m));
        }
        self.moved_groups = state.groups.clone();
        Ok(())
    }

    /// Adds connection `conn` (a token of this broker's loop) with its
    /// client and session, in `schema`. On an error nothing changed.
    pub fn import_client(
        &mut self,
        conn: usize,
        state: &ClientState,
        schema: Schema,
    ) -> Result<(), ImportError> {
        let t = Translator::new(schema);
        if self.clients.contains_key(&conn) {
            return Err(ImportError::Invalid(format!("connection {conn} twice")));
        }
        let session = match &state.session {
            Some(d) if self.sessions.contains_key(d.id.as_str()) => {
                return Err(ImportError::Invalid(format!("client {:?} twice", d.id)))
            }
            Some(d) => Some((
                Rc::<str>::from(d.id.as_str()),
                t.session(d, self.max_queued)?,
            )),
            None => None,
        };
        let level = Level::ALL
            .into_iter()
            .find(|l| l.byte() == state.level)
            .filter(|l| schema.carries_mqtt5() || *l == Level::V311)
            .ok_or_else(|| {
                ImportError::Invalid(format!("a level {} client in {schema}", state.level))
            })?;
        if session.as_ref().is_some_and(|(_, s)| s.level != level) {
            return Err(ImportError::Invalid(
                "a client and its session at two levels".into(),
            ));
        }
        let will = state.will.as_ref().map(|w| t.will(w)).transpose()?;
        let aliases = self.moved_aliases(state, level)?;
        let login = t.login(state.login.as_ref())?;
        match &session {
            None if state.login.is_some() => {
                return Err(ImportError::Invalid("a login before CONNECT".into()))
            }
            // The ACL reads for the session's user: the login's.
            Some((_, s)) if schema.carries_login() && s.username != login.username => {
                return Err(ImportError::Invalid(
                    "a session whose user is not its login's".into(),
                ))
            }
            _ => {}
        }
        let listener = self.listener(&state.listener);
        let id = session.as_ref().map(|(id, _)| Rc::clone(id));
        self.clients.insert(
            conn,
            Box::new(Client {
                listener,
                peer: state.peer,
                id,
                will: will.map(Box::new),
                level,
                aliases,
                login,
            }),
        );
        if let Some((id, s)) = session {
            self.adopt(id, s, Some(conn));
        }
        Ok(())
    }

    /// Checks the login of connection `conn`, just imported, against this
    /// broker's files, `tls` being its socket's TLS identity (`None`: not
    /// TLS; `Some(cn)`: its certificate's common name, if any). A login
    /// the files refuse now is closed when the import goes, with its
    /// reason ([`Broker::take_refused`]).
    pub fn recheck_moved(&mut self, conn: usize, tls: Option<Option<&str>>) {
        let decision = self.recheck(conn, tls);
        if !decision.is_allowed() {
            self.refused
                .push((conn, ReasonCode(decision.v5_reason_code())));
        }
    }

    /// The topic aliases a moved MQTT 5 client had set, checked.
    fn moved_aliases(
        &self,
        state: &ClientState,
        level: Level,
    ) -> Result<Vec<(u16, Rc<str>)>, ImportError> {
        let max = crate::broker::TOPIC_ALIAS_MAX;
        let mut aliases: Vec<(u16, Rc<str>)> = Vec::with_capacity(state.aliases.len());
        for (a, topic) in &state.aliases {
            let bad = !level.is_v5()
                || *a == 0
                || *a > max
                || !emqx_mqtt::topic::valid_topic(topic)
                || aliases.iter().any(|(b, _)| b == a);
            if bad {
                return Err(ImportError::Invalid(format!("topic alias {a} ({topic:?})")));
            }
            aliases.push((*a, topic.as_str().into()));
        }
        Ok(aliases)
    }

    /// The import is whole: the shared groups take their members' turn
    /// order as they had it (members that did not move keep theirs, after).
    pub fn imported(&mut self) {
        for g in std::mem::take(&mut self.moved_groups) {
            self.router.shared.restore(&g.filter, &g.members, g.next);
        }
    }

    /// The go of a move in `schema`: what it carried of the broker-wide
    /// state is the importer's now, so a delayed will it took does not
    /// fire here too.
    pub fn moved_out(&mut self, schema: Schema) {
        if schema.carries_mqtt5() {
            self.pending_wills.clear();
        }
    }

    /// The connections imported whose login this broker's policy
    /// refuses, each with its reason: they are closed as soon as they are
    /// served (taken, so asked once).
    pub fn take_refused(&mut self) -> Vec<(usize, ReasonCode)> {
        std::mem::take(&mut self.refused)
    }

    /// Forgets connection `conn` and its session without a trace (no
    /// will, no log): they moved to another broker.
    pub fn release_client(&mut self, conn: usize) {
        self.refused.retain(|(t, _)| *t != conn);
        let Some(c) = self.clients.remove(&conn) else {
            return;
        };
        if let Some(id) = c.id {
            if self.sessions.get(&id).is_some_and(|s| s.conn == Some(conn)) {
                if let Some(s) = self.sessions.remove(&id) {
                    for (filter, _) in &s.subs {
                        self.router.unsubscribe(&id, filter);
                    }
                }
            }
        }
    }

    /// Keeps session `s` of `id`, its subscriptions routed.
    fn adopt(&mut self, id: Rc<str>, mut s: Session, conn: Option<usize>) {
        s.conn = conn;
        for (filter, options) in &s.subs {
            self.router.subscribe(&id, filter, options.qos);
        }
        self.sessions.insert(id, Box::new(s));
    }
}
