//! Hostile and broken packages: each is refused (exit 4, one error line), leaves no
//! trace, and does not block a good package of the same version afterwards.

use std::fs;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use emqx_testkit::{entry, file, release, text, write_tar_gz, write_zip, Entry, Host, Kind};
use sha2::{Digest, Sha256};

const TGZ: &str = "emqx-5.0.1.tar.gz";
const ZIP: &str = "emqx-5.0.1.zip";
const UNPACK: &[&str] = &["unpack", "5.0.1"];
const UPGRADE: &[&str] = &["upgrade", "5.0.1"];

/// One package to refuse.
struct Case {
    name: &'static str,
    file: &'static str, // its name in the drop folder
    bytes: Vec<u8>,
    sum: Option<String>,  // the content of `<file>.sha256`, if any
    config: &'static str, // extra relup.toml text
    problem: String,      // a fragment of the expected problem message
}

fn case(name: &'static str, (file, bytes): (&'static str, Vec<u8>), problem: &str) -> Case {
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
    fn config(self, config: &'static str) -> Case {
        Case { config, ..self }
    }

    fn sum(mut self, sum: &str) -> Case {
        self.sum = Some(sum.into());
        self
    }
}

/// Writes an archive with a builder of `common` and returns its bytes.
fn build(write: fn(&std::path::Path, &[Entry]), entries: &[Entry]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package");
    write(&path, entries);
    fs::read(path).unwrap()
}

/// A tar.gz package of `entries`.
fn t(entries: &[Entry]) -> (&'static str, Vec<u8>) {
    (TGZ, build(write_tar_gz, entries))
}

/// A zip package of `entries`.
fn z(entries: &[Entry]) -> (&'static str, Vec<u8>) {
    (ZIP, build(write_zip, entries))
}

