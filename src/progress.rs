//! Per-layer progress like Docker's: bars on a terminal (indicatif), plain `ID: Status` lines
//! otherwise, nothing with `-q`. Pull and push report on stdout as Docker does; import, load and
//! save only on a terminal (stderr), since their stdout is a result (an id, names, an archive).

use std::io::{IsTerminal, Read};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    Lines,
    Bars,
}

pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    /// Bars are drawn on stderr (else stdout).
    on_stderr: bool,
    /// Some bar was drawn: the cursor is at the end of its line.
    drawn: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Bars when stdout is a terminal, lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress::with_mode(mode)
    }

    pub fn with_mode(mode: Mode) -> Progress {
        let multi =
            (mode == Mode::Bars).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Progress { mode, multi, on_stderr: false, drawn: Default::default() }
    }

    /// Bars on stderr when it is a terminal; nothing otherwise (pipes, files, `quiet`).
    pub fn on_terminal(quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let multi = Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { mode: Mode::Bars, multi, on_stderr: true, drawn: Default::default() }
    }

    /// Nothing shown (library callers, tests).
    pub fn hidden() -> Progress {
        Progress::with_mode(Mode::Quiet)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A line of its own (`latest: Pulling from library/busybox`).
    pub fn message(&self, line: &str) {
        match (&self.mode, &self.multi) {
            (Mode::Quiet, _) => {}
            (_, Some(m)) => {
                let _ = m.println(line);
            }
            _ => println!("{line}"),
        }
    }

    /// A layer with nothing to do (`ID: Already exists`): one line, no bar.
    pub fn done(&self, id: &str, status: &str) {
        match (&self.mode, &self.multi) {
            (Mode::Quiet, _) => {}
            (_, Some(m)) => {
                let _ = m.println(format!("{id}: {status}"));
            }
            _ => println!("{id}: {status}"),
        }
    }

    /// One layer (or blob), shown as `ID: status`.
    pub fn item(&self, id: &str, status: &str) -> Item {
        let bar = self.multi.as_ref().map(|m| {
            self.drawn.store(true, std::sync::atomic::Ordering::Relaxed);
            let b = m.add(ProgressBar::new(0));
            b.set_style(status_style());
            b.set_prefix(id.to_string());
            b.set_message(status.to_string());
            b
        });
        let item = Item { id: id.to_string(), lines: self.mode == Mode::Lines, bar };
        if item.lines {
            println!("{id}: {status}");
        }
        item
    }
}

/// Bars stay on screen when done; what is printed next starts on a line of its own. Drop the
/// progress before printing a command's result.
impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn.load(std::sync::atomic::Ordering::Relaxed) {
            if self.on_stderr {
                eprintln!();
            } else {
                println!();
            }
        }
    }
}

fn status_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

pub struct Item {
    id: String,
    lines: bool,
    bar: Option<ProgressBar>,
}

impl Item {
    /// Switches to a byte counter (`Downloading [====>   ] 1.2MB/3.4MB`).
    pub fn start_bytes(&self, status: &str, total: Option<u64>) {
        if let Some(b) = &self.bar {
            b.set_style(bytes_style());
            b.set_length(total.unwrap_or(0));
            b.set_message(status.to_string());
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Shows `status` with a byte counter of `total` and counts what `inner` yields; the item
    /// ends as `done` once `inner` is read to its end (as `Stopped` if dropped before).
    pub fn reader<R: Read>(self, status: &str, total: Option<u64>, inner: R, done: &str) -> ItemReader<R> {
        self.start_bytes(status, total);
        ItemReader { item: self, inner, done: done.to_string(), ended: false }
    }

    /// Ends the item with a final status (`Pull complete`, `Pushed`).
    pub fn finish(&self, status: &str) {
        if self.lines {
            println!("{}: {status}", self.id);
        }
        if let Some(b) = &self.bar {
            b.set_style(status_style());
            b.finish_with_message(status.to_string());
        }
    }
}

/// A reader whose bytes advance an [`Item`].
pub struct ItemReader<R> {
    item: Item,
    inner: R,
    done: String,
    ended: bool,
}

impl<R: Read> Read for ItemReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.item.inc(n as u64);
        self.ended |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

impl<R> Drop for ItemReader<R> {
    fn drop(&mut self) {
        self.item.finish(if self.ended { &self.done } else { "Stopped" });
    }
}
