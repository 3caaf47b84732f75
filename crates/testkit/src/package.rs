//! Release packages to test with: entries (files, folders, links,
//! devices), written as zip or tar.gz, hostile ones included.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// One entry of a package to build.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A regular file with its data and mode.
    File(Vec<u8>, u32),
    /// A folder.
    Dir,
    /// A symbolic link to the target.
    Symlink(String),
    /// A hard link to the target (tar only).
    HardLink(String),
    /// A character device (tar only).
    CharDevice,
    /// A fifo (tar only).
    Fifo,
}

/// A named entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

pub fn file(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        kind: Kind::File(data.to_vec(), 0o644),
    }
}

pub fn exe(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        kind: Kind::File(data.to_vec(), 0o755),
    }
}

pub fn entry(name: &str, kind: Kind) -> Entry {
    Entry {
        name: name.into(),
        kind,
    }
}

/// The entries of a well-formed release under `prefix` ("emqx/" or "" for flat).
pub fn release(version: &str, prefix: &str) -> Vec<Entry> {
    vec![
        entry(prefix, Kind::Dir),
        exe(
            &format!("{prefix}bin/emqx"),
            format!("#!/bin/sh\necho \"release {version} $*\"\n").as_bytes(),
        ),
        file(
            &format!("{prefix}releases/{version}/emqx.rel"),
            version.as_bytes(),
        ),
        file(
            &format!("{prefix}releases/start_erl.data"),
            format!("5.0 {version}\n").as_bytes(),
        ),
        file(
            &format!("{prefix}etc/emqx.conf"),
            b"node.name = emqx@127.0.0.1\n",
        ),
        entry(
            &format!("{prefix}lib/current"),
            Kind::Symlink("../releases".into()),
        ),
    ]
    .into_iter()
    .filter(|e| !e.name.is_empty())
    .collect()
}

/// Writes a tar.gz with raw headers, so that names tar-rs would refuse
/// (`..`, absolute) can be written too.
pub fn write_tar_gz(path: &Path, entries: &[Entry]) {
    let out = File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let name = e.name.as_bytes();
        assert!(name.len() < 100, "test names stay short: {}", e.name);
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        let mut link = |target: &str| {
            let t = target.as_bytes();
            header.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        };
        let (kind, mode, data): (tar::EntryType, u32, &[u8]) = match &e.kind {
            Kind::File(data, mode) => (tar::EntryType::Regular, *mode, data),
            Kind::Dir => (tar::EntryType::Directory, 0o755, &[]),
            Kind::Symlink(t) => {
                link(t);
                (tar::EntryType::Symlink, 0o777, &[])
            }
            Kind::HardLink(t) => {
                link(t);
                (tar::EntryType::Link, 0o644, &[])
            }
            Kind::CharDevice => (tar::EntryType::Char, 0o644, &[]),
            Kind::Fifo => (tar::EntryType::Fifo, 0o644, &[]),
        };
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

/// Writes a zip (files, folders and links only: zip has no other kinds).
pub fn write_zip(path: &Path, entries: &[Entry]) {
    use zip::write::SimpleFileOptions;
    let out = File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(out);
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for e in entries {
        match &e.kind {
            Kind::File(data, mode) => {
                zip.start_file(e.name.as_str(), opts.unix_permissions(*mode))
                    .unwrap();
                zip.write_all(data).unwrap();
            }
            Kind::Dir => zip.add_directory(e.name.as_str(), opts).unwrap(),
            Kind::Symlink(t) => zip.add_symlink(e.name.as_str(), t.as_str(), opts).unwrap(),
            other => panic!("zip cannot hold {other:?}"),
        }
    }
    zip.finish().unwrap();
}

/// A release with `files` small files and one file of `big` bytes, of
/// pseudo-random, partly compressible data: long enough to unpack that a
/// test can interrupt it.
pub fn big_release(version: &str, files: usize, big: usize) -> Vec<Entry> {
    let mut entries = release(version, "emqx/");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    };
    for i in 0..files {
        let mut data = format!("-module(m{i}).\n").repeat(100).into_bytes();
        data.extend(noise(2048));
        entries.push(file(&format!("emqx/lib/m{:02}/f{i}.beam", i % 40), &data));
    }
    entries.push(file("emqx/lib/big.bin", &noise(big)));
    entries
}

/// Counts the files, links and folders under `dir`.
pub fn count_tree(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        n += 1;
        if e.file_type().unwrap().is_dir() {
            n += count_tree(&e.path());
        }
    }
    n
}
