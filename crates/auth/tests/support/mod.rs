//! Debian's mosquitto and its command-line clients, for the side-by-side
//! test: installing them when missing (failing when that fails), a broker
//! on a free loopback port, and one CLI run per question, answered with
//! the numbers mosquitto sent (`-d` prints every CONNACK, SUBACK and
//! PUBACK code).

pub mod pki;
pub mod table;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const PASSWD: &str = "/usr/bin/mosquitto_passwd";
const PUB: &str = "/usr/bin/mosquitto_pub";
const SUB: &str = "/usr/bin/mosquitto_sub";

/// Installs mosquitto and its clients when one is missing; panics when
/// they cannot be had.
pub fn ensure_mosquitto() {
    let all = || {
        [MOSQUITTO, PASSWD, PUB, SUB]
            .iter()
            .all(|p| Path::new(p).exists())
    };
    if !all() {
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "mosquitto", "mosquitto-clients"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(
            status.is_ok_and(|s| s.success()) && all(),
            "mosquitto and mosquitto-clients are needed: apt-get install -y mosquitto mosquitto-clients"
        );
    }
}

/// Runs `mosquitto_passwd ARGS` and panics when it fails.
pub fn mosquitto_passwd(args: &[&str]) {
    let out = Command::new(PASSWD)
        .args(args)
        .output()
        .expect("running mosquitto_passwd");
    assert!(
        out.status.success(),
        "mosquitto_passwd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port nobody listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A mosquitto broker with the given config lines, on a free loopback
/// port, killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Broker {
    pub fn start(dir: &Path, name: &str, config: &str) -> Broker {
        let port = free_port();
        let conf = dir.join(format!("{name}.conf"));
        let text = format!(
            "per_listener_settings false\npersistence false\nuser root\nlog_dest stderr\n\
             listener {port} 127.0.0.1\n{config}"
        );
        std::fs::write(&conf, text).expect("writing mosquitto.conf");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("creating the log");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("starting mosquitto");
        let broker = Broker { child, port, log };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto does not listen:\n{}",
                broker.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who a CLI client connects as.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub port: u16,
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
    pub id: &'a str,
    pub v5: bool,
    /// TLS, with or without a client certificate.
    pub tls: Option<&'a pki::ClientTls>,
}

impl Login<'_> {
    /// `BIN` with this login, under `timeout 10` for a one-shot run, or
    /// line-buffered (`stdbuf -oL`, which execs it: killing the child
    /// kills the client) for a reader.
    fn command(&self, bin: &str, reader: bool) -> Command {
        let mut cmd = Command::new(if reader { "stdbuf" } else { "timeout" });
        cmd.args([if reader { "-oL" } else { "10" }, bin]);
        cmd.args(["-h", "127.0.0.1", "-d", "-i", self.id]);
        cmd.args(["-p", &self.port.to_string()]);
        cmd.args(["-V", if self.v5 { "mqttv5" } else { "mqttv311" }]);
        if let Some(u) = self.user {
            cmd.args(["-u", u]);
        }
        if let Some(p) = self.pass {
            cmd.args(["-P", p]);
        }
        if let Some(tls) = self.tls {
            cmd.arg("--insecure").arg("--cafile").arg(&tls.ca);
            if let Some((cert, key)) = &tls.cert {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        cmd
    }
}

/// The number in the first line holding `marker`, up to `end`.
fn code_after(out: &str, marker: &str, end: char) -> Option<u8> {
    let line = out.lines().find(|l| l.contains(marker))?;
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split(end).next()?.trim().parse().ok()
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("running a mosquitto client");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The CONNACK code mosquitto answers (publishing nothing on success).
pub fn connack(login: &Login<'_>) -> Option<u8> {
    let mut cmd = login.command(PUB, false);
    cmd.args(["-t", "connect/probe", "-n"]);
    code_after(&run(cmd), "received CONNACK (", ')')
}

/// The MQTT 5 PUBACK reason code of a QoS 1 PUBLISH to `topic`.
pub fn puback(login: &Login<'_>, topic: &str) -> Result<u8, String> {
    let mut cmd = login.command(PUB, false);
    cmd.args(["-t", topic, "-m", "x", "-q", "1"]);
    let out = run(cmd);
    match code_after(&out, "received CONNACK (", ')') {
        Some(0) => code_after(&out, "RC:", ')').ok_or(out),
        _ => Err(out),
    }
}

/// The SUBACK code of a QoS 1 SUBSCRIBE to `filter`.
pub fn suback(login: &Login<'_>, filter: &str) -> Result<u8, String> {
    let mut cmd = login.command(SUB, false);
    cmd.args(["-t", filter, "-q", "1", "-E"]);
    let out = run(cmd);
    code_after(&out, "Subscribed (mid: 1): ", ',').ok_or(out)
}

/// A `mosquitto_sub -t '#'` client collecting the topics delivered to it.
pub struct Reader {
    child: Child,
    topics: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Reader {
    /// Connects, subscribes to `#` and returns once mosquitto acknowledged.
    pub fn start(login: &Login<'_>) -> Reader {
        Reader::start_with(login, &[])
    }

    /// [`Reader::start`] with more `mosquitto_sub` arguments (a will:
    /// dropping the reader kills the client, which publishes it).
    pub fn start_with(login: &Login<'_>, more: &[&str]) -> Reader {
        let mut cmd = login.command(SUB, true);
        // -W: gone after 60 s even if this process dies without killing it.
        cmd.args(["-t", "#", "-q", "1", "-W", "60"])
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("starting mosquitto_sub");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, topics) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let topic = if line.starts_with("Subscribed (") {
                    Some(String::new())
                } else {
                    published_topic(&line)
                };
                if topic.is_some_and(|t| tx.send(t).is_err()) {
                    return;
                }
            }
        });
        let mut reader = Reader {
            child,
            topics,
            seen: Vec::new(),
        };
        assert!(reader.wait_for(""), "{login:?} did not get its SUBACK");
        reader
    }

    /// Collects deliveries until `topic` arrives (true) or 10 s pass.
    pub fn wait_for(&mut self, topic: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.topics.recv_timeout(left) {
                Ok(t) if t == topic => return true,
                Ok(t) => self.seen.push(t),
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The topic of a `-d` "received PUBLISH (d0, q1, r0, m1, 'TOPIC', ..." line.
fn published_topic(line: &str) -> Option<String> {
    let rest = line.split_once("received PUBLISH (")?.1;
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find("', ")?;
    Some(rest[start..start + len].to_string())
}

/// The password file (mosquitto_passwd, plus a 1000-iteration `$7$` line
/// from Python's hashlib) and the ACL file, in `dir`.
pub fn write_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let pw = dir.join("passwd");
    let p = pw.to_str().expect("a UTF-8 temporary path");
    mosquitto_passwd(&["-c", "-b", p, "alice", "secret"]);
    mosquitto_passwd(&["-H", "sha512", "-b", p, "bob", "hunter2"]);
    for (name, pass) in [
        ("admin", "adminpw"),
        ("team/eve", "evepw"),
        ("dev+x", "devpw"),
    ] {
        mosquitto_passwd(&["-b", p, name, pass]);
    }
    let script = "import base64,hashlib,os\n\
        s=os.urandom(12)\n\
        h=hashlib.pbkdf2_hmac('sha512',b'davepw',s,1000)\n\
        b=lambda x: base64.b64encode(x).decode()\n\
        print('dave:$7$1000$'+b(s)+'$'+b(h))";
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = std::fs::read_to_string(&pw).expect("reading the password file");
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    std::fs::write(&pw, &text).expect("writing the password file");
    assert!(
        text.contains("alice:$7$101$") && text.contains("\nbob:$6$"),
        "{text}"
    );
    let acl = dir.join("acl");
    std::fs::write(&acl, table::ACL).expect("writing the ACL file");
    (pw, acl)
}

pub fn config(pw: &Path, acl: &Path, allow_anonymous: bool) -> String {
    format!(
        "allow_anonymous {allow_anonymous}\npassword_file {}\nacl_file {}\n",
        pw.display(),
        acl.display()
    )
}
