//! Node identity: the name a node registers under and is addressed by.
//!
//! A node id becomes part of NATS subjects (`surepush.node.<id>.req`) and
//! KV keys (`n.<id>`), so it is restricted to characters both accept
//! unescaped: ASCII letters, digits, `_` and `-`, 1 to [`NodeId::MAX_LEN`]
//! bytes. Parsing is the only way to build one, so every `NodeId` in the
//! process is valid.

use std::fmt;
use std::sync::Arc;

/// A validated node name. Cloning shares the string (an atomic increment).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// Empty, or longer than [`NodeId::MAX_LEN`] bytes.
    #[error("a node id has 1 to {max} characters, got {len}", max = NodeId::MAX_LEN)]
    Length {
        /// Length of the rejected string in bytes.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("a node id may hold only ASCII letters, digits, '_' and '-'; found {found:?}")]
    Character {
        /// The first rejected character.
        found: char,
    },
}

impl NodeId {
    /// Longest accepted id, in bytes. Keeps subjects and keys short.
    pub const MAX_LEN: usize = 64;

    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<NodeId, NodeIdError> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(NodeIdError::Length { len: name.len() });
        }
        if let Some(found) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(NodeIdError::Character { found });
        }
        Ok(NodeId(Arc::from(name)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_subject_safe_names() {
        for ok in ["a", "node-1", "eu_west_2", &"x".repeat(NodeId::MAX_LEN)] {
            assert_eq!(NodeId::parse(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn rejects_what_would_break_a_subject_or_key() {
        // A '.' would add a subject token, '*' and '>' are wildcards, a space
        // ends the subject in the NATS protocol.
        for (bad, found) in [
            ("a.b", '.'),
            ("a*", '*'),
            ("a>", '>'),
            ("a b", ' '),
            ("é", 'é'),
        ] {
            assert_eq!(NodeId::parse(bad), Err(NodeIdError::Character { found }));
        }
        assert_eq!(NodeId::parse(""), Err(NodeIdError::Length { len: 0 }));
        let long = "x".repeat(NodeId::MAX_LEN + 1);
        assert_eq!(
            NodeId::parse(&long),
            Err(NodeIdError::Length {
                len: NodeId::MAX_LEN + 1
            })
        );
    }
}
