//! `pond bench results`: regenerates docs/results.md (accuracy and KL of private inference for
//! nets A-D, exact and polynomial ReLU, Z64 and int100; runtime against batch size; int64 vs
//! int100, and pond with tf-encrypted's own moduli) next to tf-encrypted's published numbers,
//! and its plot.

use super::infer as bench_infer;
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::mnist::infer::{self, InferConfig, InferReport, RingChoice};
use crate::mnist::Net;
use pond_layers::ReluMode;
use std::fmt::Write;
use std::path::Path;

/// tf-encrypted's published accuracy (TF plaintext, Pond private) and KL for nets A-C.
const TFE: [(&str, f64, f64, f64); 3] =
    [("A", 97.35, 97.18, 0.0065), ("B", 99.26, 99.00, 0.2086), ("C", 99.44, 99.41, 0.2311)];
/// tf-encrypted's published Pond time for 100 inferences (ms).
const TFE_MS_100: [(&str, f64); 3] = [("A", 14.0), ("B", 126.0), ("C", 124.0)];
/// tf-encrypted int100 times measured on this machine kind (net, batch, ms).
const TFE_INT100: [(&str, usize, f64); 5] =
    [("A", 1, 15.8), ("A", 100, 107.8), ("A", 1000, 957.0), ("S", 1, 43.9), ("S", 100, 1459.0)];

fn accuracy_rows(
    test: &Dataset,
    model_dir: &Path,
    limit: Option<usize>,
    log: &mut impl FnMut(&str),
) -> Result<Vec<InferReport>> {
    let mut out = Vec::new();
    for net in [Net::A, Net::B, Net::C, Net::D] {
        for (relu, ring) in [
            (ReluMode::Exact, RingChoice::Z64),
            (ReluMode::Polynomial, RingChoice::Z64),
            (ReluMode::Polynomial, RingChoice::Int100),
        ] {
            if infer::load_model(net, relu, model_dir).is_err() {
                log(&format!("net {}: no trained model in {}, skipped", net.name(), model_dir.display()));
                continue;
            }
            if !ring.has_comparison() && infer::needs_comparison(&net.spec(relu)) {
                log(&format!("net {}: max-pooling needs secure comparison, which int100 lacks; skipped", net.name()));
                continue;
            }
            let cfg = InferConfig {
                net,
                ring,
                relu,
                batch: 100,
                limit,
                model_dir: model_dir.to_path_buf(),
                seed: 1,
                progress: false,
            };
            let r = infer::run(&cfg, test)?;
            log(&serde_json::to_string(&r).unwrap_or_default());
            out.push(r);
        }
    }
    Ok(out)
}

