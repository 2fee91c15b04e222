//! A forward-only JSON scanner over the mapped snapshot: just enough JSON for
//! the snapshot's top level (keys, arrays of unsigned integers, arrays of
//! strings, values to skip). Every failure names the byte offset.

use crate::HeapError;

pub struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Progress is reported every this many bytes.
const REPORT_EVERY: usize = 4 << 20;

#[inline]
fn skip_ws(data: &[u8], mut p: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = data.get(p) {
        p += 1;
    }
    p
}

/// The run of ASCII digits at `p` as a number and where it ends. Wraps only
/// past 19 digits, which callers refuse by the run's length.
#[inline]
pub fn read_digits(data: &[u8], mut p: usize) -> (u64, usize) {
    let mut value: u64 = 0;
    while let Some(&b) = data.get(p) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(digit as u64);
        p += 1;
    }
    (value, p)
}

impl<'a> Scanner<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Scanner { data, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.data.len());
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn unexpected(&self, at: usize, what: &'static str) -> HeapError {
        match self.data.get(at) {
            None => HeapError::Truncated { offset: at as u64, what },
            Some(&b) => HeapError::Corrupt { offset: at as u64, reason: format!("expected {what}, found {:?}", b as char) },
        }
    }

    pub fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), HeapError> {
        let p = skip_ws(self.data, self.pos);
        if self.data.get(p) != Some(&byte) {
            return Err(self.unexpected(p, what));
        }
        self.pos = p + 1;
        Ok(())
    }

    /// `"name":` → `name` (raw bytes; the snapshot's keys have no escapes).
    pub fn key(&mut self) -> Result<&'a [u8], HeapError> {
        self.expect(b'"', "a key of the snapshot object")?;
        let (start, len, _) = self.string_body()?;
        self.expect(b':', "':' after a key")?;
        Ok(&self.data[start as usize..start as usize + len as usize])
    }

    /// After a member: `,` (true, another follows) or `}` (false, the object ends).
    pub fn next_member(&mut self) -> Result<bool, HeapError> {
        let p = skip_ws(self.data, self.pos);
        match self.data.get(p) {
            Some(b',') => {
                self.pos = p + 1;
                Ok(true)
            }
            Some(b'}') => {
                self.pos = p + 1;
                Ok(false)
            }
            _ => Err(self.unexpected(p, "',' or '}' after a member of the snapshot object")),
        }
    }

    /// A small value through serde (the `snapshot` header); returns it and where it ends.
    pub fn serde_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<(T, usize), HeapError> {
        let start = skip_ws(self.data, self.pos);
        let mut stream = serde_json::Deserializer::from_slice(&self.data[start..]).into_iter::<T>();
        match stream.next() {
            Some(Ok(value)) => Ok((value, start + stream.byte_offset())),
            Some(Err(e)) if e.is_eof() => Err(HeapError::Truncated { offset: self.data.len() as u64, what: "the \"snapshot\" header" }),
            Some(Err(e)) => Err(HeapError::Corrupt { offset: start as u64, reason: format!("the \"snapshot\" header: {e}") }),
            None => Err(HeapError::Truncated { offset: start as u64, what: "the \"snapshot\" header" }),
        }
    }

    /// The rest of a string whose opening quote was read: (start, length, has escapes); the closing quote is consumed.
    fn string_body(&mut self) -> Result<(u64, u32, bool), HeapError> {
        let start = self.pos;
        let mut p = start;
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.data[p..]) {
                None => return Err(HeapError::Truncated { offset: self.data.len() as u64, what: "the end of a string" }),
                Some(i) if self.data[p + i] == b'\\' => {
                    escaped = true;
                    p += i + 2;
                    if p > self.data.len() {
                        return Err(HeapError::Truncated { offset: self.data.len() as u64, what: "the end of a string" });
                    }
                }
                Some(i) => {
                    let end = p + i;
                    let len = u32::try_from(end - start)
                        .map_err(|_| HeapError::Corrupt { offset: start as u64, reason: "a string longer than 4 GiB".into() })?;
                    self.pos = end + 1;
                    return Ok((start as u64, len, escaped));
                }
            }
        }
    }

    /// `[1,2,3]`: calls `each(value, offset)` per number until it returns false.
    /// Written for speed: snapshots hold tens of millions of these numbers.
    pub fn uint_array(&mut self, reading: &dyn Fn(usize), mut each: impl FnMut(u64, usize) -> bool) -> Result<(), HeapError> {
        self.expect(b'[', "'[' opening an array of numbers")?;
        let data = self.data;
        let mut p = skip_ws(data, self.pos);
        if data.get(p) == Some(&b']') {
            self.pos = p + 1;
            return Ok(());
        }
        let mut next_report = p + REPORT_EVERY;
        loop {
            let start = p;
            let value;
            (value, p) = read_digits(data, p);
            // 16 digits stay exact in a double, which is all V8 writes.
            if p == start || p - start > 16 {
                self.pos = p;
                return Err(if p == start { self.unexpected(p, "an unsigned integer") } else {
                    HeapError::Corrupt { offset: start as u64, reason: "a number with more than 16 digits".into() }
                });
            }
            if !each(value, start) {
                self.pos = p;
                return Ok(());
            }
            p = skip_ws(data, p);
            match data.get(p) {
                Some(b',') => p = skip_ws(data, p + 1),
                Some(b']') => {
                    self.pos = p + 1;
                    reading(self.pos);
                    return Ok(());
                }
                _ => {
                    self.pos = p;
                    return Err(self.unexpected(p, "',' or ']' in an array of numbers"));
                }
            }
            if p >= next_report {
                reading(p);
                next_report = p + REPORT_EVERY;
            }
        }
    }

    /// Steps over `[…]` of numbers to the byte after its `]` without reading
    /// them (a number array holds no brackets; the numbers are read and
    /// checked by whoever reads the array itself).
    pub fn skip_number_array(&mut self) -> Result<(), HeapError> {
        self.expect(b'[', "'[' opening an array of numbers")?;
        match memchr::memchr(b']', &self.data[self.pos..]) {
            Some(i) => {
                self.pos += i + 1;
                Ok(())
            }
            None => Err(HeapError::Truncated { offset: self.data.len() as u64, what: "the end of an array of numbers" }),
        }
    }

    /// `["a","b"]` → where each string's text is (nothing is copied).
    pub fn string_array(&mut self, reading: &dyn Fn(usize)) -> Result<Vec<(u64, u32, bool)>, HeapError> {
        self.expect(b'[', "'[' opening the strings array")?;
        let mut out = Vec::new();
        let mut p = skip_ws(self.data, self.pos);
        if self.data.get(p) == Some(&b']') {
            self.pos = p + 1;
            return Ok(out);
        }
        let mut next_report = p + REPORT_EVERY;
        loop {
            if self.data.get(p) != Some(&b'"') {
                return Err(self.unexpected(p, "a string in the strings array"));
            }
            self.pos = p + 1;
            out.push(self.string_body()?);
            p = skip_ws(self.data, self.pos);
            match self.data.get(p) {
                Some(b',') => p = skip_ws(self.data, p + 1),
                Some(b']') => {
                    self.pos = p + 1;
                    return Ok(out);
                }
                _ => return Err(self.unexpected(p, "',' or ']' in the strings array")),
            }
            if p >= next_report {
                reading(p);
                next_report = p + REPORT_EVERY;
            }
        }
    }

    /// Skips one value of any kind (arrays and objects nested to any depth, iteratively).
    pub fn skip_value(&mut self) -> Result<(), HeapError> {
        let mut depth = 0usize;
        loop {
            let p = skip_ws(self.data, self.pos);
            match self.data.get(p) {
                None => return Err(HeapError::Truncated { offset: p as u64, what: "the end of a value" }),
                Some(b'"') => {
                    self.pos = p + 1;
                    self.string_body()?;
                }
                Some(b'[' | b'{') => {
                    depth += 1;
                    self.pos = p + 1;
                    continue;
                }
                Some(b']' | b'}') if depth > 0 => {
                    depth -= 1;
                    self.pos = p + 1;
                }
                Some(b',' | b':') if depth > 0 => {
                    self.pos = p + 1;
                    continue;
                }
                Some(_) => {
                    // A number, true, false or null: up to the next delimiter.
                    let len = self.data[p..].iter().position(|b| matches!(b, b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t' | b':'));
                    match len {
                        Some(0) => return Err(self.unexpected(p, "a value")),
                        Some(n) => self.pos = p + n,
                        None => return Err(HeapError::Truncated { offset: self.data.len() as u64, what: "the end of a value" }),
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}
