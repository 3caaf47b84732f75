//! What the `emqx-refbroker` binary runs with: its release version (from
//! `EMQX_BROKER_VERSION`, else the one release folder of its tree), its
//! listeners (`EMQX_LISTENERS`), its drain bound (`EMQX_DRAIN_SECS`), how
//! much it logs (`EMQX_LOG_LEVEL`, `EMQX_LOG_SUMMARY_SECS`), and
//! the failures a release tree can ask of it for tests
//! (`<tree>/etc/refbroker.toml`), and the TLS files of its `ssl`
//! listeners ([`tls`]). Each failure is a typed error ([`errors`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod errors;
pub mod tls;

pub use errors::{BehaviourError, DrainError, ListenerError, SettingsError, TreeError, VarError};
pub use tls::{TlsError, TlsSettings};

/// Listeners when `EMQX_LISTENERS` is not set.
pub const DEFAULT_LISTENERS: &str = "mqtt=127.0.0.1:1883,mqtt-alt=127.0.0.1:1884";
/// Drain bound when `EMQX_DRAIN_SECS` is not set.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
/// The failure file, relative to the release tree.
pub const BEHAVIOUR_FILE: &str = "etc/refbroker.toml";

/// A failure on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fail {
    /// Exit with code 3 before taking the listeners.
    ExitAtOnce,
    /// Never report `READY=1` (and so never accept).
    NeverReady,
    /// Abort about 300 ms after reporting `READY=1`.
    CrashAfterReady,
}

/// `<tree>/etc/refbroker.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// A failure on purpose.
    #[serde(default)]
    pub fail: Option<Fail>,
    /// A pause before reporting ready, in milliseconds.
    #[serde(default)]
    pub ready_delay_ms: u64,
    /// The session schemas it says it imports, instead of its own
    /// (`[]`: it cannot take sessions, so they drain).
    #[serde(default)]
    pub imports: Option<Vec<String>>,
    /// The most connections it imports (default: what its fd limit allows).
    #[serde(default)]
    pub import_max_conns: Option<usize>,
    /// A pause inside each import, in milliseconds (a slow import, for
    /// tests that kill the new broker in the middle of one).
    #[serde(default)]
    pub import_delay_ms: u64,
    /// The newest handoff protocol it speaks (1: as a release from before
    /// session moves).
    #[serde(default)]
    pub handoff_protocol: Option<u32>,
    /// The bound it states on moving its connections away, in
    /// milliseconds (default 10 s).
    #[serde(default)]
    pub move_bound_ms: Option<u64>,
}

/// What a listener speaks (`EMQX_LISTENERS` items are
/// `NAME=[KIND://]HOST:PORT[/PATH]`, a path for `ws` and `wss` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerKind {
    /// MQTT over plain TCP (the default).
    #[default]
    Tcp,
    /// MQTT over TLS.
    Ssl,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

/// The path a WebSocket listener serves unless told (EMQX's).
pub const DEFAULT_WS_PATH: &str = "/mqtt";

impl ListenerKind {
    /// Whether it speaks WebSocket (and takes a path).
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    /// Whether it needs the TLS settings.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Ssl | ListenerKind::Wss)
    }

    /// Its `KIND://` prefix.
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Ssl => "ssl",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// The kind a `KIND://` prefix names.
    fn parse(kind: &str) -> Result<ListenerKind, ListenerError> {
        match kind {
            "tcp" => Ok(ListenerKind::Tcp),
            "ssl" => Ok(ListenerKind::Ssl),
            "ws" => Ok(ListenerKind::Ws),
            "wss" => Ok(ListenerKind::Wss),
            _ => Err(ListenerError::BadKind(kind.to_string())),
        }
    }
}

/// One listener of `EMQX_LISTENERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    /// The HTTP path of a WebSocket listener (empty for the others).
    pub path: String,
}

