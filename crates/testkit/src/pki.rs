//! Test certificates, made by Debian's `openssl`: a CA, a server
//! certificate for `localhost`/127.0.0.1 with a chosen serial, client
//! certificates with a chosen common name, and stray keys (a key that
//! matches no certificate). Elliptic-curve P-256 throughout. The folder
//! and files are readable by every user: brokers run as the test user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder of certificates and keys; removed on drop.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e} (scripts/test installs openssl)"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    /// A CA, `server` (serial 4097) and `client` (CN `device-1`).
    pub fn new() -> Pki {
        Pki::new_in(&std::env::temp_dir())
    }

    /// [`Pki::new`] in a folder under `parent` (one a sandbox sees).
    pub fn new_in(parent: &Path) -> Pki {
        let dir = tempfile::tempdir_in(parent).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki { dir };
        let mut args = vec!["req", "-x509", "-nodes", "-days", "30"];
        args.extend(EC);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=emqx-relup test CA",
        ]);
        openssl(pki.dir.path(), &args);
        pki.issue("server", "localhost", 4097, true);
        pki.issue("client", "device-1", 8193, false);
        pki.readable();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server certificate made at start.
    pub fn server(&self) -> Pair {
        self.pair("server")
    }

    /// The client certificate made at start (CN `device-1`).
    pub fn client(&self) -> Pair {
        self.pair("client")
    }

    fn pair(&self, name: &str) -> Pair {
        Pair {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        }
    }

    /// Issues `name.pem`/`name.key` for `cn` with `serial`, signed by
    /// the CA (a server certificate names localhost and 127.0.0.1).
    pub fn issue(&self, name: &str, cn: &str, serial: u32, server: bool) -> Pair {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-nodes"];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(self.dir.path(), &args);
        let ext = format!("{name}.ext");
        let usage = if server {
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        } else {
            "extendedKeyUsage=clientAuth\n"
        };
        fs::write(self.path(&ext), usage).unwrap();
        let serial = serial.to_string();
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "30",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
        self.readable();
        self.pair(name)
    }

    /// A key of no certificate.
    pub fn stray_key(&self, name: &str) -> PathBuf {
        let key = format!("{name}.key");
        openssl(
            self.dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-out",
                &key,
            ],
        );
        self.readable();
        self.path(&key)
    }

    fn readable(&self) {
        for e in fs::read_dir(self.dir.path()).unwrap() {
            let p = e.unwrap().path();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}
