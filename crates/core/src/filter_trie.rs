//! A trie of MQTT topic filters (levels split at `/`), each holding the
//! subscribers that registered it (issue #21 item 1, docs/MQTT.md 3.1).
//!
//! Matching a topic name walks one path per level: the literal child, the
//! `+` child, and the `#` entries at every level passed (`a/#` matches
//! `a`). So its cost grows with the depth of the name and the number of
//! filters that match, not with the number of filters held. A name that
//! starts with `$` is not matched by a filter that starts with a wildcard
//! ([MQTT-4.7.2-1]).
//!
//! A value registered several times under one filter is counted: it stays
//! until removed as often. The trie keeps no empty nodes, and
//! [`FilterTrie::filters`] says how many distinct filters it holds, so a
//! caller can bound it.

use crate::hashing::FastHashMap;

/// Filters and the values registered under each. See the module docs.
#[derive(Debug)]
pub struct FilterTrie<V> {
    root: Node<V>,
    filters: usize,
}

#[derive(Debug)]
struct Node<V> {
    children: FastHashMap<Box<str>, Node<V>>,
    plus: Option<Box<Node<V>>>,
    /// Values of the filter ending here with `#`.
    hash: Vec<(V, u32)>,
    /// Values of the filter ending exactly here.
    here: Vec<(V, u32)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: FastHashMap::default(),
            plus: None,
            hash: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

impl<V> Default for FilterTrie<V> {
    fn default() -> Self {
        FilterTrie {
            root: Node::default(),
            filters: 0,
        }
    }
}

impl<V: Copy + PartialEq> FilterTrie<V> {
    /// Distinct filters held.
    pub fn filters(&self) -> usize {
        self.filters
    }

    /// Whether `filter` is held (by any value).
    pub fn contains(&self, filter: &str) -> bool {
        let mut node = &self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return !node.hash.is_empty();
            }
            let next = if level == "+" {
                node.plus.as_deref()
            } else {
                node.children.get(level)
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        !node.here.is_empty()
    }

    /// Registers `value` under `filter` (a valid plain filter); true when
    /// the filter is new to the trie.
    pub fn insert(&mut self, filter: &str, value: V) -> bool {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let mut slot = None;
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                slot = Some(true);
                break;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let values = if slot.is_some() {
            &mut node.hash
        } else {
            &mut node.here
        };
        let new_filter = values.is_empty();
        match values.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => values.push((value, 1)),
        }
        if new_filter {
            self.filters += 1;
        }
        new_filter
    }

    /// Removes one registration of `value` under `filter`; true when the
    /// value no longer holds the filter (false also when it never did).
    pub fn remove(&mut self, filter: &str, value: V) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut gone_filter = false;
        let gone = remove_at(&mut self.root, &levels, value, &mut gone_filter);
        if gone_filter {
            self.filters -= 1;
        }
        gone
    }

    /// Calls `f` with every value whose filter matches the topic `name`
    /// (once per matching filter: a value under two matching filters is
    /// seen twice).
    pub fn matches(&self, name: &str, mut f: impl FnMut(V)) {
        let levels: Vec<&str> = name.split('/').collect();
        let system = name.starts_with('$');
        walk(&self.root, &levels, !system, &mut f);
    }
}

fn walk<V: Copy>(node: &Node<V>, levels: &[&str], wildcards: bool, f: &mut impl FnMut(V)) {
    if wildcards {
        // `#` matches the rest, including no level at all.
        node.hash.iter().for_each(|&(v, _)| f(v));
    }
    let Some((level, rest)) = levels.split_first() else {
        node.here.iter().for_each(|&(v, _)| f(v));
        return;
    };
    if let Some(child) = node.children.get(*level) {
        walk(child, rest, true, f);
    }
    if wildcards {
        if let Some(plus) = node.plus.as_deref() {
            walk(plus, rest, true, f);
        }
    }
}

