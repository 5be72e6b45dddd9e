//! The `pond` command line: private machine learning with three-party computation.

mod cli;

use clap::Parser;

/// mimalloc instead of the C library's allocator.
///
/// The three parties of a local run are threads that hand each other message buffers: one party
/// allocates a payload, another frees it. glibc's malloc serves such cross-thread frees under the
/// allocating arena's lock, and the parties then wait on each other's locks (futex traffic was
/// a large part of a logistic-regression step, whose tensors are a few hundred bytes). mimalloc
/// frees into per-page lists without a shared lock, and its size-class pages make the many small
/// allocations of a step cheap (`pond train logreg --synthetic 10000x100 --batch 100
/// --frac-bits 16 --epochs 50`: 15.1-15.5 ms per epoch against 21.2-21.3 ms with glibc, same
/// machine and session).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
