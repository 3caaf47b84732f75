//! A real systemd for tests: boots `crates/testkit/sandbox/systemd-sandbox`, installs
//! emqx-relup with the units of `systemd/` and reference broker releases
//! into it, and runs commands, the load harness and D-Bus queries inside.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::bins;
use crate::broker::broker_release;
use crate::package::{write_tar_gz, write_zip};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox/systemd-sandbox");

/// Brokers under load on 2 cores: one sandbox (or one fleet of them,
/// [`Sandbox::fleet`]) at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A booted systemd with emqx installed; halted on drop.
pub struct Sandbox {
    name: String,
    /// Its PID 1, as the host sees it (its namespaces are this process's).
    pub init_pid: u32,
    /// A host folder bound into the sandbox at the same path.
    pub share: tempfile::TempDir,
    /// The TLS listener's certificates (in `share`), installed as
    /// /etc/emqx/certs/{cacert,cert,key}.pem.
    pub pki: crate::Pki,
    _turn: Rc<MutexGuard<'static, ()>>,
}

/// Where the sandbox's broker finds its TLS files.
pub const CERTS: &str = "/etc/emqx/certs";

impl Sandbox {
    /// Boots a sandbox and installs emqx-relup, its units and `relup.toml`
    /// (the test settings below, then `relup_toml`), and a drop-in with the
    /// broker's listeners (127.0.0.1:1883 and :8883) and `drain_secs`.
    pub fn with_emqx(tag: &str, relup_toml: &str, drain_secs: f64) -> Sandbox {
        let sb = Sandbox::bare(tag);
        sb.install(relup_toml, drain_secs);
        sb
    }

    /// Boots a sandbox with nothing of emqx installed.
    pub fn bare(tag: &str) -> Sandbox {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        Sandbox::boot(tag, Rc::new(turn))
    }

