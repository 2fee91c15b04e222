//! A bounds-checked cursor over the dump bytes. Every read says where it
//! failed; no length from the file is trusted before it is checked against
//! the bytes that remain.

use crate::HeapError;

pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    id_size: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8], pos: usize, id_size: usize) -> Self {
        Cursor { data, pos, id_size }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HeapError> {
        if n > self.remaining() {
            return Err(HeapError::Truncated { offset: self.pos as u64, what });
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), HeapError> {
        self.take(n, what).map(|_| ())
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, HeapError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, HeapError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, HeapError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, HeapError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn id(&mut self, what: &'static str) -> Result<u64, HeapError> {
        let b = self.take(self.id_size, what)?;
        Ok(read_id(b, self.id_size))
    }

}

/// Reads a big-endian identifier of 4 or 8 bytes.
#[inline]
pub fn read_id(b: &[u8], id_size: usize) -> u64 {
    if id_size == 4 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
    } else {
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}
