//! Unpack benchmark: `emqx-relup unpack` against `tar xzf` and `unzip` on the
//! same ~200 MiB package, the helper's peak RSS, and `versions` latency.
//!
//! The helper calls syncfs(2) before moving the tree into place, so tar and
//! unzip are timed both plain and followed by `sync -f` (their "+sync" time).
//! Every command starts after an untimed `sync -f`, so no run pays for the
//! write-back of the one before. Peak RSS comes from wait4(2) for that child
//! only (for tar, the max over tar and its gzip). Results are printed, never
//! asserted. Run with `cargo bench --bench unpack`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::libc;

const BIN: &str = env!("CARGO_BIN_EXE_emqx-relup");
const VSN: &str = "7.0.0";
const SMALL_FILES: usize = 15_000;
const LARGE_FILES: usize = 3;
const LARGE_SIZE: usize = 25 << 20;
const RUNS: usize = 3;
const VERSIONS_RUNS: usize = 100;
const MIB: f64 = (1 << 20) as f64;

/// A small deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn random_bytes(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() < end {
            let word = self.next().to_le_bytes();
            out.extend_from_slice(&word[..(end - out.len()).min(8)]);
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, len: usize) {
        const WORDS: &[&str] = &[
            "emqx",
            "broker",
            "session",
            "topic",
            "client",
            "publish",
            "subscribe",
            "qos",
            "retain",
            "node",
            "cluster",
            "listener",
            "mqtt",
            "packet",
            "ok",
            "error",
            "state",
            "module",
            "gen_server",
            "handle_call",
            "handle_info",
            "{reply,",
            "ets",
            "mnesia",
            "->",
            "end.",
            "case",
            "of",
            "undefined",
            "true",
            "false",
            "Pid",
            "Msg",
            "#{",
            "}",
            "lists:foldl(",
            "maps:get(",
            "binary",
            "<<",
            ">>",
            "fun",
            "when",
            "is_integer(",
            "\n",
            "\n    ",
            "%%",
            "config",
            "timeout",
        ];
        let end = out.len() + len;
        while out.len() < end {
            let word = WORDS[self.below(WORDS.len())];
            out.extend_from_slice(word.as_bytes());
            out.push(b' ');
        }
        out.truncate(end);
    }

    /// Semi-compressible data: blocks of text with some random blocks.
    fn mixed(&mut self, len: usize, block: usize, random_share: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = block.min(len - out.len());
            if self.below(100) < random_share {
                self.random_bytes(&mut out, n);
            } else {
                self.text(&mut out, n);
            }
        }
        out
    }
}

/// Fails the bench with a clear message when a tool is missing.
fn require(tool: &str, arg: &str) {
    let ok = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the benchmark needs `{tool}` on PATH (apt-get install {tool})"
    );
}

/// The wall time and peak RSS (KiB) of one child process.
struct Run {
    wall: Duration,
    rss_kib: u64,
}

/// Runs `cmd` to completion, reaping it with wait4 for its own rusage.
fn run(cmd: &mut Command) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for this one child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(reaped, pid, "wait4 on {cmd:?} failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{cmd:?} failed (status {status}): {err}");
    Run {
        wall,
        rss_kib: usage.ru_maxrss as u64,
    }
}

/// Flushes all dirty data of the file system holding `dir` (untimed use).
fn sync_fs(dir: &Path) -> Run {
    run(Command::new("sync").arg("-f").arg(dir))
}

/// One install: root with its drop folder, state dir, and relup.toml.
struct Host {
    dir: PathBuf,
}

