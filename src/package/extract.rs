//! Extraction of zip and tar.gz packages into a private staging folder, with
//! every entry checked before it is written.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::guard::{check_mode, entry_path, file_mode, is_root_name, symlink_target_ok, Budget};
use super::{Format, PackageFile};
use crate::config::Limits;
use crate::error::PackageProblem;

/// Why an extraction stopped.
#[derive(Debug)]
pub enum ExtractError {
    /// The package is refused.
    Problem(PackageProblem),
    /// Writing the staging folder failed.
    Io(String, io::Error),
}

impl From<PackageProblem> for ExtractError {
    fn from(p: PackageProblem) -> Self {
        ExtractError::Problem(p)
    }
}

fn corrupt(e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Problem(PackageProblem::Corrupt(e.to_string()))
}

/// The symlinks written, as (link, target) relative to the staging folder,
/// to be checked again against the release root.
pub type Links = Vec<(PathBuf, PathBuf)>;

/// Extracts `package` into the empty folder `staging`.
pub fn extract(
    package: &PackageFile,
    staging: &Path,
    limits: Limits,
) -> Result<Links, ExtractError> {
    let file = super::locate::open_regular(&package.path)
        .map_err(|e| ExtractError::Io(format!("opening {}", package.path.display()), e))?;
    let mut writer = Writer::new(staging);
    let mut budget = Budget::new(limits);
    match package.format {
        Format::TarGz => extract_tar_gz(file, &mut writer, &mut budget)?,
        Format::Zip => extract_zip(package, file, &mut writer, &mut budget)?,
    }
    Ok(writer.links)
}

/// Counts the compressed bytes read from the package file.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

fn extract_tar_gz(
    file: File,
    writer: &mut Writer,
    budget: &mut Budget,
) -> Result<(), ExtractError> {
    use tar::EntryType;
    let count = Rc::new(Cell::new(0u64));
    let counting = Counting {
        inner: file,
        count: Rc::clone(&count),
    };
    // Every gzip member (bgzip and `cat a.gz b.gz` make several); bytes
    // after the last member that are not another member are an error.
    let tail = Tail::new(flate2::read::MultiGzDecoder::new(counting));
    let mut archive = tar::Archive::new(tail);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            continue;
        }
        let raw = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        if matches!(kind, EntryType::Directory) && is_root_name(&raw) {
            continue;
        }
        let path = entry_path(&raw)?;
        budget.entry()?;
        let mode = entry.header().mode().map_err(corrupt)?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                check_mode(&path, mode)?;
                let compressed = || count.get();
                writer.file(&path, Some(mode), &mut entry, budget, &compressed)?;
            }
            EntryType::Directory => writer.dir(&path)?,
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| corrupt(format!("symlink '{}' has no target", path.display())))?
                    .into_owned();
                writer.symlink(&path, &target)?;
            }
            EntryType::Link => {
                return Err(PackageProblem::HardLink(path.display().to_string()).into())
            }
            other => {
                let kind = match other {
                    EntryType::Char => "character device".to_string(),
                    EntryType::Block => "block device".to_string(),
                    EntryType::Fifo => "fifo".to_string(),
                    EntryType::GNUSparse => "sparse file".to_string(),
                    o => format!("entry of type {}", o.as_byte()),
                };
                return Err(PackageProblem::Special {
                    path: path.display().to_string(),
                    kind,
                }
                .into());
            }
        }
    }
    // The tar reader stops at the first end-of-archive block, or at the
    // end of the data: the latter is a truncated archive. Then read the
    // gzip stream to its end (every member's CRC and length are checked):
    // only zeros may follow (the second end block and record padding).
    let mut rest = archive.into_inner();
    if rest.ended {
        return Err(corrupt("truncated: no end-of-archive blocks"));
    }
    let mut zeros = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut buf) {
            Ok(0) if zeros < 512 => {
                return Err(corrupt("truncated: one end-of-archive block of two"))
            }
            Ok(0) => return Ok(()),
            Ok(n) => {
                if buf[..n].iter().any(|b| *b != 0) {
                    return Err(corrupt("data after the end of the archive"));
                }
                zeros += n as u64;
                budget.bytes(n as u64, count.get())?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(e)),
        }
    }
}

/// The decompressed stream, noting whether the tar reader saw its end.
struct Tail<R> {
    inner: R,
    ended: bool,
}

