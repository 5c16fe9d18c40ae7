//! The inode table: FUSE node id (= st_ino) ↔ the merged paths that name it.
//!
//! A node has several paths when it is a hard-linked file. Lookup counts are honoured: the
//! node is dropped when `forget` brings its count to zero.
//!
//! A name's new object gets a new node: when the layer filesystem reuses the inode number of
//! an object whose node the kernel still holds (every name of it gone), the new object gets a
//! fresh node id (an alias of its st_ino) instead of sharing the old node. Sharing it made the
//! kernel see one node change type (file → directory), which it answers with EIO, and let the
//! old node's FORGET drop the new one's count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ino::ROOT_INO;
use crate::union::stack::is_within;

#[derive(Debug, Default)]
struct Node {
    paths: Vec<PathBuf>,
    lookups: u64,
    generation: u64,
}

/// Alias node ids: a range no st_ino mapping produces in practice (layer index 0xff, bit 55).
const ALIAS_BASE: u64 = 0xff80_0000_0000_0000;

/// Node table.
#[derive(Debug)]
pub struct Nodes {
    map: HashMap<u64, Node>,
    /// st_ino → the alias node that now stands for it, and back (kept apart from the nodes:
    /// aliases are rare, nodes are many).
    aliases: HashMap<u64, u64>,
    alias_of: HashMap<u64, u64>,
    next_alias: u64,
}

impl Default for Nodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Nodes {
    /// A table holding only the root.
    pub fn new() -> Nodes {
        let mut map = HashMap::new();
        map.insert(ROOT_INO, Node { paths: vec![PathBuf::new()], lookups: 1, generation: 0 });
        Nodes { map, aliases: HashMap::new(), alias_of: HashMap::new(), next_alias: 0 }
    }

    /// The node id of a live object whose st_ino is `st_ino`: the st_ino itself, or its alias;
    /// a new alias when the current node is a dead one the kernel still holds (every name of
    /// it removed: the layer filesystem reused the inode number for a new object).
    pub fn id_for(&mut self, st_ino: u64) -> u64 {
        let cur = self.current(st_ino);
        match self.map.get(&cur) {
            Some(n) if cur != ROOT_INO && n.paths.is_empty() && n.lookups > 0 => {
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
        self.map.get(&ino).and_then(|n| n.paths.first().cloned())
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
        let node = self.map.entry(ino).or_default();
        if node.paths.is_empty() && node.lookups > 0 {
            // Every name of the old node is gone: the inode number was reused.
            node.generation += 1;
        }
        if !node.paths.iter().any(|p| p == path) {
            node.paths.push(path.to_path_buf());
        }
        node.lookups += n;
        node.generation
    }

    /// The kernel dropped `n` references.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.map.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.map.remove(&ino);
                if let Some(b) = self.alias_of.remove(&ino) {
                    if self.aliases.get(&b) == Some(&ino) {
                        self.aliases.remove(&b);
                    }
                }
            }
        }
    }

    /// `path` no longer names `ino` (unlink / rmdir).
    pub fn remove_path(&mut self, ino: u64, path: &Path) {
        if let Some(node) = self.map.get_mut(&ino) {
            node.paths.retain(|p| p != path);
        }
    }

    /// Removes `path` and everything below it from every node.
    pub fn remove_tree(&mut self, path: &Path) {
        for node in self.map.values_mut() {
            node.paths.retain(|p| !is_within(p, path));
        }
    }

    /// `from` (and everything below it) was renamed to `to`.
    pub fn rename(&mut self, from: &Path, to: &Path) {
        for node in self.map.values_mut() {
            for p in node.paths.iter_mut() {
                if is_within(p, from) {
                    if let Ok(rest) = p.strip_prefix(from) {
                        *p = join(to, rest);
                    }
                }
            }
        }
    }

    /// `a` and `b` were exchanged.
    pub fn exchange(&mut self, a: &Path, b: &Path) {
        for node in self.map.values_mut() {
            for p in node.paths.iter_mut() {
                if is_within(p, a) {
                    if let Ok(rest) = p.strip_prefix(a) {
                        *p = join(b, rest);
                    }
                } else if is_within(p, b) {
                    if let Ok(rest) = p.strip_prefix(b) {
                        *p = join(a, rest);
                    }
                }
            }
        }
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
        let node = self.map.get_mut(&ino).filter(|n| n.paths.is_empty())?;
        node.paths.push(path.to_path_buf());
        node.lookups += 1;
        Some(node.generation)
    }
}

fn join(base: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() { base.to_path_buf() } else { base.join(rest) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_number_gets_an_alias() {
        let mut n = Nodes::new();
        assert_eq!(n.id_for(7), 7);
        n.remember(7, Path::new("x"), 1);
        n.remove_path(7, Path::new("x"));
        // The kernel still holds node 7, nameless: the number's new object is another node.
        let a = n.id_for(7);
        assert_ne!(a, 7);
        assert_eq!(n.id_for(7), a);
        n.remember(a, Path::new("x"), 1);
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
        n.remember(5, Path::new("a/b"), 1);
        n.remember(5, Path::new("c"), 1);
        assert_eq!(n.path(5), Some(PathBuf::from("a/b")));
        n.rename(Path::new("a"), Path::new("x"));
        assert_eq!(n.path(5), Some(PathBuf::from("x/b")));
        n.remove_path(5, Path::new("x/b"));
        assert_eq!(n.path(5), Some(PathBuf::from("c")));
        n.forget(5, 2);
        assert_eq!(n.path(5), None);
        n.forget(ROOT_INO, 10);
        assert_eq!(n.path(ROOT_INO), Some(PathBuf::new()));
    }
}
