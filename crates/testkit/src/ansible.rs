//! Ansible on the controller (this machine): ansible-core and ansible-lint
//! pinned, from PyPI, in a virtual environment under the build output
//! (made on first use; a test fails, never skips, when it cannot be), and
//! the repository's collection `emqx.relup` (`ansible/`) on its path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The ansible-core release the tests run (the last for Debian 12's
/// Python 3.11 on the controller).
pub const ANSIBLE_CORE: &str = "2.19.14";
/// The ansible-lint release that checks the collection.
pub const ANSIBLE_LINT: &str = "26.10.1";

/// The virtual environment's `bin/`.
pub fn venv_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let core = format!("ansible-core=={ANSIBLE_CORE}");
        let lint = format!("ansible-lint=={ANSIBLE_LINT}");
        crate::clients::pinned_venv(
            &format!("ansible-venv-{ANSIBLE_CORE}-{ANSIBLE_LINT}"),
            &[core.as_str(), lint.as_str()],
        )
        .join("bin")
    })
    .clone()
}

/// The collection's source, `ansible/` of the checkout.
pub fn collection_dir() -> PathBuf {
    crate::bins::repo().join("ansible")
}

/// A controller: Ansible's own files (collections path, control sockets,
/// temp) in a folder of its own.
pub struct Controller {
    dir: tempfile::TempDir,
}

impl Default for Controller {
    fn default() -> Self {
        Controller::new()
    }
}

impl Controller {
    /// Links the collection in as `emqx.relup`.
    pub fn new() -> Controller {
        let dir = tempfile::Builder::new()
            .prefix("emqx-ansible-")
            .tempdir()
            .unwrap();
        let ns = dir.path().join("collections/ansible_collections/emqx");
        std::fs::create_dir_all(&ns).unwrap();
        std::os::unix::fs::symlink(collection_dir(), ns.join("relup")).unwrap();
        Controller { dir }
    }

    /// A command of the virtual environment (`ansible-playbook`...) with
    /// the controller's settings.
    pub fn command(&self, tool: &str) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(venv_bin().join(tool));
        cmd.env("ANSIBLE_COLLECTIONS_PATH", d.join("collections"))
            .env("ANSIBLE_HOME", d.join("home"))
            .env("ANSIBLE_LOCAL_TEMP", d.join("tmp"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", d.join("cp"))
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_FORKS", "5")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", venv_bin().display()),
            );
        cmd
    }

    /// `ansible-playbook emqx.relup.rolling_upgrade -i INVENTORY ARGS...`.
    pub fn roll(&self, inventory: &Path, args: &[String]) -> Played {
        let out = self
            .command("ansible-playbook")
            .arg("emqx.relup.rolling_upgrade")
            .arg("-i")
            .arg(inventory)
            .args(args)
            .output()
            .unwrap();
        Played::from(out)
    }
}

/// What a playbook run printed.
pub struct Played {
    /// Its exit code.
    pub code: Option<i32>,
    /// stdout then stderr.
    pub text: String,
}

impl From<Output> for Played {
    fn from(out: Output) -> Played {
        Played {
            code: out.status.code(),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

impl Played {
    /// A counter of `host`'s line of the PLAY RECAP (`ok`, `changed`,
    /// `failed`...).
    pub fn recap(&self, host: &str, counter: &str) -> Option<u64> {
        let recap = self.text.rsplit_once("PLAY RECAP")?.1;
        let line = recap
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host))?;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{counter}=")))?
            .parse()
            .ok()
    }
}
