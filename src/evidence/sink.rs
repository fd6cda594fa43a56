//! The blocking side of the evidence writer: the active file, rotation by size and age,
//! gzip of rotated files and retention. Everything here does file IO and runs inside
//! `tokio::task::spawn_blocking`, never on a runtime worker.
//!
//! Files only ever hold whole lines: a batch is split at line boundaries so that the active file
//! stays under `max_bytes` (a single line longer than that gets a file of its own), and a
//! failed write is cut back to the last whole line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;
use tracing::{error, warn};

use super::EvidenceConfig;

/// The name parts of the active file: `<dir>/<stem>.<ext>`.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    dir: PathBuf,
    stem: String,
    ext: String,
}

impl Names {
    fn new(path: &Path) -> Self {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().into_owned());
        Self {
            dir,
            stem: name(path.file_stem()).unwrap_or_else(|| "evidence".into()),
            ext: name(path.extension()).unwrap_or_default(),
        }
    }

    fn rotated(&self, at: SystemTime, seq: u64) -> PathBuf {
        // 2025-04-22T10:15:00Z → 20250422T101500Z: sortable and safe in every file system.
        let ts: String = humantime::format_rfc3339_seconds(at)
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let name = if self.ext.is_empty() {
            format!("{}-{ts}-{seq:06}", self.stem)
        } else {
            format!("{}-{ts}-{seq:06}.{}", self.stem, self.ext)
        };
        self.dir.join(name)
    }

    /// `(timestamp, seq, gzipped)` when `name` is one of our rotated files.
    fn parse_rotated<'a>(&self, name: &'a str) -> Option<(&'a str, u64, bool)> {
        let rest = name.strip_prefix(self.stem.as_str())?.strip_prefix('-')?;
        let (rest, gz) = match rest.strip_suffix(".gz") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let rest = if self.ext.is_empty() {
            rest
        } else {
            rest.strip_suffix(self.ext.as_str())?.strip_suffix('.')?
        };
        let (ts, seq) = rest.split_once('-')?;
        let ok_ts = ts.len() == 16 && ts.as_bytes()[8] == b'T' && ts.ends_with('Z');
        let seq = seq.parse().ok().filter(|_| ok_ts)?;
        Some((ts, seq, gz))
    }

    /// Rotated files, oldest first: `(path, seq, gzipped)`.
    fn list_rotated(&self) -> io::Result<Vec<(PathBuf, u64, bool)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((ts, seq, gz)) = self.parse_rotated(name) {
                out.push(((ts.to_string(), seq, gz), entry.path()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out
            .into_iter()
            .map(|((_, seq, gz), p)| (p, seq, gz))
            .collect())
    }
}

/// The active file and the rotation state.
pub(crate) struct Sink {
    path: PathBuf,
    names: Names,
    max_bytes: u64,
    max_age: Duration,
    file: Option<File>,
    size: u64,
    opened: SystemTime,
    unsynced: bool,
    seq: u64,
}

/// What one [`Sink::commit`] did.
pub(crate) struct Commit {
    /// Whole lines now in a file.
    pub lines: u64,
    /// Files rotated away during the commit (to compress and prune).
    pub rotated: bool,
    pub error: Option<io::Error>,
}

impl Sink {
    pub(crate) fn open(cfg: &EvidenceConfig) -> io::Result<Sink> {
        let names = Names::new(&cfg.path);
        fs::create_dir_all(&names.dir)?;
        let seq = names
            .list_rotated()?
            .iter()
            .map(|(_, s, _)| s + 1)
            .max()
            .unwrap_or(0);
        let mut sink = Sink {
            path: cfg.path.clone(),
            names,
            max_bytes: cfg.max_bytes,
            max_age: cfg.max_age,
            file: None,
            size: 0,
            opened: SystemTime::now(),
            unsynced: false,
            seq,
        };
        sink.ensure_open()?;
        if let Some(f) = &sink.file {
            let meta = f.metadata()?;
            sink.opened = meta
                .created()
                .or_else(|_| meta.modified())
                .unwrap_or_else(|_| SystemTime::now());
        }
        Ok(sink)
    }