/// A tar.gz package of `entries` at compression `level` (the builder's fast
/// level is too weak for a convincing bomb; level 0 stores the bytes as they are).
fn t_level(entries: &[Entry], level: u32) -> (&'static str, Vec<u8>) {
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
fn z_mode(entries: &[Entry], name: &str, mode: u32) -> (&'static str, Vec<u8>) {
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
fn good_plus(extra: Vec<Entry>) -> Vec<Entry> {
    let mut entries = release("5.0.1", "emqx/");
    entries.extend(extra);
    entries
}

fn with_link(name: &str, target: &str) -> Vec<Entry> {
    good_plus(vec![entry(name, Kind::Symlink(target.into()))])
}

fn special(name: &str, kind: Kind) -> Vec<Entry> {
    good_plus(vec![entry(name, kind)])
}

fn with_mode(name: &str, mode: u32) -> Vec<Entry> {
    good_plus(vec![entry(name, Kind::File(b"x".to_vec(), mode))])
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Deterministic bytes that are no archive (the high bit keeps gzip's magic away).
fn noise(n: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 32) as u8 | 0x80
    };
    (0..n).map(|_| next()).collect()
}

/// `"name": package => problem fragment, modifiers;` rows into cases.
macro_rules! cases {
    ($($name:literal: $package:expr => $problem:expr $(, $more:ident($arg:expr))*;)*) => {
        vec![$(case($name, $package, $problem)$(.$more($arg))*,)*]
    };
}

/// The corpus, built once for all tests.
fn corpus() -> &'static [Case] {
    static CORPUS: OnceLock<Vec<Case>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let good = release("5.0.1", "emqx/");
        let slip = good_plus(vec![file("emqx/../../evil", b"pwned")]);
        let absolute = good_plus(vec![file("/tmp/evil", b"pwned")]);
        let out = with_link("emqx/lib/x", "../../../etc");
        let abs_link = with_link("emqx/lib/x", "/etc");
        let through = |target: &str| {
            let link = entry("emqx/d", Kind::Symlink(target.into()));
            good_plus(vec![link, file("emqx/d/evil", b"pwned")])
        };
        let hard = special("emqx/lib/h", Kind::HardLink("emqx/bin/emqx".into()));
        let big = |n: usize| good_plus(vec![file("emqx/lib/big.bin", &vec![0u8; n])]);
        let files = (0..20).map(|i| file(&format!("emqx/f{i}"), b"x"));
        let many = good_plus(files.collect());
        let mut no_releases = good.clone();
        no_releases.retain(|e| !e.name.contains("releases/"));
        let two_tops = [release("5.0.1", "a/"), release("5.0.1", "b/")].concat();
        let half = |(file, b): (&'static str, Vec<u8>)| (file, b[..b.len() / 2].to_vec());
        let good_zip = z(&good);
        let (zeros, actual) = ("0".repeat(64), sha256_hex(&good_zip.1));

        let dots = "entry 'emqx/../../evil' contains '..'";
        let abs = "entry '/tmp/evil' has an absolute path";
        let outside = "symlink 'emqx/lib/x' points outside the release tree";
        let through_d = "entry 'emqx/d/evil' would be written through the symlink 'emqx/d'";
        let setid = "has the setuid or setgid bit";
        let size = "expands to more than 1048576 bytes";
        let ratio = "compression ratio above 200:1";
        let small = "[limits]\nmax_unpacked_bytes = 1048576\n";
        let corrupt = "corrupt archive: ";
        let plain_tar = || {
            let mut tar = Vec::new();
            let gz = t(&good).1;
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut tar)
                .unwrap();
            tar
        };
        let gzip = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap()
        };
        let mut garbage_after = t(&good).1;
        garbage_after.extend_from_slice(b"not gzip, not zeros");
        let mut no_end = plain_tar();
        no_end.truncate(no_end.len() - 1024);
        let mut one_end = plain_tar();
        one_end.truncate(one_end.len() - 512);
        let mut junk_after_end = plain_tar();
        junk_after_end.extend_from_slice(b"junk after the end-of-archive blocks");
        let long = format!("emqx/lib/{}.beam", "n".repeat(300));
        let long_tar = {
            let mut b = tar::Builder::new(Vec::new());
            for e in &good {
                let mut h = tar::Header::new_gnu();
                match &e.kind {
                    Kind::File(data, mode) => {
                        h.set_size(data.len() as u64);
                        h.set_mode(*mode);
                        b.append_data(&mut h, &e.name, &data[..]).unwrap();
                    }
                    Kind::Dir => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_mode(0o755);
                        h.set_size(0);
                        b.append_data(&mut h, &e.name, &[][..]).unwrap();
                    }
                    _ => {}
                }
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            b.append_data(&mut h, &long, &b"x"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let too_long = "has a name too long for a file system";
        cases! {
            "zip slip, tar.gz": t(&slip) => dots;
            "zip slip, zip": z(&slip) => dots;
            "absolute path, tar.gz": t(&absolute) => abs;
            "absolute path, zip": z(&absolute) => abs;
            "symlink climbing out, tar.gz": t(&out) => &format!("{outside} (../../../etc)");
            "symlink climbing out, zip": z(&out) => &format!("{outside} (../../../etc)");
            "symlink out of the release root": t(&with_link("emqx/up", "../x"))
                => "symlink 'emqx/up' points outside the release tree (../x)";
            "absolute symlink, tar.gz": t(&abs_link) => &format!("{outside} (/etc)");
            "absolute symlink, zip": z(&abs_link) => &format!("{outside} (/etc)");
            "write through a link to ., tar.gz": t(&through(".")) => through_d;
            "write through a link to ../emqx, zip": z(&through("../emqx")) => through_d;
            "hard link": t(&hard) => "entry 'emqx/lib/h' is a hard link";
            "character device": t(&special("emqx/lib/c", Kind::CharDevice))
                => "entry 'emqx/lib/c' is a character device";
            "fifo, tar.gz": t(&special("emqx/lib/p", Kind::Fifo)) => "entry 'emqx/lib/p' is a fifo";
            "fifo, zip": z_mode(&good, "emqx/lib/p", 0o010_644) => "entry 'emqx/lib/p' is a fifo";
            "setuid file": t(&with_mode("emqx/bin/su", 0o4755)) => &format!("{setid} (mode 4755)");
            "setgid file": t(&with_mode("emqx/bin/sg", 0o2755)) => &format!("{setid} (mode 2755)");
            "bomb by size, tar.gz": t(&big(2 << 20)) => size, config(small);
            "bomb by size, zip": z(&big(2 << 20)) => size, config(small);
            "bomb by ratio, tar.gz": t_level(&big(64 << 20), 9) => ratio;
            "bomb by ratio, zip": z(&big(64 << 20)) => ratio;
            "too many entries": t(&many) => "more than 8 entries", config("[limits]\nmax_entries = 8\n");
            "truncated tar.gz": half(t(&good)) => corrupt;
            "truncated zip": half(z(&good)) => corrupt;
            "wrong inner version": z(&release("5.0.2", "emqx/"))
                => "the package holds release 5.0.2, not release 5.0.1";
            "no releases folder": t(&no_releases)
                => "the package holds no releases/VSN folder, not release 5.0.1";
            "two top-level folders": z(&two_tops)
                => "expected one top-level folder or a release tree, found a, b";
            "bad checksum": good_zip.clone()
                => &format!("checksum mismatch: {ZIP}.sha256 says {zeros}, the package is {actual}"),
                sum(&format!("{zeros}  {ZIP}\n"));
            "malformed checksum file": good_zip
                => &format!("{ZIP}.sha256 does not hold a sha256 sum"), sum("sha256:not-a-sum\n");
            "empty tar.gz": t(&[]) => "the package is empty";
            "empty zip": z(&[]) => "the package is empty";
            "duplicate entry, tar.gz": t(&good_plus(vec![file("emqx/etc/emqx.conf", b"2")]))
                => "entry 'emqx/etc/emqx.conf' appears twice";
            "random bytes as .zip": (ZIP, noise(4096)) => corrupt;
            "random bytes as .tar.gz": (TGZ, noise(4096)) => corrupt;
            "garbage after the gzip data": (TGZ, garbage_after) => corrupt;
            "tar without end-of-archive blocks": (TGZ, gzip(&no_end))
                => "corrupt archive: truncated: no end-of-archive blocks";
            "tar with one end-of-archive block": (TGZ, gzip(&one_end))
                => "corrupt archive: truncated: one end-of-archive block of two";
            "data after the end-of-archive blocks": (TGZ, gzip(&junk_after_end))
                => "corrupt archive: data after the end of the archive";
            "300-character name, tar.gz": (TGZ, gzip(&long_tar)) => too_long;
            "300-character name, zip": z(&good_plus(vec![file(&long, b"x")])) => too_long;
        }
    })
}

