//! Broker hosts reached over SSH: systemd sandboxes, each in its own
//! network namespace (the sandbox's) joined to this machine by a veth pair
//! with an address of its own, running `sshd`, the helper from its `.deb`
//! and `emqx.service` on release 5.0.0, and when a test asks, an apt
//! repository of their own (a folder inside, `file:`). The veths go with
//! the sandboxes; traffic never leaves this machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::sandbox::Sandbox;

/// The /24 of host `i` (from 1) is `10.213.i.0`: the host is `.2`, this
/// machine's end of its veth `.1`.
const NET: [u8; 2] = [10, 213];

/// One broker host of a [`Fleet`].
pub struct FleetHost {
    /// Its inventory name (`host1`...).
    pub name: String,
    /// Its address, on its veth.
    pub addr: Ipv4Addr,
    /// The systemd inside.
    pub sandbox: Sandbox,
    veth: String,
}

/// Hosts, their SSH key, and the helper package they were set up with.
pub struct Fleet {
    /// In order.
    pub hosts: Vec<FleetHost>,
    /// The private key root logs in with.
    pub key: PathBuf,
    /// Files of this fleet (the key, packages, inventories).
    pub dir: tempfile::TempDir,
}

fn sh(script: &str) -> String {
    let out = Command::new("bash").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Fleet {
    /// Boots `n` hosts with the helper's `.deb` (`helper_deb`) and
    /// `relup_toml`, each running release 5.0.0 of the reference broker as
    /// `emqx.service` on 0.0.0.0:1883, with sshd taking root's key.
    pub fn boot(n: usize, helper_deb: &Path, relup_toml: &str) -> Fleet {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing (scripts/test installs openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("emqx-fleet-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("id_ed25519");
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -C emqx-fleet -f {}",
            key.display()
        ));
        let tags: Vec<String> = (1..=n).map(|i| format!("host{i}")).collect();
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let sandboxes = Sandbox::fleet(&refs);
        let mut hosts = Vec::new();
        for (i, sandbox) in sandboxes.into_iter().enumerate() {
            let i = u8::try_from(i + 1).unwrap();
            let host = FleetHost {
                name: format!("host{i}"),
                addr: Ipv4Addr::new(NET[0], NET[1], i, 2),
                veth: format!("emqxf{i}-{}", std::process::id() % 100_000),
                sandbox,
            };
            host.connect(i);
            host.install(helper_deb, &key.with_extension("pub"), relup_toml);
            hosts.push(host);
        }
        Fleet { hosts, key, dir }
    }

    /// An Ansible inventory of the hosts (group `emqx`), root over SSH
    /// with the fleet's key; `host_vars` adds per-host variables
    /// (`(host name, "var=value ...")`).
    pub fn inventory(&self, host_vars: &[(&str, String)]) -> PathBuf {
        let mut text = String::from("[emqx]\n");
        for h in &self.hosts {
            let extra = host_vars
                .iter()
                .filter(|(name, _)| *name == h.name)
                .map(|(_, v)| format!(" {v}"))
                .collect::<String>();
            text.push_str(&format!("{} ansible_host={}{extra}\n", h.name, h.addr));
        }
        text.push_str(&format!(
            "\n[emqx:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\nansible_python_interpreter=/usr/bin/python3\n",
            self.key.display()
        ));
        let path = self.dir.path().join("inventory.ini");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The helper's `.deb`, built by `scripts/build-packages` into
/// `target/packages` of the checkout.
pub fn helper_deb() -> PathBuf {
    let dir = crate::bins::repo().join("target/packages");
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("emqx-relup_") && name.ends_with(".deb")
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no emqx-relup .deb in {}: run scripts/build-packages first (scripts/test does)",
                dir.display()
            )
        })
}

