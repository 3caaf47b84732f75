//! A host with the reference broker running as a real non-root user:
//! release packages holding `emqx-refbroker` as `bin/emqx`, `emqx start`,
//! free loopback ports, and an MQTT probe of the version clients see.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_mqtt::{read_packet, Packet, ReasonCode};

use crate::package::{entry, exe, file, Entry, Kind};
use crate::Host;

/// The service user the tests run brokers as.
pub const TEST_USER: &str = "emqx-relup-test";

/// Creates the test user if needed; the tests need root for it and fail
/// (not skip) without.
pub fn ensure_test_user() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests need root (they start brokers as {TEST_USER})"
    );
    let exists = Command::new("id")
        .arg(TEST_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])
            .status()
            .expect("useradd runs");
        assert!(
            status.success()
                || Command::new("id")
                    .arg(TEST_USER)
                    .status()
                    .unwrap()
                    .success()
        );
    }
}

/// A free loopback port below the kernel's ephemeral range (32768+), so
/// that no client socket and no `bind(0)` of a parallel test can take it
/// while this host's broker is down (a kill, a restart): a port handed out
/// once per process, checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919) % 12_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + ((base + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The entries of a release package of the reference broker; `refbroker_toml`
/// goes into its `etc/refbroker.toml` (e.g. `fail = "never-ready"`).
pub fn broker_release(version: &str, refbroker_toml: &str) -> Vec<Entry> {
    let binary = refbroker_binary();
    vec![
        entry("emqx/", Kind::Dir),
        exe("emqx/bin/emqx", &binary),
        file(
            &format!("emqx/releases/{version}/emqx.rel"),
            version.as_bytes(),
        ),
        file("emqx/etc/refbroker.toml", refbroker_toml.as_bytes()),
    ]
}

/// The reference broker without its debug info (a tenth of the size: every
/// test package holds a copy), stripped once per test binary.
fn refbroker_binary() -> Vec<u8> {
    static STRIPPED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    STRIPPED
        .get_or_init(|| {
            let original = crate::bins::bin("emqx-refbroker");
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("emqx");
            let stripped = Command::new("strip")
                .args(["--strip-debug", "-o"])
                .arg(&out)
                .arg(&original)
                .status()
                .is_ok_and(|s| s.success());
            fs::read(if stripped {
                out.as_path()
            } else {
                original.as_path()
            })
            .unwrap()
        })
        .clone()
}

/// A host with the reference broker.
pub struct BrokerHost {
    pub host: Host,
    pub ports: [u16; 2],
    pub log: PathBuf,
    started: Vec<Child>,
    /// A TLS listener (`ssl`), with its certificates, and the WebSocket
    /// listeners (`ws`, `wss`).
    pub tls: Option<HostTls>,
    /// More of the broker's environment (e.g. `EMQX_SSL_VERIFY`).
    pub env: Vec<(String, String)>,
}

/// A host's TLS listener: its port and the certificates it serves
/// (`pki.server()`, read by each broker at its start: re-issuing it and
/// switching to the same release rotates the certificate).
pub struct HostTls {
    pub port: u16,
    pub pki: crate::Pki,
    /// The `ws://` listener's port (path `/mqtt`).
    pub ws_port: u16,
    /// The `wss://` listener's port, with the same certificates.
    pub wss_port: u16,
}

