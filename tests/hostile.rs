//! Hostile and broken packages: each is refused (exit 4, one error line), leaves no
//! trace, and does not block a good package of the same version afterwards.
//! The corpus, run through `unpack` and `upgrade`; the cases beside it are in
//! tests/hostile_edges.rs.

mod refusals;

use std::io::{Read, Write};
use std::sync::OnceLock;

use emqx_testkit::{entry, file, release, Kind};
use refusals::{case, check_all, good_plus, host_for, noise, pairs, refuse, retry};
use refusals::{sha256_hex, special, t, t_level, with_link, with_mode, z, z_mode, Case};
use refusals::{TGZ, UNPACK, UPGRADE, ZIP};

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