/// Runs every measurement on MNIST's `test` set and writes `{out_dir}/results.md` and
/// `{out_dir}/runtime.svg`.
/// `limit` restricts the accuracy runs to the first images of the test set (full set if `None`).
pub fn run(
    test: &Dataset,
    model_dir: &Path,
    out_dir: &Path,
    limit: Option<usize>,
    mut log: impl FnMut(&str),
) -> Result<()> {
    let accuracy = accuracy_rows(test, model_dir, limit, &mut log)?;
    let mut timing = Vec::new();
    bench_infer::run(
        &[Net::A, Net::S],
        &[RingChoice::Z64, RingChoice::Int100, RingChoice::Crt10],
        &bench_infer::BATCHES,
        false,
        test,
        model_dir,
        |r| {
            log(&serde_json::to_string(r).unwrap_or_default());
            timing.push(r.clone())
        },
    )?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| TrainError::Config(format!("cannot create {}: {e}", out_dir.display())))?;
    bench_infer::plot(&timing, &out_dir.join("runtime.svg"))?;

    let mut md = String::new();
    let images = accuracy.first().map(|r| r.images).unwrap_or(0);
    let _ = writeln!(md, "# pond results: private MNIST inference\n");
    let _ = writeln!(md, "Regenerate with `cargo run --release -- bench results --out docs` (three local parties on one 2-core machine; times are medians of a shared, noisy machine). Networks: see `crates/train/src/mnist/nets.rs`.\n");
    let _ = writeln!(md, "Machine: {}.\n", pond_core::cpu::describe_machine());
    let _ = writeln!(md, "## Accuracy and KL divergence ({images} test images, batch 100)\n");
    let _ = writeln!(md, "| net | ReLU | ring | plaintext acc. (same ReLU) | private acc. | agreement | KL(plain ‖ private) | max abs logit error |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for r in &accuracy {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2}% | {:.2}% | {:.2}% | {:.2e} | {:.3} |",
            r.net,
            r.relu,
            r.ring,
            100.0 * r.accuracy_plain,
            100.0 * r.accuracy_private,
            100.0 * r.agreement,
            r.kl,
            r.max_abs_err
        );
    }
    let _ = writeln!(md, "\nPlaintext accuracy of the trained networks with exact ReLU: {}.\n", {
        let mut seen = Vec::new();
        for r in accuracy.iter().filter(|r| r.relu == "exact") {
            seen.push(format!("{} {:.2}%", r.net, 100.0 * r.accuracy_plain_exact));
        }
        seen.join(", ")
    });
    for net in [Net::A, Net::B, Net::C, Net::D] {
        if !accuracy.iter().any(|r| r.net == net.name()) {
            let _ = writeln!(
                md,
                "Net {} has no trained model in `models/` yet: train it with `cargo run --release -- train mnist --net {}`, then rerun.\n",
                net.name(),
                net.name()
            );
        }
    }
    let _ = writeln!(md, "int100 is pond's CRT ring over five primes just below 2^21 (M about 2^104.9), chosen over tf-encrypted's ten moduli near 2^10.2 (`crt10` below) by measurement; both give the same fixed-point results with 16 fractional bits. The CRT rings have no exact comparison in pond (CRT residues are not binary-friendly; the comparison protocol refuses CRT), so they run the polynomial ReLU, as tf-encrypted's Pond does, and nets B and C (max-pooling) do not run in them.\n");
    let _ = writeln!(md, "tf-encrypted (Dahl et al. 2018), polynomial ReLU:\n\n| net | TF accuracy | Pond accuracy | KL |\n|---|---|---|---|");
    for (net, tf, pond, kl) in TFE {
        let _ = writeln!(md, "| {net} | {tf:.2}% | {pond:.2}% | {kl} |");
    }
    let _ = writeln!(md, "\n## Runtime against batch size (exact ReLU on Z64; polynomial ReLU on int100 and crt10)\n");
    let _ = writeln!(md, "![runtime vs batch size](runtime.svg)\n");
    let _ = writeln!(
        md,
        "Each private run first shares and masks the weights (set-up) and runs one untimed warm-up batch, as the plaintext reference runs one untimed pass; `pond infer --json` reports both times (`setup_ms`, `warmup_ms`).\n"
    );
    let _ = writeln!(md, "| net | ring | batch | ms per batch | ms per image | plaintext ms per batch | ratio | KiB per image (s0/s1/cp) | rounds per batch |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for r in &timing {
        let kb = r.bytes_per_image.map(|b| b / 1024.0);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.3} | {:.4} | {:.3} | {:.1} | {:.1} / {:.1} / {:.1} | {:.0} |",
            r.net,
            r.ring,
            r.batch,
            r.ms_per_batch,
            r.ms_per_image,
            r.plain_ms,
            r.ratio,
            kb[0],
            kb[1],
            kb[2],
            r.rounds_per_batch
        );
    }
    let _ = writeln!(md, "\n## int64 vs int100, and against tf-encrypted\n");
    let _ = writeln!(md, "pond crt10 is pond with tf-encrypted's own ten moduli: the like-for-like comparison.\n");
    let _ = writeln!(md, "| net | batch | pond z64 ms | pond int100 ms | int100 / z64 | pond crt10 ms | tf-encrypted int100 ms (same machine kind) | speed-up vs tf-encrypted int100 (pond int100 / crt10) |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for net in ["A", "S"] {
        for batch in bench_infer::BATCHES {
            let find = |ring: &str| {
                timing.iter().find(|r| r.net == net && r.ring == ring && r.batch == batch).map(|r| r.ms_per_batch)
            };
            if let (Some(z), Some(c)) = (find("z64"), find("int100")) {
                let crt10 = find("crt10");
                let crt10_s = crt10.map_or("-".into(), |t| format!("{t:.3}"));
                let tfe = TFE_INT100.iter().find(|t| t.0 == net && t.1 == batch).map(|t| t.2);
                let (tfe_s, speedup) = match tfe {
                    Some(t) => {
                        let like_for_like = crt10.map_or("-".into(), |c10| format!("{:.1}x", t / c10));
                        (format!("{t}"), format!("{:.1}x / {like_for_like}", t / c))
                    }
                    None => ("-".into(), "-".into()),
                };
                let _ = writeln!(
                    md,
                    "| {net} | {batch} | {z:.3} | {c:.3} | {:.2} | {crt10_s} | {tfe_s} | {speedup} |",
                    c / z
                );
            }
        }
    }
    let _ = writeln!(md, "\ntf-encrypted's published Pond time for 100 inferences: {}.", {
        TFE_MS_100.iter().map(|(n, ms)| format!("{n} {ms} ms")).collect::<Vec<_>>().join(", ")
    });
    let path = out_dir.join("results.md");
    std::fs::write(&path, md).map_err(|e| TrainError::Config(format!("cannot write {}: {e}", path.display())))
}
