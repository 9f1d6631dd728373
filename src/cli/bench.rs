//! `cvedge bench`: what one engine configuration costs on this machine: load, first inference,
//! steady-state latency, frames per second and peak memory, through the same stages `predict`
//! uses (decode once, then preprocess + backbone + head per run).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use cvedge::classifier::{Classifier, LoadOptions};

/// Peak resident set size of this process so far, in MB (Linux `VmHWM`); `None` elsewhere.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn bench(model: &Path, load: &LoadOptions, image: &Path, runs: usize, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(runs >= 1, "--runs {runs}: measure at least one run");
    let bytes = std::fs::read(image).map_err(|e| anyhow::anyhow!("{}: {e}; give --image an image file", image.display()))?;
    let pixels = cvedge::source::decode(&bytes, &image.display().to_string())?;
    let started = Instant::now();
    let classifier = Classifier::load(model, load)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    classifier.classify(&pixels)?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        classifier.classify(&pixels)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let (median, p90) = (percentile(&times, 0.5), percentile(&times, 0.9));
    let precision = match classifier.engine.input().dtype {
        cvedge::engine::TensorType::F32 => "fp32",
        cvedge::engine::TensorType::F16 => "fp16 (run in fp32)",
    };
    let report = serde_json::json!({
        "engine": classifier.engine.name(),
        "precision": precision,
        "threads": 1,
        "load_ms": round(load_ms),
        "first_ms": round(first_ms),
        "median_ms": round(median),
        "p90_ms": round(p90),
        "fps": round(1e3 / median),
        "rss_mb": peak_rss_mb().map(round),
    });
    if json {
        println!("{report}");
    } else {
        for (key, value) in report.as_object().expect("an object") {
            println!("{key:>10}: {}", value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
