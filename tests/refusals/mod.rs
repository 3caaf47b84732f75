//! The hostile-package kit of tests/hostile.rs and tests/hostile_edges.rs:
//! a package to refuse ([`Case`]), builders of broken archives, and the
//! check that a refusal said one line and left nothing behind.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use emqx_testkit::{entry, release, text, write_tar_gz, write_zip, Entry, Host, Kind};
use sha2::{Digest, Sha256};

pub const TGZ: &str = "emqx-5.0.1.tar.gz";
pub const ZIP: &str = "emqx-5.0.1.zip";
pub const UNPACK: &[&str] = &["unpack", "5.0.1"];
pub const UPGRADE: &[&str] = &["upgrade", "5.0.1"];

/// One package to refuse.
pub struct Case {
    pub name: &'static str,
    pub file: &'static str, // its name in the drop folder
    pub bytes: Vec<u8>,
    pub sum: Option<String>,  // the content of `<file>.sha256`, if any
    pub config: &'static str, // extra relup.toml text
    pub problem: String,      // a fragment of the expected problem message
}

pub fn case(name: &'static str, (file, bytes): (&'static str, Vec<u8>), problem: &str) -> Case {
    let (sum, config, problem) = (None, "", problem.to_string());
    Case {
        name,
        file,
        bytes,
        sum,
        config,
        problem,
    }
}

impl Case {
    pub fn config(self, config: &'static str) -> Case {
        Case { config, ..self }
    }

    pub fn sum(mut self, sum: &str) -> Case {
        self.sum = Some(sum.into());
        self
    }
}

/// Writes an archive with a builder of `common` and returns its bytes.
pub fn build(write: fn(&std::path::Path, &[Entry]), entries: &[Entry]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package");
    write(&path, entries);
    fs::read(path).unwrap()
}

/// A tar.gz package of `entries`.
pub fn t(entries: &[Entry]) -> (&'static str, Vec<u8>) {
    (TGZ, build(write_tar_gz, entries))
}

/// A zip package of `entries`.
pub fn z(entries: &[Entry]) -> (&'static str, Vec<u8>) {
    (ZIP, build(write_zip, entries))
}

/// A tar.gz package of `entries` at compression `level` (the builder's fast
/// level is too weak for a convincing bomb; level 0 stores the bytes as they are).
pub fn t_level(entries: &[Entry], level: u32) -> (&'static str, Vec<u8>) {
    let mut tar = Vec::new();
    let plain = t(entries).1;
    flate2::read::GzDecoder::new(&plain[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    gz.write_all(&tar).unwrap();
    (TGZ, gz.finish().unwrap())
}

/// A zip package of `entries` plus a file `name` whose whole unix mode, type
/// bits included, is `mode` (`write_zip` keeps only the permission bits).
pub fn z_mode(entries: &[Entry], name: &str, mode: u32) -> (&'static str, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package.zip");
    write_zip(&path, entries);
    let rw = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut zip = zip::ZipWriter::new_append(rw).unwrap();
    let opts = zip::write::SimpleFileOptions::default().external_attributes(mode << 16);
    zip.start_file(name, opts).unwrap();
    zip.write_all(b"#!/bin/sh\n").unwrap();
    zip.finish().unwrap();
    (ZIP, fs::read(path).unwrap())
}

/// The good 5.0.1 release under `emqx/`, followed by `extra`.
pub fn good_plus(extra: Vec<Entry>) -> Vec<Entry> {
    let mut entries = release("5.0.1", "emqx/");
    entries.extend(extra);
    entries
}

pub fn with_link(name: &str, target: &str) -> Vec<Entry> {
    good_plus(vec![entry(name, Kind::Symlink(target.into()))])
}

pub fn special(name: &str, kind: Kind) -> Vec<Entry> {
    good_plus(vec![entry(name, kind)])
}

pub fn with_mode(name: &str, mode: u32) -> Vec<Entry> {
    good_plus(vec![entry(name, Kind::File(b"x".to_vec(), mode))])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Deterministic bytes that are no archive (the high bit keeps gzip's magic away).
pub fn noise(n: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 32) as u8 | 0x80
    };
    (0..n).map(|_| next()).collect()
}

/// Drops the case's package, runs `args`, and checks the refusal left
/// nothing behind.
pub fn refuse(host: &Host, case: &Case, args: &[&str]) {
    let package = host.drop_dir().join(case.file);
    let sum_file = host.drop_dir().join(format!("{}.sha256", case.file));
    fs::write(&package, &case.bytes).unwrap();
    if let Some(sum) = &case.sum {
        fs::write(&sum_file, sum).unwrap();
    }
    // The lock creates the store folder on an empty host: not a trace.
    fs::create_dir_all(host.store()).unwrap();
    let (state, snapshot) = (host.state(), host.snapshot());

    let out = host.emqx(args);
    let ((stdout, stderr), name, file) = (text(&out), case.name, case.file);
    assert_eq!(out.status.code(), Some(4), "{name}: {stdout}{stderr}");
    let said = format!("Release 5.0.1 not found, attempting to unpack releases/{file}\n");
    assert_eq!(stdout, said, "{name}");
    let (prefix, problem) = (format!("ERROR: unpacking releases/{file}: "), &case.problem);
    let one_line = stderr.ends_with('\n') && stderr.lines().count() == 1;
    let ok = one_line && stderr.starts_with(&prefix) && stderr.contains(problem);
    assert!(
        ok,
        "{name}: {stderr:?}, expected one line {prefix}...{problem}..."
    );
    assert_eq!(host.state(), state, "{name}: the state changed");
    assert_eq!(host.snapshot(), snapshot, "{name}: the host changed");
    assert!(fs::read(&package).unwrap() == case.bytes, "{name}: package");
    if let Some(sum) = &case.sum {
        assert_eq!(&fs::read_to_string(&sum_file).unwrap(), sum, "{name}");
    }
}

/// Replaces the hostile package with a good one of the same format and runs
/// `args` again: the refusal left nothing that blocks it.
pub fn retry(host: &Host, case: &Case, args: &[&str]) {
    fs::remove_file(host.drop_dir().join(case.file)).unwrap();
    let _ = fs::remove_file(host.drop_dir().join(format!("{}.sha256", case.file)));
    host.drop_release("5.0.1", case.file.ends_with(".zip"));
    host.ok(args);
}

/// Runs `check` on every case, then names all the cases that failed.
pub fn check_all(cases: &[Case], check: impl Fn(&Case)) {
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| catch_unwind(AssertUnwindSafe(|| check(case))).is_err())
        .map(|case| case.name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

pub fn host_for(case: &Case) -> Host {
    Host::with_config(&format!("lock_timeout_secs = 2\n{}", case.config))
}

pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(v, s)| (v.to_string(), s.to_string()))
        .collect()
}
