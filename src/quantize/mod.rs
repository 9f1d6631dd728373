//! `cvedge quantize`: post-training static int8 quantization of an export (or a trained
//! iteration) on the device, calibrated on the device's own captures, with an accuracy gate.
//!
//! 1. The model is written out as a current-layout ONNX graph with its head (what `cvedge export`
//!    writes; TFLite and TensorFlow exports are rewritten as ONNX first, by [`crate::convert`]),
//!    brought to opset 13 ([`qdq::upgrade_opset`]).
//! 2. [`qdq::plan`] picks the backbone tensors to quantize; [`calibrate`] runs the float graph on
//!    the calibration images and measures them (min/max and percentile ranges).
//! 3. Each range method gives a candidate QDQ graph ([`qdq::apply`]), written to a scratch
//!    folder and loaded like any export with the engine the user runs; the held-out images are
//!    classified by it and by the float model. The candidate with the best top-1 agreement
//!    (then the smallest probability difference) wins.
//! 4. The gate: below `min_agreement` nothing is written and the float model stays in use.
//!    Otherwise the winner becomes the output folder, an ordinary export that `predict`, `run`,
//!    `train` and `bench` load (precision int8), with `quantization.json` recording how it was
//!    made and measured. The folder is written whole under a hidden name beside the output and
//!    renamed into place, so a kill -9 leaves the output absent (or the previous one) or complete.
//!
//! Images are split deterministically (every fifth one held out, by sorted path) unless a
//! separate hold-out folder is given; the same images give the same `model.onnx`, byte for byte.

mod calibrate;
pub mod qdq;

use std::path::{Path, PathBuf};

use crate::classifier::{Classifier, LoadOptions};
use crate::engine::EngineOptions;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::package::ExportPackage;
use crate::train::Progress;

/// The record written beside the quantized model.
pub const RECORD_FILE: &str = "quantization.json";
/// Fewest images worth calibrating on.
const MIN_IMAGES: usize = 10;

#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// Images to calibrate on (searched recursively; tag folders welcome).
    pub calibrate: PathBuf,
    /// Images to judge agreement on; `None`: every fifth calibration image is held out instead.
    pub holdout: Option<PathBuf>,
    pub out: PathBuf,
    /// Top-1 agreement with the float model below which the result is refused (0..1).
    pub min_agreement: f64,
    /// The engine the candidates are judged on (the one that will run them).
    pub engine: EngineOptions,
}

/// How one range method fared on the held-out images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    pub method: &'static str,
    pub agreement: f64,
    pub max_difference: f32,
    pub mean_difference: f32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QuantizeReport {
    pub out: PathBuf,
    pub engine: String,
    pub calibration_images: usize,
    pub holdout_images: usize,
    pub quantized_tensors: usize,
    pub int8_convolutions: usize,
    pub chosen: Candidate,
    pub candidates: Vec<Candidate>,
    pub min_agreement: f64,
    pub model_sha1: String,
}

fn refuse(problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Quantize { problem: problem.into(), fix: fix.into() }
}

/// Every image under `dir`, recursively, sorted (hidden files and folders skipped).
fn images_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = crate::source::images_in(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    subdirs.sort();
    for sub in subdirs {
        found.extend(images_under(&sub)?);
    }
    Ok(found)
}

/// Calibration and hold-out images.
fn split(options: &QuantizeOptions) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let images = images_under(&options.calibrate)?;
    let (calibration, holdout) = match &options.holdout {
        Some(dir) => (images, images_under(dir)?),
        None => {
            let (mut calibration, mut holdout) = (vec![], vec![]);
            for (i, path) in images.into_iter().enumerate() {
                if i % 5 == 4 { holdout.push(path) } else { calibration.push(path) }
            }
            (calibration, holdout)
        }
    };
    if calibration.len() + holdout.len() < MIN_IMAGES || holdout.is_empty() {
        return Err(refuse(
            format!("{} holds {} images; calibration needs at least {MIN_IMAGES} (a fifth of them held out to check the result)", options.calibrate.display(), calibration.len() + holdout.len()),
            "capture more frames of the camera's real view (cvedge capture), or point --calibrate at a folder of them",
        ));
    }
    Ok((calibration, holdout))
}

/// Probabilities of `classifier` for each image.
fn classify_all(classifier: &Classifier, images: &[PathBuf], bar: &indicatif::ProgressBar) -> Result<Vec<Vec<f32>>> {
    images
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let image = crate::source::decode(&bytes, &path.display().to_string())?;
            bar.inc(1);
            Ok(classifier.classify(&image)?.probabilities)
        })
        .collect()
}

fn compare(method: &'static str, reference: &[Vec<f32>], got: &[Vec<f32>]) -> Candidate {
    let agree = reference.iter().zip(got).filter(|(a, b)| crate::head::top(a) == crate::head::top(b)).count();
    let differences: Vec<f32> = reference.iter().zip(got).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs())).collect();
    Candidate {
        method,
        agreement: agree as f64 / reference.len().max(1) as f64,
        max_difference: differences.iter().copied().fold(0.0, f32::max),
        mean_difference: differences.iter().sum::<f32>() / differences.len().max(1) as f32,
    }
}