impl Host {
    fn new(base: &Path, name: &str) -> Host {
        let dir = base.join(name);
        for d in ["root/releases", "state", "run"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let toml = format!(
            "runtime_dir = {:?}\n",
            dir.join("run").display().to_string()
        );
        fs::write(dir.join("relup.toml"), toml).unwrap();
        Host { dir }
    }

    fn drop_dir(&self) -> PathBuf {
        self.dir.join("root/releases")
    }

    fn tree(&self, vsn: &str) -> PathBuf {
        self.dir.join("state/releases").join(vsn)
    }

    fn relup(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("EMQX_ROOT_DIR", self.dir.join("root"))
            .env("EMQX_STATE_DIR", self.dir.join("state"))
            .env("EMQX_RELUP_CONFIG", self.dir.join("relup.toml"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS");
        cmd
    }
}

/// Writes the skeleton of a release `vsn` under `top/emqx/`.
fn skeleton(top: &Path, vsn: &str) {
    let emqx = top.join("emqx");
    fs::create_dir_all(emqx.join("bin")).unwrap();
    fs::create_dir_all(emqx.join("releases").join(vsn)).unwrap();
    fs::write(emqx.join("bin/emqx"), "#!/bin/sh\necho emqx \"$@\"\n").unwrap();
    fs::set_permissions(emqx.join("bin/emqx"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(emqx.join("releases").join(vsn).join("emqx.rel"), vsn).unwrap();
    fs::write(emqx.join("releases/start_erl.data"), format!("5.0 {vsn}\n")).unwrap();
}

/// Writes the big tree; returns its size in bytes.
fn big_tree(top: &Path) -> u64 {
    skeleton(top, VSN);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut total = 0u64;
    for i in 0..SMALL_FILES {
        let dir = top.join(format!(
            "emqx/lib/app_{:03}-1.0.{}/ebin",
            i / 50,
            i / 50 % 3
        ));
        if i % 50 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        let len = 1024 + rng.below(15 * 1024 + 1);
        let data = rng.mixed(len, 512, 20);
        fs::write(dir.join(format!("mod_{i:05}.beam")), &data).unwrap();
        total += len as u64;
    }
    let erts = top.join("emqx/erts-14.2/bin");
    fs::create_dir_all(&erts).unwrap();
    for i in 0..LARGE_FILES {
        let data = rng.mixed(LARGE_SIZE, 64 << 10, 50);
        fs::write(erts.join(format!("big_{i}.so")), &data).unwrap();
        total += data.len() as u64;
    }
    total
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn percentile(mut xs: Vec<Duration>, p: f64) -> Duration {
    xs.sort();
    let rank = (p * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib_of(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Times our unpack against a reference extractor on one package.
/// `theirs(dest)` builds the reference command extracting into `dest`.
fn compare(label: &str, host: &Host, work: &Path, theirs: &dyn Fn(&Path) -> Command) {
    let dest = work.join("reference");
    let ours_once = || {
        sync_fs(work);
        let r = run(&mut host.relup(&["unpack", VSN]));
        assert!(
            host.tree(VSN).join("releases").join(VSN).is_dir(),
            "unpack produced no tree"
        );
        run(&mut host.relup(&["uninstall", VSN]));
        r
    };
    let theirs_once = || {
        fs::create_dir(&dest).unwrap();
        sync_fs(work);
        let plain = run(&mut theirs(&dest));
        let synced = sync_fs(&dest);
        fs::remove_dir_all(&dest).unwrap();
        (plain, synced)
    };
    ours_once();
    theirs_once();
    let (mut ours, mut plain, mut synced) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_ours, mut rss_theirs) = (0, 0);
    for _ in 0..RUNS {
        let o = ours_once();
        let (p, s) = theirs_once();
        rss_ours = rss_ours.max(o.rss_kib);
        rss_theirs = rss_theirs.max(p.rss_kib);
        ours.push(o.wall);
        plain.push(p.wall);
        synced.push(p.wall + s.wall);
    }
    let (o, p, s) = (median(ours), median(plain), median(synced));
    println!(
        "{label:<18} {:>8} {:>8} {:>10} {:>7.2}x {:>8.2}x {:>9.1} {:>9.1}",
        secs(o),
        secs(p),
        secs(s),
        o.as_secs_f64() / p.as_secs_f64(),
        o.as_secs_f64() / s.as_secs_f64(),
        mib_of(rss_ours),
        mib_of(rss_theirs),
    );
}

fn versions_latency(work: &Path) {
    let host = Host::new(work, "versions");
    for minor in 0..5 {
        let vsn = format!("5.0.{minor}");
        let src = work.join(format!("src-{vsn}"));
        skeleton(&src, &vsn);
        let pkg = host.drop_dir().join(format!("emqx-{vsn}.tar.gz"));
        run(Command::new("tar")
            .arg("czf")
            .arg(&pkg)
            .arg("-C")
            .arg(&src)
            .arg("emqx"));
        run(&mut host.relup(&["unpack", &vsn]));
    }
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    run(&mut host.relup(&["versions"]));
    run(&mut Command::new("/bin/true"));
    for _ in 0..VERSIONS_RUNS {
        ours.push(run(&mut host.relup(&["versions"])).wall);
        base.push(run(&mut Command::new("/bin/true")).wall);
    }
    let (om, bm) = (median(ours.clone()), median(base.clone()));
    let (o99, b99) = (percentile(ours, 0.99), percentile(base, 0.99));
    println!(
        "versions x{VERSIONS_RUNS} (5 releases): median {:.2} ms, p99 {:.2} ms | /bin/true: median {:.2} ms, p99 {:.2} ms | ratio {:.2}x (median), {:.2}x (p99)",
        ms(om),
        ms(o99),
        ms(bm),
        ms(b99),
        ms(om) / ms(bm),
        ms(o99) / ms(b99),
    );
}

fn main() {
    for (tool, arg) in [("tar", "--version"), ("gzip", "--version"), ("zip", "-v")] {
        require(tool, arg);
    }
    require("unzip", "-v");
    require("sync", "--version");
    let started = Instant::now();
    // Removed on drop, also when the bench panics.
    let tmp = tempfile::Builder::new()
        .prefix("relup-bench-")
        .tempdir_in("/var/tmp")
        .expect("cannot create a temp dir in /var/tmp");
    let work = tmp.path().to_path_buf();

    println!("emqx-relup unpack benchmark ({})", BIN);
    println!("measures: `unpack` vs `tar xzf` / `unzip -q` on the same package, peak RSS, `versions` latency");
    let src = work.join("src");
    let bytes = big_tree(&src);
    let tgz_host = Host::new(&work, "tgz");
    let zip_host = Host::new(&work, "zip");
    let tgz = tgz_host.drop_dir().join(format!("emqx-{VSN}.tar.gz"));
    let zip = zip_host.drop_dir().join(format!("emqx-{VSN}.zip"));
    run(Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg("emqx"));
    run(Command::new("zip")
        .arg("-qr")
        .arg(&zip)
        .arg("emqx")
        .current_dir(&src));
    fs::remove_dir_all(&src).unwrap();
    let size = |p: &Path| fs::metadata(p).unwrap().len() as f64;
    println!(
        "package: {} small files (1-16 KiB) + {LARGE_FILES} x {} MiB, {:.1} MiB unpacked; tar.gz {:.1} MiB ({:.2}x), zip {:.1} MiB ({:.2}x)",
        SMALL_FILES,
        LARGE_SIZE >> 20,
        bytes as f64 / MIB,
        size(&tgz) / MIB,
        bytes as f64 / size(&tgz),
        size(&zip) / MIB,
        bytes as f64 / size(&zip),
    );
    println!(
        "setup took {:.1} s; 1 warm-up + {RUNS} interleaved timed runs each, medians\n",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<18} {:>8} {:>8} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "package",
        "ours s",
        "theirs s",
        "theirs+sync",
        "ratio",
        "ratio+sync",
        "RSS ours",
        "RSS theirs"
    );
    compare("tar.gz vs tar xzf", &tgz_host, &work, &|dest: &Path| {
        let mut c = Command::new("tar");
        c.arg("xzf").arg(&tgz).arg("-C").arg(dest);
        c
    });
    compare("zip vs unzip", &zip_host, &work, &|dest: &Path| {
        let mut c = Command::new("unzip");
        c.arg("-q").arg(&zip).arg("-d").arg(dest);
        c
    });
    println!(
        "(ratio = ours / theirs; RSS = peak MiB over the timed runs, tar's includes its gzip)\n"
    );
    versions_latency(&work);
    println!("\ntarget: within 1.2x of tar/unzip, peak RSS < 16 MiB, versions < 5 ms");
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
