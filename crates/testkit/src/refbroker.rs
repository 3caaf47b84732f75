//! The reference broker as a bare process on two free loopback ports (no
//! host, no helper): for the broker's and the load harness's own tests.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::free_port;

/// A running reference broker; killed and reaped on drop.
pub struct RefBroker {
    /// The process.
    pub child: Child,
    /// Its runtime folder (handoff socket) and `broker.log`.
    pub dir: tempfile::TempDir,
    /// The `mqtt` and `mqtt-alt` listeners.
    pub addrs: [SocketAddr; 2],
    /// More listeners ([`RefBroker::start_more`]), in the order asked.
    pub more: Vec<SocketAddr>,
}

impl RefBroker {
    /// The workspace's `emqx-refbroker` as release 5.0.0, logging each
    /// connection (debug level: the tests read those lines).
    pub fn start() -> RefBroker {
        let bin = crate::bins::bin("emqx-refbroker");
        RefBroker::start_with(
            &bin,
            &[
                ("EMQX_BROKER_VERSION", "5.0.0"),
                ("EMQX_LOG_LEVEL", "debug"),
            ],
        )
    }

    /// `program foreground` with `env` added, once both listeners accept.
    pub fn start_with(program: &Path, env: &[(&str, &str)]) -> RefBroker {
        RefBroker::start_serving(program, "tcp", env)
    }

    /// [`RefBroker::start_with`], the `mqtt-alt` listener of kind `alt`
    /// (`tcp` or `ssl`, whose files `env` names).
    pub fn start_serving(program: &Path, alt: &str, env: &[(&str, &str)]) -> RefBroker {
        RefBroker::start_more(program, alt, &[], env)
    }

    /// [`RefBroker::start_serving`] with a listener more of each kind in
    /// `more` (`tcp`, `ssl`, `ws`, `wss`; WebSocket at `/mqtt`), at
    /// [`RefBroker::more`].
    pub fn start_more(program: &Path, alt: &str, more: &[&str], env: &[(&str, &str)]) -> RefBroker {
        let dir = tempfile::tempdir().unwrap();
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let addrs = [free_port(), free_port()].map(at);
        let more_addrs: Vec<SocketAddr> = more.iter().map(|_| at(free_port())).collect();
        let mut listeners = format!("mqtt={},mqtt-alt={alt}://{}", addrs[0], addrs[1]);
        for (i, (kind, a)) in more.iter().zip(&more_addrs).enumerate() {
            listeners.push_str(&format!(",more{i}={kind}://{a}"));
        }
        let log = fs::File::create(dir.path().join("broker.log")).unwrap();
        let mut cmd = Command::new(program);
        cmd.arg("foreground")
            .env("EMQX_LISTENERS", listeners)
            .env("EMQX_RUNTIME_DIR", dir.path())
            .env_remove("EMQX_BROKER_VERSION")
            .env_remove("EMQX_HANDOFF_SOCKET")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut b = RefBroker {
            child: cmd.spawn().unwrap(),
            dir,
            addrs,
            more: more_addrs,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in addrs.into_iter().chain(b.more.clone()) {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Some(status) = b.child.try_wait().unwrap() {
                    panic!("broker exited with {status}:\n{}", b.log());
                }
                assert!(Instant::now() < deadline, "broker not up:\n{}", b.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        b
    }

    /// The `mqtt` listener.
    pub fn mqtt(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The `mqtt-alt` listener.
    pub fn alt(&self) -> SocketAddr {
        self.addrs[1]
    }

    /// A client connected to `mqtt` with a clean session, keep-alive 60 s.
    pub fn client(&self, id: &str) -> crate::MqttClient {
        crate::MqttClient::connect(self.addrs[0], id, 60)
    }

    /// Everything it printed.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RefBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