impl BrokerHost {
    /// A host whose relup.toml adds `extra` to the broker settings.
    pub fn new(extra: &str) -> BrokerHost {
        ensure_test_user();
        // Defaults, each overridden by a key of `extra`.
        let defaults = [
            format!("user = \"{TEST_USER}\""),
            "lock_timeout_secs = 30".into(),
            "ready_timeout_secs = 10".into(),
            "settle_secs = 0.2".into(),
            "drain_wait_secs = 30".into(),
            "broker_log = \"BROKER_LOG\"".into(),
        ];
        let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
        let overridden: Vec<String> = extra.lines().map(key).collect();
        let mut config: Vec<String> = defaults
            .into_iter()
            .filter(|d| !overridden.contains(&key(d)))
            .collect();
        config.push(extra.to_string());
        let host = Host::with_config(&config.join("\n"));
        let log = host.path().join("broker.log");
        // The config names the log; the placeholder keeps with_config simple.
        let conf = host.path().join("relup.toml");
        // `RUN/` in `extra` names the runtime dir (the service user's).
        let run = host.path().join("run");
        let text = fs::read_to_string(&conf)
            .unwrap()
            .replace(
                "\"BROKER_LOG\"",
                &format!("{:?}", log.display().to_string()),
            )
            .replace("\"RUN/", &format!("\"{}/", run.display()));
        fs::write(&conf, text).unwrap();
        fs::File::create(&log).unwrap();
        // The broker's user reads the trees and writes its runtime dir.
        fs::set_permissions(host.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // Other uids run the helper too (tests/handoff.rs as `nobody`): a
        // checkout in /root (0700) is out of their reach, a link here is not.
        let helper = crate::bins::for_any_user("emqx-relup", &host.path().join("bin"));
        let link = host.path().join("bin/emqx");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(helper, link).unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        fs::remove_dir(host.path().join("run")).unwrap();
        BrokerHost {
            host,
            ports: [free_port(), free_port()],
            log,
            started: Vec::new(),
            tls: None,
            env: Vec::new(),
        }
    }

    /// Adds the listeners production brokers have beside plain MQTT: TLS
    /// (`ssl`) with a test CA's certificate, WebSocket (`ws`) and
    /// WebSocket under TLS (`wss`); before the broker starts.
    pub fn with_tls(&mut self) {
        self.tls = Some(HostTls {
            port: free_port(),
            pki: crate::Pki::new(),
            ws_port: free_port(),
            wss_port: free_port(),
        });
    }

    /// As [`BrokerHost::running`], with a TLS listener too.
    pub fn running_tls(extra: &str) -> BrokerHost {
        BrokerHost::running_with(extra, true)
    }

    /// The TLS listener's address and the CA its certificate chains to,
    /// for a load that runs TLS clients too.
    pub fn load_tls(&self) -> Option<(SocketAddr, PathBuf)> {
        self.tls_addr().zip(self.tls.as_ref().map(|t| t.pki.ca()))
    }

    /// The `ws://` and `wss://` listeners' addresses, for a load that
    /// runs WebSocket clients too (path `/mqtt`).
    pub fn load_ws(&self) -> Option<(SocketAddr, SocketAddr)> {
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        self.tls.as_ref().map(|t| (at(t.ws_port), at(t.wss_port)))
    }

    /// The TLS listener's address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
            .as_ref()
            .map(|t| SocketAddr::from(([127, 0, 0, 1], t.port)))
    }

    /// A host running release 5.0.0 (permanent, from a zip) with 5.0.1
    /// dropped as a tar.gz: where most switch tests start.
    pub fn running(extra: &str) -> BrokerHost {
        BrokerHost::running_with(extra, false)
    }

    fn running_with(extra: &str, tls: bool) -> BrokerHost {
        let mut b = BrokerHost::new(extra);
        if tls {
            b.with_tls();
        }
        b.drop_broker_release("5.0.0", true, "");
        b.drop_broker_release("5.0.1", false, "");
        let (_, err, code) = b.emqx(&["install", "5.0.0"]);
        assert_eq!(code, Some(0), "{err}");
        b.start();
        assert_eq!(b.version_seen(0), "5.0.0");
        b
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.host.path().join("run")
    }

