//! `cvedge train` and `cvedge iterations`: the portal's train / performance / iterations pages.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::dataset::Dataset;
use cvedge::iteration::{Iteration, IterationRecord, Store};
use cvedge::train::features::FeatureCache;
use cvedge::train::{Bars, Progress, Quiet, TrainOptions};

/// Trains, stores the iteration, prints the report (stderr) and the iteration's path (stdout), or
/// one JSON object with everything.
pub fn train(model: &Path, load: &LoadOptions, data: &Path, iterations: &Path, options: &TrainOptions, publish: bool, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(data.is_dir(), "{}: no such data folder; capture tagged images first (`cvedge capture --tag TAG ... --data {}`)", data.display(), data.display());
    let classifier = Classifier::load(model, load)?;
    let store = Store::open(iterations)?;
    let images = Dataset::open(data)?.images()?;
    let cache = FeatureCache::open(&store.feature_cache(), &classifier)?;
    let progress: &dyn Progress = if json { &Quiet } else { &Bars };
    let trained = cvedge::train::train(&classifier, images, &cache, options, progress)?;
    for (image, why) in &trained.skipped {
        eprintln!("warning: left out {}: {why}", image.path.display());
    }
    let iteration = store.create(&classifier, &trained, options)?;
    if publish {
        store.publish(iteration.record.number)?;
    }
    let path = iteration.dir.display().to_string();
    if json {
        let mut report = report_json(&iteration.record);
        report.insert("iteration".into(), path.into());
        report.insert("published".into(), publish.into());
        println!("{}", serde_json::Value::Object(report));
    } else {
        let mut err = std::io::stderr().lock();
        write_report(&mut err, &iteration.record)?;
        if publish {
            writeln!(err, "published iteration {}", iteration.record.number)?;
        }
        println!("{path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The record as JSON with the portal's performance names at the top level (`precision`,
/// `precisionStdDeviation`, ..., `perTagPerformance`), as its iteration performance API has them.
fn report_json(record: &IterationRecord) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert("number".into(), record.number.into());
    out.insert("id".into(), record.id.clone().into());
    out.insert("created".into(), record.created.clone().into());
    out.insert("classificationType".into(), record.kind.clone().into());
    out.insert("tags".into(), record.tags.clone().into());
    out.insert("threshold".into(), record.threshold.into());
    out.insert("images".into(), record.training.images.into());
    out.insert("folds".into(), record.training.folds.into());
    if let Some(serde_json::Value::Object(performance)) = record.performance.as_ref().and_then(|p| serde_json::to_value(p).ok()) {
        out.extend(performance);
    }
    if let Some(confusion) = &record.confusion {
        out.insert("confusion".into(), serde_json::json!(confusion));
    }
    out.insert("base".into(), serde_json::to_value(&record.base).unwrap_or_default());
    out
}

fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The performance table: per tag and overall precision, recall (± std dev over folds) and AP,
/// then the confusion matrix.
pub fn write_report(out: &mut dyn Write, record: &IterationRecord) -> std::io::Result<()> {
    let training = &record.training;
    writeln!(
        out,
        "iteration {} ({}), {}, {} images, {} tags, features {:.1} s ({} computed), training {:.1} s",
        record.number,
        record.id,
        record.kind,
        training.images,
        record.tags.len(),
        training.feature_seconds,
        training.computed_features,
        training.training_seconds
    )?;
    let Some(p) = &record.performance else {
        return writeln!(out, "no cross-validation (--folds below 2): no performance numbers");
    };
    writeln!(out, "{}-fold cross-validation at threshold {}:", training.folds, percent(record.threshold as f64))?;
    let width = record.tags.iter().map(|t| t.chars().count()).max().unwrap_or(0).max(7);
    writeln!(out, "  {:<width$}  {:>17}  {:>17}  {:>7}", "tag", "precision", "recall", "AP")?;
    let row = |name: &str, precision: f64, p_sd: f64, recall: f64, r_sd: f64, ap: f64| {
        format!(
            "  {name:<width$}  {:>17}  {:>17}  {:>7}",
            format!("{} ± {}", percent(precision), percent(p_sd)),
            format!("{} ± {}", percent(recall), percent(r_sd)),
            percent(ap)
        )
    };
    for t in &p.per_tag_performance {
        writeln!(out, "{}", row(&t.name, t.precision, t.precision_std_deviation, t.recall, t.recall_std_deviation, t.average_precision))?;
    }
    writeln!(out, "{}", row("overall", p.precision, p.precision_std_deviation, p.recall, p.recall_std_deviation, p.average_precision))?;
    if let Some(matrix) = &record.confusion {
        writeln!(out, "confusion (rows: tagged, columns: predicted, '-': below threshold):")?;
        let cell = 7;
        let mut header = format!("  {:<width$}", "");
        for tag in record.tags.iter().map(String::as_str).chain(["-"]) {
            header.push_str(&format!(" {:>cell$}", tag.chars().take(cell).collect::<String>()));
        }
        writeln!(out, "{header}")?;
        for (tag, counts) in record.tags.iter().zip(matrix) {
            let cells: String = counts.iter().map(|c| format!(" {c:>cell$}")).collect();
            writeln!(out, "  {tag:<width$}{cells}")?;
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum IterationsCommand {
    /// Every iteration, oldest first, with its numbers; `*` marks the published one.
    List,
    /// One iteration's record and performance.
    Show {
        number: u32,
        #[arg(long)]
        json: bool,
    },
    /// Make N the published iteration (running daemons switch to it within seconds).
    Publish { number: u32 },
    /// Delete N (not the published one) and the images no other iteration uses.
    Delete { number: u32 },
}

pub fn iterations(root: &Path, command: &IterationsCommand) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(root.is_dir(), "{}: no iterations folder here; train one with `cvedge train --iterations {}`", root.display(), root.display());
    let store = Store::open(root)?;
    let mut out = std::io::stdout().lock();
    match command {
        IterationsCommand::List => {
            let published = store.published()?;
            let all = store.list()?;
            if all.is_empty() {
                writeln!(out, "no iterations yet; train one with `cvedge train`")?;
            }
            for Iteration { record, .. } in all {
                let mark = if published == Some(record.number) { "*" } else { " " };
                let numbers = match &record.performance {
                    Some(p) => format!("precision {:>6}  recall {:>6}  AP {:>6}", percent(p.precision), percent(p.recall), percent(p.average_precision)),
                    None => "not evaluated".to_owned(),
                };
                writeln!(out, "{mark}{:>4}  {}  {}  {:<10}  {:>5} images  {numbers}  {}", record.number, record.created, record.id, record.kind, record.training.images, record.tags.join(", "))?;
            }
        }
        IterationsCommand::Show { number, json } => {
            let iteration = store.get(*number)?;
            if *json {
                let mut report = report_json(&iteration.record);
                report.insert("iteration".into(), iteration.dir.display().to_string().into());
                report.insert("published".into(), (store.published()? == Some(*number)).into());
                writeln!(out, "{}", serde_json::Value::Object(report))?;
            } else {
                write_report(&mut out, &iteration.record)?;
                writeln!(out, "base: {} ({}, sha1 {})", iteration.record.base.origin, iteration.record.base.format, iteration.record.base.sha1)?;
                writeln!(out, "folder: {}", iteration.dir.display())?;
            }
        }
        IterationsCommand::Publish { number } => {
            let iteration = store.publish(*number)?;
            writeln!(out, "published iteration {number} ({})", iteration.record.id)?;
        }
        IterationsCommand::Delete { number } => {
            let removed = store.delete(*number)?;
            writeln!(out, "deleted iteration {number} ({removed} image file(s) no other iteration used were removed)")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Backbone features of every image in DATA as a NumPy `.npy` file (float32, images × width),
/// with `OUT.json` listing each row's file, hash and tags: the exact inputs `cvedge train` fits
/// on, for comparing against other learners (scripts/train_accuracy.py).
pub fn features(model: &Path, load: &LoadOptions, data: &Path, iterations: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let classifier = Classifier::load(model, load)?;
    let images = Dataset::open(data)?.images()?;
    let cache = FeatureCache::open(&Store::open(iterations)?.feature_cache(), &classifier)?;
    let bar = Bars.bar("features", images.len());
    let features = cvedge::train::features::extract(&classifier, &cache, &images, 1, 0, &bar)?;
    bar.finish();
    anyhow::ensure!(features.failed.is_empty(), "{} image(s) could not be read, first: {}", features.failed.len(), features.failed[0].1);
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", images.len(), features.width);
    // .npy v1: magic, version, header length, header padded with spaces to a multiple of 64.
    let padded = format!("{header:<width$}\n", width = (header.len() + 11).div_ceil(64) * 64 - 11);
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    bytes.extend_from_slice(padded.as_bytes());
    bytes.extend(features.values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(out, bytes)?;
    let rows: Vec<serde_json::Value> =
        images.iter().map(|i| serde_json::json!({"file": i.path.display().to_string(), "sha1": i.sha1, "tags": i.tags})).collect();
    std::fs::write(out.with_extension("json"), serde_json::to_vec_pretty(&rows)?)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}
