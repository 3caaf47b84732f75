//! Unpack benchmark: `emqx-relup unpack` against `tar xzf` and `unzip` on the
//! same ~200 MiB package (15,000 small files plus a few large ones), the
//! helper's peak RSS, and `versions` latency against spawning `/bin/true`.
//!
//! The helper calls syncfs(2) before moving the tree into place, so tar and
//! unzip are timed both plain and followed by `sync -f` ("+ sync -f").
//! Every timed command starts after an untimed `sync -f` and extracts into a
//! fresh folder; no tree is deleted until all timing is done (see
//! [`compare`]). Wall time and peak RSS come from wait4(2) in a small
//! trampoline process (see [`tool`]). Results are printed, never asserted.
//! Run with `cargo bench --bench unpack` (about 1.5 minutes).

use std::ffi::OsStr;
use std::fs;
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
/// Set in the environment of this binary re-run as a trampoline.
const TRAMPOLINE: &str = "RELUP_BENCH_TRAMPOLINE";

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

    /// `len` bytes: blocks of random words, `random_pct` % of them random bytes.
    fn mixed(&mut self, len: usize, block: usize, random_pct: usize) -> Vec<u8> {
        const WORDS: &str = "emqx|broker|session|topic|client|publish|subscribe|qos|retain|\
            node|cluster|listener|mqtt|packet|ok|error|state|module|gen_server|handle_call|\
            handle_info|{reply,|ets|mnesia|->|end.|case|of|undefined|true|false|Pid|Msg|#{|}|\
            lists:foldl(|maps:get(|binary|<<|>>|fun|when|is_integer(|\n|\n    |%%|config";
        let words: Vec<&str> = WORDS.split('|').collect();
        let mut out = Vec::with_capacity(len + 64);
        while out.len() < len {
            let end = (out.len() + block).min(len);
            let random = self.below(100) < random_pct;
            while out.len() < end {
                if random {
                    out.extend_from_slice(&self.next().to_le_bytes());
                } else {
                    out.extend_from_slice(words[self.below(words.len())].as_bytes());
                    out.push(b' ');
                }
            }
            out.truncate(end);
        }
        out
    }
}

/// A command run through the trampoline: a fresh copy of this binary that
/// spawns `program` and reaps it with wait4. Reaping it here would be wrong:
/// a child's ru_maxrss starts at the high-water mark of the process it was
/// spawned from (the kernel carries it over at exec), and this one is large.
/// Arguments, environment and folder set on the result reach `program`.
fn tool(program: impl AsRef<OsStr>) -> Command {
    let mut t = Command::new(std::env::current_exe().unwrap());
    t.env(TRAMPOLINE, "1").arg(program);
    t
}

/// The wall time and peak RSS (KiB) of one child process.
struct Run {
    wall: Duration,
    rss_kib: u64,
}

/// Runs a [`tool`] command to completion; panics if it fails.
fn run(cmd: &mut Command) -> Run {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    let report = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = report
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    Run {
        wall: Duration::from_nanos(nums[0]),
        rss_kib: nums[1],
    }
}

/// The trampoline: runs argv[1..], prints "<wall ns> <peak RSS KiB>".
fn trampoline() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..])
        .env_remove(TRAMPOLINE)
        .stdout(Stdio::null());
    let start = Instant::now();
    let pid = cmd.spawn().unwrap().id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for this one child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(reaped, pid, "wait4 failed");
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        eprintln!("{args:?}: exit status {status:#x}");
        std::process::exit(1);
    }
    println!("{} {}", wall.as_nanos(), usage.ru_maxrss);
}

