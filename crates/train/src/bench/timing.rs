//! Timing helpers: warm up, then take the median of repeated runs.

use std::time::Instant;

/// Median wall-clock milliseconds of `f` over `runs` runs, after one warm-up run.
pub fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A number of repetitions that keeps one measurement near `budget_ms`, given one run's time.
pub fn runs_for(one_run_ms: f64, budget_ms: f64) -> usize {
    ((budget_ms / one_run_ms.max(1e-3)) as usize).clamp(3, 51)
}
