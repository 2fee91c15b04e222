//! One front end per dump format; each builds an [`crate::graph::ObjectGraph`].

pub mod hprof;
pub mod v8;

/// Which front end reads these bytes (by their first bytes, not the file name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Hprof,
    V8,
}

pub fn sniff(data: &[u8]) -> Option<Format> {
    if data.starts_with(b"JAVA PROFILE") {
        return Some(Format::Hprof);
    }
    let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &data[start..];
    if rest.first() == Some(&b'{') {
        let head = &rest[1..rest.len().min(64)];
        let key = head.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &head[i..]).unwrap_or(&[]);
        // A prefix counts too: a snapshot cut short should say it is truncated, not foreign.
        let cut = key.len() < 10 && !key.is_empty();
        if key.starts_with(b"\"snapshot\"") || (cut && b"\"snapshot\"".starts_with(key)) {
            return Some(Format::V8);
        }
    }
    None
}
