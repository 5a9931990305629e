//! What every fuzz target shares: an allocator that turns one oversized allocation into a
//! crash, and the fixed config the model target loads against.
//!
//! libFuzzer's `-malloc_limit_mb` needs the malloc hooks of a sanitizer runtime, which the
//! stable toolchain cannot link, so without this only `-rss_limit_mb` would hold, and only
//! for memory actually touched. A parser that sizes a buffer from a header field must not
//! get past this cap on a few-KiB input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// The largest single allocation a target may make (run.sh passes the same to libFuzzer).
pub const MALLOC_LIMIT: usize = 512 << 20;

pub struct Capped;

impl Capped {
    fn check(size: usize) {
        if size > MALLOC_LIMIT {
            // Formatting would allocate; a fixed message and an abort, which libFuzzer reports
            // as a crash with the input saved.
            let _ = std::io::stderr()
                .write_all(b"\n==fuzz== one allocation over MALLOC_LIMIT (512 MiB)\n");
            std::process::abort();
        }
    }
}

// SAFETY: every call is passed to the system allocator unchanged once the size is checked.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// The config the model target holds weights to (tests/fixtures/tiny).
pub const TINY_CONFIG: &str = include_str!("../../tests/fixtures/tiny/config.yml");
