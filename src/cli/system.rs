//! `strata system check [--repair]`: whether the store is sound, what is left over, and repairs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::output::human_size;
use super::{Global, open_store};
use crate::container::status::{self, Status};
use crate::store::LockMode;
use crate::store::check::totals;

#[derive(Args)]
pub struct CheckArgs {
    /// Remove what nothing uses (unreferenced blobs and layers, staging, stale mount records and
    /// dangling tags) and unpack missing or incomplete layer trees again from their verified blobs.
    #[arg(long, short = 'r')]
    pub repair: bool,
}

pub fn check(g: &Global, a: CheckArgs) -> Result<ExitCode> {
    let mode = if a.repair { LockMode::Exclusive } else { LockMode::Shared };
    let store = open_store(g, mode)?;
    let r = store.check(a.repair)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Checked {} blobs, {} layers, {} images, {} tags, {} containers, {} mounts",
        r.blobs, r.layers, r.images, r.tags, r.containers, r.mounts
    )?;
    // Recorded as running with their monitor gone (`ps` says Dead): a state that `start` or `rm`
    // ends, not damage to the store, so it is told apart here and not in the store's report.
    let dead: Vec<String> = store
        .containers()?
        .iter()
        .filter(|c| status::status(c) == Status::Dead)
        .map(|c| format!("{} ({})", c.name, c.short_id()))
        .collect();
    if !dead.is_empty() {
        writeln!(out, "\nDead containers (their monitor is gone; `strata start` or `strata rm` them):")?;
        for d in &dead {
            writeln!(out, "  {d}")?;
        }
    }
    if !r.problems.is_empty() {
        writeln!(out, "\nErrors:")?;
        for p in &r.problems {
            match &p.repaired {
                Some(done) => writeln!(out, "  {}: {} (repaired: {done})", p.subject, p.what)?,
                None => writeln!(out, "  {}: {}", p.subject, p.what)?,
            }
        }
    }
    if !r.leftovers.is_empty() {
        writeln!(out, "\nLeftovers:")?;
        writeln!(out, "  {:<14} {:>10}  {:<22} NAME", "TYPE", "SIZE", "STATUS")?;
        for l in &r.leftovers {
            let status = if l.removed {
                "removed"
            } else if l.next_writer_removes {
                "next writer removes"
            } else {
                "unreferenced"
            };
            writeln!(out, "  {:<14} {:>10}  {:<22} {}", l.kind, human_size(l.bytes), status, l.name)?;
        }
        let t = totals(&r.leftovers);
        let bytes: u64 = t.values().map(|(_, b)| b).sum();
        let kept = r.leftovers.iter().filter(|l| !l.removed && !l.next_writer_removes).count();
        write!(out, "  total {}", human_size(bytes))?;
        if kept > 0 {
            write!(out, "; {kept} not removed automatically: strata system check --repair removes them")?;
        }
        writeln!(out)?;
    }
    let unrepaired = r.problems.iter().filter(|p| p.repaired.is_none()).count();
    if r.is_sound() {
        writeln!(out, "\nThe store is sound.")?;
        Ok(ExitCode::SUCCESS)
    } else {
        let hint = if a.repair { "" } else { " (strata system check --repair fixes what can be fixed)" };
        writeln!(out, "\nThe store has {unrepaired} error(s){hint}.")?;
        Ok(ExitCode::FAILURE)
    }
}