    /// The loopback addresses of the two listeners.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    /// A command like `Host::command`, with the broker's environment.
    pub fn command(&self) -> Command {
        let mut cmd = self.host.command();
        let mut listeners = format!(
            "mqtt=127.0.0.1:{},mqtt-alt=127.0.0.1:{}",
            self.ports[0], self.ports[1]
        );
        if let Some(tls) = &self.tls {
            listeners.push_str(&format!(
                ",ssl=ssl://127.0.0.1:{},ws=ws://127.0.0.1:{},wss=wss://127.0.0.1:{}",
                tls.port, tls.ws_port, tls.wss_port
            ));
            let server = tls.pki.server();
            cmd.env("EMQX_SSL_CERTFILE", server.cert)
                .env("EMQX_SSL_KEYFILE", server.key)
                .env("EMQX_SSL_CACERTFILE", tls.pki.ca());
        }
        cmd.env("EMQX_LISTENERS", listeners)
            .env("EMQX_DRAIN_SECS", "1")
            .env_remove("EMQX_BROKER_VERSION")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `emqx ARGS` and returns (stdout, stderr, code).
    pub fn emqx(&self, args: &[&str]) -> (String, String, Option<i32>) {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    }

    /// Drops a package of the reference broker; `fail` goes into its
    /// `etc/refbroker.toml` (e.g. `fail = "never-ready"`).
    pub fn drop_broker_release(&self, version: &str, zip: bool, refbroker_toml: &str) {
        let entries = broker_release(version, refbroker_toml);
        self.host
            .drop_entries(&format!("emqx-{version}"), zip, &entries);
    }

    /// `emqx start` in the background; waits until both listeners accept
    /// and the handoff socket is there.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// `start` with `env` added to the command's environment.
    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        let log = fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        let child = self
            .command()
            .envs(env.iter().copied())
            .arg("start")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.started.push(child);
        self.wait_serving();
        let exited = self
            .started
            .last_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "emqx start exited ({exited:?}) although the listeners answer: someone else holds them; log:\n{}",
            self.log_text()
        );
    }

    /// Waits until both listeners accept and the handoff socket answers.
    pub fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // (kill_all removes the stale socket file a killed broker leaves.)
            let up = self
                .addrs()
                .iter()
                .chain(&self.tls_addr())
                .chain(self.load_ws().iter().flat_map(|(a, b)| [a, b]))
                .all(|a| TcpStream::connect(a).is_ok())
                && self.runtime_dir().join("handoff.sock").exists();
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not come up; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pid `broker.pid` names.
    pub fn broker_pid(&self) -> u32 {
        let text = fs::read_to_string(self.runtime_dir().join("broker.pid")).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The version a new MQTT client sees in `$SYS/broker/version`.
    pub fn version_seen(&self, listener: usize) -> String {
        let addr = self.addrs()[listener];
        match std::panic::catch_unwind(|| mqtt_version(addr)) {
            Ok(v) => v,
            Err(_) => panic!(
                "asking {addr} for its version failed; broker log:\n{}\nprocesses of this host: {:?}",
                self.log_text(),
                self.host_processes()
            ),
        }
    }

    /// (pid, exe, state) of the processes running from this host's trees
    /// (the store: brokers, not the helper linked into `bin/`).
    pub fn host_processes(&self) -> Vec<(i32, String, String)> {
        let trees = self.host.path().join("state").display().to_string();
        let mut out = Vec::new();
        for p in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(exe) = fs::read_link(p.path().join("exe")) {
                let exe = exe.display().to_string();
                if exe.starts_with(&trees) {
                    let stat = fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                    let state = stat.rsplit_once(") ").map(|(_, r)| r[..1].to_string());
                    out.push((pid, exe, state.unwrap_or_default()));
                }
            }
        }
        out
    }

    /// Kills every broker process of this host.
    pub fn kill_all(&mut self) {
        // Brokers started by a switch are not our children: find them by their tree.
        let killed: Vec<i32> = self
            .host_processes()
            .into_iter()
            .map(|(pid, _, _)| pid)
            .collect();
        for pid in &killed {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for c in &mut self.started {
            let _ = c.kill();
            let _ = c.wait();
        }
        // SIGKILL is asynchronous: wait until no killed broker holds an fd
        // any more (gone, or a zombie nobody reaps). Not the leader's
        // state: a multi-threaded broker's leader shows Z while its other
        // threads still hold the listeners and the handoff socket, whose
        // queued connections are then reset.
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in killed {
            while Instant::now() < deadline
                && fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|mut d| d.next().is_some())
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // /proc may stop answering for a process in the middle of its exit:
        // what counts is that no socket listens on the ports any more.
        while Instant::now() < deadline
            && !self
                .ports
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = fs::remove_file(self.runtime_dir().join("handoff.sock"));
    }
}

impl Drop for BrokerHost {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Connects, subscribes to `$SYS/broker/version`, returns the payload.
pub fn mqtt_version(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let connect = Packet::connect("", true, 30);
    s.write_all(&connect.encode()).unwrap();
    assert!(matches!(
        read_packet(&mut s, 1 << 20).unwrap(),
        Some(Packet::ConnAck {
            code: ReasonCode::SUCCESS,
            ..
        })
    ));
    let sub = Packet::subscribe(1, [("$SYS/broker/version", 0)]);
    s.write_all(&sub.encode()).unwrap();
    loop {
        match read_packet(&mut s, 1 << 20).unwrap() {
            Some(Packet::Publish { topic, payload, .. }) if topic == "$SYS/broker/version" => {
                let _ = s.write_all(&Packet::disconnect().encode());
                return String::from_utf8(payload).unwrap();
            }
            Some(_) => continue,
            None => panic!("closed before the version"),
        }
    }
}
