//! A throw-away PKI made with the `openssl` command: a CA, a server
//! certificate, and client certificates with chosen subjects (one without
//! a common name), for mosquitto's `use_identity_as_username`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files a TLS client of the test uses.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// Its certificate and key, if it presents one.
    pub cert: Option<(PathBuf, PathBuf)>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and a certificate for `subject` signed by the CA in `dir`.
fn issue(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]
        .iter()
        .copied()
        .chain(["-keyout", &key, "-out", &csr, "-subj", subject])
        .collect::<Vec<_>>(),
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key",
        ]
        .iter()
        .copied()
        .chain(["-CAcreateserial", "-days", "2", "-out", &crt])
        .collect::<Vec<_>>(),
    );
    (dir.join(crt), dir.join(key))
}

/// The CA and server files in `dir`; returns the mosquitto lines that
/// serve them with `use_identity_as_username` and `require_certificate`
/// as given (mosquitto asks for a client certificate only when it is
/// required).
pub fn make_ca_and_server(dir: &Path) -> impl Fn(bool) -> String {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ]
        .iter()
        .copied()
        .chain([
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=test-ca",
            "-days",
            "2",
        ])
        .collect::<Vec<_>>(),
    );
    let (crt, key) = issue(dir, "server", "/CN=127.0.0.1");
    let ca = dir.join("ca.crt");
    move |require| {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require}\nuse_identity_as_username true\n",
            ca.display(),
            crt.display(),
            key.display()
        )
    }
}

/// A client presenting a certificate for `subject` (`None`: no certificate).
pub fn client(dir: &Path, name: &str, subject: Option<&str>) -> ClientTls {
    ClientTls {
        ca: dir.join("ca.crt"),
        cert: subject.map(|s| issue(dir, name, s)),
    }
}