/// Everything the binary needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The release version.
    pub version: String,
    /// Listeners by name.
    pub listeners: Vec<(String, ListenerSpec)>,
    /// The TLS files of `ssl` listeners (`EMQX_SSL_*`), when set.
    pub tls: Option<TlsSettings>,
    /// Who may connect and do what (`EMQX_AUTH_PASSWORD_FILE`,
    /// `EMQX_AUTH_ACL_FILE`, `EMQX_ALLOW_ANONYMOUS`): the files are named
    /// here and read at start ([`emqx_auth::Policy::load`]).
    pub auth: emqx_auth::Settings,
    /// The drain bound.
    pub drain: Duration,
    /// QoS 1/2 messages queued per session (`EMQX_MAX_QUEUED`).
    pub max_queued: usize,
    /// Per-connection lines too (`EMQX_LOG_LEVEL=debug`; default `info`:
    /// startup, switches, errors and the summary line only).
    pub debug: bool,
    /// The summary line's period (`EMQX_LOG_SUMMARY_SECS`, default 60;
    /// 0: none).
    pub summary_every: Duration,
    /// Failures on purpose.
    pub behaviour: Behaviour,
}

impl Settings {
    /// From the environment and the release tree the binary runs from.
    pub fn from_env() -> Result<Settings, SettingsError> {
        let tree = std::env::current_exe().ok().and_then(|e| tree_of(&e));
        let version = match var("EMQX_BROKER_VERSION")? {
            Some(v) => check_version(&v)?,
            None => {
                let tree = tree.as_deref().ok_or(SettingsError::NoTree)?;
                version_in_tree(tree).map_err(SettingsError::Tree)?
            }
        };
        let listeners = match var("EMQX_LISTENERS")? {
            Some(spec) => parse_listeners(&spec)
                .map_err(|e| SettingsError::Var("EMQX_LISTENERS", VarError::Listeners(e)))?,
            None => parse_listeners(DEFAULT_LISTENERS).map_err(SettingsError::DefaultListeners)?,
        };
        let drain = match var("EMQX_DRAIN_SECS")? {
            Some(s) => parse_drain(&s)
                .map_err(|e| SettingsError::Var("EMQX_DRAIN_SECS", VarError::Drain(e)))?,
            None => DEFAULT_DRAIN,
        };
        let max_queued = match var("EMQX_MAX_QUEUED")? {
            Some(s) => s.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                SettingsError::Var("EMQX_MAX_QUEUED", VarError::NotPositive(s.clone()))
            })?,
            None => crate::DEFAULT_MAX_QUEUED,
        };
        let debug = match var("EMQX_LOG_LEVEL")?.as_deref() {
            None | Some("info") => false,
            Some("debug") => true,
            Some(other) => {
                return Err(SettingsError::Var(
                    "EMQX_LOG_LEVEL",
                    VarError::NotALevel(other.to_string()),
                ))
            }
        };
        let summary_every = match var("EMQX_LOG_SUMMARY_SECS")? {
            Some(s) => Duration::from_secs(s.parse::<u64>().map_err(|_| {
                SettingsError::Var("EMQX_LOG_SUMMARY_SECS", VarError::NotSeconds(s.clone()))
            })?),
            None => Duration::from_secs(crate::DEFAULT_SUMMARY_SECS),
        };
        let tls = tls::from_env(var)?;
        let auth = emqx_auth::Settings::from_env(|name| std::env::var(name).ok())
            .map_err(SettingsError::Auth)?;
        if let Some((name, _)) = listeners
            .iter()
            .find(|(_, l)| l.kind.is_tls())
            .filter(|_| tls.is_none())
        {
            return Err(SettingsError::NoCertificate(name.clone()));
        }
        let behaviour = match &tree {
            Some(tree) => read_behaviour(tree).map_err(SettingsError::Behaviour)?,
            None => Behaviour::default(),
        };
        Ok(Settings {
            version,
            listeners,
            tls,
            auth,
            drain,
            max_queued,
            debug,
            summary_every,
            behaviour,
        })
    }
}

/// The release tree of a binary at `<tree>/bin/NAME`.
pub fn tree_of(exe: &Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    bin.parent().map(Path::to_path_buf)
}

/// Environment variable `name`, `None` when unset.
fn var(name: &'static str) -> Result<Option<String>, SettingsError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(SettingsError::Var(name, VarError::NotUnicode(e))),
    }
}

fn check_version(v: &str) -> Result<String, SettingsError> {
    semver::Version::parse(v)
        .map(|_| v.to_string())
        .map_err(|source| SettingsError::Version {
            version: v.to_string(),
            source,
        })
}

