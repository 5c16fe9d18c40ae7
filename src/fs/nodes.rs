//! The node tree: FUSE node id (= st_ino) → the names that reach it, each a link to its parent
//! node, and the resolved entry cached on each link.
//!
//! A node has several links when it is a hard-linked file. Every link knows its parent node and
//! its merged path, and every directory node knows the nodes linked below it, so the tree can be
//! changed in place: a rename moves one link and re-paths only the nodes cached below it, an
//! unlink drops one link, and nothing scans the table (a rename cost what the whole table held
//! before: 1,000 `mv` took 10× longer after a `find` over 100,000 entries). Paths are keyed by
//! their bytes, hashed in constant time ([`PathHash`]), so a deep tree costs no more per lookup.
//!
//! Lookup counts are honoured: a node is dropped when `forget` brings its count to zero and no
//! cached child hangs below it (a child's link keeps its parent, so a path can always be rebuilt).
//!
//! A name's new object gets a new node: when the layer filesystem reuses the inode number of
//! an object whose node the kernel still holds (every name of it gone), the new object gets a
//! fresh node id (an alias of its st_ino) instead of sharing the old node. Sharing it made the
//! kernel see one node change type (file → directory), which it answers with EIO, and let the
//! old node's FORGET drop the new one's count.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::stat::FileStat;

use super::ino::ROOT_INO;
use crate::union::Entry;
use crate::union::layer::SafeFd;
use crate::union::pathhash::PathHash;
use crate::union::stack::DirFdStore;

/// A merged path as bytes ("" for the root; components joined by one `/`).
type Key = Arc<[u8]>;

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

fn name_of(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(p, |i| &p[i + 1..])
}

fn parent_of(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(&[], |i| &p[..i])
}

fn join(parent: &[u8], name: &[u8]) -> Key {
    if parent.is_empty() { name.into() } else { [parent, b"/", name].concat().into() }
}

fn path_of(k: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(k))
}

/// What lookup resolved at a link: an [`Entry`] without its path (the link has it).
#[derive(Clone, Debug)]
struct Resolved {
    layer: usize,
    stat: FileStat,
    layers: Vec<usize>,
}

impl Resolved {
    fn entry(&self, path: &[u8]) -> Entry {
        Entry { path: path_of(path), layer: self.layer, stat: self.stat, layers: self.layers.clone() }
    }
}

/// One name of a node.
#[derive(Debug)]
struct Link {
    /// The directory node holding the name (0 when it was not known).
    parent: u64,
    path: Key,
    /// The entry lookup found at this name, until something changes there (at most
    /// [`ENTRY_BUDGET`] links hold one).
    entry: Option<Box<Resolved>>,
    /// A directory's fd in each layer where it was opened (layer, fd), until it moves.
    fds: Vec<(usize, Arc<SafeFd>)>,
}

#[derive(Debug, Default)]
struct Node {
    links: Vec<Link>,
    lookups: u64,
    generation: u64,
    /// The nodes linked below this directory, with how many of their links are here (two
    /// names of one hard-linked file in one directory).
    children: HashMap<u64, u32>,
}

impl Node {
    fn link(&self, path: &[u8]) -> Option<&Link> {
        self.links.iter().find(|l| &*l.path == path)
    }

    fn link_mut(&mut self, path: &[u8]) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| &*l.path == path)
    }
}

/// Alias node ids: a range no st_ino mapping produces in practice (layer index 0xff, bit 55).
const ALIAS_BASE: u64 = 0xff80_0000_0000_0000;

/// The most directory fds the links keep, whatever the open-files limit (each pins a dentry and
/// an inode of its layer in the kernel's memory).
const MAX_DIR_FDS: usize = 65_536;

/// How many links may hold a cached entry at once (the oldest cached goes first): the kernel may
/// hold millions of names, and a cached entry costs about 200 bytes.
const ENTRY_BUDGET: usize = 8192;

