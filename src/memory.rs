//! Giving freed memory back to the system.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn malloc_trim(pad: usize) -> i32;
}

/// Returns the heap's free pages to the system. Loading a model frees tens of MB of temporaries
/// (the parsed protobuf, tract's intermediate graphs, the engine `auto` timed and dropped) that
/// glibc otherwise keeps mapped for the life of the process: on a 512 MB Pi Zero 2, memory the
/// other programs never get back. A no-op elsewhere (musl returns memory by itself).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; any pad is valid.
    unsafe {
        malloc_trim(0);
    }
}