/// Flushes all dirty data of the file system holding `dir`.
fn sync_fs(dir: &Path) -> Run {
    run(tool("sync").arg("-f").arg(dir))
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
        let run_dir = dir.join("run").display().to_string();
        fs::write(
            dir.join("relup.toml"),
            format!("runtime_dir = {run_dir:?}\n"),
        )
        .unwrap();
        Host { dir }
    }

    fn drop_dir(&self) -> PathBuf {
        self.dir.join("root/releases")
    }

    fn tree(&self) -> PathBuf {
        self.dir.join("state/releases").join(VSN)
    }

    fn relup(&self, args: &[&str]) -> Command {
        let mut cmd = tool(BIN);
        cmd.args(args)
            .env("EMQX_ROOT_DIR", self.dir.join("root"))
            .env("EMQX_STATE_DIR", self.dir.join("state"))
            .env("EMQX_RELUP_CONFIG", self.dir.join("relup.toml"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS");
        cmd
    }
}

/// Writes the skeleton of release `vsn` under `top/emqx/`.
fn skeleton(top: &Path, vsn: &str) {
    let emqx = top.join("emqx");
    fs::create_dir_all(emqx.join("bin")).unwrap();
    fs::create_dir_all(emqx.join("releases").join(vsn)).unwrap();
    fs::write(emqx.join("bin/emqx"), "#!/bin/sh\necho emqx \"$@\"\n").unwrap();
    fs::set_permissions(emqx.join("bin/emqx"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(emqx.join("releases").join(vsn).join("emqx.rel"), vsn).unwrap();
    fs::write(emqx.join("releases/start_erl.data"), format!("5.0 {vsn}\n")).unwrap();
}

/// Writes the big tree under `top/emqx/`; returns its size in bytes.
fn big_tree(top: &Path) -> u64 {
    skeleton(top, VSN);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut total = 0;
    for i in 0..SMALL_FILES {
        let app = i / 50;
        let dir = top.join(format!("emqx/lib/app_{app:03}-1.0.{}/ebin", app % 3));
        if i % 50 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        let len = 1024 + rng.below(15 * 1024 + 1);
        let data = rng.mixed(len, 512, 20);
        fs::write(dir.join(format!("mod_{i:05}.beam")), &data).unwrap();
        total += data.len() as u64;
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

/// Packs `src/emqx` into `pkg` with `tar czf`.
fn tar_czf(pkg: &Path, src: &Path) {
    run(tool("tar")
        .arg("czf")
        .arg(pkg)
        .arg("-C")
        .arg(src)
        .arg("emqx"));
}

/// The nearest-rank percentile `p` (0.5 = median) of `xs`.
fn pct(xs: &[Duration], p: f64) -> Duration {
    let mut xs = xs.to_vec();
    xs.sort();
    xs[((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Times our unpack against `theirs` (program and arguments, `{pkg}` and
/// `{dest}` filled in) on `pkg`, each run into a fresh folder. No tree is
/// deleted before all timing is done: ext4 without a journal (as here) makes
/// file creation much slower for ~30 s after a large deletion (its inode
/// allocator skips recently freed inodes), which would swamp both sides.
/// Returns the hosts, to uninstall at the end.
fn compare(label: &str, pkg: &Path, work: &Path, theirs: &[&str]) -> Vec<Host> {
    let mut hosts = Vec::new();
    let mut ours_once = |i: usize| {
        let host = Host::new(work, &format!("{label}-ours-{i}"));
        fs::hard_link(pkg, host.drop_dir().join(pkg.file_name().unwrap())).unwrap();
        sync_fs(work);
        let r = run(&mut host.relup(&["unpack", VSN]));
        assert!(
            host.tree().join("releases").join(VSN).is_dir(),
            "no tree unpacked"
        );
        hosts.push(host);
        r
    };
    let theirs_once = |i: usize| {
        let dest = work.join(format!("{label}-theirs-{i}"));
        fs::create_dir(&dest).unwrap();
        let mut cmd = tool(theirs[0]);
        for arg in &theirs[1..] {
            match *arg {
                "{pkg}" => cmd.arg(pkg),
                "{dest}" => cmd.arg(&dest),
                a => cmd.arg(a),
            };
        }
        sync_fs(work);
        let plain = run(&mut cmd);
        (plain.wall, plain.wall + sync_fs(&dest).wall, plain.rss_kib)
    };
    ours_once(0);
    theirs_once(0);
    let (mut ours, mut plain, mut synced) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_ours, mut rss_theirs) = (0, 0);
    for i in 1..=RUNS {
        // Alternate which side goes first.
        let (o, (p, s, rss)) = if i % 2 == 1 {
            (ours_once(i), theirs_once(i))
        } else {
            let t = theirs_once(i);
            (ours_once(i), t)
        };
        (rss_ours, rss_theirs) = (rss_ours.max(o.rss_kib), rss_theirs.max(rss));
        ours.push(o.wall);
        plain.push(p);
        synced.push(s);
    }
    let [o, p, s] = [&ours, &plain, &synced].map(|xs| pct(xs, 0.5).as_secs_f64());
    println!(
        "{label:<7} {o:>9.3} {p:>12.3} {s:>12.3} {:>7.2}x {:>10.2}x {:>9.1} {:>11.1}",
        o / p,
        o / s,
        mib(rss_ours),
        mib(rss_theirs),
    );
    let list = |xs: &[Duration]| {
        xs.iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "        runs: ours {} | theirs {} | +sync {}",
        list(&ours),
        list(&plain),
        list(&synced)
    );
    hosts
}

/// `versions` with 5 releases recorded, against spawning `/bin/true`.
fn versions_latency(work: &Path) {
    let host = Host::new(work, "versions");
    for minor in 0..5 {
        let vsn = format!("5.0.{minor}");
        let src = work.join(format!("src-{vsn}"));
        skeleton(&src, &vsn);
        tar_czf(&host.drop_dir().join(format!("emqx-{vsn}.tar.gz")), &src);
        run(&mut host.relup(&["unpack", &vsn]));
    }
    let floor = run(&mut tool("/bin/true")).rss_kib;
    let rss = run(&mut host.relup(&["versions"])).rss_kib;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..VERSIONS_RUNS {
        ours.push(run(&mut host.relup(&["versions"])).wall);
        base.push(run(&mut tool("/bin/true")).wall);
    }
    let ms = |xs: &[Duration], p: f64| pct(xs, p).as_secs_f64() * 1e3;
    let (om, o99, bm, b99) = (
        ms(&ours, 0.5),
        ms(&ours, 0.99),
        ms(&base, 0.5),
        ms(&base, 0.99),
    );
    println!("versions x{VERSIONS_RUNS}, 5 releases recorded (process wall time, spawn to reap)");
    println!("             median ms   p99 ms   RSS MiB");
    println!("versions     {om:>9.2} {o99:>8.2} {:>9.1}", mib(rss));
    println!("/bin/true    {bm:>9.2} {b99:>8.2} {:>9.1}", mib(floor));
    println!("ratio        {:>8.2}x {:>7.2}x", om / bm, o99 / b99);
    println!("(/bin/true's RSS is the floor any child's peak RSS starts from here)");
}

fn main() {
    if std::env::var_os(TRAMPOLINE).is_some() {
        return trampoline();
    }
    for (tool, arg) in [
        ("tar", "--version"),
        ("gzip", "--version"),
        ("zip", "-v"),
        ("unzip", "-v"),
        ("sync", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "this benchmark needs `{tool}` on PATH (apt-get install {tool})"
        );
    }
    let started = Instant::now();
    // Removed on drop, also when the bench panics.
    let tmp = tempfile::Builder::new()
        .prefix("relup-bench-")
        .tempdir_in("/var/tmp")
        .expect("cannot create a temp dir in /var/tmp");
    let work = tmp.path().to_path_buf();

    println!("emqx-relup unpack benchmark ({BIN})");
    println!("measures `unpack` against `tar xzf` / `unzip -q` on the same bytes (wall time,");
    println!("peak RSS), then `versions` latency against spawning /bin/true; nothing asserted");
    let src = work.join("src");
    let bytes = big_tree(&src) as f64;
    let tgz = work.join(format!("emqx-{VSN}.tar.gz"));
    let zip = work.join(format!("emqx-{VSN}.zip"));
    tar_czf(&tgz, &src);
    run(tool("zip")
        .arg("-qr")
        .arg(&zip)
        .arg("emqx")
        .current_dir(&src));
    let size = |p: &Path| fs::metadata(p).unwrap().len() as f64;
    let (t, z, m) = (size(&tgz), size(&zip), (1 << 20) as f64);
    println!(
        "package: {SMALL_FILES} files of 1-16 KiB + {LARGE_FILES} x {} MiB = {:.1} MiB; \
         tar.gz {:.1} MiB ({:.2}x), zip {:.1} MiB ({:.2}x)",
        LARGE_SIZE >> 20,
        bytes / m,
        t / m,
        bytes / t,
        z / m,
        bytes / z,
    );
    println!(
        "setup {:.1} s; per format 1 warm-up + {RUNS} timed runs of each, interleaved; medians\n",
        started.elapsed().as_secs_f64()
    );
    println!(
        "format     ours s  tar/unzip s  + sync -f s    ratio  ratio sync  RSS ours  RSS theirs"
    );
    let tar = ["tar", "xzf", "{pkg}", "-C", "{dest}"];
    let mut hosts = compare("tar.gz", &tgz, &work, &tar);
    let unzip = ["unzip", "-q", "{pkg}", "-d", "{dest}"];
    hosts.extend(compare("zip", &zip, &work, &unzip));
    println!(
        "(ratio = ours / theirs; RSS = peak MiB over the timed runs, tar's is max(tar, gzip))\n"
    );
    versions_latency(&work);
    println!("\ntarget: within 1.2x of tar/unzip, peak RSS < 16 MiB, versions < 5 ms");
    println!(
        "total {:.1} s, then cleanup",
        started.elapsed().as_secs_f64()
    );
    for host in hosts {
        run(&mut host.relup(&["uninstall", VSN]));
        assert!(!host.tree().exists(), "uninstall left the tree");
    }
}