/// Drops the case's package, runs `args`, and checks the refusal left
/// nothing behind.
fn refuse(host: &Host, case: &Case, args: &[&str]) {
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
fn retry(host: &Host, case: &Case, args: &[&str]) {
    fs::remove_file(host.drop_dir().join(case.file)).unwrap();
    let _ = fs::remove_file(host.drop_dir().join(format!("{}.sha256", case.file)));
    host.drop_release("5.0.1", case.file.ends_with(".zip"));
    host.ok(args);
}

/// Runs `check` on every case, then names all the cases that failed.
fn check_all(cases: &[Case], check: impl Fn(&Case)) {
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| catch_unwind(AssertUnwindSafe(|| check(case))).is_err())
        .map(|case| case.name)
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

fn host_for(case: &Case) -> Host {
    Host::with_config(&format!("lock_timeout_secs = 2\n{}", case.config))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(v, s)| (v.to_string(), s.to_string()))
        .collect()
}

#[test]
fn unpack_on_an_empty_host_refuses_every_hostile_package() {
    assert!(corpus().len() >= 15);
    check_all(corpus(), |case| {
        let host = host_for(case);
        refuse(&host, case, UNPACK);
        assert_eq!(host.state(), None, "{}: a state file appeared", case.name);
        assert_eq!(host.versions(), pairs(&[]));
        retry(&host, case, UNPACK);
        assert_eq!(host.versions(), pairs(&[("5.0.1", "unpacked")]));
    });
}

#[test]
fn upgrade_from_a_permanent_release_refuses_every_hostile_package() {
    check_all(corpus(), |case| {
        let host = host_for(case);
        host.drop_release("5.0.0", true);
        host.ok(&["install", "5.0.0"]);
        refuse(&host, case, UPGRADE);
        assert_eq!(host.versions(), pairs(&[("5.0.0", "permanent")]));
        retry(&host, case, UPGRADE);
        let both = pairs(&[("5.0.1", "permanent"), ("5.0.0", "old")]);
        assert_eq!(host.versions(), both);
    });
}

#[test]
fn a_package_with_its_correct_sum_unpacks() {
    let host = Host::new();
    let package = host.drop_release("5.0.1", true);
    let sum = sha256_hex(&fs::read(&package).unwrap());
    let sum_file = host.drop_dir().join(format!("{ZIP}.sha256"));
    fs::write(sum_file, format!("{sum}  {ZIP}\n")).unwrap();
    assert_eq!(
        host.ok(UNPACK),
        "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1.zip\n\
         Unpacked successfully: \"5.0.1\"\n"
    );
    assert_eq!(host.versions(), pairs(&[("5.0.1", "unpacked")]));
}

#[test]
fn a_flat_package_unpacks() {
    for zip in [false, true] {
        let host = Host::new();
        host.drop_entries("emqx-5.0.1", zip, &release("5.0.1", ""));
        host.ok(UNPACK);
        assert_eq!(host.versions(), pairs(&[("5.0.1", "unpacked")]));
        let tree = host.store().join("5.0.1");
        assert!(tree.join("releases/5.0.1/emqx.rel").is_file(), "zip {zip}");
        assert!(tree.join("bin/emqx").is_file(), "zip {zip}");
    }
}

