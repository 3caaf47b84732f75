//! A temporary host (install root, state dir, config) driven through the
//! `emqx` link, as an operator would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::Digest;

use crate::package::{release, write_tar_gz, write_zip, Entry};

/// A temporary host: install root with its drop folder, state dir, config,
/// and an `emqx` link to the binary.
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Default for Host {
    fn default() -> Host {
        Host::new()
    }
}

impl Host {
    pub fn new() -> Host {
        Host::with_config("lock_timeout_secs = 2\nuser = \"root\"\n")
    }

    /// A host whose relup.toml holds `config` (runtime_dir is set inside the
    /// host, so no broker of the machine is ever seen).
    pub fn with_config(config: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        for d in ["root/releases", "state", "run", "bin"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let runtime = dir.path().join("run");
        fs::write(
            dir.path().join("relup.toml"),
            format!(
                "runtime_dir = {:?}\n{config}",
                runtime.display().to_string()
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink(crate::bins::bin("emqx-relup"), dir.path().join("bin/emqx"))
            .unwrap();
        Host { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    pub fn drop_dir(&self) -> PathBuf {
        self.path().join("root/releases")
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("state/releases")
    }

    pub fn state_file(&self) -> PathBuf {
        self.store().join("RELEASES")
    }

    /// The state file's bytes, or None when there is none.
    pub fn state(&self) -> Option<Vec<u8>> {
        fs::read(self.state_file()).ok()
    }

    /// Drops a well-formed package of `version` as zip or tar.gz.
    pub fn drop_release(&self, version: &str, zip: bool) -> PathBuf {
        let entries = release(version, "emqx/");
        self.drop_entries(&format!("emqx-{version}"), zip, &entries)
    }

    /// Drops a package named `stem` + extension built from `entries`.
    pub fn drop_entries(&self, stem: &str, zip: bool, entries: &[Entry]) -> PathBuf {
        let path = self
            .drop_dir()
            .join(format!("{stem}{}", if zip { ".zip" } else { ".tar.gz" }));
        if zip {
            write_zip(&path, entries);
        } else {
            write_tar_gz(&path, entries);
        }
        path
    }

    /// A command running the binary through the `emqx` link.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.path().join("bin/emqx"));
        cmd.env("EMQX_ROOT_DIR", self.root())
            .env("EMQX_STATE_DIR", self.path().join("state"))
            .env("EMQX_RELUP_CONFIG", self.path().join("relup.toml"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS");
        cmd
    }

    /// Runs `emqx ARGS...`.
    pub fn emqx(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs `emqx ARGS...` and insists on success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.emqx(args);
        assert!(
            out.status.success(),
            "emqx {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `(version, state)` pairs from `versions --json`.
    pub fn versions(&self) -> Vec<(String, String)> {
        parse_versions(&self.ok(&["versions", "--json"]))
    }

    /// Every path under the host with what a command could change about
    /// it: its kind, permission bits (setuid, setgid and sticky included),
    /// owner and group, and a regular file's size and sha256, a symlink's
    /// target. To show that a refused command wrote nothing: not one byte,
    /// mode or owner, in the state, the trees, the config or the
    /// operator's drop folder.
    ///
    /// Left out: the store's lock file, which any command taking the lock
    /// legitimately changes (it is created, its mode set to 0600, the
    /// holder's pid written into it).
    pub fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap().display().to_string();
        if rel == "state/releases/.lock" {
            continue;
        }
        // Not followed: a symlink is described, not its target.
        let meta = fs::symlink_metadata(&p).unwrap();
        let t = meta.file_type();
        let what = if t.is_dir() {
            "dir".to_string()
        } else if t.is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if t.is_file() {
            // Opened only when regular: a FIFO would block.
            let bytes = fs::read(&p).unwrap();
            format!(
                "file {} bytes sha256:{:x}",
                bytes.len(),
                sha2::Sha256::digest(&bytes)
            )
        } else if t.is_fifo() {
            "fifo".to_string()
        } else if t.is_socket() {
            "socket".to_string()
        } else if t.is_char_device() || t.is_block_device() {
            format!("device {:#x}", meta.rdev())
        } else {
            "other".to_string()
        };
        // A symlink's own mode is always 0777 on Linux: its target says it.
        let mode = meta.mode() & 0o7777;
        out.push(format!(
            "{rel} {what} mode {mode:04o} owner {}:{}",
            meta.uid(),
            meta.gid()
        ));
        if t.is_dir() {
            walk(base, &p, out);
        }
    }
}

/// stdout and stderr of an output, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(version, state)` pairs from the output of `versions --json`.
pub fn parse_versions(json: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    doc["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
