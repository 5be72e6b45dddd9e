//! `pond bench infer --plot FILE` (and `pond bench results`) draw ms per batch against batch
//! size: an SVG with one line per net and ring, a marker per measured batch size, and a legend.
//! The test measures two batch sizes of net A on Z64 and checks that the picture shows them:
//! log axes put the larger batch to the right and the slower case higher up.

use pond_train::bench::infer::{plot, run};
use pond_train::mnist::infer::RingChoice;
use pond_train::mnist::{self, Net};

/// The values of the attribute `name="..."` of every `<tag ...>` element in `svg`.
fn attributes(svg: &str, tag: &str, name: &str) -> Vec<String> {
    let open = format!("<{tag} ");
    let key = format!(" {name}=\"");
    svg.split(&open)
        .skip(1)
        .filter_map(|element| {
            let element = format!(" {}", &element[..element.find('>')?]);
            let start = element.find(&key)? + key.len();
            Some(element[start..start + element[start..].find('"')?].to_string())
        })
        .collect()
}

#[test]
fn the_plot_draws_each_measured_batch_size() {
    let data = mnist::load_test(&mnist::default_data_dir()).expect("data/mnist");
    let reports = run(&[Net::A], &[RingChoice::Z64], &[1, 10], true, &data, &mnist::default_model_dir(), |_| {})
        .expect("benchmark");
    assert_eq!(reports.len(), 2);
    let dir = std::env::temp_dir().join(format!("pond-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("runtime.svg");
    plot(&reports, &path).expect("plot");
    let svg = std::fs::read_to_string(&path).expect("plot written");
    let _ = std::fs::remove_dir_all(&dir);

    assert!(svg.trim_start().starts_with("<svg"), "not an SVG: {}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"), "the SVG is not closed");
    for text in ["net A z64", "batch size", "ms per batch"] {
        assert!(svg.contains(text), "the plot lacks the text {text:?}");
    }
    // One line through the two measurements: the axes, ticks and the legend's sample line are
    // two-point polylines too, but vertical or horizontal ones.
    let lines: Vec<Vec<(f64, f64)>> = attributes(&svg, "polyline", "points")
        .iter()
        .map(|points| {
            points
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect()
        })
        .filter(|p: &Vec<(f64, f64)>| p.len() == 2 && p[0].0 != p[1].0 && p[0].1 != p[1].1)
        .collect();
    assert_eq!(lines.len(), 1, "expected one data line, found {lines:?}");
    let (small, large) = (lines[0][0], lines[0][1]);
    assert!(large.0 > small.0, "batch 10 is drawn right of batch 1: {small:?} {large:?}");
    let slower_is_higher = (reports[1].ms_per_batch > reports[0].ms_per_batch) == (large.1 < small.1);
    assert!(
        slower_is_higher,
        "{} vs {} ms drawn at heights {small:?} {large:?}",
        reports[0].ms_per_batch, reports[1].ms_per_batch
    );
    // Markers: a circle per measurement, at the line's points.
    let circles: Vec<(f64, f64)> = attributes(&svg, "circle", "cx")
        .iter()
        .zip(attributes(&svg, "circle", "cy"))
        .map(|(x, y)| (x.parse().expect("cx"), y.parse().expect("cy")))
        .collect();
    assert_eq!(circles, vec![small, large], "markers at the measured points");
}
