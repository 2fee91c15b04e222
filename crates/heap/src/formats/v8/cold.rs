//! Columns an analysis reads for a few thousand objects only — node ids and
//! names, edge types and names — are not kept in memory: they stay in the
//! mapped file and are read back on demand through a sparse index of where
//! every `BLOCK`-th node and strong edge starts. Kept in memory they were a
//! third of the graph, and without them a snapshot is analysed in less memory
//! than its file takes.

/// One index entry per this many nodes, raw edges and strong edges: a lookup
/// reads at most this many records (a few hundred numbers) before its own.
pub const BLOCK: usize = 64;

/// The numbers of an array the full scan has already checked, from a byte
/// offset on. Still never panics: a shorter file simply ends the numbers.
pub struct Numbers<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Numbers<'a> {
    pub fn at(data: &'a [u8], pos: u64) -> Self {
        Numbers { data, pos: pos as usize }
    }

    /// Steps over `count` numbers without reading them: each one ends at its
    /// comma, and memchr finds commas far faster than digits are read.
    pub fn skip_numbers(mut self, count: usize) -> Self {
        if count > 0 {
            let rest = self.data.get(self.pos..).unwrap_or_default();
            self.pos = match memchr::memchr_iter(b',', rest).nth(count - 1) {
                Some(comma) => self.pos + comma + 1,
                None => self.data.len(),
            };
        }
        self
    }
}

impl Iterator for Numbers<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let data = self.data;
        let mut p = self.pos;
        while let Some(b' ' | b'\n' | b'\r' | b'\t' | b',') = data.get(p) {
            p += 1;
        }
        let start = p;
        let value;
        (value, self.pos) = super::scan::read_digits(data, p);
        (self.pos > start).then_some(value)
    }
}

/// Where the cold columns are in the file, and how to read them.
pub struct ColdIndex {
    /// Byte offset of the first number of node `b * BLOCK`.
    pub node_at: Vec<u64>,
    /// Byte offset of the first number of raw edge `b * BLOCK` (weak ones included).
    pub raw_edge_at: Vec<u64>,
    /// Raw edge index of strong edge `b * BLOCK`.
    pub strong_raw: Vec<u64>,
    /// How many raw edges leave the root (the only node whose shortcuts retain).
    pub root_raw_edges: u64,
    pub node_fields: usize,
    pub node_id_field: usize,
    pub node_name_field: usize,
    pub edge_fields: usize,
    pub edge_type_field: usize,
    pub edge_name_field: usize,
    pub weak: u8,
    pub shortcut: u8,
}

impl ColdIndex {
    /// One field of one node.
    pub fn node_field(&self, data: &[u8], node: u32, field: usize) -> Option<u64> {
        let at = *self.node_at.get(node as usize / BLOCK)?;
        Numbers::at(data, at).skip_numbers((node as usize % BLOCK) * self.node_fields + field).next()
    }

    /// One field of every node, in node order (one pass over the nodes array).
    pub fn every_node_field(&self, data: &[u8], nodes: usize, field: usize) -> Vec<u64> {
        let Some(&at) = self.node_at.first() else { return Vec::new() };
        let fields = self.node_fields.max(1);
        Numbers::at(data, at).skip(field).step_by(fields).take(nodes).collect()
    }

    /// `(type, name_or_index)` of the strong edges numbered `range` (the
    /// graph's CSR order), read from the raw edges with the weak ones skipped
    /// exactly as the graph skipped them.
    pub fn strong_edges(&self, data: &[u8], range: std::ops::Range<usize>) -> Vec<(u8, u64)> {
        let mut out = Vec::with_capacity(range.len().min(1 << 16));
        if range.is_empty() {
            return out;
        }
        let block = range.start / BLOCK;
        let Some(&first_raw) = self.strong_raw.get(block) else { return out };
        let Some(&at) = self.raw_edge_at.get(first_raw as usize / BLOCK) else { return out };
        let fields = self.edge_fields;
        let mut numbers = Numbers::at(data, at).skip_numbers((first_raw as usize % BLOCK) * fields);
        let (mut raw, mut strong) = (first_raw, block * BLOCK);
        let mut values = [0u64; 16];
        while strong < range.end {
            for value in values.iter_mut().take(fields) {
                match numbers.next() {
                    Some(v) => *value = v,
                    None => return out,
                }
            }
            let kind = values[self.edge_type_field] as u8;
            let retains = kind != self.weak && (kind != self.shortcut || raw < self.root_raw_edges);
            raw += 1;
            if retains {
                if strong >= range.start {
                    out.push((kind, values[self.edge_name_field]));
                }
                strong += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_skip_commas_and_white_space_and_stop_at_the_end() {
        let data = b"[1,22,\n 333 ,4]";
        assert_eq!(Numbers::at(data, 1).collect::<Vec<_>>(), vec![1, 22, 333, 4]);
        assert_eq!(Numbers::at(data, 3).nth(1), Some(333));
        assert_eq!(Numbers::at(data, 100).next(), None);
        assert_eq!(Numbers::at(data, 1).skip_numbers(2).next(), Some(333));
        assert_eq!(Numbers::at(data, 1).skip_numbers(0).next(), Some(1));
        assert_eq!(Numbers::at(data, 1).skip_numbers(9).next(), None);
    }
}
