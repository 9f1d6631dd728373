//! The `cvedge` command line. Raw flags become a validated `LoadOptions` once, here; the library
//! does the work and returns typed errors, which are printed as one sentence each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use cvedge::classifier::{Classifier, Kind, LoadOptions};
use cvedge::engine::EngineOptions;
use cvedge::prediction::PredictionResponse;
use cvedge::preprocess::{ColorOrder, Recipe, ValueRange};
use cvedge::sink::{JsonLines, Outcome, Sink, Table};
use cvedge::source::{FileSource, Source};

#[derive(Parser)]
#[command(name = "cvedge", version, about = "Run Azure Custom Vision classifier exports on the edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// Export zip, export folder, or model file with labels.txt beside it.
    #[arg(long, short)]
    model: PathBuf,
    /// Resize/crop recipe: legacy-square-256, shorter-side-256, shorter-side-<N>, stretch
    /// (default: what the export implies).
    #[arg(long)]
    recipe: Option<Recipe>,
    /// Channel order the network gets (default: what the export implies).
    #[arg(long, value_enum)]
    color: Option<ColorArg>,
    /// Pixel value range the network gets (default: what the export implies).
    #[arg(long, value_enum)]
    range: Option<RangeArg>,
    /// Run the whole graph instead of backbone + head (diagnostics).
    #[arg(long, hide = true)]
    no_split: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorArg {
    Bgr,
    Rgb,
}

#[derive(Clone, Copy, ValueEnum)]
enum RangeArg {
    #[value(name = "0-255")]
    Byte,
    #[value(name = "0-1")]
    Unit,
}

#[derive(Subcommand)]
enum Command {
    /// Describe an export: format, input, preprocessing, tags, output semantics.
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Classify image files (or folders of them).
    Predict {
        #[command(flatten)]
        model: ModelArgs,
        /// Probability at or above which a tag counts as detected (0..1).
        #[arg(long, default_value_t = cvedge::classifier::DEFAULT_THRESHOLD)]
        threshold: f32,
        /// One cloud-format JSON object per image per line.
        #[arg(long)]
        json: bool,
        /// Print decode / preprocess / inference times per image to stderr.
        #[arg(long)]
        timings: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
}

impl ModelArgs {
    fn options(&self, threshold: Option<f32>) -> anyhow::Result<LoadOptions> {
        if let Some(t) = threshold {
            anyhow::ensure!((0.0..=1.0).contains(&t), "--threshold {t} is not a probability; use a value from 0 to 1, e.g. 0.5");
        }
        Ok(LoadOptions {
            recipe: self.recipe,
            color: self.color.map(|c| match c {
                ColorArg::Bgr => ColorOrder::Bgr,
                ColorArg::Rgb => ColorOrder::Rgb,
            }),
            range: self.range.map(|r| match r {
                RangeArg::Byte => ValueRange::Byte,
                RangeArg::Unit => ValueRange::Unit,
            }),
            threshold,
            engine: EngineOptions { split: !self.no_split },
        })
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,tract_onnx=error")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { model, json } => inspect(&model, json),
        Command::Predict { model, threshold, json, timings, images } => predict(&model, threshold, json, timings, &images),
    };
    match result {
        Ok(code) => code,
        // `cvedge predict ... | head` closing the pipe is a normal way to stop.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ModelArgs, threshold: Option<f32>) -> anyhow::Result<Classifier> {
    let classifier = Classifier::load(&args.model, &args.options(threshold)?)?;
    for warning in &classifier.package.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(classifier)
}

fn inspect(args: &ModelArgs, json: bool) -> anyhow::Result<ExitCode> {
    let c = load(args, None)?;
    let p = &c.preprocessor.conventions;
    let kind = match c.kind {
        Kind::MultiClass => "multiclass",
        Kind::MultiLabel => "multilabel",
    };
    let report = serde_json::json!({
        "model": c.package.model_path.display().to_string(),
        "format": c.package.format.to_string(),
        "flavor": c.package.flavor(),
        "generation": format!("{:?}", c.facts.generation),
        "iteration": c.package.iteration_id(),
        "input": c.engine.input().to_string(),
        "color": format!("{:?}", p.color).to_uppercase(),
        "range": match p.range { ValueRange::Byte => "0..255", ValueRange::Unit => "0..1" },
        "mean_bgr": p.mean_bgr,
        "recipe": p.recipe.to_string(),
        "tags": c.labels,
        "kind": kind,
        "activation": c.head.activation().to_string(),
        "output": c.facts.output_name,
        "ops": c.facts.op_count,
        "split_at": c.facts.split_at,
        "backbone_width": c.engine.output_width(),
        "engine": c.engine.name(),
        "notes": c.facts.notes,
    });
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{report}")?;
        return Ok(ExitCode::SUCCESS);
    }
    for (key, value) in report.as_object().context("report is an object")? {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => {
                items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
            }
            other => other.to_string(),
        };
        writeln!(out, "{key:>15}: {text}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Files to classify: each argument, or the images inside it when it is a folder.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let is_image = |p: &Path| {
        p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"].contains(&e.to_ascii_lowercase().as_str())
        })
    };
    let mut out = vec![];
    for path in paths {
        if path.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            inner.sort();
            out.extend(inner);
        } else {
            out.push(path.clone());
        }
    }
    out
}

fn predict(args: &ModelArgs, threshold: f32, json: bool, timings: bool, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let classifier = load(args, Some(threshold))?;
    let stdout = std::io::stdout().lock();
    let mut sink: Box<dyn Sink> = if json { Box::new(JsonLines(stdout)) } else { Box::new(Table(stdout)) };
    let iteration = classifier.package.iteration_id().unwrap_or_default().to_owned();
    let mut source = FileSource::new(expand(images));
    let mut failures = 0;
    loop {
        let decode_started = Instant::now();
        let Some(frame) = source.next_frame() else { break };
        let classified = frame.and_then(|frame| {
            let origin = frame.origin.clone();
            let image = frame.into_rgb()?;
            let decoded = decode_started.elapsed();
            classifier.classify(&image).map(|c| (origin, decoded, c))
        });
        let (origin, decoded, classification) = match classified {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("error: {e}");
                failures += 1;
                continue;
            }
        };
        let mut response = PredictionResponse::new(&classifier.labels, &classification.probabilities, &iteration);
        response.image = Some(origin.clone());
        let detected: Vec<String> =
            classifier.detected(&classification.probabilities).into_iter().map(|i| classifier.labels[i].clone()).collect();
        sink.publish(&Outcome { origin: &origin, response: &response, detected: &detected, threshold })?;
        if timings {
            eprintln!(
                "{}: decode {:.1} ms, preprocess {:.1} ms, inference {:.1} ms",
                origin,
                decoded.as_secs_f64() * 1e3,
                classification.preprocess.as_secs_f64() * 1e3,
                classification.inference.as_secs_f64() * 1e3
            );
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
