//! The `pond` command line: private machine learning with three-party computation.

mod cli;

use clap::Parser;

/// Keeps freed memory in the process instead of returning it to the kernel.
///
/// Training and inference allocate and free tensors of a few MiB per layer and batch. glibc's
/// defaults serve those with fresh `mmap`s and trim the heap after each free, so every batch
/// page-faults its buffers in again: that was 40% of plaintext training time for net C. A 32 MiB
/// mmap threshold (glibc's maximum) and no trimming make the buffers reusable (1.7x faster).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; it runs first in main, before any
    // other thread exists, and a rejected value leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
