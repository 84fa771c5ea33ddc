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
