//! The reference broker binary, packaged in release packages as `bin/emqx`
//! and started as `bin/emqx foreground`. Its version is the one release
//! folder of its tree (`<tree>/releases/VSN/`) or `EMQX_BROKER_VERSION`;
//! listeners come from `EMQX_LISTENERS` (`name=ip:port,...`) or are
//! inherited; `<tree>/etc/refbroker.toml` can make a release misbehave for
//! tests (`fail = "exit-at-once" | "never-ready" | "crash-after-ready"`,
//! `ready_delay_ms = N`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use emqx_relup::broker::{self, Options};
use emqx_relup::refbroker::RefBroker;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Behaviour {
    fail: Option<String>,
    ready_delay_ms: Option<u64>,
}

fn tree() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

fn version(tree: Option<&Path>) -> Result<String, String> {
    if let Ok(v) = std::env::var("EMQX_BROKER_VERSION") {
        return Ok(v);
    }
    let dir = tree.ok_or("cannot find my release tree")?.join("releases");
    let found: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| semver::Version::parse(n).is_ok())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "expected one release folder in {}, found {found:?}",
            dir.display()
        )),
    }
}

fn listeners() -> Result<Vec<(String, SocketAddr)>, String> {
    let spec = std::env::var("EMQX_LISTENERS")
        .unwrap_or_else(|_| "mqtt=127.0.0.1:1883,mqtt-alt=127.0.0.1:1884".into());
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (name, addr) = item
                .split_once('=')
                .ok_or(format!("bad listener '{item}' (name=ip:port)"))?;
            let addr = addr
                .parse()
                .map_err(|e| format!("bad address in '{item}': {e}"))?;
            Ok((name.to_string(), addr))
        })
        .collect()
}

fn behaviour(tree: Option<&Path>) -> Result<Behaviour, String> {
    let Some(path) = tree.map(|t| t.join("etc/refbroker.toml")) else {
        return Ok(Behaviour::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(_) => Ok(Behaviour::default()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(args.is_empty() || args == ["foreground"]) {
        eprintln!("emqx-refbroker: ERROR: unexpected arguments {args:?} (usage: emqx foreground)");
        return ExitCode::from(2);
    }
    let tree = tree();
    let setup = (|| {
        Ok::<_, String>((
            version(tree.as_deref())?,
            listeners()?,
            behaviour(tree.as_deref())?,
        ))
    })();
    let (version, listeners, behaviour) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("emqx-refbroker: ERROR: {e}");
            return ExitCode::from(2);
        }
    };
    let log = |m: &str| eprintln!("emqx-refbroker[{version}]: {m}");
    let mut ready_delay = Duration::from_millis(behaviour.ready_delay_ms.unwrap_or(0));
    match behaviour.fail.as_deref() {
        None => {}
        Some("exit-at-once") => {
            log("failing on purpose: exit at once");
            return ExitCode::from(3);
        }
        Some("never-ready") => {
            log("failing on purpose: never ready");
            ready_delay = Duration::from_secs(24 * 3600);
        }
        Some("crash-after-ready") => {
            log("failing on purpose: crash 300 ms after READY");
            let at = ready_delay + Duration::from_millis(300);
            std::thread::spawn(move || {
                std::thread::sleep(at);
                std::process::abort();
            });
        }
        Some(other) => {
            log(&format!("ERROR: unknown fail mode '{other}'"));
            return ExitCode::from(2);
        }
    }
    let drain = std::env::var("EMQX_DRAIN_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.0..=86_400.0).contains(s))
        .unwrap_or(5.0);
    let options = Options {
        version: version.clone(),
        listeners,
        handoff_path: Options::handoff_path_from_env(),
        drain: Duration::from_secs_f64(drain),
        ready_delay,
    };
    log(&format!(
        "starting (pid {}, handoff socket {})",
        std::process::id(),
        options.handoff_path.display()
    ));
    match broker::run(options, Arc::new(RefBroker::new(&version))) {
        Ok(d) => {
            log(&format!(
                "switched away: drained {} connections, closed {} at the bound; exiting",
                d.at_commit, d.closed
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log(&format!("ERROR: {e}"));
            ExitCode::from(1)
        }
    }
}
