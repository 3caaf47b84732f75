//! The HTTP upgrade: a server reads a client's request and answers it
//! with `101 Switching Protocols` (subprotocol `mqtt`, or `mqttv3.1` as
//! EMQX also takes), or with the status that says what is wrong and
//! closes; a client (the load harness) writes its request and checks the
//! answer. Requests are bounded ([`MAX_REQUEST`]).

use tungstenite::handshake::derive_accept_key;

/// The longest upgrade request read (headers included).
pub const MAX_REQUEST: usize = 8192;
/// The most headers a request may have.
const MAX_HEADERS: usize = 32;
/// The subprotocols a server selects, in its order of preference: `mqtt`
/// (MQTT-6.0.0-3/4) and `mqttv3.1` (MQTT 3.1 clients; EMQX takes it).
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// What a server makes of the bytes a client sent so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// Not a whole request yet: read more.
    Incomplete,
    /// Upgraded: send `response`; the first `consumed` bytes were the
    /// request (what follows is WebSocket frames).
    Accepted {
        consumed: usize,
        response: Vec<u8>,
        subprotocol: &'static str,
    },
    /// Refused: send `response` (an HTTP status, `Connection: close`),
    /// then close; `why` is for the log.
    Refused {
        status: u16,
        response: Vec<u8>,
        why: String,
    },
}

/// The server's answer to `request` (the bytes read so far) for a
/// listener serving `path`.
pub fn server_upgrade(request: &[u8], path: &str) -> Upgrade {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(request) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST => return Upgrade::Incomplete,
        Ok(httparse::Status::Partial) => return refuse(431, "an upgrade request over 8 KiB"),
        Err(httparse::Error::TooManyHeaders) => return refuse(431, "over 32 headers"),
        Err(e) => return refuse(400, &format!("not an HTTP request ({e})")),
    };
    if consumed > MAX_REQUEST {
        return refuse(431, "an upgrade request over 8 KiB");
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .collect::<Vec<&str>>()
            .join(",")
    };
    let tokens = |name: &str| -> Vec<String> {
        header(name)
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    };
    if req.method != Some("GET") {
        return refuse(405, "not a GET");
    }
    // RFC 6455 §4.1: HTTP/1.1 or later, with a Host.
    if req.version != Some(1) {
        return refuse(400, "not HTTP/1.1");
    }
    if header("host").trim().is_empty() {
        return refuse(400, "no Host");
    }
    let asked = req.path.unwrap_or("");
    if asked.split('?').next() != Some(path) {
        return refuse(404, &format!("path {asked:?}, not {path:?}"));
    }
    if !tokens("upgrade").iter().any(|t| t == "websocket")
        || !tokens("connection").iter().any(|t| t == "upgrade")
    {
        return refuse(426, "no WebSocket upgrade asked");
    }
    if header("sec-websocket-version").trim() != "13" {
        return refuse(426, "not WebSocket version 13");
    }
    let key = header("sec-websocket-key");
    let key = key.trim();
    if !valid_key(key) {
        return refuse(400, "no valid Sec-WebSocket-Key");
    }
    // Subprotocol names are case-sensitive (RFC 6455 §4.1): the one
    // chosen is echoed as offered.
    let offered: Vec<String> = header("sec-websocket-protocol")
        .split(',')
        .map(|t| t.trim().to_string())
        .collect();
    let Some(subprotocol) = SUBPROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        return refuse(400, "the mqtt subprotocol not offered");
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    Upgrade::Accepted {
        consumed,
        response: response.into_bytes(),
        subprotocol,
    }
}

/// A key is 16 bytes in base64: 24 characters, the last two `==`.
fn valid_key(key: &str) -> bool {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    key.len() == 24 && key.ends_with("==") && key.bytes().take(22).all(b64)
}

fn refuse(status: u16, why: &str) -> Upgrade {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        _ => "Request Header Fields Too Large",
    };
    let extra = match status {
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    Upgrade::Refused {
        status,
        response: response.into_bytes(),
        why: why.to_string(),
    }
}

/// A fresh `Sec-WebSocket-Key` for a client's request (16 random bytes,
/// base64).
pub fn client_key() -> String {
    tungstenite::handshake::client::generate_key()
}

/// A client's upgrade request to `host` for `path`, offering `mqtt`, with
/// `key` ([`client_key`]).
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    .into_bytes()
}

/// Why a client takes a server's answer to its upgrade request as a
/// refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("an answer over 8 KiB")]
    TooLong,
    #[error("not an HTTP answer ({0})")]
    NotHttp(httparse::Error),
    #[error("HTTP status {0} instead of 101")]
    Status(u16),
    #[error("a wrong Sec-WebSocket-Accept")]
    WrongAccept,
    #[error("the server did not select the mqtt subprotocol")]
    NoSubprotocol,
    #[error("no Upgrade: websocket and Connection: Upgrade in the answer")]
    NotUpgraded,
    #[error("an extension the client did not ask for")]
    Extension,
}

/// What a client makes of the server's answer so far: `Ok(None)` read
/// more, `Ok(Some(n))` upgraded (the first `n` bytes were the answer).
pub fn client_check(response: &[u8], key: &str) -> Result<Option<usize>, AnswerError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let n = match res.parse(response) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if response.len() < MAX_REQUEST => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(AnswerError::TooLong),
        Err(e) => return Err(AnswerError::NotHttp(e)),
    };
    if res.code != Some(101) {
        return Err(AnswerError::Status(res.code.unwrap_or(0)));
    }
    let value = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has = |name: &str, token: &str| {
        value(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    // RFC 6455 §4.1: the upgrade confirmed, and no extension we did not
    // ask for (we ask for none).
    if !has("upgrade", "websocket") || !has("connection", "upgrade") {
        return Err(AnswerError::NotUpgraded);
    }
    if value("sec-websocket-extensions").is_some() {
        return Err(AnswerError::Extension);
    }
    if value("sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(AnswerError::WrongAccept);
    }
    if value("sec-websocket-protocol") != Some("mqtt") {
        return Err(AnswerError::NoSubprotocol);
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests;
