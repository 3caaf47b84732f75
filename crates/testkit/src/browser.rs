//! A real browser for the WebSocket tests: MQTT.js's browser bundle from
//! npm (pinned, its tarball checked), a page served from loopback by a
//! small HTTP server, and Debian's Chromium, headless, in a profile of its
//! own that trusts the test CA (an NSS database under its own `$HOME`).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha512};

/// The `mqtt` package of npm whose browser bundle the page loads.
pub const MQTT_JS_VERSION: &str = "5.16.0";
/// The SHA-512 of its tarball (npm's `integrity`, in hex).
const MQTT_JS_SHA512: &str = "1b456c12db89cf9b0952064969a0033157d6ed22053f3908b8747e77aae4fad05e4b07427ddf416884727117ddd806f21431262e514cf920d07ad8bff886ce9f";

/// `dist/mqtt.min.js` of MQTT.js [`MQTT_JS_VERSION`]: fetched once with
/// `npm pack` (the npm registry) into the build output, checked against
/// its pinned hash, else reused. A test fails, not skips, without it.
pub fn mqtt_js_bundle() -> PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let dir = crate::bins::dir().join(format!("mqtt-js-{MQTT_JS_VERSION}"));
            let bundle = dir.join("mqtt.min.js");
            if !bundle.exists() {
                fetch_bundle(&dir, &bundle);
            }
            bundle
        })
        .clone()
}

fn fetch_bundle(dir: &Path, bundle: &Path) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let spec = format!("mqtt@{MQTT_JS_VERSION}");
    let out = Command::new("npm")
        .args(["pack", "--silent", &spec, "--pack-destination"])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running npm pack {spec}: {e} (scripts/test installs npm)"));
    assert!(
        out.status.success(),
        "npm pack {spec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = dir.join(format!("mqtt-{MQTT_JS_VERSION}.tgz"));
    let bytes = fs::read(&tarball).unwrap();
    let digest: String = Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        MQTT_JS_SHA512,
        "{} is not the pinned one",
        tarball.display()
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().as_ref() == Path::new("package/dist/mqtt.min.js") {
            let mut js = Vec::new();
            entry.read_to_end(&mut js).unwrap();
            let part = bundle.with_extension("part");
            fs::write(&part, js).unwrap();
            fs::rename(part, bundle).unwrap();
            return;
        }
    }
    panic!("{} has no package/dist/mqtt.min.js", tarball.display());
}

/// An HTTP server on a free loopback port serving fixed files (`GET` of
/// their path, anything else 404); stopped on drop.
pub struct StaticServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    /// Serves each (path, content type, body).
    pub fn serve(files: Vec<(String, &'static str, Vec<u8>)>) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let files = Arc::new(files);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    // A thread each: a connection the browser opens ahead
                    // and never uses does not hold up the page.
                    Ok((s, _)) => {
                        let files = Arc::clone(&files);
                        std::thread::spawn(move || answer(s, &files));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        StaticServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Answers one request on `s` and closes it.
fn answer(s: TcpStream, files: &[(String, &'static str, Vec<u8>)]) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&s);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The headers, up to the empty line.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body): (&str, &str, &[u8]) = match files.iter().find(|(p, _, _)| p == path) {
        Some((_, kind, body)) => ("200 OK", kind, body),
        None => ("404 Not Found", "text/plain", b"not found"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut w = &s;
    let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(body));
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Debian's Chromium, headless, showing one page; its console goes to
/// [`Chromium::log`]. Killed on drop.
pub struct Chromium {
    child: Child,
    dir: tempfile::TempDir,
}

impl Chromium {
    /// Opens `url` in a new profile whose NSS database trusts the CA in
    /// `ca` for servers (so `wss://` to the test broker verifies).
    pub fn open(url: &str, ca: &Path) -> Chromium {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let nssdb = home.join(".pki/nssdb");
        fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        certutil(&["-N", "--empty-password", "-d", &db]);
        let ca = ca.display().to_string();
        certutil(&[
            "-A",
            "-d",
            &db,
            "-n",
            "emqx-test-ca",
            "-t",
            "C,,",
            "-i",
            &ca,
        ]);
        let log = fs::File::create(dir.path().join("chromium.log")).unwrap();
        // The flags that keep a headless Chromium off the (closed)
        // network: no background fetches, updates or sync.
        let child = Command::new("/usr/bin/chromium")
            .env("HOME", &home)
            // Its own process group: its renderers and helpers die with it.
            .process_group(0)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-background-timer-throttling",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting /usr/bin/chromium (scripts/test installs chromium)");
        Chromium { child, dir }
    }

    /// The page's console lines ("page: ...") and Chromium's own.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Runs NSS's `certutil` (Debian's libnss3-tools).
fn certutil(args: &[&str]) {
    let out = Command::new("certutil")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running certutil: {e} (scripts/test installs libnss3-tools)"));
    assert!(
        out.status.success(),
        "certutil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