    pub(crate) fn names(&self) -> Names {
        self.names.clone()
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn ensure_open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)?;
            let size = f.metadata()?.len();
            // A crash mid-write can leave a partial last line; start ours on a fresh one (the
            // reader reports the partial line with its position).
            if size > 0 {
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(size - 1))?;
                f.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    f.write_all(b"\n")?;
                }
            }
            self.size = f.metadata()?.len();
            self.opened = SystemTime::now();
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(io::Error::other("evidence file not open")),
        }
    }

    /// Appends `buf` (whole lines), rotating before the active file would pass `max_bytes`.
    pub(crate) fn commit(&mut self, buf: &[u8]) -> Commit {
        let mut out = Commit {
            lines: 0,
            rotated: false,
            error: None,
        };
        let mut rest = buf;
        while !rest.is_empty() {
            let size = self.size;
            let room = match self.max_bytes {
                0 => u64::MAX,
                m => m.saturating_sub(size),
            };
            let take = if rest.len() as u64 <= room {
                rest.len()
            } else {
                // `room < rest.len()`, so the cast cannot truncate.
                match rest[..room as usize].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    // Not even one line fits: a fresh file takes one whole line anyway.
                    None if size == 0 => match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => i + 1,
                        None => rest.len(),
                    },
                    None => 0,
                }
            };
            if take > 0 {
                if let Err(e) = self.append(&rest[..take]) {
                    out.error = Some(e);
                    return out;
                }
                out.lines += rest[..take].iter().filter(|&&b| b == b'\n').count() as u64;
                rest = &rest[take..];
            }
            if self.max_bytes > 0 && (self.size >= self.max_bytes || take == 0) {
                match self.rotate() {
                    Ok(r) => out.rotated |= r,
                    Err(e) => {
                        out.error = Some(e);
                        // Keep writing to the oversized file rather than losing records.
                        if !rest.is_empty() {
                            if let Err(e) = self.append(rest) {
                                out.error = Some(e);
                                return out;
                            }
                            out.lines += rest.iter().filter(|&&b| b == b'\n').count() as u64;
                        }
                        return out;
                    }
                }
            }
        }
        out
    }

    fn append(&mut self, chunk: &[u8]) -> io::Result<()> {
        let size = self.size;
        let f = self.ensure_open()?;
        if let Err(e) = f.write_all(chunk) {
            // Cut a partial write back to the last whole line so the file stays parseable.
            if f.set_len(size).is_err() {
                self.file = None;
            }
            return Err(e);
        }
        self.size = size + chunk.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// The active file is non-empty and older than `max_age`.
    pub(crate) fn age_due(&self) -> bool {
        self.size > 0
            && !self.max_age.is_zero()
            && self.opened.elapsed().is_ok_and(|age| age >= self.max_age)
    }

    /// Data written since the last fsync.
    pub(crate) fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Rotates when [`age_due`](Self::age_due).
    pub(crate) fn rotate_if_old(&mut self) -> io::Result<bool> {
        if self.age_due() {
            self.rotate()
        } else {
            Ok(false)
        }
    }

    /// fsync (data only) if anything was written since the last one.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            if let Some(f) = &self.file {
                f.sync_data()?;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Renames a non-empty active file to the next rotated name and opens a fresh one.
    fn rotate(&mut self) -> io::Result<bool> {
        if self.size == 0 {
            return Ok(false);
        }
        self.sync()?;
        self.file = None;
        let to = self.names.rotated(SystemTime::now(), self.seq);
        let renamed = fs::rename(&self.path, &to);
        if renamed.is_ok() {
            self.seq += 1;
        }
        // Reopen either way: after a failed rename we go on appending to the same file.
        self.ensure_open()?;
        renamed.map(|()| true)
    }
}

/// After a rotation: gzip every rotated file not yet compressed, then delete the oldest beyond
/// `keep`. Runs alone (the writer waits for the previous run before starting another).
pub(crate) fn tidy(names: &Names, keep: usize, compress: bool) {
    let files = match names.list_rotated() {
        Ok(f) => f,
        Err(e) => {
            error!(dir = %names.dir.display(), error = %e, "evidence: cannot list rotated files");
            return;
        }
    };
    // One entry per rotation (seq); a plain file beside its finished .gz is a leftover.
    let mut rotations: Vec<(PathBuf, u64)> = Vec::new();
    for (path, seq, gz) in files {
        let has_gz = gz || path_with_gz(&path).exists();
        if !gz && has_gz {
            remove(&path);
            continue;
        }
        if !gz && compress {
            match gzip(&path) {
                Ok(done) => rotations.push((done, seq)),
                Err(e) => {
                    error!(file = %path.display(), error = %e, "evidence: gzip of rotated file failed");
                    rotations.push((path, seq));
                }
            }
        } else {
            rotations.push((path, seq));
        }
    }
    let excess = rotations.len().saturating_sub(keep);
    for (path, _) in rotations.into_iter().take(excess) {
        remove(&path);
    }
}

fn path_with_gz(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

fn remove(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(file = %p.display(), error = %e, "evidence: cannot delete rotated file");
        }
    }
}

/// `x.jsonl` → `x.jsonl.gz` via a temporary name, so a crash never leaves a half .gz under the
/// final name; the plain file is removed only once the .gz is complete and synced.
fn gzip(plain: &Path) -> io::Result<PathBuf> {
    let done = path_with_gz(plain);
    let mut tmp = done.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut src = BufReader::with_capacity(256 * 1024, File::open(plain)?);
    let mut enc = GzEncoder::new(File::create(&tmp)?, Compression::default());
    let copied = io::copy(&mut src, &mut enc).and_then(|_| enc.finish());
    let file = match copied {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    file.sync_all()?;
    fs::rename(&tmp, &done)?;
    fs::remove_file(plain)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_round_trip() {
        let n = Names::new(Path::new("/var/log/p/evidence.jsonl"));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_745_316_900);
        let p = n.rotated(at, 7);
        let name = p.file_name().and_then(|s| s.to_str()).unwrap_or_default();
        assert_eq!(name, "evidence-20250422T101500Z-000007.jsonl");
        assert_eq!(n.parse_rotated(name), Some(("20250422T101500Z", 7, false)));
        assert_eq!(
            n.parse_rotated("evidence-20250422T101500Z-000007.jsonl.gz"),
            Some(("20250422T101500Z", 7, true))
        );
        assert_eq!(n.parse_rotated("evidence.jsonl"), None);
        assert_eq!(n.parse_rotated("evidence-x-1.jsonl"), None);
        assert_eq!(n.parse_rotated("other-20250422T101500Z-1.jsonl"), None);
    }
}