/// The single semver-named folder in `<tree>/releases/`.
pub fn version_in_tree(tree: &Path) -> Result<String, TreeError> {
    let dir = tree.join("releases");
    let unreadable = |source| TreeError::Read {
        dir: dir.clone(),
        source,
    };
    let entries = std::fs::read_dir(&dir).map_err(unreadable)?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && semver::Version::parse(&name).is_ok() {
            found.push(name);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(TreeError::NoRelease { dir }),
        _ => Err(TreeError::Several { dir, found }),
    }
}

/// `name=[kind://]ip:port[/path],...`: names non-empty, unique, without
/// `:` (the `LISTEN_FDNAMES` separator); kind `tcp` (the default), `ssl`,
/// `ws` or `wss`, the last two with a path (`/mqtt` unless given).
pub fn parse_listeners(spec: &str) -> Result<Vec<(String, ListenerSpec)>, ListenerError> {
    let mut out: Vec<(String, ListenerSpec)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, addr) = item
            .split_once('=')
            .ok_or_else(|| ListenerError::NotNamed(item.to_string()))?;
        if name.is_empty() || name.contains(':') {
            return Err(ListenerError::BadName(name.to_string()));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(ListenerError::Twice(name.to_string()));
        }
        let (kind, addr) = match addr.split_once("://") {
            Some((kind, addr)) => (ListenerKind::parse(kind)?, addr),
            None => (ListenerKind::Tcp, addr),
        };
        let (addr, path) = match addr.find('/') {
            Some(at) => (&addr[..at], &addr[at..]),
            None => (addr, ""),
        };
        let path = match (kind.is_websocket(), path) {
            (true, "") => DEFAULT_WS_PATH.to_string(),
            (true, p) if !p.contains([' ', '?', '#']) => p.to_string(),
            (false, "") => String::new(),
            _ => return Err(ListenerError::BadPath(item.to_string())),
        };
        let addr = addr.parse().map_err(|source| ListenerError::BadAddress {
            item: item.to_string(),
            source,
        })?;
        out.push((name.to_string(), ListenerSpec { kind, addr, path }));
    }
    if out.is_empty() {
        return Err(ListenerError::Empty);
    }
    Ok(out)
}