fn remove_at<V: Copy + PartialEq>(
    node: &mut Node<V>,
    levels: &[&str],
    value: V,
    gone_filter: &mut bool,
) -> bool {
    let take = |values: &mut Vec<(V, u32)>, gone_filter: &mut bool| {
        let Some(i) = values.iter().position(|(v, _)| *v == value) else {
            return false;
        };
        values[i].1 -= 1;
        if values[i].1 > 0 {
            return false;
        }
        values.swap_remove(i);
        *gone_filter = values.is_empty();
        true
    };
    match levels.split_first() {
        None => take(&mut node.here, gone_filter),
        Some((&"#", [])) => take(&mut node.hash, gone_filter),
        Some((&"+", rest)) => {
            let Some(child) = node.plus.as_deref_mut() else {
                return false;
            };
            let gone = remove_at(child, rest, value, gone_filter);
            if child.is_empty() {
                node.plus = None;
            }
            gone
        }
        Some((level, rest)) => {
            let Some(child) = node.children.get_mut(*level) else {
                return false;
            };
            let gone = remove_at(child, rest, value, gone_filter);
            if child.is_empty() {
                node.children.remove(*level);
            }
            gone
        }
    }
}

/// Topic names (levels split at `/`), each held with the values
/// registered under it, walked by a filter ([`NameTrie::matching`]): a
/// new wildcard filter finds the names it matches by visiting only the
/// branches its levels allow (`sensors/+/temp` never enters `fleet/…`),
/// so its cost grows with the names it matches and their depth, not with
/// every name held. The names themselves sit one after the other in one
/// string the trie's leaves point into: a match hands out the stored name
/// (no rebuilding from levels), and the filter `#`, which matches every
/// name, reads them front to back instead of chasing the trie
/// (BENCHMARKS.md, "Retained messages of free-form topics").
#[derive(Debug)]
pub struct NameTrie<V> {
    root: NameNode,
    /// Every (end of its name in `text`, value) held, in insertion order;
    /// a name starts where the one before it ends. Leaves index this.
    names: Vec<(u32, V)>,
    /// The names, back to back.
    text: String,
}

#[derive(Debug, Default)]
struct NameNode {
    children: FastHashMap<Box<str>, NameNode>,
    /// Indices into [`NameTrie::names`] of the name ending exactly here.
    here: Vec<u32>,
}

impl<V> Default for NameTrie<V> {
    fn default() -> Self {
        NameTrie {
            root: NameNode::default(),
            names: Vec::new(),
            text: String::new(),
        }
    }
}

impl<V: Copy + PartialEq> NameTrie<V> {
    /// (name, value) pairs held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The `i`th (name, value) held.
    fn entry(&self, i: usize) -> (&str, V) {
        let start = match i {
            0 => 0,
            _ => self.names[i - 1].0 as usize,
        };
        let (end, v) = self.names[i];
        (&self.text[start..end as usize], v)
    }

