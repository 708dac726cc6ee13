//! Bounds-checked reading of wire fields.
//!
//! A `Reader` walks a `Bytes` buffer; byte-string fields come back as
//! slices of it (no copy). Every read that would pass the end returns
//! [`WireError::Truncated`].

use bytes::Bytes;

use super::WireError;
use crate::node_id::NodeId;

/// A cursor over one buffer.
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a Bytes) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                needed: n - self.remaining(),
            });
        }
        let buf: &'a Bytes = self.buf;
        let s = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A byte string with a u32 length prefix, as a slice of the input.
    pub fn blob(&mut self) -> Result<Bytes, WireError> {
        let len = self.u32()? as usize;
        self.bytes(len)
    }

    /// The next `len` bytes, as a slice of the input.
    pub fn bytes(&mut self, len: usize) -> Result<Bytes, WireError> {
        let start = self.pos;
        self.take(len)?;
        Ok(self.buf.slice(start..start + len))
    }

    /// Text with a u16 length prefix.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let len = usize::from(self.u16()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| WireError::InvalidUtf8)
    }

    /// Optional text: a presence byte (0 or 1), then the text.
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            tag => Err(WireError::Invalid {
                field: "presence byte",
                reason: format!("{tag} is neither 0 nor 1"),
            }),
        }
    }

    /// A node id (text, validated).
    pub fn node_id(&mut self) -> Result<NodeId, WireError> {
        NodeId::parse(self.str()?).map_err(|e| WireError::Invalid {
            field: "node id",
            reason: e.to_string(),
        })
    }

    /// A count of items that each take at least `min_item` bytes: refused
    /// if the rest of the input cannot hold that many, so a forged count
    /// never makes the decoder reserve memory for items that are not there.
    pub fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(WireError::Invalid {
                field: "item count",
                reason: format!("{n} items cannot fit in {} bytes", self.remaining()),
            });
        }
        Ok(n)
    }

    /// A reader over the next `len` bytes; this reader skips them.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>, WireError> {
        let start = self.pos;
        self.take(len)?;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end: start + len,
        })
    }

    /// Everything left, as a slice of the input.
    pub fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        rest
    }

    /// Checks that nothing is left.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}
