//! Name indexes of directories merged from many lower layers, so that a lookup there costs about
//! what it costs in one layer.
//!
//! Without an index a lookup probes the name (and its `.wh.` name) in every layer of the
//! directory's merge until it is found, and a missing name probes them all: the cost grows with
//! the layer count. An index is the directory's merge over its lower layers read once: for each
//! name any of them shows, the layers a lookup must visit (top first: the one holding it, and for
//! a directory every lower one merged into it, down to a whiteout or a non-directory). A name not
//! in the index is in no lower layer; one in it is probed in its own layer(s) only.
//!
//! Lower layers never change while mounted, so an index never goes stale: it is keyed by the
//! directory's path and the list of lower layers it was built over (a directory the upper makes
//! opaque, or one renamed in, has another list), and dropped only for room. The writable upper
//! is never indexed: [`crate::union::Stack::lookup_child_in`] probes it on every lookup as
//! before, so what the mount creates, removes and renames shows at once.
//!
//! A directory merged from [`MERGED_AT_LOOKUP`] lower layers or more gets its index at its own
//! lookup instead ([`NameIndexes::for_merge`]): each layer's copy is
//! read once for both the lookup's opaque and implicit checks (the marks kept with the index)
//! and the index, about half the system calls of checking and reading each copy apart.
//!
//! Bounds: only directories merged from [`MIN_LAYERS`] lower layers or more are indexed (fewer
//! cost a few stats); a directory is indexed once its lookups would have probed
//! [`PROBES_BEFORE_INDEX`] names in its layers (so one of a few layers looked up once or twice is
//! never read whole); one with more than [`MAX_NAMES_READ`] names over its layers (or whose index
//! would take over a quarter of the budget), or one a layer can't read, is left to probing; all
//! indexes together hold at most [`BUDGET`] bytes, least recently used dropped first.

use std::ffi::{OsStr, OsString};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use super::layer::{DirMarks, dir_marks};
use super::layer_names::Kind;
use super::listing::{LayerName, scan_dir_fd, scan_fresh_dir_fd};
use super::pathhash::PathHash;
use super::stack::{Stack, is_gone};

/// Directories merged from fewer lower layers are probed: a lookup there costs a few stats.
pub const MIN_LAYERS: usize = 4;
/// The lookup that would bring the names a directory's lookups probed (a name and its `.wh.`
/// name per layer) to this many builds its index instead: with 32 layers or more the first
/// lookup, with 8 the fourth, with 4 the eighth (reading a directory costs a few probes per layer
/// plus its names, so the index is built once lookups have paid about that).
pub const PROBES_BEFORE_INDEX: usize = 64;
/// A directory merged from this many lower layers or more is read (for its index and its
/// layers' marks) at its own first lookup: its lookups below would build the index by the fourth
/// one (two probes per layer each), and reading each layer's copy once costs what the lookup's
/// opaque and implicit checks of each copy cost (about 4 system calls per layer).
pub const MERGED_AT_LOOKUP: usize = 8;
/// Names (over all its layers) past which a directory is not indexed: one build's time and
/// transient memory stay bounded.
pub const MAX_NAMES_READ: usize = 1 << 17;
/// Bytes all indexes (and the directories merely counted) hold at most.
pub const BUDGET: usize = 16 << 20;
/// Directories tracked at most.
const TRACKED: usize = 8192;
/// What tracking one directory costs besides its path and index (bookkeeping, allocations).
const OVERHEAD: usize = 96;

/// The merged names of one directory over its lower layers.
#[derive(Debug)]
pub struct NameIndex {
    /// Every name shown, sorted, back to back.
    names: Vec<u8>,
    /// Per name, in the same order: where its bytes end in `names` and its layers end in `layers`.
    ends: Vec<(usize, usize)>,
    /// Per name, the layers a lookup visits, top first.
    layers: Vec<usize>,
    /// When read at the directory's own first lookup: each lower layer read, top first, with
    /// its copy's marks (the last one read is the first opaque one, if any).
    marks: Vec<(usize, DirMarks)>,
}

/// What one layer directory says about a name; a layer's entry sorts before its whiteout.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Dir,
    Other,
    Whiteout,
}

