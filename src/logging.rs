//! The process's `tracing` output: stderr, coloured only where stderr is a terminal. A mount
//! daemon forked from the CLI keeps the CLI's subscriber (there is one per process), so once its
//! stderr goes to the mount's log file it turns the colour off here.

use std::io::{IsTerminal, Stderr};
use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, fmt, reload};

type StderrLayer = fmt::Layer<Registry, fmt::format::DefaultFields, fmt::format::Format, fn() -> Stderr>;

static OUTPUT: OnceLock<reload::Handle<StderrLayer, Registry>> = OnceLock::new();

/// Sets the process's subscriber: events up to `max` to stderr. False if one was set before.
pub fn init(max: LevelFilter) -> bool {
    let layer = fmt::layer()
        .with_writer(std::io::stderr as fn() -> Stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let (layer, handle) = reload::Layer::new(layer);
    let set = tracing_subscriber::registry().with(layer).with(max).try_init().is_ok();
    if set {
        let _ = OUTPUT.set(handle);
    }
    set
}

/// stderr has become a file: no colour codes from here on.
pub fn stderr_is_a_file() {
    if let Some(handle) = OUTPUT.get() {
        let _ = handle.modify(|layer| layer.set_ansi(false));
    }
}
