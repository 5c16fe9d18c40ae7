//! BuildKit's plain progress output on stderr: `#N name`, `#N 0.123 output`, `#N CACHED`,
//! `#N DONE 0.1s`, `#N ERROR: …`. Quiet mode prints nothing.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub struct Progress {
    quiet: bool,
    next: AtomicUsize,
}

pub struct Step<'a> {
    progress: &'a Progress,
    pub n: usize,
    start: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet, next: AtomicUsize::new(1) }
    }

    fn print(&self, text: &str) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
    }

    /// A note outside any step (`#0 …`).
    pub fn note(&self, text: &str) {
        self.print(&format!("#0 {text}\n"));
    }

    pub fn step(&self, name: &str) -> Step<'_> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.print(&format!("\n#{n} {name}\n"));
        Step { progress: self, n, start: Instant::now() }
    }
}

impl Step<'_> {
    pub fn log(&self, line: &str) {
        let t = self.start.elapsed().as_secs_f64();
        self.progress.print(&format!("#{} {t:.3} {line}\n", self.n));
    }

    /// A line with no timestamp (`#8 writing image sha256:… done`).
    pub fn status(&self, line: &str) {
        self.progress.print(&format!("#{} {line}\n", self.n));
    }

    pub fn cached(self) {
        self.progress.print(&format!("#{} CACHED\n", self.n));
    }

    pub fn done(self) {
        let t = self.start.elapsed().as_secs_f64();
        self.progress.print(&format!("#{} DONE {t:.1}s\n", self.n));
    }

    /// The build was cancelled during this step (BuildKit's `#N CANCELED`).
    pub fn canceled(self) {
        self.progress.print(&format!("#{} CANCELED\n", self.n));
    }

    pub fn error(self, message: &str) {
        self.progress.print(&format!("#{} ERROR: {message}\n", self.n));
    }
}

/// RUN output as BuildKit shows it: each line prefixed `#N <seconds> `, partial lines held
/// until their newline (or the end).
pub struct StepOutput {
    n: usize,
    start: Instant,
    quiet: bool,
    pending: Vec<u8>,
}

impl Step<'_> {
    pub fn output(&self) -> StepOutput {
        StepOutput { n: self.n, start: self.start, quiet: self.progress.quiet, pending: Vec::new() }
    }
}

impl StepOutput {
    fn emit(&mut self, line: &[u8]) {
        if self.quiet {
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "#{} {t:.3} ", self.n);
        let _ = err.write_all(line);
        let _ = err.write_all(b"\n");
    }
}

impl Write for StepOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StepOutput {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }
}