/// The zip reader clears the setuid/setgid bits before the extractor sees
/// them: refused or accepted, no setuid file may land in the store.
#[test]
fn a_setuid_or_setgid_file_in_a_zip_is_refused() {
    for mode in [0o104_755, 0o102_755] {
        let host = Host::new();
        let (_, bytes) = z_mode(&release("5.0.1", "emqx/"), "emqx/bin/su", mode);
        fs::write(host.drop_dir().join(ZIP), bytes).unwrap();
        let out = host.emqx(UNPACK);
        assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));
        assert!(
            text(&out).1.contains("has the setuid or setgid bit"),
            "{:?}",
            text(&out)
        );
        assert!(!host.store().join("5.0.1").exists());
    }
}

// Product bugs this corpus found (now fixed), kept as regression tests.

/// The tar reader stops at the first end-of-archive block, so the gzip
/// stream is never read to its end: its CRC32 and length are never checked.
#[test]

fn a_tar_gz_failing_its_gzip_check_is_refused() {
    // Stored deflate blocks (level 0): a flipped byte silently changes a file.
    let (_, good) = t_level(&good_plus(vec![file("emqx/lib/data", &noise(65536))]), 0);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0xff;
    let cut = good[..good.len() - 8].to_vec();
    let cases = [
        case("flipped byte", (TGZ, flipped), "corrupt archive"),
        case("gzip trailer cut off", (TGZ, cut), "corrupt archive"),
    ];
    check_all(&cases, |case| refuse(&Host::new(), case, UNPACK));
}

/// The zip reader keeps one of two central-directory entries of the same
/// name: the package is accepted with whichever copy the reader picked.
#[test]

fn a_zip_with_a_duplicate_entry_is_refused() {
    let (_, mut bytes) = z(&good_plus(vec![file("emqx/etc/emqx.cong", b"2")]));
    let (from, to) = (b"emqx/etc/emqx.cong", b"emqx/etc/emqx.conf");
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + to.len()].copy_from_slice(to);
        }
    }
    let case = case("duplicate entry, zip", (ZIP, bytes), "appears twice");
    refuse(&Host::new(), &case, UNPACK);
}

/// A flat package's release root is the staging folder itself, created 0700:
/// its tree lands 0700 where an `emqx/` package's lands 0755.
#[test]

fn a_flat_tree_is_as_readable_as_a_nested_one() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |prefix: &str| {
        let host = Host::new();
        host.drop_entries("emqx-5.0.1", true, &release("5.0.1", prefix));
        host.ok(UNPACK);
        let meta = fs::metadata(host.store().join("5.0.1")).unwrap();
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode(""), mode("emqx/"), "flat tree vs emqx/ tree");
}

/// bgzip and `cat a.gz b.gz` write several gzip members: every one is
/// read (GNU tar lists all the entries, and so must the unpack).
#[test]
fn a_multi_member_tar_gz_unpacks_whole() {
    let host = Host::new();
    let mut entries = release("5.0.1", "emqx/");
    entries.push(file("emqx/lib/important.beam", &noise(64 * 1024)));
    let one = build(write_tar_gz, &entries);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&one[..])
        .read_to_end(&mut tar)
        .unwrap();
    // Split on a block boundary before the last entry's data ends.
    let cut = (tar.len() / 2) / 512 * 512;
    let mut two = Vec::new();
    for part in [&tar[..cut], &tar[cut..]] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).unwrap();
        two.extend(gz.finish().unwrap());
    }
    fs::write(host.drop_dir().join(TGZ), &two).unwrap();
    let listed = std::process::Command::new("tar")
        .arg("tzf")
        .arg(host.drop_dir().join(TGZ))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("emqx/lib/important.beam"));
    host.ok(UNPACK);
    let got = fs::read(host.store().join("5.0.1/lib/important.beam")).unwrap();
    assert_eq!(got.len(), 64 * 1024);
}

/// The drop folder holds regular files only: a link named like a package
/// is not followed, a FIFO not opened (it would block); exit 4, nothing
/// written.
#[test]
fn a_link_or_fifo_in_the_drop_folder_is_refused() {
    for kind in ["link", "fifo"] {
        let host = Host::new();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join(ZIP);
        fs::write(&target, build(write_zip, &release("5.0.1", "emqx/"))).unwrap();
        let at = host.drop_dir().join(ZIP);
        if kind == "link" {
            std::os::unix::fs::symlink(&target, &at).unwrap();
        } else {
            nix::unistd::mkfifo(&at, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        }
        fs::create_dir_all(host.store()).unwrap();
        let before = host.snapshot();
        let out = host.emqx(UNPACK);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(4), "{kind}: {err}");
        assert_eq!(
            err.trim(),
            format!("ERROR: finding the package of 5.0.1: releases/{ZIP} is not a regular file"),
            "{kind}"
        );
        assert_eq!(host.snapshot(), before);
    }
}
