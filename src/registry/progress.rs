//! Per-layer progress like Docker's: bars on a terminal (indicatif), plain `ID: Status` lines
//! otherwise, nothing with `-q`.

use std::io::IsTerminal;

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
        Progress { mode, multi }
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

fn status_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
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
