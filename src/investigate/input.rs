//! Input files: directory expansion, plain or gzip (detected by magic bytes), and a line reader
//! with a bound on line length, so a hostile or corrupt file cannot make the reader hold more
//! than [`MAX_LINE`] bytes at once.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::Serialize;

use super::Error;

/// Longest line accepted; longer lines are skipped with a warning.
pub const MAX_LINE: usize = 1024 * 1024;

/// A skipped line: where, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub line: u64,
    pub message: String,
}

/// Files to read, in order: each path as given; a directory becomes its `*.jsonl` and
/// `*.jsonl.gz` files sorted by name — rotated files (`evidence-<time>-<seq>`) before the
/// active `evidence.jsonl`, i.e. oldest first.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.to_str()
            .is_some_and(|s| s.starts_with("redis://") || s.starts_with("rediss://"))
        {
            out.push(p.clone());
            continue;
        }
        let meta = fs::metadata(p).map_err(|source| Error::Input {
            path: p.clone(),
            source,
        })?;
        if !meta.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries = fs::read_dir(p).map_err(|source| Error::Input {
            path: p.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Input {
                path: p.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let evidence =
                !name.starts_with('.') && (name.ends_with(".jsonl") || name.ends_with(".jsonl.gz"));
            if evidence && entry.file_type().is_ok_and(|t| t.is_file()) {
                found.push((name.to_string(), entry.path()));
            }
        }
        // '-' sorts before '.', so `evidence-20250422T…-000001.jsonl.gz` < `evidence.jsonl`.
        found.sort();
        out.extend(found.into_iter().map(|(_, path)| path));
    }
    if out.is_empty() {
        return Err(Error::NoInput);
    }
    Ok(out)
}

/// Reads a Redis Stream written by the evidence stream sink, entry by entry.
pub fn read_stream(url: &str, key: &str, sink: &mut dyn LineSink) -> Result<(), Error> {
    let name = format!("{url} {key}");
    let mut rejected = Vec::new();
    let mut missing = Vec::new();
    let mut n = 0u64;
    let result = crate::evidence::stream::read_all(
        url,
        key,
        |json| {
            n += 1;
            if let Err(message) = sink.line(json) {
                rejected.push((n, message));
            }
        },
        |line, message| missing.push((line, message)),
    );
    for (line, message) in rejected.into_iter().chain(missing) {
        sink.warn(Warning {
            file: name.clone(),
            line,
            message,
        });
    }
    result.map_err(|e| Error::Input {
        path: PathBuf::from(url),
        source: io::Error::other(e),
    })
}

/// Opens `path`, gunzipping when it starts with the gzip magic bytes.
fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let mut file = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let gz = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    })
}

/// Where [`read_file`] sends lines and warnings.
pub trait LineSink {
    /// One non-empty line without its newline; `Err` (the reason) when it is not a record.
    fn line(&mut self, line: &[u8]) -> Result<(), String>;
    /// A skipped line.
    fn warn(&mut self, w: Warning);
}

/// Calls `sink.line` with each non-empty line (without its newline). A line it rejects, an
/// oversize line, a truncated last line or a read error becomes a [`Warning`] with the file and
/// 1-based line number; the rest of the file is still read (after a read error there is no rest).
pub fn read_file(path: &Path, sink: &mut dyn LineSink) -> Result<(), Error> {
    let mut reader = open(path).map_err(|source| Error::Input {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    let warn = |line: u64, message: String| Warning {
        file: name.clone(),
        line,
        message,
    };
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    loop {
        let next = match next_line(&mut reader, &mut buf, MAX_LINE) {
            Ok(next) => next,
            Err(e) => {
                sink.warn(warn(
                    n + 1,
                    format!("read error, rest of file skipped: {e}"),
                ));
                return Ok(());
            }
        };
        n += 1;
        match next {
            Next::Eof => return Ok(()),
            Next::TooLong => sink.warn(warn(n, format!("line longer than {MAX_LINE} bytes"))),
            Next::Line { complete } => {
                let mut line = buf.as_slice();
                if let [rest @ .., b'\n'] = line {
                    line = rest;
                }
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Err(msg) = sink.line(line) {
                    let msg = if complete {
                        msg
                    } else {
                        format!("truncated last line (no newline at end of file): {msg}")
                    };
                    sink.warn(warn(n, msg));
                }
            }
        }
    }
}

enum Next {
    Eof,
    /// A line in the buffer; `complete` when it ended with a newline.
    Line {
        complete: bool,
    },
    TooLong,
}

/// Reads one line into `buf` (cleared first), holding at most `max` bytes of it.
fn next_line(r: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Next> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Next::TooLong,
                (false, true) => Next::Eof,
                (false, false) => Next::Line { complete: false },
            });
        }
        let (take, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + take > max + 1 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        r.consume(take);
        if found {
            return Ok(if too_long {
                Next::TooLong
            } else {
                Next::Line { complete: true }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines() {
        let data = b"ab\n\nccccccc\nd".to_vec();
        let mut r: Box<dyn BufRead> = Box::new(io::Cursor::new(data));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match next_line(&mut r, &mut buf, 4) {
                Ok(Next::Eof) => break,
                Ok(Next::TooLong) => got.push("too long".to_string()),
                Ok(Next::Line { complete }) => {
                    got.push(format!("{}{}", String::from_utf8_lossy(&buf), complete))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, ["ab\ntrue", "\ntrue", "too long", "dfalse"]);
    }
}
