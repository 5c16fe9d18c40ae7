//! `containers/<id>/log` in Docker's json-file format: one `{"log":…,"stream":…,"time":…}` object
//! per line of output, written by the monitor, read by `strata logs`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A line longer than this is written in pieces (Docker's json-file does the same at 16 KiB).
const MAX_LINE: usize = 16 * 1024;

pub fn path(container_dir: &Path) -> PathBuf {
    container_dir.join("log")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// `2026-11-30T03:50:22.123456789Z`.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = crate::oci::time::format_rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), d.subsec_nanos())
}

/// Nanoseconds since the epoch of an RFC 3339 time with a fraction.
fn parse_nanos(s: &str) -> Option<i128> {
    let secs = crate::oci::time::parse_rfc3339(s).ok()? as i128;
    let frac =
        s.split_once('.').map(|(_, f)| f.trim_end_matches(|c: char| !c.is_ascii_digit())).unwrap_or("");
    let digits: String = frac.chars().take_while(char::is_ascii_digit).take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32)
    };
    Some(secs * 1_000_000_000 + nanos)
}

/// The log file, shared by the stdout and stderr copiers.
#[derive(Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open log {}", path.display()))?;
        Ok(LogWriter { file: Arc::new(Mutex::new(file)) })
    }

    fn entry(&self, stream: &str, bytes: &[u8]) {
        let e = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.into(),
            time: rfc3339_nanos(SystemTime::now()),
        };
        if let Ok(mut line) = serde_json::to_vec(&e) {
            line.push(b'\n');
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(err) = f.write_all(&line) {
                tracing::warn!("writing the container log: {err}");
            }
        }
    }

    /// A line-buffering sink for one stream.
    pub fn stream(&self, name: &str) -> StreamLog {
        StreamLog { log: self.clone(), name: name.into(), pending: Vec::new() }
    }
}

/// Collects one stream's output into whole lines.
pub struct StreamLog {
    log: LogWriter,
    name: String,
    pending: Vec<u8>,
}

impl StreamLog {
    pub fn write(&mut self, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&data[..=i]);
            self.log.entry(&self.name, &std::mem::take(&mut self.pending));
            data = &data[i + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.log.entry(&self.name, &std::mem::replace(&mut self.pending, rest));
        }
    }

    /// Writes what is left (output that did not end with a newline).
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.log.entry(&self.name, &std::mem::take(&mut self.pending));
        }
    }
}

/// What `strata logs` shows.
pub struct ReadOptions {
    pub tail: Option<usize>,
    /// Only entries at or after this time (nanoseconds since the epoch).
    pub since_nanos: Option<i128>,
    pub timestamps: bool,
}

/// `--since`: RFC 3339, unix seconds, or a duration back from now (`10s`, `5m`, `2h`).
pub fn parse_since(s: &str) -> Result<i128> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i128;
    if let Some(n) = parse_nanos(s) {
        return Ok(n);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i128);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i128 = num
        .parse()
        .with_context(|| format!("invalid --since {s:?}: a time, unix seconds or a duration like 10m"))?;
    let mult: i128 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => anyhow::bail!("invalid --since {s:?}: a time, unix seconds or a duration like 10m"),
    };
    Ok(now - n * mult)
}

fn print_entry(e: &Entry, o: &ReadOptions, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<()> {
    let w: &mut dyn Write = if e.stream == "stderr" { err } else { out };
    if o.timestamps {
        write!(w, "{} ", e.time)?;
    }
    w.write_all(e.log.as_bytes())?;
    w.flush()
}

fn keep(e: &Entry, o: &ReadOptions) -> bool {
    o.since_nanos.is_none_or(|since| parse_nanos(&e.time).is_some_and(|t| t >= since))
}

/// Prints the log; with `follow`, goes on printing what comes until `running()` turns false.
pub fn read(
    path: &Path,
    o: &ReadOptions,
    follow: bool,
    running: &mut dyn FnMut() -> bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not started yet: wait for the monitor to create it.
            while running() && !path.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            match File::open(path) {
                Ok(f) => f,
                Err(_) => return Ok(()),
            }
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let mut entries: Vec<Entry> = Vec::new();
    let mut line = String::new();
    let mut pos = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            if keep(&e, o) {
                entries.push(e);
            }
        }
    }
    let skip = o.tail.map_or(0, |t| entries.len().saturating_sub(t));
    for e in &entries[skip..] {
        print_entry(e, o, out, err)?;
    }
    if !follow {
        return Ok(());
    }
    // Follow: read what is appended, until the container stops and nothing more comes.
    let mut f = reader.into_inner();
    let mut partial = String::new();
    loop {
        let alive = running();
        f.seek(SeekFrom::Start(pos))?;
        let mut r = BufReader::new(&f);
        let mut got = false;
        loop {
            partial.clear();
            let n = r.read_line(&mut partial)?;
            if n == 0 || !partial.ends_with('\n') {
                break;
            }
            pos += n as u64;
            got = true;
            if let Ok(e) = serde_json::from_str::<Entry>(&partial) {
                if keep(&e, o) {
                    print_entry(&e, o, out, err)?;
                }
            }
        }
        if !alive && !got {
            return Ok(());
        }
        if !got {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_since_parses() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let s = rfc3339_nanos(t);
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_nanos(&s), Some(1_700_000_000_123_456_789));
        assert_eq!(parse_since("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert!(parse_since("10m").unwrap() > 0);
        assert!(parse_since("ten").is_err());
    }
}
