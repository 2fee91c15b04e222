//! A global allocator that asks for transparent huge pages on big arrays.
//!
//! Analysis fills a dozen arrays of one entry per object (tens to hundreds
//! of MiB each). With 4 KiB pages the kernel takes one fault per page —
//! measured at a third of the analysis time on a 190 MiB dump. Where the
//! host leaves huge pages to `madvise` (Debian's default), advising the
//! large blocks cuts those faults 512-fold. Everything else is the system
//! allocator's; small blocks are untouched. (The biggest columns of the
//! dominator computation and the Python graph are file-backed maps since
//! `column.rs`, outside any allocator; the HPROF and V8 graphs' arrays are
//! still heap blocks advised here.)

use std::alloc::{GlobalAlloc, Layout, System};

pub struct HugePageAllocator;

/// Blocks at least this big are advised (smaller ones seldom span a 2 MiB page).
const ADVISE_FROM: usize = 8 << 20;
const HUGE_PAGE: usize = 2 << 20;

fn advise(ptr: *mut u8, size: usize) {
    if ptr.is_null() || size < ADVISE_FROM {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside a block we just got from the system
        // allocator; MADV_HUGEPAGE changes no contents and failure is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; `advise` only adds a hint.
unsafe impl GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ptr = unsafe { System.realloc(ptr, layout, new_size) };
        advise(ptr, new_size);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}
