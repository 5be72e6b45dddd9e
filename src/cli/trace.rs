//! `--trace FILE`: protocol operations as a Chrome trace (the tracing spans of
//! `Session::op`, one track per party thread), the portable analogue of tf-encrypted's
//! TensorBoard profiling.

use tracing_subscriber::layer::SubscriberExt;

/// Starts writing the trace; the file is complete when the returned guard is dropped.
pub fn start(path: &std::path::Path) -> tracing_chrome::FlushGuard {
    let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new().file(path).include_args(true).build();
    let subscriber = tracing_subscriber::registry().with(layer);
    // Only fails if a global subscriber is already set, which pond never does elsewhere.
    let _ = tracing::subscriber::set_global_default(subscriber);
    guard
}