    /// Boots one bare sandbox per tag, together in one turn (several
    /// hosts of one test).
    pub fn fleet(tags: &[&str]) -> Vec<Sandbox> {
        let turn = Rc::new(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()));
        tags.iter()
            .map(|tag| Sandbox::boot(tag, Rc::clone(&turn)))
            .collect()
    }

    fn boot(tag: &str, turn: Rc<MutexGuard<'static, ()>>) -> Sandbox {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the systemd tests need root (they boot systemd in namespaces)"
        );
        let share = tempfile::Builder::new()
            .prefix("emqx-relup-sandbox-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let name = format!("{tag}-{}", std::process::id());
        // A sandbox left by a killed run of this test has another pid: no clash.
        // The sandbox's /tmp and /run are its own: a checkout (and build
        // output) under /tmp must be bound in to be seen there.
        let repo = bins::repo();
        let bin_dir = bins::dir();
        let mut binds = vec![share.path(), repo.as_path()];
        if !bin_dir.starts_with(&repo) {
            binds.push(bin_dir.as_path());
        }
        let out = Command::new(SCRIPT)
            .args(["boot", &name])
            .args(binds)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "booting the systemd sandbox failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pki = crate::Pki::new_in(share.path());
        // `boot` prints PID 1's host pid last.
        let init_pid = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("systemd-sandbox boot printed no pid");
        Sandbox {
            name,
            init_pid,
            share,
            pki,
            _turn: turn,
        }
    }

    /// The unit's test settings as a drop-in: listeners on 127.0.0.1:1883
    /// and, over TLS, :8883 (the certificates of [`Sandbox::pki`]), ws on
    /// :8083 and wss on :8084 (bound by the broker, not by a socket
    /// unit), the broker's drain bound, a quick restart.
    pub fn test_dropin(&self, drain_secs: f64) -> String {
        format!(
            "mkdir -p /etc/systemd/system/emqx.service.d\nprintf '[Service]\\nEnvironment=EMQX_LISTENERS=mqtt=127.0.0.1:1883,ssl=ssl://127.0.0.1:8883,ws=ws://127.0.0.1:8083,wss=wss://127.0.0.1:8084\\nEnvironment=EMQX_SSL_CERTFILE={CERTS}/cert.pem EMQX_SSL_KEYFILE={CERTS}/key.pem EMQX_SSL_CACERTFILE={CERTS}/cacert.pem\\nEnvironment=EMQX_DRAIN_SECS={drain_secs}\\nRestartSec=0.2\\n' > /etc/systemd/system/emqx.service.d/test.conf\n"
        )
    }

    /// A script that installs the current server certificate and key of
    /// [`Sandbox::pki`] (and its CA) where the broker reads them.
    pub fn install_certs(&self) -> String {
        let server = self.pki.server();
        format!(
            "install -d -m 0755 {CERTS}\ninstall -m 0644 {} {CERTS}/cacert.pem\ninstall -m 0644 {} {CERTS}/cert.pem\ninstall -m 0644 {} {CERTS}/key.pem\n",
            self.pki.ca().display(),
            server.cert.display(),
            server.key.display()
        )
    }

    fn install(&self, relup_toml: &str, drain_secs: f64) {
        let script = format!(
            r#"set -e
install -m 0755 {relup} /usr/bin/emqx-relup
install -m 0755 {load} /usr/bin/emqx-load
install -D -m 0644 {repo}/systemd/emqx.service /etc/systemd/system/emqx.service
install -D -m 0644 {repo}/systemd/emqx.socket /etc/systemd/system/emqx.socket.off
install -D -m 0644 {repo}/systemd/emqx.sysusers /usr/lib/sysusers.d/emqx.conf
install -D -m 0644 {repo}/systemd/emqx.tmpfiles /usr/lib/tmpfiles.d/emqx.conf
systemd-sysusers
systemd-tmpfiles --create emqx.conf
{dropin}{certs}cat > /etc/emqx/relup.toml <<'EOF2'
{config}
EOF2
systemctl daemon-reload
"#,
            config = with_defaults(relup_toml),
            dropin = self.test_dropin(drain_secs),
            certs = self.install_certs(),
            relup = bins::bin("emqx-relup").display(),
            load = bins::bin("emqx-load").display(),
            repo = bins::repo().display(),
        );
        self.ok(&script);
    }

    /// Runs a bash script inside.
    pub fn sh(&self, script: &str) -> Output {
        Command::new(SCRIPT)
            .args(["run", &self.name, "bash", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a bash script inside; it must succeed. Returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "inside the sandbox, `{script}` failed ({:?}):\n{}{}\njournal:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a bash script inside, stdout piped.
    pub fn spawn(&self, script: &str) -> Child {
        Command::new(SCRIPT)
            .args(["run", &self.name, "bash", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The last lines of the unit's journal.
    pub fn journal(&self) -> String {
        let out = Command::new(SCRIPT)
            .args([
                "run",
                &self.name,
                "journalctl",
                "-u",
                "emqx",
                "-n",
                "60",
                "--no-pager",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Builds a reference broker release and drops it into
    /// `/usr/lib/emqx/releases/` inside.
    pub fn add_release(&self, version: &str, zip: bool, refbroker_toml: &str) {
        let entries = broker_release(version, refbroker_toml);
        let file = if zip {
            format!("emqx-{version}.zip")
        } else {
            format!("emqx-{version}.tar.gz")
        };
        let path = self.share.path().join(&file);
        if zip {
            write_zip(&path, &entries);
        } else {
            write_tar_gz(&path, &entries);
        }
        self.ok(&format!("cp {} /usr/lib/emqx/releases/", path.display()));
    }

    /// A property of emqx.service, read over D-Bus (`busctl`).
    pub fn property(&self, interface: &str, name: &str) -> String {
        let out = self.ok(&format!(
            "busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1/unit/emqx_2eservice org.freedesktop.systemd1.{interface} {name}"
        ));
        // `u 123` or `s "active"`.
        out.split_once(' ')
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    }

    /// emqx.service's MainPID, over D-Bus.
    pub fn main_pid(&self) -> u32 {
        self.property("Service", "MainPID").parse().unwrap()
    }

    /// emqx.service's ActiveState, over D-Bus.
    pub fn active_state(&self) -> String {
        self.property("Unit", "ActiveState")
    }

    /// The release a broker process runs (its working folder is the tree),
    /// and whether it is in emqx.service's cgroup.
    pub fn broker_of(&self, pid: u32) -> (String, bool) {
        let out = self.ok(&format!("readlink /proc/{pid}/cwd; cat /proc/{pid}/cgroup"));
        let mut lines = out.lines();
        let cwd = lines.next().unwrap_or_default();
        let version = Path::new(cwd)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_unit = lines.any(|l| l.ends_with("/emqx.service"));
        (version, in_unit)
    }

    /// Waits until the unit is `active` with a main process (after a restart).
    pub fn wait_active(&self, within: Duration) -> u32 {
        let deadline = Instant::now() + within;
        loop {
            if self.active_state() == "active" {
                let pid = self.main_pid();
                if pid != 0 {
                    return pid;
                }
            }
            assert!(
                Instant::now() < deadline,
                "emqx.service did not become active; journal:\n{}",
                self.journal()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `emqx-relup versions --json` inside, as (version, state) pairs.
    pub fn versions(&self) -> Vec<(String, String)> {
        crate::host::parse_versions(&self.ok("emqx-relup versions --json"))
    }

    /// The state file's bytes.
    pub fn state_bytes(&self) -> String {
        self.ok("cat /var/lib/emqx/releases/RELEASES")
    }

    /// Starts the load harness inside on the four listeners, the clients
    /// taking turns over tcp, TLS on :8883, ws on :8083 and wss on :8084;
    /// stop it with [`Sandbox::stop_load`].
    pub fn start_load(&self) -> Child {
        self.start_load_with(&format!(
            "--addr 127.0.0.1:1883 --tls-addr 127.0.0.1:8883 --cafile {CERTS}/cacert.pem --ws-addr 127.0.0.1:8083 --wss-addr 127.0.0.1:8084"
        ))
    }

    /// Starts the load harness on the given loopback ports inside (plain
    /// TCP).
    pub fn start_load_on(&self, ports: &[u16]) -> Child {
        let addrs: Vec<String> = ports
            .iter()
            .map(|p| format!("--addr 127.0.0.1:{p}"))
            .collect();
        self.start_load_with(&addrs.join(" "))
    }

    /// Starts the load harness inside with these options (listeners,
    /// credentials).
    pub fn start_load_with(&self, listeners: &str) -> Child {
        let pidfile = self.share.path().join("load.pid");
        let child = self.spawn(&format!(
            "emqx-load {listeners} --persistent 10 --rate 10 --storm 2 --json & echo $! > {}; wait",
            pidfile.display()
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pidfile.exists() {
            assert!(Instant::now() < deadline, "the load harness did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let it connect its persistent clients first.
        std::thread::sleep(Duration::from_millis(500));
        child
    }

    /// Stops the load harness and returns its report.
    pub fn stop_load(&self, child: Child) -> serde_json::Value {
        let pidfile: PathBuf = self.share.path().join("load.pid");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        self.ok(&format!("kill -INT {}", pid.trim()));
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&pidfile);
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "load report: {e}: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// Asserts that a load report (of [`Sandbox::stop_load`]) saw every
/// established connection moved at every switch: none closed by a broker,
/// no session and no session message lost.
pub fn assert_moved(report: &serde_json::Value) {
    assert_eq!(report["closed_by_broker"], 0, "{report:#}");
    assert_eq!(report["sessions"]["lost"], 0, "{report:#}");
    assert!(
        report["sessions"]["resumed"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    for class in ["session-qos1", "session-qos2"] {
        assert_eq!(report["messages"][class]["lost"], 0, "{class}: {report:#}");
    }
}

/// The tests' relup.toml: quick settings, each overridden by a key of `extra`.
fn with_defaults(extra: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let given: Vec<String> = extra.lines().map(key).collect();
    let mut lines: Vec<String> = [
        "settle_secs = 0.1",
        "ready_timeout_secs = 10",
        "drain_wait_secs = 30",
        "job_timeout_secs = 60",
    ]
    .iter()
    .filter(|d| !given.contains(&key(d)))
    .map(|d| d.to_string())
    .collect();
    lines.push(extra.to_string());
    lines.join("\n")
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .args(["halt", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}