    /// Whether `value` is held under `name`.
    pub fn contains(&self, name: &str, value: V) -> bool {
        let mut node = &self.root;
        for level in name.split('/') {
            match node.children.get(level) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.here.iter().any(|&i| self.names[i as usize].1 == value)
    }

    /// Holds `value` under the topic name `name`; true when it was not
    /// (false too, and nothing held, past 4 GiB of names).
    pub fn insert(&mut self, name: &str, value: V) -> bool {
        let (Ok(index), Ok(end)) = (
            u32::try_from(self.names.len()),
            u32::try_from(self.text.len() + name.len()),
        ) else {
            return false;
        };
        let mut node = &mut self.root;
        for level in name.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if node.here.iter().any(|&i| self.names[i as usize].1 == value) {
            return false;
        }
        node.here.push(index);
        self.text.push_str(name);
        self.names.push((end, value));
        true
    }

    /// Calls `f` with every (name, value) whose name the valid plain
    /// filter `filter` matches (a filter starting with a wildcard skips
    /// names starting with `$`, [MQTT-4.7.2-1]).
    pub fn matching(&self, filter: &str, mut f: impl FnMut(&str, V)) {
        if filter == "#" {
            let mut start = 0;
            for &(end, v) in &self.names {
                let name = &self.text[start..end as usize];
                if !name.starts_with('$') {
                    f(name, v);
                }
                start = end as usize;
            }
            return;
        }
        let levels: Vec<&str> = filter.split('/').collect();
        let mut found = |i: u32| {
            let (name, v) = self.entry(i as usize);
            f(name, v)
        };
        walk_names(&self.root, &levels, true, &mut found);
    }
}

fn walk_names(node: &NameNode, levels: &[&str], root: bool, f: &mut impl FnMut(u32)) {
    let Some((level, rest)) = levels.split_first() else {
        node.here.iter().for_each(|&i| f(i));
        return;
    };
    let system = |name: &str| root && name.starts_with('$');
    match *level {
        "#" => {
            if !root {
                // `a/#` matches `a` itself.
                node.here.iter().for_each(|&i| f(i));
            }
            for (name, child) in &node.children {
                if !system(name) {
                    all_names(child, f);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if !system(name) {
                    walk_names(child, rest, false, f);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                walk_names(child, rest, false, f);
            }
        }
    }
}

fn all_names(node: &NameNode, f: &mut impl FnMut(u32)) {
    node.here.iter().for_each(|&i| f(i));
    for child in node.children.values() {
        all_names(child, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surepush_proto::topic::topic_matches;

    fn matched(t: &FilterTrie<u32>, name: &str) -> Vec<u32> {
        let mut out = Vec::new();
        t.matches(name, |v| out.push(v));
        out.sort_unstable();
        out
    }

    #[test]
    fn matches_as_topic_matches_does() {
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/+/c", "+/b/#", "a/b/c", "/#", "+/+", "a//c", "$SYS/#",
            "+/x",
        ];
        let mut t = FilterTrie::default();
        for (i, f) in filters.iter().enumerate() {
            assert!(t.insert(f, i as u32));
        }
        assert_eq!(t.filters(), filters.len());
        for name in [
            "a", "a/b", "a/b/c", "a/b/c/d", "/", "/x", "a//c", "b/b", "$SYS/x", "$SYS", "x",
        ] {
            let want: Vec<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| topic_matches(f, name))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(matched(&t, name), want, "{name}");
        }
    }

    #[test]
    fn counts_registrations_and_drops_empty_nodes() {
        let mut t = FilterTrie::default();
        assert!(t.insert("a/+/c", 1u32));
        assert!(!t.insert("a/+/c", 1));
        assert!(!t.insert("a/+/c", 2));
        assert!(t.contains("a/+/c") && !t.contains("a/+"));
        assert!(!t.remove("a/+/c", 1));
        assert!(t.remove("a/+/c", 1));
        assert_eq!(matched(&t, "a/b/c"), vec![2]);
        assert!(t.remove("a/+/c", 2));
        assert!(!t.remove("a/+/c", 2));
        assert_eq!(t.filters(), 0);
        assert!(t.root.is_empty());
        assert!(t.insert("x/#", 3));
        assert!(t.remove("x/#", 3));
        assert!(t.root.is_empty());
    }

    #[test]
    fn names_walked_by_a_filter_are_those_topic_matches_matches() {
        let names = [
            "a", "a/b", "a/b/c", "a/b/c/d", "/", "/x", "a//c", "b/b", "x", "a/", "$SYS/x", "$SYS",
        ];
        let mut t = NameTrie::default();
        for (i, n) in names.iter().enumerate() {
            assert!(t.insert(n, i as u32));
        }
        assert!(!t.insert("a/b", 1));
        assert_eq!(t.len(), names.len());
        assert!(t.contains("a/b", 1) && !t.contains("a/b", 2) && !t.contains("a/b/x", 1));
        for filter in [
            "#",
            "+",
            "a",
            "a/#",
            "a/+",
            "a/+/c",
            "+/b/#",
            "a/b/c",
            "/#",
            "+/+",
            "a//c",
            "$SYS/#",
            "+/x",
            "$SYS/+",
            "q/#",
            "a/b/c/d/#",
        ] {
            let mut got = Vec::new();
            t.matching(filter, |name, v| {
                assert_eq!(name, names[v as usize], "{filter}: name rebuilt");
                got.push(v);
            });
            got.sort_unstable();
            let want: Vec<u32> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| topic_matches(filter, n))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(got, want, "{filter}");
        }
    }
}