/// Node tree.
#[derive(Debug)]
pub struct Nodes {
    map: HashMap<u64, Node>,
    /// Every link's path → its node.
    by_path: HashMap<Key, u64, PathHash>,
    /// st_ino → the alias node that now stands for it, and back (kept apart from the nodes:
    /// aliases are rare, nodes are many).
    aliases: HashMap<u64, u64>,
    alias_of: HashMap<u64, u64>,
    next_alias: u64,
    /// Links given a cached entry, oldest first (some since uncached: skipped when popped), and
    /// how many links hold one now.
    cached_order: VecDeque<(u64, Key)>,
    cached_count: usize,
    /// The same for directory fds, and how many the links may hold (half the process's limit
    /// of open files, at most [`MAX_DIR_FDS`]).
    fd_order: VecDeque<(u64, Key)>,
    fd_count: usize,
    fd_budget: usize,
}

impl Default for Nodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Nodes {
    /// A tree holding only the root.
    pub fn new() -> Nodes {
        let root: Key = Arc::from(&b""[..]);
        let mut map = HashMap::new();
        let link = Link { parent: ROOT_INO, path: root.clone(), entry: None, fds: Vec::new() };
        map.insert(ROOT_INO, Node { links: vec![link], lookups: 1, ..Node::default() });
        let mut by_path = HashMap::with_hasher(PathHash);
        by_path.insert(root, ROOT_INO);
        Nodes {
            map,
            by_path,
            aliases: HashMap::new(),
            alias_of: HashMap::new(),
            next_alias: 0,
            cached_order: VecDeque::new(),
            cached_count: 0,
            fd_order: VecDeque::new(),
            fd_count: 0,
            fd_budget: usize::try_from(crate::sys::safefd::open_files_limit() / 2)
                .unwrap_or(usize::MAX)
                .min(MAX_DIR_FDS),
        }
    }

    /// The node id of a live object whose st_ino is `st_ino`: the st_ino itself, or its alias;
    /// a new alias when the current node is a dead one the kernel still holds (every name of
    /// it removed: the layer filesystem reused the inode number for a new object).
    pub fn id_for(&mut self, st_ino: u64) -> u64 {
        let cur = self.current(st_ino);
        match self.map.get(&cur) {
            Some(n) if cur != ROOT_INO && n.links.is_empty() && n.lookups > 0 => {
                self.next_alias += 1;
                let id = ALIAS_BASE | self.next_alias;
                self.aliases.insert(st_ino, id);
                self.alias_of.insert(id, st_ino);
                self.map.insert(id, Node::default());
                id
            }
            _ => cur,
        }
    }

    /// The node id now standing for `st_ino` (no new alias made).
    pub fn current(&self, st_ino: u64) -> u64 {
        self.aliases.get(&st_ino).copied().unwrap_or(st_ino)
    }