/// Installs the Debian packages `names` on this machine (whose `/` every
/// sandbox sees) unless they are installed; panics when apt cannot.
pub fn ensure_debian_packages(names: &[&str]) {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "--showformat=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let list = missing.join(" ");
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {list}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "this test needs the Debian packages {list}, and apt-get could not install them: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Fleet {
    /// A release package of the reference broker on the controller, in
    /// the fleet's folder `packages/<group>/`, with `refbroker_toml` in it.
    pub fn package(&self, group: &str, version: &str, refbroker_toml: &str) -> PathBuf {
        let dir = self.dir.path().join("packages").join(group);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("emqx-{version}.zip"));
        crate::write_zip(
            &path,
            &crate::broker::broker_release(version, refbroker_toml),
        );
        path
    }

    /// The OS package `emqx-release-VSN` (a `.deb`, `scripts/package-release`)
    /// of the reference broker's release `version`, in the fleet's folder.
    pub fn release_deb(&self, version: &str) -> PathBuf {
        let zip = self.package("os", version, "");
        let out = Command::new(crate::bins::repo().join("scripts/package-release"))
            .arg(&zip)
            .arg(self.dir.path().join("debs"))
            .arg("deb")
            .env("SOURCE_DATE_EPOCH", "1795000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/package-release: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// Gives every host its own apt repository holding `debs`: a flat
    /// repository (`dpkg-scanpackages`, from dpkg-dev, and a `Release`
    /// naming its indexes' SHA-256) copied to `/srv/emqx-apt` inside and
    /// listed as `deb [trusted=yes] file:/srv/emqx-apt ./`, the only
    /// repository the host's apt knows: the sources and lists it sees of
    /// this machine go (inside only; no mirror is reachable from there, and
    /// apt would read their 60,000 packages at every call).
    pub fn apt_repository(&self, debs: &[PathBuf]) {
        let repo = self.dir.path().join("apt");
        std::fs::create_dir_all(&repo).unwrap();
        for deb in debs {
            std::fs::copy(deb, repo.join(deb.file_name().unwrap())).unwrap();
        }
        sh(&format!(
            r#"set -e; cd {}
dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null
gzip -9nkf Packages
{{ echo 'Origin: emqx-relup tests'; echo 'Label: emqx-relup tests'; echo "Date: $(date -Ru)"; echo 'SHA256:'
  for f in Packages Packages.gz; do echo " $(sha256sum $f | cut -d' ' -f1) $(stat -c %s $f) $f"; done; }} > Release"#,
            repo.display()
        ));
        for h in &self.hosts {
            let share = h.sandbox.share.path().join("apt");
            let _ = std::fs::remove_dir_all(&share);
            std::fs::create_dir_all(&share).unwrap();
            for entry in std::fs::read_dir(&repo).unwrap().flatten() {
                std::fs::copy(entry.path(), share.join(entry.file_name())).unwrap();
            }
            h.sandbox.ok(&format!(
                "set -e; install -d -m 0755 /srv/emqx-apt; install -m 0644 {}/* /srv/emqx-apt/\n\
                 rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* /var/lib/apt/lists/*_*\n\
                 echo 'deb [trusted=yes] file:/srv/emqx-apt ./' > /etc/apt/sources.list.d/emqx-relup-tests.list\n\
                 apt-get update -qq",
                share.display()
            ));
        }
    }
}

impl FleetHost {
    /// Its MQTT listener.
    pub fn mqtt(&self) -> SocketAddr {
        SocketAddr::from((self.addr, 1883))
    }

    /// A veth pair: this machine's end here with `.1`, the other as `eth0`
    /// inside the sandbox with `.2`; checked to route to the sandbox.
    fn connect(&self, i: u8) {
        let pid = self.sandbox.init_pid;
        let [a, b] = NET;
        sh(&format!(
            "set -e; ip link add {v} type veth peer name eth0 netns {pid}\n\
             ip addr add {a}.{b}.{i}.1/24 dev {v}; ip link set {v} up",
            v = self.veth
        ));
        self.sandbox.ok(&format!(
            "set -e; ip link set lo up; ip addr add {}/24 dev eth0; ip link set eth0 up",
            self.addr
        ));
        // Traffic to the host goes through its veth, nowhere else.
        let route = sh(&format!("ip -o route get {}", self.addr));
        assert!(route.contains(&format!("dev {} ", self.veth)), "{route}");
    }

    fn install(&self, helper_deb: &Path, pubkey: &Path, relup_toml: &str) {
        let sb = &self.sandbox;
        let deb = sb.share.path().join("emqx-relup.deb");
        std::fs::copy(helper_deb, &deb).unwrap();
        let key = std::fs::read_to_string(pubkey).unwrap();
        sb.ok(&format!(
            "set -e\n\
             dpkg -i {deb} >/dev/null\n\
             mkdir -p -m 0700 /root/.ssh\n\
             printf '%s' '{key}' > /root/.ssh/authorized_keys\n\
             chmod 0600 /root/.ssh/authorized_keys\n\
             printf 'UsePAM no\\nPermitRootLogin prohibit-password\\nMaxStartups 30\\n' > /etc/ssh/sshd_config.d/emqx-fleet.conf\n\
             systemctl start ssh\n\
             mkdir -p /etc/systemd/system/emqx.service.d\n\
             printf '[Service]\\nEnvironment=EMQX_LISTENERS=mqtt=0.0.0.0:1883\\nEnvironment=EMQX_DRAIN_SECS=1\\nRestartSec=0.2\\n' > /etc/systemd/system/emqx.service.d/test.conf\n\
             cat > /etc/emqx/relup.toml <<'EOF'\n{relup_toml}\nEOF\n\
             systemctl daemon-reload",
            deb = deb.display(),
            key = key.trim(),
        ));
        sb.add_release("5.0.0", true, "");
        sb.ok("emqx-relup install 5.0.0 >/dev/null && systemctl start emqx");
        sb.wait_active(Duration::from_secs(10));
    }

    /// The release the broker answering the handoff socket runs, from
    /// `status --json` (empty when none answers).
    pub fn serving(&self) -> String {
        let status: serde_json::Value =
            serde_json::from_str(&self.sandbox.ok("emqx-relup status --json")).unwrap();
        status["broker"]["release"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        // Gone with the sandbox's namespace anyway; removed first so that
        // nothing routes to the address meanwhile.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}