impl NameIndex {
    /// The layers a lookup of `name` visits, top first: empty when no lower layer shows it.
    pub fn layers_of(&self, name: &OsStr) -> &[usize] {
        let name = name.as_bytes();
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let start = if mid == 0 { (0, 0) } else { self.ends[mid - 1] };
            let (end, layers_end) = self.ends[mid];
            match self.names[start.0..end].cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return &self.layers[start.1..layers_end],
            }
        }
        &[]
    }

    /// How many names the directory shows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it shows none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes it holds.
    fn bytes(&self) -> usize {
        self.names.capacity()
            + self.ends.capacity() * std::mem::size_of::<(usize, usize)>()
            + self.layers.capacity() * std::mem::size_of::<usize>()
            + self.marks.capacity() * std::mem::size_of::<(usize, DirMarks)>()
    }

    /// The marks of `layer`'s copy of the directory, when the index was read with them.
    pub fn marks_of(&self, layer: usize) -> Option<DirMarks> {
        self.marks.iter().find(|(l, _)| *l == layer).map(|(_, m)| *m)
    }

    /// The lower layers it was built over, when read with marks (they end at an opaque one).
    fn marked_layers(&self) -> Vec<usize> {
        self.marks.iter().map(|(l, _)| *l).collect()
    }

    /// Reads the directory `dir` in each of `lower` (top first) and merges what they show with
    /// the lookup rules of [`Stack::lookup_child_in`]. `None` when it holds more than
    /// [`MAX_NAMES_READ`] names. With `marked`, also the [`DirMarks`] of each layer's copy (the
    /// opaque marker seen in its listing, one `flistxattr` on the same fd), and the read ends at
    /// the first opaque one. A layer's directory not open yet is opened once and read through
    /// that fd (then kept), not reopened.
    pub fn build(stack: &Stack, dir: &Path, lower: &[usize], marked: bool) -> io::Result<Option<NameIndex>> {
        // (name, layer, what that layer has there): layers are numbered top first.
        let mut read: Vec<(OsString, usize, Seen)> = Vec::new();
        let mut marks = Vec::new();
        for &l in lower {
            // A layer stored with a record of its directories is not read at all.
            if let Some(recorded) = stack.recorded_dir(l, dir) {
                let Some(recorded) = recorded else { continue };
                let m = recorded.marks;
                for n in recorded.names() {
                    read.push((
                        n.name.to_os_string(),
                        l,
                        match n.kind() {
                            Kind::Dir => Seen::Dir,
                            Kind::Other => Seen::Other,
                            Kind::Whiteout => Seen::Whiteout,
                        },
                    ));
                    if read.len() > MAX_NAMES_READ {
                        return Ok(None);
                    }
                }
                if marked {
                    marks.push((l, m));
                    if m.opaque {
                        break;
                    }
                }
                continue;
            }
            let mut marker = false;
            let mut each = |n| {
                read.push(match n {
                    LayerName::Entry(le) if le.kind == libc::S_IFDIR => (le.name, l, Seen::Dir),
                    LayerName::Entry(le) => (le.name, l, Seen::Other),
                    LayerName::Whiteout(name) => (name, l, Seen::Whiteout),
                    LayerName::OpaqueMarker => {
                        marker = true;
                        return true;
                    }
                });
                read.len() <= MAX_NAMES_READ
            };
            let (fd, complete) = match stack.cached_dir_fd(l, dir) {
                Some(fd) => {
                    let complete = scan_dir_fd(&fd, l, &mut each)?;
                    (fd, complete)
                }
                None => match stack.open_dir_fd(l, dir) {
                    Ok(fd) => {
                        let complete = scan_fresh_dir_fd(&fd, l, &mut each)?;
                        (stack.keep_dir_fd(l, dir, fd), complete)
                    }
                    Err(e) if is_gone(&e) => continue,
                    Err(e) => return Err(e),
                },
            };
            if !complete {
                return Ok(None);
            }
            if marked {
                let m = dir_marks(fd.as_fd(), marker);
                marks.push((l, m));
                if m.opaque {
                    break;
                }
            }
        }
        read.sort_unstable();
        let mut ix = NameIndex { names: Vec::new(), ends: Vec::new(), layers: Vec::new(), marks };
        for one in read.chunk_by(|a, b| a.0 == b.0) {
            let before = ix.layers.len();
            for &(_, l, seen) in one {
                match seen {
                    // A whiteout hides the name in the layers below (its own layer's entry, sorted
                    // first, is already in).
                    Seen::Whiteout => break,
                    // A non-directory is found only on top, and hides everything below it.
                    Seen::Other => {
                        if ix.layers.len() == before {
                            ix.layers.push(l);
                        }
                        break;
                    }
                    Seen::Dir => ix.layers.push(l),
                }
            }
            if ix.layers.len() > before {
                ix.names.extend_from_slice(one[0].0.as_bytes());
                ix.ends.push((ix.names.len(), ix.layers.len()));
            }
        }
        ix.names.shrink_to_fit();
        ix.ends.shrink_to_fit();
        ix.layers.shrink_to_fit();
        ix.marks.shrink_to_fit();
        Ok(Some(ix))
    }
}

/// Where a directory stands.
enum State {
    /// Not indexed yet: the layer directories its lookups probed so far.
    Probed(usize),
    /// Being built by one lookup; the others probe meanwhile.
    Building,
    Indexed(Arc<NameIndex>),
    /// Too big or unreadable: always probed.
    Unindexed,
}

struct Tracked {
    /// The lower layers the state is about (the directory's lower part of its merge).
    lower: Box<[usize]>,
    state: State,
}

impl Tracked {
    fn bytes(&self, key: &[u8]) -> usize {
        let index = match &self.state {
            State::Indexed(ix) => ix.bytes(),
            _ => 0,
        };
        key.len() + self.lower.len() * std::mem::size_of::<usize>() + OVERHEAD + index
    }
}

struct Tracking {
    lru: LruCache<Vec<u8>, Tracked, PathHash>,
    bytes: usize,
}