    /// A path of node `ino`.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        self.map.get(&ino).and_then(|n| n.links.first()).map(|l| path_of(&l.path))
    }

    /// A path of node `ino` and the entry cached there, if any.
    pub fn path_and_entry(&self, ino: u64) -> Option<(PathBuf, Option<Entry>)> {
        let l = self.map.get(&ino)?.links.first()?;
        Some((path_of(&l.path), l.entry.as_ref().map(|r| r.entry(&l.path))))
    }

    /// The node `path` names, if it is in the tree.
    pub fn at(&self, path: &Path) -> Option<u64> {
        self.by_path.get(bytes(path)).copied()
    }

    /// The generation of `ino` (0 if unknown).
    pub fn generation(&self, ino: u64) -> u64 {
        self.map.get(&ino).map(|n| n.generation).unwrap_or(0)
    }

    /// Records that the kernel holds `n` more references to `ino`, reached by `path`.
    /// Returns the node's generation.
    pub fn remember(&mut self, ino: u64, path: &Path, n: u64) -> u64 {
        if n == 0 && !self.map.contains_key(&ino) {
            return 0;
        }
        let k = bytes(path);
        if let Some(&old) = self.by_path.get(k) {
            if old != ino {
                // The name's previous object is gone: it (and what hung below it) loses the name.
                self.remove_tree(path);
            }
        }
        let node = self.map.entry(ino).or_default();
        if node.links.is_empty() && node.lookups > 0 {
            // Every name of the old node is gone: the inode number was reused.
            node.generation += 1;
        }
        node.lookups += n;
        let generation = node.generation;
        if node.link(k).is_none() {
            self.link(ino, Arc::from(k));
        }
        generation
    }

    /// Adds the link `path` to node `ino` (which exists), under the node of its parent path.
    fn link(&mut self, ino: u64, path: Key) {
        let parent =
            if path.is_empty() { ROOT_INO } else { self.by_path.get(parent_of(&path)).copied().unwrap_or(0) };
        if let Some(p) = self.map.get_mut(&parent) {
            *p.children.entry(ino).or_default() += 1;
        }
        self.by_path.insert(path.clone(), ino);
        if let Some(n) = self.map.get_mut(&ino) {
            n.links.push(Link { parent, path, entry: None, fds: Vec::new() });
        }
    }

    /// Removes the link `path` of node `ino`; returns its parent. The node itself stays (see
    /// [`Self::drop_unused`]).
    fn unlink(&mut self, ino: u64, path: &[u8]) -> Option<u64> {
        let node = self.map.get_mut(&ino)?;
        let i = node.links.iter().position(|l| &*l.path == path)?;
        let link = node.links.swap_remove(i);
        if link.entry.is_some() {
            self.cached_count -= 1;
        }
        self.fd_count -= link.fds.len();
        if self.by_path.get(path) == Some(&ino) {
            self.by_path.remove(path);
        }
        if let Some(p) = self.map.get_mut(&link.parent) {
            if let Some(n) = p.children.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    p.children.remove(&ino);
                }
            }
        }
        Some(link.parent)
    }

    /// Drops `ino` if nothing holds it any more (no kernel reference, no child below), then its
    /// parents the same way.
    fn drop_unused(&mut self, ino: u64) {
        let mut todo = vec![ino];
        while let Some(id) = todo.pop() {
            if id == ROOT_INO {
                continue;
            }
            let unused = self.map.get(&id).is_some_and(|n| n.lookups == 0 && n.children.is_empty());
            if !unused {
                continue;
            }
            let paths: Vec<Key> = self.map[&id].links.iter().map(|l| l.path.clone()).collect();
            for p in paths {
                todo.extend(self.unlink(id, &p));
            }
            self.map.remove(&id);
            if let Some(b) = self.alias_of.remove(&id) {
                if self.aliases.get(&b) == Some(&id) {
                    self.aliases.remove(&b);
                }
            }
        }
    }

    /// The kernel dropped `n` references.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.map.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.drop_unused(ino);
            }
        }
    }

    /// Every name of file node `ino` goes, the node stays for the kernel's open files of it: the
    /// next lookup of one of the names makes a new node (an alias, see [`Self::id_for`]).
    pub fn detach(&mut self, ino: u64) {
        let paths: Vec<Key> =
            self.map.get(&ino).map(|n| n.links.iter().map(|l| l.path.clone()).collect()).unwrap_or_default();
        for p in paths {
            self.unlink(ino, &p);
        }
    }

    /// `path` no longer names `ino` (unlink / rmdir).
    pub fn remove_path(&mut self, ino: u64, path: &Path) {
        // The name is gone, whichever node the tree has there.
        if self.at(path).is_some() {
            self.remove_tree(path);
        }
        if let Some(parent) = self.unlink(ino, bytes(path)) {
            self.drop_unused(ino);
            self.drop_unused(parent);
        }
    }

    /// The links at `path` and below it, parents first: (node, path) pairs.
    fn subtree(&self, path: &[u8]) -> Vec<(u64, Key)> {
        let Some((&id, k)) = self.by_path.get_key_value(path).map(|(k, id)| (id, k.clone())) else {
            return Vec::new();
        };
        let mut out = vec![(id, k)];
        let mut i = 0;
        while i < out.len() {
            let kids = self.child_links(out[i].0);
            out.extend(kids);
            i += 1;
        }
        out
    }

    /// Removes `path` and every link below it (a directory replaced by a rename). Costs what
    /// is cached below it, nothing more.
    pub fn remove_tree(&mut self, path: &Path) {
        let mut parents = Vec::new();
        for (id, p) in self.subtree(bytes(path)).into_iter().rev() {
            parents.extend(self.unlink(id, &p));
            parents.push(id);
        }
        for id in parents {
            self.drop_unused(id);
        }
    }

    /// The links of the nodes below directory `dir`: (node, path) pairs.
    fn child_links(&self, dir: u64) -> Vec<(u64, Key)> {
        let Some(n) = self.map.get(&dir) else { return Vec::new() };
        let mut out = Vec::with_capacity(n.children.len());
        for &c in n.children.keys() {
            if let Some(cn) = self.map.get(&c) {
                out.extend(cn.links.iter().filter(|l| l.parent == dir).map(|l| (c, l.path.clone())));
            }
        }
        out
    }

    /// Forgets the entry cached at the link `path` of node `id`.
    fn drop_entry(&mut self, id: u64, path: &[u8]) {
        if let Some(l) = self.map.get_mut(&id).and_then(|n| n.link_mut(path)) {
            if l.entry.take().is_some() {
                self.cached_count -= 1;
            }
        }
    }

    /// Closes the directory fds kept at the link `path` of node `id`.
    fn drop_fds(&mut self, id: u64, path: &[u8]) {
        if let Some(l) = self.map.get_mut(&id).and_then(|n| n.link_mut(path)) {
            self.fd_count -= l.fds.len();
            l.fds.clear();
        }
    }

    /// Gives every link below node `ino` (now at `path`) its new path, and forgets the entries
    /// and fds kept there (a moved directory's children merge with other layers).
    fn repath(&mut self, ino: u64, path: &[u8]) {
        let mut todo = vec![(ino, Key::from(path))];
        while let Some((id, p)) = todo.pop() {
            self.drop_entry(id, &p);
            self.drop_fds(id, &p);
            for (c, old) in self.child_links(id) {
                let new = join(&p, name_of(&old));
                let Some(l) = self.map.get_mut(&c).and_then(|n| n.link_mut(&old)) else { continue };
                l.path = new.clone();
                if self.by_path.get(&old) == Some(&c) {
                    self.by_path.remove(&old);
                }
                self.by_path.insert(new.clone(), c);
                todo.push((c, new));
            }
        }
    }

    /// `from` (and everything below it) was renamed to `to`: one link moves, the nodes cached
    /// below it get their new paths.
    pub fn rename(&mut self, from: &Path, to: &Path) {
        let Some(id) = self.at(from) else {
            // Nothing cached at `from`; whatever was at `to` is gone all the same.
            self.remove_tree(to);
            return;
        };
        if self.at(to).is_some() {
            self.remove_tree(to);
        }
        let old_parent = self.unlink(id, bytes(from));
        let k: Key = Arc::from(bytes(to));
        self.link(id, k.clone());
        self.repath(id, &k);
        if let Some(p) = old_parent {
            self.drop_unused(p);
        }
    }

    /// `a` and `b` were exchanged.
    pub fn exchange(&mut self, a: &Path, b: &Path) {
        let (ka, kb): (Key, Key) = (Arc::from(bytes(a)), Arc::from(bytes(b)));
        let ia = self.at(a);
        let ib = self.at(b);
        let mut parents = Vec::new();
        if let Some(i) = ia {
            parents.extend(self.unlink(i, &ka));
        }
        if let Some(i) = ib {
            parents.extend(self.unlink(i, &kb));
        }
        for (id, k) in [(ia, &kb), (ib, &ka)] {
            if let Some(id) = id {
                self.link(id, k.clone());
                self.repath(id, k);
            }
        }
        for p in parents {
            self.drop_unused(p);
        }
    }

    /// The entry cached at `path`.
    pub fn cached(&self, path: &Path) -> Option<Entry> {
        let k = bytes(path);
        let id = self.by_path.get(k)?;
        let l = self.map.get(id)?.link(k)?;
        l.entry.as_ref().map(|r| r.entry(k))
    }

    /// Caches `e` at its path, when a node has that name (only named nodes cache entries, so
    /// nothing outlives the name it was found at).
    pub fn cache(&mut self, e: &Entry) {
        let k = bytes(&e.path);
        let Some((key, &id)) = self.by_path.get_key_value(k) else { return };
        let key = key.clone();
        let Some(l) = self.map.get_mut(&id).and_then(|n| n.link_mut(k)) else { return };
        let fresh = Box::new(Resolved { layer: e.layer, stat: e.stat, layers: e.layers.clone() });
        if l.entry.replace(fresh).is_some() {
            return;
        }
        self.cached_count += 1;
        self.cached_order.push_back((id, key));
        while self.cached_count > ENTRY_BUDGET {
            let Some((id, k)) = self.cached_order.pop_front() else { break };
            self.drop_entry(id, &k);
        }
        if self.cached_order.len() > 4 * ENTRY_BUDGET {
            // Mostly links uncached since: keep those still holding an entry.
            let map = &self.map;
            self.cached_order
                .retain(|(id, k)| map.get(id).and_then(|n| n.link(k)).is_some_and(|l| l.entry.is_some()));
        }
    }

    /// Forgets the entry cached at `path`.
    pub fn uncache(&mut self, path: &Path) {
        let k = bytes(path);
        if let Some(&id) = self.by_path.get(k) {
            self.drop_entry(id, k);
        }
    }

    /// Forgets the entries and directory fds kept at `path` and below it (what is kept there,
    /// no more): it moved, or what merges below it changed.
    pub fn uncache_tree(&mut self, path: &Path) {
        for (id, p) in self.subtree(bytes(path)) {
            self.drop_entry(id, &p);
            self.drop_fds(id, &p);
        }
    }

    /// The fd of the directory `dir` in `layer`, if its link keeps one.
    pub fn dir_fd(&self, layer: usize, dir: &Path) -> Option<Arc<SafeFd>> {
        let k = bytes(dir);
        let l = self.map.get(self.by_path.get(k)?)?.link(k)?;
        l.fds.iter().find(|(i, _)| *i == layer).map(|(_, fd)| fd.clone())
    }

    /// Keeps the fd of the directory `dir` in `layer` on its link, if a node has that name
    /// (the oldest kept goes once the budget is reached). True if kept.
    pub fn keep_dir_fd(&mut self, layer: usize, dir: &Path, fd: &Arc<SafeFd>) -> bool {
        let k = bytes(dir);
        let Some((key, &id)) = self.by_path.get_key_value(k) else { return false };
        let key = key.clone();
        let Some(l) = self.map.get_mut(&id).and_then(|n| n.link_mut(k)) else { return false };
        if let Some(slot) = l.fds.iter_mut().find(|(i, _)| *i == layer) {
            slot.1 = fd.clone();
            return true;
        }
        if l.fds.is_empty() {
            self.fd_order.push_back((id, key));
        }
        l.fds.push((layer, fd.clone()));
        self.fd_count += 1;
        while self.fd_count > self.fd_budget {
            let Some((id, k)) = self.fd_order.pop_front() else { break };
            self.drop_fds(id, &k);
        }
        if self.fd_order.len() > 4 * self.fd_budget.max(1024) {
            let map = &self.map;
            self.fd_order
                .retain(|(id, k)| map.get(id).and_then(|n| n.link(k)).is_some_and(|l| !l.fds.is_empty()));
        }
        true
    }

    /// Number of nodes (for tests and logs).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether only the root is left.
    pub fn is_empty(&self) -> bool {
        self.map.len() <= 1
    }
}

