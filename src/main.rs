//! The `cvedge` command line. Raw flags become a validated `LoadOptions` once, here; the library
//! does the work and returns typed errors, which are printed as one sentence each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use cvedge::classifier::{Classifier, Kind, LoadOptions};
use cvedge::config::Config;
use cvedge::daemon::{Daemon, Signals};
use cvedge::engine::{EngineChoice, EngineOptions};
use cvedge::prediction::PredictionResponse;
use cvedge::preprocess::{ColorOrder, Recipe, ValueRange};
use cvedge::sink::{JsonLines, Outcome, Sink, Table};
use cvedge::source::{FileSource, Source};

mod cli;

#[derive(Parser)]
#[command(name = "cvedge", version, about = "Run Azure Custom Vision classifier exports on the edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// Export zip, export folder, or model file with labels.txt beside it; or a trained
    /// iteration's folder, or an iterations folder (its published iteration).
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
    /// Engine: tract (built in), onnxruntime (needs libonnxruntime.so.1, see
    /// scripts/install_onnxruntime.sh), or auto: the fastest that agrees with tract.
    #[arg(long, default_value = "auto")]
    engine: EngineChoice,
    /// Threads per inference (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Where training reads tagged images and keeps iterations (and its feature cache).
#[derive(clap::Args)]
struct TrainingDirs {
    /// The training data folder (one folder per tag).
    #[arg(long, default_value = "cvedge-data")]
    data: PathBuf,
    /// Where iterations are kept.
    #[arg(long, default_value = "cvedge-iterations")]
    iterations: PathBuf,
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
    /// Save tagged frames for training: from a source (`--source SPEC --count N`) or existing
    /// image files (`--import FILE...`), into DATA/<tag>/.
    Capture {
        /// The tag the images show; repeat it for an image with several tags (multilabel: the
        /// image is stored under each tag's folder).
        #[arg(long, required = true)]
        tag: Vec<String>,
        /// Camera or stream to capture from (same specs as `run --source`).
        #[arg(long, conflicts_with = "import")]
        source: Option<String>,
        /// Image files to add instead.
        #[arg(long, num_args = 1..)]
        import: Vec<PathBuf>,
        /// Frames to capture from the source.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Seconds between captured frames.
        #[arg(long, default_value_t = 0.0)]
        interval: f32,
        /// The training data folder.
        #[arg(long, default_value = "cvedge-data")]
        data: PathBuf,
    },
    /// List the training data's tags and image counts (warns below the portal's 5 per tag).
    Dataset {
        #[arg(long, default_value = "cvedge-data")]
        data: PathBuf,
    },
    /// Train a new head on the export's backbone from DATA/<tag>/ images, evaluate it with k-fold
    /// cross-validation and store it as an iteration; prints the iteration's folder.
    Train {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        dirs: TrainingDirs,
        /// Each tag judged on its own (sigmoids); default: one tag per image (softmax).
        #[arg(long)]
        multilabel: bool,
        /// Cross-validation folds (below 2: no evaluation).
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Probability at or above which a tag counts as predicted in the evaluation.
        #[arg(long, default_value_t = cvedge::classifier::DEFAULT_THRESHOLD)]
        threshold: f32,
        /// Augmented copies per image: 1 adds a mirror image, 2 also a jittered crop, ...
        #[arg(long, default_value_t = 0)]
        augment: usize,
        /// Seed for the folds and augmentation (same seed, same data: same iteration).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// L2 penalty on the head's weights.
        #[arg(long, default_value_t = cvedge::train::fit::FitOptions::default().l2)]
        l2: f32,
        /// Iterations without a better held-out loss before the fit stops (early stopping).
        #[arg(long, default_value_t = cvedge::train::fit::FitOptions::default().patience, hide = true)]
        patience: usize,
        /// Make the new iteration the published one.
        #[arg(long)]
        publish: bool,
        /// Print one JSON object (portal names) instead of the table and the path.
        #[arg(long)]
        json: bool,
    },
    /// Measure one engine configuration: load, first inference, median / p90 latency, frames per
    /// second and peak memory (one image, classified repeatedly through predict's stages).
    Bench {
        /// Model(s) to measure (repeat --model): exports, iterations, quantized folders.
        #[arg(long, short, required = true)]
        model: Vec<PathBuf>,
        /// Engines, comma-separated (tract, onnxruntime, auto), or all: every one that loads here.
        #[arg(long, default_value = "all")]
        engine: String,
        /// Thread counts, comma-separated; 0 = one per core.
        #[arg(long, default_value = "1")]
        threads: String,
        /// Quantize each model on these images first and measure its int8 twin too.
        #[arg(long)]
        calibrate: Option<PathBuf>,
        /// The image to classify (default: the bundled dog photo).
        #[arg(long, default_value = "models/samples/dog.jpg")]
        image: PathBuf,
        /// Timed runs after the first.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// One JSON object per configuration per line.
        #[arg(long)]
        json: bool,
        /// Measure one configuration in this process (what the parent runs per configuration).
        #[arg(long, hide = true)]
        single: bool,
    },
    /// Quantize a model to int8 on this device: calibrate on DIR's images (a capture folder or
    /// any folder of photos like the camera's), check agreement with the float model on held-out
    /// images, and write a new export folder (refused below --min-agreement).
    Quantize {
        #[command(flatten)]
        model: ModelArgs,
        /// Images to calibrate on (searched recursively, e.g. the training data folder).
        #[arg(long)]
        calibrate: PathBuf,
        /// Images to check agreement on (default: every fifth calibration image is held out).
        #[arg(long)]
        holdout: Option<PathBuf>,
        /// Where the int8 export folder goes.
        #[arg(long)]
        out: PathBuf,
        /// Top-1 agreement with the float model, in percent, below which nothing is written.
        #[arg(long, default_value_t = 99.0)]
        min_agreement: f64,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a trained iteration, or an export of any format, as a standalone current-layout
    /// Custom Vision ONNX export (`model.onnx` with `data` -> `model_output`, labels.txt,
    /// cvexport.manifest); TFLite and TensorFlow graphs are rewritten as ONNX.
    Export {
        /// An iteration's folder, an iterations folder (its published iteration), or an export.
        iteration: PathBuf,
        /// The folder to write (created; use a new one per export).
        #[arg(long)]
        out: PathBuf,
    },
    /// Load the onnxruntime library, start it and run a one-convolution model (what cvedge runs
    /// in a child process before letting the library into its own).
    #[cfg(feature = "onnxruntime")]
    #[command(name = "probe-onnxruntime", hide = true)]
    ProbeOnnxruntime { library: PathBuf },
    /// Write the backbone features of every training image to a .npy file (benchmarks).
    #[command(hide = true)]
    Features {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        dirs: TrainingDirs,
        #[arg(long)]
        out: PathBuf,
    },
    /// List, show, publish or delete trained iterations.
    Iterations {
        #[arg(long, default_value = "cvedge-iterations", global = true)]
        iterations: PathBuf,
        #[command(subcommand)]
        command: cli::train::IterationsCommand,
    },
    /// The daemon: classify camera frames in real time and publish over MQTT. With no options it
    /// runs the embedded default (bundled model, bundled photos, broker on localhost, printed).
    Run {
        /// TOML configuration file (see the README); flags below override its values.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Export to load (instead of the configuration's).
        #[arg(long, short)]
        model: Option<PathBuf>,
        /// Camera source, repeatable: `[NAME=]v4l:/dev/video0`, `mjpeg:http://...`,
        /// `ffmpeg:rtsp://...`, `file:DIR_OR_GLOB`, `synthetic`.
        #[arg(long)]
        source: Vec<String>,
        /// Broker, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
        #[arg(long)]
        mqtt: Option<String>,
        /// Device id used in topics.
        #[arg(long)]
        device: Option<String>,
        /// Minimum seconds between classifications per camera.
        #[arg(long)]
        interval: Option<f32>,
        /// Where sequence counters and the MQTT outbox are kept.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Training data folder for capture commands and review frames (config `data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also print every prediction as a JSON line.
        #[arg(long)]
        print: bool,
        /// Serve the prediction API, /health, /metrics and the live page on HOST:PORT (config
        /// `[http] addr`).
        #[arg(long)]
        http: Option<String>,
        /// Stop after this many classified frames and print the loop's statistics (benchmarks).
        #[arg(long, hide = true)]
        max_frames: Option<u64>,
    },
    /// Answer predictions over HTTP like the Custom Vision container export: POST /image (raw
    /// bytes or multipart imageData), POST /url ({"url": ...}), and the cloud's
    /// /PROJECT/classify/iterations/NAME/image paths.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        serve: cli::serve::ServeArgs,
    },
    /// List the V4L2 cameras (USB/UVC) with their formats, sizes and frame rates, and the other
    /// source kinds cvedge reads.
    Sources {
        /// Devices to describe (default: every /dev/video*).
        devices: Vec<PathBuf>,
    },
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
        /// Probability at or above which a tag counts as detected (0..1; default 0.5, or the
        /// threshold a trained iteration was evaluated at).
        #[arg(long)]
        threshold: Option<f32>,
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
            engine: EngineOptions { split: !self.no_split, choice: self.engine, threads: self.threads, ..Default::default() },
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn bench(models: Vec<PathBuf>, engines: &str, threads: &str, calibrate: Option<PathBuf>, image: PathBuf, runs: usize, json: bool, single: bool) -> anyhow::Result<ExitCode> {
    let engines = cli::bench::parse_engines(engines).map_err(|e| anyhow::anyhow!("--engine: {e}"))?;
    let threads = cli::bench::parse_threads(threads).map_err(|e| anyhow::anyhow!("--threads: {e}"))?;
    if single {
        let engine = EngineOptions { choice: engines[0], threads: threads[0], ..Default::default() };
        return cli::bench::measure(&models[0], &LoadOptions { engine, ..Default::default() }, &image, runs);
    }
    cli::bench::bench(&cli::bench::BenchPlan { models, engines, threads, calibrate, image, runs, json })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,tract_onnx=error")).init();
    let cli = Cli::parse();
    #[cfg(feature = "onnxruntime")]
    if let Ok(exe) = std::env::current_exe() {
        cvedge::engine::onnxruntime_probe::register(exe);
    }
    let result = match cli.command {
        #[cfg(feature = "onnxruntime")]
        Command::ProbeOnnxruntime { library } => match cvedge::engine::onnxruntime_probe::run(&library) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(problem) => {
                eprintln!("{problem}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Sources { devices } => cli::sources::sources(&devices),
        Command::Inspect { model, json } => inspect(&model, json),
        Command::Serve { model, serve } => load(&model, None).and_then(|classifier| cli::serve::serve(classifier, serve)),
        Command::Predict { model, threshold, json, timings, images } => predict(&model, threshold, json, timings, &images),
        Command::Capture { tag, source, import, count, interval, data } => capture(&tag, source.as_deref(), &import, count, interval, &data),
        Command::Dataset { data } => dataset(&data),
        Command::Train { model, dirs, multilabel, folds, threshold, augment, seed, l2, patience, publish, json } => {
            let fit = cvedge::train::fit::FitOptions { l2, patience, ..Default::default() };
            let options = cvedge::train::TrainOptions { multilabel, folds, threshold, augment, seed, fit };
            model.options(None).and_then(|load| cli::train::train(&model.model, &load, &dirs.data, &dirs.iterations, &options, publish, json))
        }
        Command::Export { iteration, out } => export(&iteration, &out),
        Command::Bench { model, engine, threads, calibrate, image, runs, json, single } => bench(model, &engine, &threads, calibrate, image, runs, json, single),
        Command::Quantize { model, calibrate, holdout, out, min_agreement, json } => {
            model.options(None).and_then(|load| cli::quantize::quantize(&model.model, load, calibrate, holdout, out, min_agreement, json))
        }
        Command::Features { model, dirs, out } => {
            model.options(None).and_then(|load| cli::train::features(&model.model, &load, &dirs.data, &dirs.iterations, &out))
        }
        Command::Iterations { iterations, command } => cli::train::iterations(&iterations, &command),
        Command::Run { config, model, source, mqtt, device, interval, state_dir, data, print, http, max_frames } => {
            let flags = RunFlags { model, source, mqtt, device, interval, state_dir, data, print, http };
            run(config, flags, max_frames)
        }
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
        "iteration": (!c.iteration_id.is_empty()).then_some(&c.iteration_id),
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

/// Files to classify: each argument, or the images inside it when it is a folder (a folder that
/// cannot be listed is passed on as it is, so it is reported with the other unreadable inputs).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .flat_map(|path| match path.is_dir().then(|| cvedge::source::images_in(path)) {
            Some(Ok(images)) => images,
            _ => vec![path.clone()],
        })
        .collect()
}

fn predict(args: &ModelArgs, threshold: Option<f32>, json: bool, timings: bool, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let classifier = load(args, threshold)?;
    let threshold = classifier.threshold;
    let stdout = std::io::stdout();
    let sink: Box<dyn Sink> = if json { Box::new(JsonLines::new(stdout)) } else { Box::new(Table::new(stdout)) };
    let iteration = classifier.iteration_id.clone();
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
        sink.publish(&Outcome { camera: None, origin: &origin, response: &response, detected: &detected, threshold })?;
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

struct RunFlags {
    model: Option<PathBuf>,
    source: Vec<String>,
    mqtt: Option<String>,
    device: Option<String>,
    interval: Option<f32>,
    state_dir: Option<PathBuf>,
    data: Option<PathBuf>,
    print: bool,
    http: Option<String>,
}

/// The configuration `run` uses: the file's (or the embedded default's when there is neither a
/// file nor a model), with flags applied on top, validated once.
fn run_config(path: Option<&Path>, flags: RunFlags) -> anyhow::Result<Config> {
    let mut table: toml::Table = match (path, &flags.model) {
        (Some(path), _) => {
            Config::load(path)?; // validate the file as written, so errors point at its lines
            toml::from_str(&std::fs::read_to_string(path)?)?
        }
        (None, None) if flags.source.is_empty() => toml::from_str(Config::embedded_default_text())?,
        (None, _) => toml::Table::new(),
    };
    let mut set = |key: &str, value: toml::Value| {
        table.insert(key.to_owned(), value);
    };
    if let Some(model) = &flags.model {
        set("model", toml::Value::String(model.display().to_string()));
    }
    if let Some(device) = &flags.device {
        set("device", toml::Value::String(device.clone()));
    }
    if let Some(dir) = &flags.state_dir {
        set("state_dir", toml::Value::String(dir.display().to_string()));
    }
    if let Some(dir) = &flags.data {
        set("data_dir", toml::Value::String(dir.display().to_string()));
    }
    if flags.print {
        set("print", toml::Value::Boolean(true));
    }
    if !flags.source.is_empty() {
        let cameras = flags.source.iter().enumerate().map(|(i, spec)| {
            // `NAME=spec`, unless the `=` belongs to the spec (a URL query, ffmpeg options).
            let (name, spec) = match spec.split_once('=') {
                Some((name, rest)) if !name.contains(':') => (name.to_owned(), rest.to_owned()),
                _ => (format!("cam{i}"), spec.clone()),
            };
            let mut camera = toml::Table::new();
            camera.insert("name".into(), toml::Value::String(name));
            camera.insert("source".into(), toml::Value::String(spec));
            toml::Value::Table(camera)
        });
        table.insert("camera".into(), toml::Value::Array(cameras.collect()));
    }
    if let Some(interval) = flags.interval {
        if let Some(toml::Value::Array(cameras)) = table.get_mut("camera") {
            for camera in cameras.iter_mut().filter_map(toml::Value::as_table_mut) {
                camera.insert("interval_s".into(), toml::Value::Float(interval as f64));
            }
        }
    }
    // `--http ADDR` and `--mqtt URL` set one key of their table, keeping the file's other keys.
    let mut set_in = |name: &str, key: &str, value: &Option<String>| {
        let Some(value) = value else { return };
        let entry = table.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(entry) = entry.as_table_mut() {
            entry.insert(key.into(), toml::Value::String(value.clone()));
        }
    };
    set_in("http", "addr", &flags.http);
    set_in("mqtt", "url", &flags.mqtt);
    Ok(Config::from_table(table, "command line")?)
}

fn run(path: Option<PathBuf>, flags: RunFlags, max_frames: Option<u64>) -> anyhow::Result<ExitCode> {
    let config = run_config(path.as_deref(), flags)?;
    let daemon = Daemon::start_with(config, path, Signals::of_this_process()?)?;
    if let Some(addr) = daemon.http_addr() {
        eprintln!("cvedge run: live page on http://{addr}/live, predictions on http://{addr}/image");
    }
    if let Some(limit) = max_frames {
        let stop = daemon.shutdown_flag();
        let started = Instant::now();
        let counters = daemon.counters();
        std::thread::spawn(move || {
            while counters.classified() < limit {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let elapsed = started.elapsed().as_secs_f64();
            eprintln!(
                "{{\"classified\":{},\"skipped\":{},\"seconds\":{elapsed:.3},\"fps\":{:.2}}}",
                counters.classified(),
                counters.skipped(),
                counters.classified() as f64 / elapsed
            );
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    daemon.run()?;
    Ok(ExitCode::SUCCESS)
}

fn export(iteration: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let report = cvedge::iteration::export(iteration, out)?;
    for file in &report.files {
        println!("wrote {}", report.dir.join(file).display());
    }
    Ok(ExitCode::SUCCESS)
}

fn report_added(added: &cvedge::dataset::Added) {
    match added {
        cvedge::dataset::Added::Stored(path) => println!("stored {}", path.display()),
        cvedge::dataset::Added::Duplicate(path) => println!("duplicate {} (already tagged)", path.display()),
    }
}

fn capture(tags: &[String], source: Option<&str>, import: &[PathBuf], count: u64, interval: f32, data: &Path) -> anyhow::Result<ExitCode> {
    for tag in tags {
        cvedge::dataset::check_tag(tag)?;
    }
    anyhow::ensure!(interval >= 0.0 && interval.is_finite(), "--interval {interval} is not a number of seconds; use 0 or more");
    let store = cvedge::dataset::Dataset::open(data)?;
    let Some(spec) = source else {
        anyhow::ensure!(!import.is_empty(), "nothing to capture: give --source SPEC or --import FILE...");
        for file in import {
            for tag in tags {
                report_added(&store.import(tag, file)?);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let spec: cvedge::source::SourceSpec = spec.parse().map_err(|e: String| anyhow::anyhow!("--source: {e}"))?;
    let mut source = cvedge::source::open(&spec, &cvedge::source::SourceOptions::default())?;
    let mut captured = 0;
    while captured < count {
        match source.next_frame() {
            Some(Ok(frame)) => {
                for tag in tags {
                    report_added(&store.add_frame(tag, &frame)?);
                }
                captured += 1;
                if captured < count {
                    std::thread::sleep(std::time::Duration::from_secs_f32(interval));
                }
            }
            Some(Err(e)) => eprintln!("warning: {e}"),
            None => anyhow::bail!("{} stopped after {captured} of {count} frames; check the camera and capture the rest", spec.origin()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dataset(data: &Path) -> anyhow::Result<ExitCode> {
    let store = cvedge::dataset::Dataset::open(data)?;
    let counts = store.counts()?;
    if counts.is_empty() {
        println!("{}: no tagged images yet; add some with `cvedge capture --tag TAG ...`", data.display());
    }
    for (tag, n) in &counts {
        let warning = if *n < cvedge::dataset::MIN_IMAGES_PER_TAG {
            format!("  (needs at least {} to train)", cvedge::dataset::MIN_IMAGES_PER_TAG)
        } else {
            String::new()
        };
        println!("{n:>6}  {tag}{warning}");
    }
    Ok(ExitCode::SUCCESS)
}
