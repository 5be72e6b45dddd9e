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

/// The median over runs of the slowest party's time: `per_party[p][i]` is party p's time in
/// run i (all parties have the same number of runs; 0.0 for none).
pub fn median_of_slowest(per_party: &[&[f64]]) -> f64 {
    let runs = per_party.iter().map(|t| t.len()).min().unwrap_or(0);
    let mut slowest: Vec<f64> = (0..runs).map(|i| per_party.iter().map(|t| t[i]).fold(0.0, f64::max)).collect();
    slowest.sort_by(f64::total_cmp);
    slowest.get(slowest.len() / 2).copied().unwrap_or(0.0)
}
