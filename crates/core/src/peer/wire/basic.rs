//! Encodings of the plain values messages are made of: integers, flags,
//! bytes, text, options, lists and pairs.

use bytes::{BufMut, Bytes, BytesMut};

use super::{PeerWireError, Reader, Wire};

impl Wire for u8 {
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(*self);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(r.array::<1>()?[0])
    }
}

impl Wire for u16 {
    fn put(&self, out: &mut BytesMut) {
        out.put_u16_le(*self);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(u16::from_le_bytes(r.array()?))
    }
}

impl Wire for u32 {
    fn put(&self, out: &mut BytesMut) {
        out.put_u32_le(*self);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(u32::from_le_bytes(r.array()?))
    }
}

impl Wire for u64 {
    fn put(&self, out: &mut BytesMut) {
        out.put_u64_le(*self);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok(u64::from_le_bytes(r.array()?))
    }
}

impl Wire for bool {
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(u8::from(*self));
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(PeerWireError::Invalid("bool")),
        }
    }
}

impl Wire for Bytes {
    fn put(&self, out: &mut BytesMut) {
        let len = u32::try_from(self.len()).expect("a message part fits a frame (< 4 GiB)");
        len.put(out);
        out.put_slice(self);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        let len = u32::get(r)? as usize;
        r.take(len)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, out: &mut BytesMut) {
        match self {
            None => out.put_u8(0),
            Some(v) => {
                out.put_u8(1);
                v.put(out);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            _ => Err(PeerWireError::Invalid("option tag")),
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, out: &mut BytesMut) {
        let n = u32::try_from(self.len()).expect("a list in a message has < 2^32 items");
        n.put(out);
        for v in self {
            v.put(out);
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        let n = r.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::get(r)?);
        }
        Ok(out)
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, out: &mut BytesMut) {
        self.0.put(out);
        self.1.put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        Ok((A::get(r)?, B::get(r)?))
    }
}

/// UTF-8 text: as bytes, checked on decode.
impl Wire for String {
    fn put(&self, out: &mut BytesMut) {
        Bytes::copy_from_slice(self.as_bytes()).put(out);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        let bytes = Bytes::get(r)?;
        std::str::from_utf8(&bytes)
            .map(str::to_owned)
            .map_err(|_| PeerWireError::Invalid("text"))
    }
}
