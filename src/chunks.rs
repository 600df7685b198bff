//! The geometry of the slot array and where its memory comes from.
//!
//! Slots live in chunks of doubling size reached through a fixed array of
//! chunk pointers: chunk 0 covers fd numbers `0..1024`, chunk `k >= 1` covers
//! `1024 << (k-1) .. 1024 << k`. A chunk is allocated the first time a number
//! in its range is tracked and is never freed while the table lives.

use std::io;
#[cfg(fdtable_loom)]
use std::ptr;

use crate::slot::Slot;
#[cfg(not(fdtable_loom))]
use crate::sys;

#[cfg(not(fdtable_loom))]
pub(crate) const BASE_SHIFT: u32 = 10;
#[cfg(fdtable_loom)]
pub(crate) const BASE_SHIFT: u32 = 2;
pub(crate) const CHUNKS: usize = 32;

/// Which chunk holds `fd`, and where inside it.
pub(crate) fn locate(fd: usize) -> (usize, usize) {
    let hi = fd >> BASE_SHIFT;
    if hi == 0 {
        (0, fd)
    } else {
        let k = (usize::BITS - hi.leading_zeros()) as usize;
        (k, fd - chunk_base(k))
    }
}

pub(crate) fn chunk_base(k: usize) -> usize {
    if k == 0 {
        0
    } else {
        1 << (BASE_SHIFT as usize + k - 1)
    }
}

pub(crate) fn chunk_len(k: usize) -> usize {
    if k == 0 {
        1 << BASE_SHIFT
    } else {
        1 << (BASE_SHIFT as usize + k - 1)
    }
}

/// Chunks come straight from anonymous `mmap`, not the heap: their pages are
/// zero until first written, and written only through slot CASes. `fork`
/// copies a threaded parent's memory page by page while other threads run;
/// with heap memory a child could see a fresh chunk pointer next to stale
/// bytes from before the chunk was zeroed, and read them as published
/// numbers. An untouched anonymous page can only ever read as zero, and a
/// VMA created by `mmap` is either wholly in the child or not at all.
#[cfg(not(fdtable_loom))]
pub(crate) fn alloc_chunk(len: usize) -> io::Result<*mut Slot> {
    let bytes = len
        .checked_mul(std::mem::size_of::<Slot>())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // All-zero bytes are valid `Slot`s holding `Word::FREE`, and the
    // mapping is aligned to a page, more than a `Slot` needs.
    Ok(sys::map_zeroed(bytes)?.cast::<Slot>())
}

/// # Safety
/// `ptr` must come from `alloc_chunk(len)` and not be used afterwards.
#[cfg(not(fdtable_loom))]
pub(crate) unsafe fn free_chunk(ptr: *mut Slot, len: usize) {
    // SAFETY: guaranteed by the caller: the mapping of exactly this size.
    unsafe { sys::unmap(ptr.cast(), len * std::mem::size_of::<Slot>()) };
}

#[cfg(fdtable_loom)]
pub(crate) fn alloc_chunk(len: usize) -> io::Result<*mut Slot> {
    let slots: Box<[Slot]> = (0..len).map(|_| Slot::new()).collect();
    Ok(Box::into_raw(slots).cast::<Slot>())
}

/// # Safety
/// `ptr` must come from `alloc_chunk(len)` and not be used afterwards.
#[cfg(fdtable_loom)]
pub(crate) unsafe fn free_chunk(ptr: *mut Slot, len: usize) {
    // SAFETY: guaranteed by the caller.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr, len)) });
}

#[cfg(all(test, not(fdtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_fd_space_without_gaps() {
        let mut expected = 0usize;
        for k in 0..23 {
            assert_eq!(chunk_base(k), expected, "chunk {k}");
            assert_eq!(locate(chunk_base(k)), (k, 0));
            assert_eq!(
                locate(chunk_base(k) + chunk_len(k) - 1),
                (k, chunk_len(k) - 1)
            );
            expected += chunk_len(k);
        }
        assert!(locate(i32::MAX as usize).0 < CHUNKS);
    }
}