/// The name indexes of a stack, with their lock and memory bound.
pub struct NameIndexes(Mutex<Tracking>);

impl Default for NameIndexes {
    fn default() -> Self {
        // Grown as directories come, not sized for `TRACKED` at every mount.
        let mut lru = LruCache::unbounded_with_hasher(PathHash);
        lru.resize(NonZeroUsize::new(TRACKED).unwrap_or(NonZeroUsize::MIN));
        NameIndexes(Mutex::new(Tracking { lru, bytes: 0 }))
    }
}

impl NameIndexes {
    fn lock(&self) -> MutexGuard<'_, Tracking> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index a lookup in `dir` over its lower layers `lower` may use; `None`: probe the
    /// layers (the probes are counted towards building one).
    pub fn for_lookup(&self, stack: &Stack, dir: &Path, lower: &[usize]) -> Option<Arc<NameIndex>> {
        if lower.len() < MIN_LAYERS {
            return None;
        }
        let key = dir.as_os_str().as_bytes();
        // A lookup without the index stats the name and its `.wh.` name in each layer.
        let probes = 2 * lower.len();
        {
            let mut t = self.lock();
            match t.lru.get_mut(key) {
                Some(tr) if *tr.lower == *lower => match &mut tr.state {
                    State::Indexed(ix) => return Some(ix.clone()),
                    State::Unindexed | State::Building => return None,
                    State::Probed(n) if *n + probes < PROBES_BEFORE_INDEX => {
                        *n += probes;
                        return None;
                    }
                    State::Probed(_) => tr.state = State::Building,
                },
                _ if probes < PROBES_BEFORE_INDEX => {
                    t.put(key, Tracked { lower: lower.into(), state: State::Probed(probes) });
                    return None;
                }
                _ => t.put(key, Tracked { lower: lower.into(), state: State::Building }),
            }
        }
        let state = match NameIndex::build(stack, dir, lower, false) {
            Ok(Some(ix)) if ix.bytes() <= BUDGET / 4 => {
                tracing::debug!(names = ix.len(), layers = lower.len(), "name index of /{}", dir.display());
                State::Indexed(Arc::new(ix))
            }
            Ok(_) => State::Unindexed,
            Err(e) => {
                tracing::debug!("no name index of /{}: {e}", dir.display());
                State::Unindexed
            }
        };
        let ix = match &state {
            State::Indexed(ix) => Some(ix.clone()),
            _ => None,
        };
        self.lock().put(key, Tracked { lower: lower.into(), state });
        ix
    }
}

impl NameIndexes {
    /// At the lookup of a directory merged from many lower layers (`candidates`, top first: the
    /// layers its parent's index shows it in), its index read with each layer's
    /// [`DirMarks`]: one read of each layer's copy serves both the lookup's opaque and implicit
    /// checks and the lookups below it. Only for [`MERGED_AT_LOOKUP`] layers or more; `None`:
    /// probe the layers as before.
    pub fn for_merge(&self, stack: &Stack, dir: &Path, candidates: &[usize]) -> Option<Arc<NameIndex>> {
        if candidates.len() < MERGED_AT_LOOKUP {
            return None;
        }
        let key = dir.as_os_str().as_bytes();
        {
            let mut t = self.lock();
            match t.lru.get(key).map(|tr| (&tr.state, candidates.starts_with(&tr.lower))) {
                Some((State::Indexed(ix), true)) if !ix.marks.is_empty() => return Some(ix.clone()),
                Some((State::Building, _)) => return None,
                Some((State::Unindexed, true)) => return None,
                _ => {}
            }
            t.put(key, Tracked { lower: candidates.into(), state: State::Building });
        }
        let (lower, state) = match NameIndex::build(stack, dir, candidates, true) {
            Ok(Some(ix)) if ix.bytes() <= BUDGET / 4 && !ix.marks.is_empty() => {
                tracing::debug!(
                    names = ix.len(),
                    layers = ix.marks.len(),
                    "name index of /{}",
                    dir.display()
                );
                (ix.marked_layers(), State::Indexed(Arc::new(ix)))
            }
            Ok(_) => (candidates.to_vec(), State::Unindexed),
            Err(e) => {
                tracing::debug!("no name index of /{}: {e}", dir.display());
                (candidates.to_vec(), State::Unindexed)
            }
        };
        let ix = match &state {
            State::Indexed(ix) => Some(ix.clone()),
            _ => None,
        };
        self.lock().put(key, Tracked { lower: lower.into(), state });
        ix
    }
}

impl Tracking {
    /// Tracks `dir` as `tr` (replacing what was), then drops the least recently used until
    /// the budget holds.
    fn put(&mut self, key: &[u8], tr: Tracked) {
        self.bytes += tr.bytes(key);
        if let Some((k, old)) = self.lru.push(key.to_vec(), tr) {
            self.bytes -= old.bytes(&k);
        }
        while self.bytes > BUDGET {
            match self.lru.pop_lru() {
                Some((k, old)) => self.bytes -= old.bytes(&k),
                None => break,
            }
        }
    }
}
