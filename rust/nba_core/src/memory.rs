//! Giving freed memory back to the system between the stages of a call.
//!
//! A run frees large amounts at a few points (the history's read chunks once indexed, the
//! per-batch candidate vectors once merged, the per-call indexes before the caps are settled).
//! glibc keeps memory freed inside its per-thread arenas resident, so without help the next
//! stage's allocations come on top of it and the peak is the sum of the stages. On
//! `bank-10m` that was 0.6 GB of a 2.7 GB peak (README.md, "Speed").

/// Returns whole free pages of every malloc arena to the system (glibc's `malloc_trim`);
/// elsewhere a no-op (other allocators return freed memory themselves, or the cost is theirs).
pub(crate) fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers and only releases pages of free chunks; it is
    // thread-safe (it locks each arena in turn).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Asks the CPU to start loading `slice[index]` into the cache (a hint: it changes no value,
/// and an index out of range is ignored). For loops that know which scattered element they
/// will read a few iterations ahead, so that the miss overlaps the work in between.
#[inline(always)]
pub(crate) fn prefetch<T>(slice: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = slice.get(index) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        #[allow(unsafe_code)]
        // SAFETY: the pointer is to a live element of `slice`; a prefetch reads nothing into
        // the program's state and cannot fault.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, index);
}