/// The candidates' folder, removed however quantization ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn quantize(model: &Path, options: &QuantizeOptions, progress: &dyn Progress) -> Result<QuantizeReport> {
    if !(0.0..=1.0).contains(&options.min_agreement) {
        return Err(Error::Option(format!("minimum agreement {} is not a fraction; use a value from 0 to 1, e.g. 0.99", options.min_agreement)));
    }
    // Refused before the work, not after it.
    crate::fsutil::check_replaceable(&options.out)?;
    let load = LoadOptions { engine: options.engine.clone(), ..Default::default() };
    let float = Classifier::load(model, &load)?;
    if float.facts.precision != crate::engine::Precision::Fp32 {
        return Err(refuse(
            format!("{} is already {} ", float.package.origin.display(), float.facts.precision),
            "quantize the fp32 export (Custom Vision: Export, ONNX, not the Float16 flavour)",
        ));
    }
    let head = float.head.linear().cloned().ok_or_else(|| refuse("the model's head could not be split off its backbone", "report the model so it can be supported"))?;
    let (calibration, holdout) = split(options)?;

    let base = ExportPackage::load(&float.package.origin)?;
    let base_onnx = crate::convert::onnx_bytes(&base, &float.preprocessor.conventions)?;
    let mut layout = crate::export::current_layout(&base_onnx, &base.model_path, &head)?;
    drop(base_onnx);
    qdq::upgrade_opset(&mut layout.model)?;
    let graph = layout.model.graph.as_ref().expect("current_layout made a graph");
    let plan = qdq::plan(graph, &layout.cut.features);

    let bar = progress.bar("calibrate", 2 * calibration.len());
    let ranges = calibrate::calibrate(&layout.model, &plan.tensors, &float.preprocessor, &calibration, &bar)?;
    bar.finish();

    let bar = progress.bar("check", holdout.len() * 3);
    let reference = classify_all(&float, &holdout, &bar)?;
    let scratch = Scratch(options.out.with_file_name(format!(".{}.candidate", options.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())));
    let scratch = &scratch.0;
    let mut best: Option<(Candidate, crate::export::CurrentLayout)> = None;
    let mut candidates = vec![];
    for (method, method_ranges) in [("percentile", &ranges.percentile), ("minmax", &ranges.minmax)] {
        let mut candidate_layout = layout.clone();
        candidate_layout.model = qdq::apply(&layout.model, &plan, method_ranges)?;
        std::fs::create_dir_all(scratch).map_err(|e| Error::io_write(scratch, e))?;
        crate::export::write_current_layout(&candidate_layout, &head, &float.labels, &float.iteration_id, scratch)?;
        // Judged as integer kernels compute it, whichever engine the user runs.
        let mut exact = load.clone();
        exact.engine.int8_activations = true;
        let quantized = Classifier::load(scratch, &exact)?;
        let got = classify_all(&quantized, &holdout, &bar)?;
        let result = compare(method, &reference, &got);
        let better = best.as_ref().is_none_or(|(b, _)| (result.agreement, -result.max_difference) > (b.agreement, -b.max_difference));
        candidates.push(result.clone());
        if better {
            best = Some((result, candidate_layout));
        }
    }
    bar.finish();
    let (chosen, chosen_layout) = best.expect("two candidates");
    if chosen.agreement < options.min_agreement {
        return Err(refuse(
            format!(
                "the best int8 model ({} ranges) agrees with the float model on {:.1}% of {} held-out images (max probability difference {:.3}), below the {:.1}% gate; nothing was written and the float model stays in use",
                chosen.method,
                100.0 * chosen.agreement,
                holdout.len(),
                chosen.max_difference,
                100.0 * options.min_agreement
            ),
            "calibrate on more captures of the camera's real view, or lower --min-agreement if the loss is acceptable",
        ));
    }
    // Written whole into a hidden folder beside `out` and renamed to it: a kill at any moment
    // leaves `out` absent, as it was, or complete, never a model without its labels or record.
    crate::fsutil::write_folder(&options.out, |staging| {
        let written = crate::export::write_current_layout(&chosen_layout, &head, &float.labels, &float.iteration_id, staging)?;
        let report = QuantizeReport {
            out: options.out.clone(),
            engine: float.engine.name().to_owned(),
            calibration_images: calibration.len(),
            holdout_images: holdout.len(),
            quantized_tensors: plan.tensors.len(),
            int8_convolutions: plan.int8_convolutions(),
            chosen,
            candidates,
            min_agreement: options.min_agreement,
            model_sha1: written.model_sha1,
        };
        let record = serde_json::to_vec_pretty(&report).expect("a plain struct");
        write_atomic(&staging.join(RECORD_FILE), &record)?;
        Ok(report)
    })
}

