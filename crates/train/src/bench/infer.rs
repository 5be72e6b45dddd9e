//! `pond bench infer`: private inference of nets A-D and S in every ring at batch sizes 1, 10,
//! 100 and 1000, against plaintext inference of the same net and batch in the same run; and the
//! runtime-vs-batch-size plot.

use crate::data::Dataset;
use crate::error::Result;
use crate::mnist::infer::{self, InferConfig, InferReport, RingChoice};
use crate::mnist::Net;
use pond_layers::ReluMode;
use std::path::{Path, PathBuf};

/// Batch sizes of the benchmark.
pub const BATCHES: [usize; 4] = [1, 10, 100, 1000];

/// Images classified per case: enough batches for a stable median, bounded for large batches.
fn images_for(batch: usize, quick: bool) -> usize {
    let batches = match (batch, quick) {
        (_, true) => 2,
        (1, _) => 50,
        (10, _) => 20,
        (100, _) => 5,
        _ => 2,
    };
    batch * batches
}

/// Exact ReLU where the ring has secure comparison (Z64, Z128); the polynomial ReLU on the CRT
/// rings, whose residues the comparison protocol refuses (as tf-encrypted's Pond does there).
pub fn relu_for(ring: RingChoice) -> ReluMode {
    if ring.has_comparison() {
        ReluMode::Exact
    } else {
        ReluMode::Polynomial
    }
}

/// Runs the benchmark over `nets`, `rings` and `batches` on MNIST's `test` set, emitting each
/// report as it is measured.
pub fn run(
    nets: &[Net],
    rings: &[RingChoice],
    batches: &[usize],
    quick: bool,
    test: &Dataset,
    model_dir: &Path,
    mut emit: impl FnMut(&InferReport),
) -> Result<Vec<InferReport>> {
    let mut out = Vec::new();
    for &net in nets {
        for &ring in rings {
            if !ring.has_comparison() && infer::needs_comparison(&net.spec(relu_for(ring))) {
                continue;
            }
            for &batch in batches {
                let cfg = InferConfig {
                    net,
                    ring,
                    relu: relu_for(ring),
                    batch,
                    limit: Some(images_for(batch, quick)),
                    model_dir: model_dir.to_path_buf(),
                    seed: 1,
                    progress: false,
                };
                let report = infer::run(&cfg, test)?;
                emit(&report);
                out.push(report);
            }
        }
    }
    Ok(out)
}

/// Draws ms per batch against batch size (log-log), one line per net and ring, as SVG.
pub fn plot(reports: &[InferReport], path: &PathBuf) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| crate::error::TrainError::Config(format!("plot {}: {e}", path.display()));
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max_ms = reports.iter().map(|r| r.ms_per_batch).fold(1.0, f64::max) * 2.0;
    let min_ms = reports.iter().map(|r| r.ms_per_batch).fold(f64::INFINITY, f64::min).max(1e-3) / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption("pond private inference: ms per batch vs batch size (3 local parties)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.5f64..2000f64).log_scale(), (min_ms..max_ms).log_scale())
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("batch size").y_desc("ms per batch").draw().map_err(|e| err(&e))?;
    let mut keys: Vec<(&str, &str)> = reports.iter().map(|r| (r.net, r.ring)).collect();
    keys.dedup();
    for (i, (net, ring)) in keys.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = reports
            .iter()
            .filter(|r| r.net == *net && r.ring == *ring)
            .map(|r| (r.batch as f64, r.ms_per_batch))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("net {net} {ring}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
