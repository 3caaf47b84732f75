//! What a moved connection is on the handoff channel: its state
//! ([`ConnState`], decoded strictly, its traffic secrets and login wiped
//! or kept out of error lines), with its socket once received
//! ([`MovedConn`]), and the broker-wide state beside it.

use std::fmt;
use std::os::fd::OwnedFd;

use emqx_tls::{wipe, Spares, TlsConfig, TlsState};
use serde::{Deserialize, Serialize};

use crate::snapshot::{ClientState, ImportError, Schema, SharedState};
use crate::transport::{self, Kind, Transport, WsState};

/// One connection's state on the loop, with its broker-side state;
/// decoded strictly (see [`crate::snapshot`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnState {
    pub client: ClientState,
    /// Bytes read and not yet a whole packet.
    pub inbuf: Vec<u8>,
    /// Bytes queued and not yet written.
    pub out: Vec<u8>,
    /// Its CONNECT came (and with it the keep-alive, in seconds).
    pub connected: bool,
    pub keep_alive: u16,
    /// Milliseconds since its last packet: keep-alive continues from it.
    pub idle_ms: u64,
    /// What it runs over; left out for plain TCP (as `refbroker/1`
    /// always was).
    #[serde(default, skip_serializing_if = "Kind::is_tcp")]
    pub transport: Kind,
    /// A TLS connection's state (a schema that carries TLS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsState>,
    /// A WebSocket connection's state (`refbroker/5` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<WsState>,
}

/// What [`ConnState`] serializes from, borrowed from the live connection
/// (no copy of its buffers before it is encoded).
#[derive(Serialize)]
pub(super) struct ConnStateRef<'a> {
    pub(super) client: &'a ClientState,
    pub(super) inbuf: &'a [u8],
    pub(super) out: &'a [u8],
    pub(super) connected: bool,
    pub(super) keep_alive: u16,
    pub(super) idle_ms: u64,
    #[serde(skip_serializing_if = "Kind::is_tcp")]
    pub(super) transport: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tls: Option<&'a TlsState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ws: Option<WsState>,
}

/// A connection on its way in: its transport, already adopted (a TLS
/// connection's s2n state restored) on the thread that receives the
/// batches, while the loop takes in the batch before; and its state.
pub struct MovedConn {
    pub transport: Box<dyn Transport>,
    pub state: ConnState,
}

/// serde's words for `e`, unless they quote a value ("invalid type:
/// string \"...\""): a connection's state holds its password, which must
/// not reach the exporter's or the helper's error line. Then where.
fn unquoted(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("invalid type") || text.starts_with("invalid value") {
        format!(
            "a value of the wrong type at line {} column {}",
            e.line(),
            e.column()
        )
    } else {
        text
    }
}

impl ConnState {
    /// Decodes one received connection's state of `schema` (`refbroker/1`
    /// carries plain TCP connections only), then wipes `bytes`.
    pub fn decode(schema: Schema, bytes: &mut [u8]) -> Result<ConnState, ImportError> {
        let state: Result<ConnState, _> = serde_json::from_slice(bytes);
        wipe(bytes);
        let state = state.map_err(|e| {
            ImportError::Invalid(format!("undecodable {schema} connection: {}", unquoted(&e)))
        })?;
        if !schema.carries_tls() && (state.transport != Kind::Tcp || state.tls.is_some()) {
            return Err(ImportError::Invalid(format!(
                "a {:?} connection in {schema}, which carries plain TCP only",
                state.transport
            )));
        }
        let websocket = matches!(state.transport, Kind::Ws | Kind::Wss);
        if !schema.carries_websocket() && (websocket || state.ws.is_some()) {
            return Err(ImportError::Invalid(format!(
                "a WebSocket connection in {schema}, which carries none"
            )));
        }
        Ok(state)
    }
}

impl MovedConn {
    /// Decodes one received connection and takes over its socket `fd`
    /// with the transport it ran over (`tls`: the configuration TLS
    /// connections continue under). The TLS state is wiped once used.
    /// A TLS connection is restored into one of `spares` while any is
    /// left.
    pub fn adopt(
        fd: OwnedFd,
        schema: Schema,
        bytes: &mut [u8],
        tls: Option<&TlsConfig>,
        spares: &mut Spares,
    ) -> Result<MovedConn, ImportError> {
        let mut state = ConnState::decode(schema, bytes)?;
        let frozen = state.tls.take();
        let ws = state.ws.take();
        let transport = transport::adopt(state.transport, fd, frozen.as_ref(), ws, tls, spares)
            .map_err(|e| ImportError::Invalid(format!("a moved socket: {e}")))?;
        Ok(MovedConn { transport, state })
    }
}

impl std::fmt::Debug for MovedConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MovedConn")
            .field("kind", &self.transport.kind())
            .field("state", &self.state)
            .finish()
    }
}

/// Decodes the broker-wide state of `schema`.
pub fn decode_shared(bytes: &[u8], schema: Schema) -> Result<SharedState, ImportError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ImportError::Invalid(format!("undecodable {schema} state: {e}")))
}
