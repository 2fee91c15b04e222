//! The analysis's big arrays (one number per object or per reference),
//! kept in unlinked temporary files mapped into memory once they are big,
//! instead of in anonymous memory. Like Eclipse MAT's index files: the pages
//! are the kernel's page cache, written back and dropped under memory
//! pressure, so analysing a dump needs far less memory the server cannot give
//! back than the dump is large. A column dropped early (most are) never
//! reaches the disk: its file is gone with it.
//!
//! Written by hand because nothing well-kept offers a typed, growable array
//! over a temporary file that falls back to memory: memmap2 maps, tempfile
//! makes the file, this joins them. The file's blocks are reserved with
//! `posix_fallocate` first, so a full disk means "use memory", never a SIGBUS
//! on a later write through the map.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::RwLock;

/// Columns smaller than this stay in memory (a file and a map cost more than they save).
pub const SPILL_MIN_BYTES: usize = 4 << 20;

/// Where columns go: `None` until set means the system's temporary folder.
static SPILL_DIR: RwLock<Option<Option<PathBuf>>> = RwLock::new(None);

/// Sets the folder big columns are kept in (the server uses its data folder);
/// `None` keeps every column in memory.
pub fn spill_into(dir: Option<PathBuf>) {
    if let Ok(mut setting) = SPILL_DIR.write() {
        *setting = Some(dir);
    }
}

/// Tests that change or depend on the setting take turns.
#[cfg(test)]
pub(crate) static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spill_dir() -> Option<PathBuf> {
    match SPILL_DIR.read().ok().and_then(|s| s.clone()) {
        Some(chosen) => chosen,
        None => Some(std::env::temp_dir()),
    }
}

/// Plain numbers: any bit pattern is a value and zeroed bytes are zero, so
/// the bytes of a mapped file can be seen as a slice of them.
///
/// # Safety
/// Implement only for types without padding, pointers or invalid bit patterns.
pub unsafe trait Plain: Copy + Default + 'static {}
// SAFETY: integers have no padding and every bit pattern is valid.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}

enum Storage<T> {
    Memory(Vec<T>),
    /// `capacity` elements mapped; the file is already unlinked.
    File { map: memmap2::MmapMut, capacity: usize },
}

/// A fixed-capacity-first array: `filled` and `with_capacity` size it once
/// (every caller knows its size up front); `push` past the capacity grows it
/// by a copy, as a Vec would.
pub struct Column<T: Plain> {
    storage: Storage<T>,
    len: usize,
}

impl<T: Plain> Column<T> {
    /// Room for `capacity` elements, none yet.
    pub fn with_capacity(capacity: usize) -> Self {
        match map_file::<T>(capacity) {
            Some(map) => Column { storage: Storage::File { map, capacity }, len: 0 },
            None => Column { storage: Storage::Memory(Vec::with_capacity(capacity)), len: 0 },
        }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> Self {
        match map_file::<T>(len) {
            Some(map) => {
                let mut column = Column { storage: Storage::File { map, capacity: len }, len };
                // The file reads as zeroes: only another value needs writing.
                if !is_zero(&value) {
                    column.fill(value);
                }
                column
            }
            None => Column { storage: Storage::Memory(vec![value; len]), len },
        }
    }

    pub fn push(&mut self, value: T) {
        if let Storage::File { capacity, .. } = self.storage {
            if self.len == capacity {
                let mut bigger = Column::with_capacity((capacity * 2).max(16));
                for &v in self.iter() {
                    bigger.push(v);
                }
                *self = bigger;
            }
        }
        match &mut self.storage {
            Storage::Memory(v) => v.push(value),
            Storage::File { map, capacity } => as_slice_mut::<T>(map, *capacity)[self.len] = value,
        }
        self.len += 1;
    }

    /// Keeps the first `len` elements (the file keeps its size; memory shrinks).
    pub fn truncate(&mut self, len: usize) {
        if let Storage::Memory(v) = &mut self.storage {
            v.truncate(len);
        }
        self.len = self.len.min(len);
    }

    /// Whether the column lives in a file (the tests check where columns went).
    pub fn in_file(&self) -> bool {
        matches!(self.storage, Storage::File { .. })
    }
}

impl<T: Plain> Deref for Column<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Memory(v) => v,
            Storage::File { map, capacity } => &as_slice::<T>(map, *capacity)[..self.len],
        }
    }
}

