//! Clients and a broker this project did not write, for protocol tests:
//! paho-mqtt (PyPI, pinned, in a virtual environment under the build
//! output, made on first use) and Debian's `mosquitto` as the reference.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::broker::free_port;

/// The paho-mqtt release the tests run.
pub const PAHO_VERSION: &str = "2.1.0";

/// Debian's python, not whatever `python3` a developer's PATH finds first.
const PYTHON: &str = "/usr/bin/python3";

/// The python of a virtual environment holding paho-mqtt
/// [`PAHO_VERSION`]; created once (needs `python3-venv` and the PyPI
/// registry), and a test fails, not skips, when it cannot be.
pub fn paho_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let spec = format!("paho-mqtt=={PAHO_VERSION}");
        pinned_venv(&format!("paho-venv-{PAHO_VERSION}"), &[spec.as_str()]).join("bin/python")
    })
    .clone()
}

/// A virtual environment of Debian's python named `name` under the build
/// output, holding `requirements` (pinned, from PyPI); made when it is
/// not there yet, else reused. Returns its folder.
pub fn pinned_venv(name: &str, requirements: &[&str]) -> PathBuf {
    let venv = crate::bins::dir().join(name);
    let python = venv.join("bin/python");
    let marker = venv.join(".installed");
    if !marker.exists() {
        let _ = fs::remove_dir_all(&venv);
        run(Command::new(PYTHON).args(["-m", "venv"]).arg(&venv));
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(requirements));
        fs::write(&marker, requirements.join("\n")).unwrap();
    }
    venv
}

/// Writes a mosquitto `password_file` of `users` (name, password) at
/// `path`, readable by all, hashed by Debian's `mosquitto_passwd -U` in
/// one run (its default: `$7$`, PBKDF2-SHA512, 101 iterations), the
/// file replaced whole (a rename), as an operator's tools do.
pub fn mosquitto_password_file(path: &std::path::Path, users: &[(String, String)]) {
    use std::os::unix::fs::PermissionsExt;
    let next = path.with_extension("new");
    let text: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    fs::write(&next, text).unwrap();
    run(Command::new("/usr/bin/mosquitto_passwd")
        .arg("-U")
        .arg(&next));
    fs::set_permissions(&next, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&next, path).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (scripts/test installs python3-venv)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's mosquitto on a free loopback port, anonymous (unless
/// configured otherwise: [`Mosquitto::start_configured`]), no
/// persistence; killed on drop.
pub struct Mosquitto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its TLS listener, when it has one.
    pub tls_addr: Option<SocketAddr>,
    /// Its `protocol websockets` listener, when it has one (and the one
    /// under TLS, with a `pki`).
    pub ws_addr: Option<SocketAddr>,
    pub wss_addr: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts it and waits until it accepts.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(None, "", "")
    }

    /// Starts it with a TLS listener too, serving `pki`'s server
    /// certificate.
    pub fn start_tls(pki: &crate::Pki) -> Mosquitto {
        Mosquitto::start_with(Some(pki), "", "")
    }

    /// Starts it with `lines` (whole lines, each ending in a newline)
    /// after its global settings, which they override (a later value
    /// wins: `allow_anonymous false`, `password_file FILE`, `acl_file
    /// FILE`), and with a TLS listener too when `pki` is given.
    pub fn start_configured(pki: Option<&crate::Pki>, lines: &str) -> Mosquitto {
        Mosquitto::start_with(pki, lines, "")
    }

    /// Starts it with a `protocol websockets` listener beside the plain
    /// one (any path), and with `pki` a TLS one and a WebSocket one under
    /// TLS too.
    pub fn start_websocket(pki: Option<&crate::Pki>) -> Mosquitto {
        let (ws, wss) = (free_port(), free_port());
        let mut more = format!("listener {ws} 127.0.0.1\nprotocol websockets\n");
        if let Some(server) = pki.map(crate::Pki::server) {
            more.push_str(&format!(
                "listener {wss} 127.0.0.1\nprotocol websockets\ncertfile {}\nkeyfile {}\n",
                server.cert.display(),
                server.key.display()
            ));
        }
        let mut m = Mosquitto::start_with(pki, "", &more);
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        m.ws_addr = Some(at(ws));
        m.wss_addr = pki.map(|_| at(wss));
        m.wait_listening(m.ws_addr.into_iter().chain(m.wss_addr));
        m
    }

    /// Starts it; `more` (whole lines) adds listeners after the plain
    /// and TLS ones.
    fn start_with(pki: Option<&crate::Pki>, lines: &str, more: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nmax_queued_messages 1000\nset_tcp_nodelay true\nuser root\n{lines}listener {port} 127.0.0.1\n"
        );
        let tls_port = pki.map(|pki| {
            let port = free_port();
            let server = pki.server();
            text.push_str(&format!(
                "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                server.cert.display(),
                server.key.display()
            ));
            port
        });
        text.push_str(more);
        fs::write(&conf, text).unwrap();
        let log = fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting /usr/sbin/mosquitto (scripts/test installs mosquitto)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tls_addr = tls_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let m = Mosquitto {
            child,
            addr,
            tls_addr,
            ws_addr: None,
            wss_addr: None,
            dir,
        };
        m.wait_listening(std::iter::once(addr).chain(tls_addr));
        m
    }

    /// Waits until each of `addrs` accepts (10 s at most).
    fn wait_listening(&self, addrs: impl Iterator<Item = SocketAddr>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for a in addrs {
            while TcpStream::connect(a).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "mosquitto does not listen on {a}:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Mosquitto {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
