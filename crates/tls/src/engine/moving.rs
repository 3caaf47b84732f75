//! Moving an engine to another process: [`Engine::freeze`] serializes
//! it into a [`TlsState`], [`Engine::adopt`] (or [`Engine::adopt_into`]
//! a connection made ahead) restores it there, [`Engine::thaw`] here if
//! the move does not happen.

use std::cell::RefCell;

use s2n_tls::enums::Version;
use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, Pipe, Side};
use crate::config::TlsConfig;
use crate::secret::Secret;
use crate::spare::Spare;

/// What a frozen connection carries to another process: the serialized
/// s2n connection (traffic secrets: it goes only over the brokers'
/// channel and is wiped after use), the ciphertext read and not yet a
/// whole record, the ciphertext not yet written, and what s2n does not
/// restore (the peer certificate's identity, the server name the client
/// asked for, the protocol version). No listener negotiates ALPN (there
/// is no setting for it), so there is none to carry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsState {
    pub blob: Secret,
    pub incoming: Vec<u8>,
    pub outgoing: Vec<u8>,
    /// The client certificate's common name, if it showed one.
    pub peer_cn: Option<String>,
    /// The server name (SNI) the client asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
}

impl Engine {
    /// Serializes the established connection for another process. The
    /// s2n connection ends here; the engine keeps the blob until
    /// [`Engine::thaw`] (the move failed) or its drop (it went).
    pub fn freeze(&mut self) -> Result<TlsState, EngineError> {
        if !self.started {
            // A handshake not begun moves as its raw bytes (no blob): the
            // importer begins it, as this side would have.
            return Ok(TlsState {
                blob: Secret::default(),
                incoming: self.incoming.clone(),
                outgoing: Vec::new(),
                peer_cn: None,
                server_name: None,
                version: String::new(),
            });
        }
        if !self.established {
            return Err(EngineError::Handshaking);
        }
        let conn = self.conn.as_ref().ok_or(EngineError::Frozen)?;
        let mut blob = vec![0u8; conn.serialization_length()?];
        conn.serialize(&mut blob)?;
        self.retired = self.conn.take();
        let state = TlsState {
            blob: Secret::new(blob.clone()),
            incoming: self.incoming.clone(),
            outgoing: {
                let p = self.pipe.borrow();
                p.out[p.sent..].to_vec()
            },
            peer_cn: self.peer_cn.clone(),
            server_name: self.server_name.clone(),
            version: self.version().unwrap_or("").to_string(),
        };
        self.frozen = Some(Secret::new(blob));
        Ok(state)
    }

    /// Back as before [`Engine::freeze`]: a new s2n connection from the
    /// kept blob.
    pub fn thaw(&mut self) -> Result<(), EngineError> {
        let Some(blob) = self.frozen.take() else {
            return Ok(());
        };
        self.retired = None;
        if blob.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection()?;
        conn.deserialize(blob.bytes())?;
        self.conn = Some(conn);
        Ok(())
    }

    /// A connection moved from another process, as `state` carries it
    /// (without a blob: a server's handshake not begun).
    pub fn adopt(config: &TlsConfig, side: Side, state: &TlsState) -> Result<Engine, EngineError> {
        Engine::adopt_into(None, config, side, state)
    }

    /// As [`Engine::adopt`], restoring into `spare` when there is one
    /// (made under `config`, for `side`).
    pub fn adopt_into(
        spare: Option<Spare>,
        config: &TlsConfig,
        side: Side,
        state: &TlsState,
    ) -> Result<Engine, EngineError> {
        if state.blob.is_empty() {
            let mut engine = Engine::new(config, side, None)?;
            engine.incoming = state.incoming.clone();
            return Ok(engine);
        }
        let mut engine = Engine {
            conn: None,
            retired: None,
            pipe: Box::new(RefCell::new(Pipe {
                out: state.outgoing.clone(),
                ..Pipe::default()
            })),
            config: config.clone(),
            side,
            incoming: state.incoming.clone(),
            started: true,
            established: true,
            frozen: None,
            peer_cn: state.peer_cn.clone(),
            server_name: state.server_name.clone(),
            version: match state.version.as_str() {
                "TLSv1.3" => Some(Version::TLS13),
                "TLSv1.2" => Some(Version::TLS12),
                _ => None,
            },
        };
        let mut conn = match spare.filter(|s| s.side == side) {
            Some(spare) => engine.attach(spare)?,
            None => engine.connection()?,
        };
        conn.deserialize(state.blob.bytes())?;
        engine.conn = Some(conn);
        Ok(engine)
    }
}