impl<T: Plain> DerefMut for Column<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let len = self.len;
        match &mut self.storage {
            Storage::Memory(v) => v,
            Storage::File { map, capacity } => &mut as_slice_mut::<T>(map, *capacity)[..len],
        }
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for Column<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Plain> FromIterator<T> for Column<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut column = Column::with_capacity(iter.size_hint().0);
        for v in iter {
            column.push(v);
        }
        column
    }
}

fn is_zero<T: Plain>(value: &T) -> bool {
    // SAFETY: `Plain` types are plain bytes without padding.
    let bytes = unsafe { std::slice::from_raw_parts(value as *const T as *const u8, std::mem::size_of::<T>()) };
    bytes.iter().all(|&b| b == 0)
}

fn as_slice<T: Plain>(map: &memmap2::MmapMut, capacity: usize) -> &[T] {
    // SAFETY: the map holds `capacity` elements' bytes (checked when made), is
    // page-aligned, and `Plain` types accept any bytes.
    unsafe { std::slice::from_raw_parts(map.as_ptr() as *const T, capacity) }
}

fn as_slice_mut<T: Plain>(map: &mut memmap2::MmapMut, capacity: usize) -> &mut [T] {
    // SAFETY: as in `as_slice`; the map is borrowed mutably, so uniquely.
    unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr() as *mut T, capacity) }
}

/// A zeroed, writable map of `capacity` elements in a new unlinked file, or
/// `None` (small, no spill folder, or no room: the caller uses memory).
fn map_file<T: Plain>(capacity: usize) -> Option<memmap2::MmapMut> {
    let bytes = capacity.checked_mul(std::mem::size_of::<T>())?;
    if bytes < SPILL_MIN_BYTES {
        return None;
    }
    let dir = spill_dir()?;
    let file = tempfile::tempfile_in(dir).ok()?;
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own.
    if unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, bytes as libc::off_t) } != 0 {
        return None;
    }
    // SAFETY: the file is ours alone (unlinked, never shared) and sized above.
    let map = unsafe { memmap2::MmapMut::map_mut(&file) }.ok()?;
    (map.len() >= bytes).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_columns_live_in_files_and_behave_like_vectors() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let n = SPILL_MIN_BYTES / 4 + 10;
        let mut filled = Column::<u32>::filled(n, u32::MAX);
        assert!(filled.in_file());
        assert!(filled.iter().all(|&v| v == u32::MAX));
        filled[n - 1] = 7;
        assert_eq!(filled[n - 1], 7);
        assert_eq!(filled.len(), n);

        let mut pushed = Column::<u64>::with_capacity(SPILL_MIN_BYTES / 8);
        assert!(pushed.in_file());
        // Past its capacity it grows, as a Vec.
        for i in 0..(SPILL_MIN_BYTES / 8 + 5) as u64 {
            pushed.push(i * 3);
        }
        assert_eq!(pushed.len(), SPILL_MIN_BYTES / 8 + 5);
        assert!(pushed.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
        pushed.truncate(3);
        assert_eq!(&pushed[..], &[0, 3, 6]);

        let small = Column::<u32>::filled(10, 1);
        assert!(!small.in_file());
        assert_eq!(&small[..], &[1; 10]);

        // No usable folder (gone, read-only, full): memory, not an error.
        spill_into(Some(PathBuf::from("/nonexistent/leakscope-spill")));
        let fallback = Column::<u32>::filled(n, 5);
        spill_into(Some(std::env::temp_dir()));
        assert!(!fallback.in_file() && fallback.len() == n && fallback[n - 1] == 5);
    }
}
