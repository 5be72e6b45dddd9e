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

/// How long mimalloc keeps freed memory mapped before returning it to the system, unless
/// `MIMALLOC_PURGE_DELAY` is set in the environment.
///
/// With mimalloc's default (1 s) a private inference keeps faulting in and zeroing fresh pages:
/// in `pond infer --net S --ring z64 --batch 100`, about 860 page faults per batch in steady
/// state, none with 10 s; in the int100 run of net S, page clearing and memset were 15% of the
/// parties' CPU. With 10 s, net S int100 at batch 100 took 121.9 against 134.4 ms per batch and
/// 121.2 against 125.6 ms in two alternations (medians, same minutes; a third was level, 124.8
/// against 122.0), and batch 1000 took 1254 / 1286 ms against 1403 / 1434 ms. The cost is memory
/// held for longer: that run's peak RSS was 1.47-1.53 GiB against 1.37 GiB. Net A at batch 100
/// was level. (Inference without caches, `Sequential::infer`, later brought the peak of that run
/// down to 1.08 GiB.)
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// `mi_option_purge_delay` in `mi_option_e` (mimalloc.h, the 16th option in v2 and v3), which
/// libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets [`PURGE_DELAY_MS`] unless the environment chooses a purge delay itself.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an integer option, which mimalloc reads atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 is the purge delay: its value follows `MIMALLOC_PURGE_DELAY` when the
    /// environment sets it (the allocator reads the environment on first use), and is
    /// [`PURGE_DELAY_MS`] after tuning otherwise.
    #[test]
    fn tuning_sets_the_purge_delay() {
        // SAFETY: mi_option_get only reads an integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        match std::env::var("MIMALLOC_PURGE_DELAY").ok().and_then(|v| v.parse::<std::ffi::c_long>().ok()) {
            Some(from_env) => {
                tune_allocator();
                assert_eq!(get(), from_env);
            }
            None => {
                assert_eq!(get(), 1000, "mimalloc's documented default purge delay");
                tune_allocator();
                assert_eq!(get(), PURGE_DELAY_MS);
            }
        }
    }
}