/// Seconds, a float from 0 to one day.
pub fn parse_drain(s: &str) -> Result<Duration, DrainError> {
    let secs: f64 = s.trim().parse().map_err(|source| DrainError::NotANumber {
        text: s.to_string(),
        source,
    })?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(DrainError::OutOfRange(s.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `<tree>/etc/refbroker.toml`, or the defaults if there is none.
pub fn read_behaviour(tree: &Path) -> Result<Behaviour, BehaviourError> {
    let path = tree.join(BEHAVIOUR_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|source| BehaviourError::Invalid { path, source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Behaviour::default()),
        Err(source) => Err(BehaviourError::Read { path, source }),
    }
}

#[cfg(test)]
mod tests {
    //! Each setting's parsing, and the error (variant and line) of each
    //! way it can be wrong.

    use super::*;
    use std::fs;

    #[test]
    fn the_tree_is_above_bin() {
        assert_eq!(
            tree_of(Path::new("/opt/emqx/bin/emqx")),
            Some(PathBuf::from("/opt/emqx"))
        );
        assert_eq!(tree_of(Path::new("/x/target/debug/emqx-refbroker")), None);
    }

    #[test]
    fn the_version_is_the_one_release_folder() {
        let t = tempfile::tempdir().unwrap();
        let e = version_in_tree(t.path());
        assert!(matches!(e, Err(TreeError::Read { .. })), "{e:?}");
        fs::create_dir_all(t.path().join("releases/5.0.1")).unwrap();
        fs::create_dir_all(t.path().join("releases/notes")).unwrap();
        fs::write(t.path().join("releases/5.0.9"), "a file").unwrap();
        assert_eq!(version_in_tree(t.path()).unwrap(), "5.0.1");
        fs::create_dir_all(t.path().join("releases/5.0.2")).unwrap();
        match version_in_tree(t.path()) {
            Err(e @ TreeError::Several { .. }) => {
                assert!(e.to_string().contains("5.0.1, 5.0.2"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        fs::remove_dir(t.path().join("releases/5.0.1")).unwrap();
        fs::remove_dir(t.path().join("releases/5.0.2")).unwrap();
        let e = version_in_tree(t.path());
        assert!(matches!(e, Err(TreeError::NoRelease { .. })), "{e:?}");
    }

    #[test]
    fn listeners_parse() {
        let l = parse_listeners(DEFAULT_LISTENERS).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].0, "mqtt-alt");
        assert_eq!(l[1].1.addr.port(), 1884);
        assert_eq!(l[1].1.kind, ListenerKind::Tcp);
        assert_eq!(parse_listeners(" a=[::1]:1,").unwrap()[0].1.addr.port(), 1);
        let kinds = parse_listeners(
            "a=tcp://127.0.0.1:1,b=ssl://127.0.0.1:2,c=ws://127.0.0.1:3,d=wss://[::1]:4/x/y",
        )
        .unwrap();
        assert_eq!(
            kinds
                .iter()
                .map(|(_, l)| (l.kind, l.path.as_str()))
                .collect::<Vec<_>>(),
            [
                (ListenerKind::Tcp, ""),
                (ListenerKind::Ssl, ""),
                (ListenerKind::Ws, "/mqtt"),
                (ListenerKind::Wss, "/x/y")
            ]
        );
        let kind = |e: ListenerError| match e {
            ListenerError::NotNamed(_) => "not named",
            ListenerError::BadName(_) => "bad name",
            ListenerError::Twice(_) => "twice",
            ListenerError::BadAddress { .. } => "bad address",
            ListenerError::Empty => "empty",
            ListenerError::BadKind(_) => "bad kind",
            ListenerError::BadPath(_) => "bad path",
        };
        for (bad, want) in [
            ("", "empty"),
            ("a", "not named"),
            ("a=1.2.3.4", "bad address"),
            ("=1.2.3.4:1", "bad name"),
            ("a:b=1.2.3.4:1", "bad name"),
            ("a=1.1.1.1:1,a=1.1.1.1:2", "twice"),
            ("a=tls://1.1.1.1:1", "bad kind"),
            ("a=tcp://1.1.1.1:1/mqtt", "bad path"),
            ("a=ws://1.1.1.1:1/a b", "bad path"),
            ("a=ssl://1.1.1.1", "bad address"),
        ] {
            assert_eq!(parse_listeners(bad).map_err(kind), Err(want), "{bad:?}");
        }
        assert_eq!(
            parse_listeners("a").unwrap_err().to_string(),
            "bad listener \"a\" (want name=ip:port)"
        );
    }

    #[test]
    fn drain_parses() {
        assert_eq!(parse_drain("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_drain("0").unwrap(), Duration::ZERO);
        for bad in ["-1", "NaN", "inf", "1e9"] {
            let e = parse_drain(bad);
            assert!(matches!(e, Err(DrainError::OutOfRange(_))), "{bad}: {e:?}");
        }
        let e = parse_drain("x");
        assert!(matches!(e, Err(DrainError::NotANumber { .. })), "{e:?}");
        // The binary's line, as before the errors were typed.
        let e = SettingsError::Var("EMQX_DRAIN_SECS", VarError::Drain(e.unwrap_err()));
        assert_eq!(
            e.to_string(),
            "EMQX_DRAIN_SECS: \"x\" is not a number of seconds: invalid float literal"
        );
    }

    #[test]
    fn behaviour_reads_strictly() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(read_behaviour(t.path()).unwrap(), Behaviour::default());
        fs::create_dir(t.path().join("etc")).unwrap();
        let file = t.path().join(BEHAVIOUR_FILE);
        fs::write(
            &file,
            "fail = \"crash-after-ready\"\nready_delay_ms = 250\n",
        )
        .unwrap();
        assert_eq!(
            read_behaviour(t.path()).unwrap(),
            Behaviour {
                fail: Some(Fail::CrashAfterReady),
                ready_delay_ms: 250,
                ..Behaviour::default()
            }
        );
        for (text, want) in [
            ("fail = \"exit-at-once\"", Fail::ExitAtOnce),
            ("fail = \"never-ready\"", Fail::NeverReady),
        ] {
            fs::write(&file, text).unwrap();
            assert_eq!(read_behaviour(t.path()).unwrap().fail, Some(want));
        }
        for bad in ["fail = \"sometimes\"", "typo = 1", "ready_delay_ms = -1"] {
            fs::write(&file, bad).unwrap();
            match read_behaviour(t.path()) {
                Err(e @ BehaviourError::Invalid { .. }) => {
                    assert!(e.to_string().starts_with(&format!("{}: ", file.display())))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
