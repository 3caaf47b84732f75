//! Beside the hostile corpus of tests/hostile.rs: good packages that must
//! unpack (a correct sum, a flat tree, several gzip members), a setuid file
//! in a zip, a link or FIFO in the drop folder, and the product bugs the
//! corpus found, kept as regression tests.

mod refusals;

use std::fs;
use std::io::{Read, Write};

use emqx_testkit::{file, release, text, write_tar_gz, write_zip, Host};
use refusals::{build, case, check_all, good_plus, noise, pairs, refuse, sha256_hex};
use refusals::{t_level, z, z_mode, TGZ, UNPACK, ZIP};

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