/// The node tree keeps directory fds on the links of the nodes the kernel holds.
impl DirFdStore for std::sync::Mutex<Nodes> {
    fn get(&self, layer: usize, dir: &Path) -> Option<Arc<SafeFd>> {
        super::filesystem::lock(self).dir_fd(layer, dir)
    }

    fn put(&self, layer: usize, dir: &Path, fd: &Arc<SafeFd>) -> bool {
        super::filesystem::lock(self).keep_dir_fd(layer, dir, fd)
    }
}

/// Nodes born without a name: an `O_TMPFILE` file (`tmpfile.rs`) until `linkat` names it.
impl Nodes {
    /// A node for a new nameless file whose st_ino is `st_ino`, held once by the kernel: the
    /// st_ino itself, or a fresh alias when a node of that number is still known (the kernel
    /// may hold the old object's). Returns (node id, generation).
    pub fn add_nameless(&mut self, st_ino: u64) -> (u64, u64) {
        let mut id = self.current(st_ino);
        if self.map.contains_key(&id) {
            self.next_alias += 1;
            id = ALIAS_BASE | self.next_alias;
            self.aliases.insert(st_ino, id);
            self.alias_of.insert(id, st_ino);
        }
        let node = self.map.entry(id).or_default();
        node.lookups += 1;
        (id, node.generation)
    }

