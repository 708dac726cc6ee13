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
}