impl<R> Tail<R> {
    fn new(inner: R) -> Self {
        Tail {
            inner,
            ended: false,
        }
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended = true;
        }
        Ok(n)
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

fn extract_zip(
    package: &PackageFile,
    file: File,
    writer: &mut Writer,
    budget: &mut Budget,
) -> Result<(), ExtractError> {
    let archive_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut archive =
        zip::ZipArchive::new(io::BufReader::with_capacity(64 * 1024, file)).map_err(corrupt)?;
    // The zip reader keeps one entry per name: read the raw directory.
    let start = archive.central_directory_start();
    let mut raw = super::locate::open_regular(&package.path)
        .map_err(|e| ExtractError::Io(format!("opening {}", package.path.display()), e))?;
    let max = budget.limits().max_entries.saturating_add(1);
    let duplicate = super::zipdir::duplicate_name(&mut io::BufReader::new(&mut raw), start, max)
        .map_err(corrupt)?;
    if let Some(name) = duplicate {
        return Err(PackageProblem::Duplicate(name).into());
    }
    // Declared sizes first: a bomb that admits it is refused before any write.
    let mut declared = Budget::new(budget.limits());
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(corrupt)?;
        declared.entry()?;
        declared.bytes(f.size(), archive_len)?;
    }
    let mut compressed_before = 0u64;
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).map_err(corrupt)?;
        let name = f.name().map_err(corrupt)?.into_owned();
        if f.is_dir() && is_root_name(&name) {
            continue;
        }
        let path = entry_path(&name)?;
        budget.entry()?;
        if f.encrypted() {
            return Err(corrupt(format!("entry '{name}' is encrypted")));
        }
        let mode = f.unix_mode();
        // unix_mode() has the setuid/setgid bits cleared: check the raw ones.
        if f.system() == zip::System::Unix {
            check_mode(&path, f.external_attributes() >> 16)?;
        }
        let compressed_now = compressed_before + f.compressed_size();
        let kind = mode.map(|m| m & S_IFMT).filter(|k| *k != 0);
        match kind {
            _ if f.is_symlink() => {
                let mut target = Vec::new();
                (&mut f)
                    .take(4096)
                    .read_to_end(&mut target)
                    .map_err(corrupt)?;
                let target = String::from_utf8(target)
                    .map_err(|_| corrupt(format!("symlink '{name}' has a non-UTF-8 target")))?;
                writer.symlink(&path, Path::new(&target))?;
            }
            _ if f.is_dir() => writer.dir(&path)?,
            None | Some(S_IFREG) => {
                if let Some(m) = mode {
                    check_mode(&path, m)?;
                }
                let compressed = || compressed_now;
                writer.file(&path, mode, &mut f, budget, &compressed)?;
            }
            Some(S_IFDIR) | Some(S_IFLNK) => unreachable_kind(&name)?,
            Some(k) => {
                let kind = match k {
                    0o020000 => "character device",
                    0o060000 => "block device",
                    0o010000 => "fifo",
                    0o140000 => "socket",
                    _ => "special file",
                };
                return Err(PackageProblem::Special {
                    path: name,
                    kind: kind.to_string(),
                }
                .into());
            }
        }
        compressed_before = compressed_now;
    }
    Ok(())
}

/// A zip entry whose mode says folder or link but whose name and flags do not.
fn unreachable_kind(name: &str) -> Result<(), ExtractError> {
    Err(corrupt(format!(
        "entry '{name}' has a mode that contradicts its name"
    )))
}

/// Writes entries under the staging folder, tracking what it created so that
/// nothing is written through a link or twice.
struct Writer {
    root: PathBuf,
    dirs: HashSet<PathBuf>,
    symlinks: HashSet<PathBuf>,
    links: Links,
    buf: Vec<u8>,
}

impl Writer {
    fn new(root: &Path) -> Self {
        Writer {
            root: root.to_path_buf(),
            dirs: HashSet::new(),
            symlinks: HashSet::new(),
            links: Vec::new(),
            buf: vec![0u8; 256 * 1024],
        }
    }

    fn io(&self, what: &str, rel: &Path, e: io::Error) -> ExtractError {
        if e.kind() == io::ErrorKind::AlreadyExists {
            return PackageProblem::Duplicate(rel.display().to_string()).into();
        }
        ExtractError::Io(format!("{what} {}", self.root.join(rel).display()), e)
    }

    /// Refuses a path under a link of the package, or already taken by one,
    /// then creates its parent folders.
    fn prepare(&mut self, rel: &Path) -> Result<PathBuf, ExtractError> {
        let mut ancestor = rel.parent();
        while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
            if self.symlinks.contains(a) {
                return Err(PackageProblem::WriteThroughSymlink {
                    path: rel.display().to_string(),
                    link: a.display().to_string(),
                }
                .into());
            }
            ancestor = a.parent();
        }
        if self.symlinks.contains(rel) {
            return Err(PackageProblem::Duplicate(rel.display().to_string()).into());
        }
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.mkdirs(parent)?;
        }
        Ok(self.root.join(rel))
    }

    fn mkdirs(&mut self, rel: &Path) -> Result<(), ExtractError> {
        let mut missing = Vec::new();
        let mut cur = Some(rel);
        while let Some(c) = cur.filter(|c| !c.as_os_str().is_empty() && !self.dirs.contains(*c)) {
            missing.push(c.to_path_buf());
            cur = c.parent();
        }
        for dir in missing.into_iter().rev() {
            let full = self.root.join(&dir);
            fs::create_dir(&full).map_err(|e| self.io("creating", &dir, e))?;
            fs::set_permissions(&full, Permissions::from_mode(0o755))
                .map_err(|e| self.io("setting mode of", &dir, e))?;
            self.dirs.insert(dir);
        }
        Ok(())
    }

    fn dir(&mut self, rel: &Path) -> Result<(), ExtractError> {
        if self.dirs.contains(rel) {
            return Ok(());
        }
        self.prepare(rel)?;
        self.mkdirs(rel)
    }

    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<(), ExtractError> {
        if !symlink_target_ok(rel, target) {
            return Err(PackageProblem::SymlinkEscape {
                path: rel.display().to_string(),
                target: target.display().to_string(),
            }
            .into());
        }
        let full = self.prepare(rel)?;
        std::os::unix::fs::symlink(target, &full).map_err(|e| self.io("linking", rel, e))?;
        self.symlinks.insert(rel.to_path_buf());
        self.links.push((rel.to_path_buf(), target.to_path_buf()));
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        mode: Option<u32>,
        data: &mut dyn Read,
        budget: &mut Budget,
        compressed: &dyn Fn() -> u64,
    ) -> Result<(), ExtractError> {
        let full = self.prepare(rel)?;
        let mode = file_mode(mode);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&full)
            .map_err(|e| self.io("creating", rel, e))?;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(format!("reading '{}': {e}", rel.display()))),
            };
            budget.bytes(n as u64, compressed())?;
            out.write_all(&self.buf[..n])
                .map_err(|e| ExtractError::Io(format!("writing {}", full.display()), e))?;
        }
        out.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| ExtractError::Io(format!("setting mode of {}", full.display()), e))
    }
}