    /// The nameless node `ino` got the name `path` (and one more kernel reference): the same
    /// object, so its generation stays (a new one would make the kernel drop the open file's
    /// inode as stale). None when the node is gone or has a name already.
    pub fn name_nameless(&mut self, ino: u64, path: &Path) -> Option<u64> {
        if !self.map.get(&ino).is_some_and(|n| n.links.is_empty()) {
            return None;
        }
        if self.at(path).is_some() {
            // The name's previous object is gone: it (and what hung below it) loses the name.
            self.remove_tree(path);
        }
        self.link(ino, Arc::from(bytes(path)));
        let node = self.map.get_mut(&ino)?;
        node.lookups += 1;
        Some(node.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn a_reused_number_gets_an_alias() {
        let mut n = Nodes::new();
        assert_eq!(n.id_for(7), 7);
        n.remember(7, p("x"), 1);
        n.remove_path(7, p("x"));
        // The kernel still holds node 7, nameless: the number's new object is another node.
        let a = n.id_for(7);
        assert_ne!(a, 7);
        assert_eq!(n.id_for(7), a);
        n.remember(a, p("x"), 1);
        // The old node's FORGET leaves the new one alone.
        n.forget(7, 1);
        assert_eq!(n.path(a), Some(PathBuf::from("x")));
        assert_eq!(n.current(7), a);
        n.forget(a, 1);
        assert_eq!(n.current(7), 7);
    }

    #[test]
    fn a_nameless_node_keeps_its_generation_when_named() {
        let mut n = Nodes::new();
        let (id, g) = n.add_nameless(9);
        assert_eq!(id, 9);
        assert_eq!(n.path(9), None);
        assert_eq!(n.name_nameless(9, Path::new("t")), Some(g));
        assert_eq!(n.name_nameless(9, Path::new("u")), None, "named already");
        assert_eq!(n.id_for(9), 9);
        // A number still known (the kernel holds its old object): a fresh alias.
        let (a, _) = n.add_nameless(9);
        assert_ne!(a, 9);
        assert_eq!(n.path(a), None);
        n.forget(a, 1);
        n.forget(9, 2);
        assert!(n.is_empty());
    }

    #[test]
    fn lifecycle() {
        let mut n = Nodes::new();
        n.remember(4, p("a"), 1);
        n.remember(5, p("a/b"), 1);
        n.remember(5, p("c"), 1);
        assert_eq!(n.path(5), Some(PathBuf::from("a/b")));
        n.rename(p("a"), p("x"));
        assert_eq!(n.path(5), Some(PathBuf::from("x/b")));
        assert_eq!(n.at(p("x/b")), Some(5));
        assert_eq!(n.at(p("a/b")), None);
        n.remove_path(5, p("x/b"));
        assert_eq!(n.path(5), Some(PathBuf::from("c")));
        n.forget(5, 2);
        assert_eq!(n.path(5), None);
        n.forget(ROOT_INO, 10);
        assert_eq!(n.path(ROOT_INO), Some(PathBuf::new()));
    }

    #[test]
    fn a_child_keeps_its_parent_until_it_goes() {
        let mut n = Nodes::new();
        n.remember(4, p("d"), 1);
        n.remember(5, p("d/e"), 1);
        n.remember(6, p("d/e/f"), 1);
        // The kernel forgets the directories first: they stay while a child hangs below.
        n.forget(4, 1);
        n.forget(5, 1);
        n.rename(p("d"), p("m"));
        assert_eq!(n.path(6), Some(PathBuf::from("m/e/f")));
        n.forget(6, 1);
        assert_eq!(n.len(), 1, "the whole chain went with its last child");
        assert!(n.at(p("m")).is_none());
    }

    #[test]
    fn cached_entries_stay_within_the_budget() {
        let mut n = Nodes::new();
        assert!(n.cached(p("")).is_none());
        let stat = nix::sys::stat::stat("/").unwrap();
        for i in 0..ENTRY_BUDGET as u64 + 100 {
            let path = PathBuf::from(format!("f{i}"));
            n.remember(10 + i, &path, 1);
            n.cache(&Entry { path: path.clone(), layer: 0, stat, layers: vec![0] });
            n.uncache(p("f0"));
        }
        assert_eq!(n.cached_count, ENTRY_BUDGET);
        assert!(n.cached(p("f1")).is_none(), "the oldest went first");
        assert!(n.cached(p(&format!("f{}", ENTRY_BUDGET + 99))).is_some());
        assert!(n.cached_order.len() <= 4 * ENTRY_BUDGET + 1);
        n.remove_path(10 + ENTRY_BUDGET as u64 + 99, p(&format!("f{}", ENTRY_BUDGET + 99)));
        assert_eq!(n.cached_count, ENTRY_BUDGET - 1);
    }

    #[test]
    fn directory_fds_stay_until_they_move_and_within_the_budget() {
        let mut n = Nodes::new();
        n.fd_budget = 3;
        let fd = Arc::new(SafeFd::root(Path::new("/")).unwrap());
        n.remember(4, p("a"), 1);
        n.remember(5, p("a/b"), 1);
        assert!(n.keep_dir_fd(0, p("a"), &fd));
        assert!(n.keep_dir_fd(1, p("a"), &fd));
        assert!(n.keep_dir_fd(0, p("a/b"), &fd));
        assert!(!n.keep_dir_fd(0, p("nothing/here"), &fd), "only a node's name keeps an fd");
        assert!(n.dir_fd(1, p("a")).is_some() && n.dir_fd(0, p("a/b")).is_some());
        assert!(n.dir_fd(2, p("a")).is_none());
        // A moved directory's fds go, with those below it.
        n.rename(p("a"), p("c"));
        assert!(n.dir_fd(0, p("c")).is_none() && n.dir_fd(0, p("c/b")).is_none());
        assert_eq!(n.fd_count, 0);
        // The oldest go first once the budget is reached.
        for (i, d) in ["c", "c/b"].iter().enumerate() {
            n.keep_dir_fd(0, p(d), &fd);
            n.keep_dir_fd(1 + i, p(d), &fd);
        }
        assert_eq!(n.fd_count, 2);
        assert!(n.dir_fd(0, p("c")).is_none() && n.dir_fd(0, p("c/b")).is_some());
        n.forget(5, 1);
        assert_eq!(n.fd_count, 0, "a forgotten node's fds close with it");
    }

    #[test]
    fn exchange_swaps_subtrees_and_drops_their_entries() {
        let mut n = Nodes::new();
        n.remember(4, p("a"), 1);
        n.remember(5, p("a/x"), 1);
        n.remember(6, p("b"), 1);
        n.remember(7, p("b/y"), 1);
        n.exchange(p("a"), p("b"));
        assert_eq!(n.path(4), Some(PathBuf::from("b")));
        assert_eq!(n.path(5), Some(PathBuf::from("b/x")));
        assert_eq!(n.path(6), Some(PathBuf::from("a")));
        assert_eq!(n.path(7), Some(PathBuf::from("a/y")));
        n.remove_tree(p("a"));
        assert_eq!(n.path(7), None);
        assert_eq!(n.path(6), None);
        assert_eq!(n.path(5), Some(PathBuf::from("b/x")));
    }
}
