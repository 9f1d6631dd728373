//! `cvedge bench`: what each engine configuration costs on this machine: load, first inference,
//! steady-state latency, frames per second and peak memory, through the same stages `predict`
//! uses (decode once, then preprocess + backbone + head per run).
//!
//! Every configuration (model x engine x threads) is measured in a child process of its own, so
//! that load time is a cold load and peak memory is that configuration's alone. With
//! `--calibrate DIR` each model is first quantized (`cvedge quantize`, into a scratch folder) and
//! its int8 twin measured beside it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::engine::{EngineChoice, EngineOptions};

/// What to measure.
pub struct BenchPlan {
    pub models: Vec<PathBuf>,
    pub engines: Vec<EngineChoice>,
    pub threads: Vec<usize>,
    pub calibrate: Option<PathBuf>,
    pub image: PathBuf,
    pub runs: usize,
    pub json: bool,
}

/// `1,2,0` -> threads (0 = one per core).
pub fn parse_threads(list: &str) -> Result<Vec<usize>, String> {
    list.split(',').map(|t| t.trim().parse::<usize>().map_err(|_| format!("`{t}` is not a thread count: use e.g. 1,2,0 (0 = all cores)"))).collect()
}

/// `tract,onnxruntime` -> engines; `all` = tract plus onnxruntime where its library loads.
pub fn parse_engines(list: &str) -> Result<Vec<EngineChoice>, String> {
    if list == "all" {
        let mut engines = vec![EngineChoice::Tract];
        if cvedge::engine::onnxruntime_available() {
            engines.push(EngineChoice::OnnxRuntime);
        } else {
            eprintln!("note: onnxruntime is not installed here (scripts/install_onnxruntime.sh); measuring tract only");
        }
        return Ok(engines);
    }
    list.split(',').map(|e| e.trim().parse::<EngineChoice>()).collect()
}

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

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Measures one configuration in this process and prints its JSON object.
pub fn measure(model: &Path, load: &LoadOptions, image: &Path, runs: usize) -> anyhow::Result<ExitCode> {
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
    let report = serde_json::json!({
        "model": model.display().to_string(),
        "engine": classifier.engine.name(),
        "precision": classifier.facts.precision.to_string(),
        "threads": load.engine.resolved_threads(),
        "load_ms": round(load_ms),
        "first_ms": round(first_ms),
        "median_ms": round(median),
        "p90_ms": round(p90),
        "fps": round(1e3 / median),
        "rss_mb": peak_rss_mb().map(round),
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn print_table_row(line: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        println!("{line}");
        return;
    };
    let s = |k: &str| v[k].as_str().map(str::to_owned).unwrap_or_else(|| v[k].to_string());
    println!(
        "{:<28} {:<12} {:<5} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8}",
        s("model"), s("engine"), s("precision"), s("threads"), s("load_ms"), s("first_ms"), s("median_ms"), s("fps"), s("rss_mb")
    );
}

/// Measures every configuration of `plan`, each in a child process.
pub fn bench(plan: &BenchPlan) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(plan.runs >= 1, "--runs {}: measure at least one run", plan.runs);
    anyhow::ensure!(plan.image.is_file(), "{}: no such image; give --image an image file", plan.image.display());
    // The int8 twins live here for the run only, whatever way it ends.
    let scratch = std::env::temp_dir().join(format!("cvedge-bench-{}", std::process::id()));
    let result = measure_all(plan, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn measure_all(plan: &BenchPlan, scratch: &Path) -> anyhow::Result<ExitCode> {
    let mut models: Vec<PathBuf> = plan.models.clone();
    if let Some(dir) = &plan.calibrate {
        for (i, model) in plan.models.iter().enumerate() {
            let out = scratch.join(format!("int8-{i}"));
            let options = cvedge::quantize::QuantizeOptions {
                calibrate: dir.clone(),
                holdout: None,
                out: out.clone(),
                min_agreement: 0.99,
                engine: EngineOptions { choice: EngineChoice::Auto, ..Default::default() },
            };
            let report = cvedge::quantize::quantize(model, &options, &cvedge::train::Quiet)?;
            eprintln!("{}: int8 twin agrees on {:.1}% of {} held-out images", model.display(), 100.0 * report.chosen.agreement, report.holdout_images);
            models.push(out);
        }
    }
    let exe = std::env::current_exe()?;
    if !plan.json {
        println!("{:<28} {:<12} {:<5} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8}", "model", "engine", "prec", "threads", "load_ms", "first_ms", "median_ms", "fps", "rss_mb");
    }
    let mut failed = false;
    for model in &models {
        for engine in &plan.engines {
            for threads in &plan.threads {
                let out = Command::new(&exe)
                    .args(["bench", "--single", "--model"])
                    .arg(model)
                    .args(["--engine", &engine.to_string(), "--threads", &threads.to_string(), "--runs", &plan.runs.to_string(), "--image"])
                    .arg(&plan.image)
                    .output()?;
                let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if !out.status.success() || line.is_empty() {
                    failed = true;
                    eprintln!("{} {engine} {threads} threads: {}", model.display(), String::from_utf8_lossy(&out.stderr).trim());
                    continue;
                }
                if plan.json {
                    println!("{line}");
                } else {
                    print_table_row(&line);
                }
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
