//! The classifier: an export's package, preprocessing, engine and head, assembled once and then
//! used per frame. The preprocessing rules table lives here because it needs both what the
//! package says and what the engine learnt from the graph.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::{self, Engine, EngineOptions, Generation, GraphFacts, InputSpec};
use crate::error::{Error, Result};
use crate::head::{Activation, Head};
use crate::package::ExportPackage;
use crate::preprocess::{ColorOrder, Conventions, Preprocess, Preprocessor, Recipe, ValueRange};

/// Default per-tag probability threshold, as in the portal.
pub const DEFAULT_THRESHOLD: f32 = 0.5;
/// The photo `--engine auto` compares engines on (a real photo: int8 ranges are calibrated on
/// photos, and a synthetic pattern would test the engines where no camera ever looks).
const CHECK_IMAGE: &[u8] = include_bytes!("../models/samples/cat.jpg");
/// B, G, R means the 2019 TFLite export expects the caller to subtract.
pub const LEGACY_MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

/// Options a user may set; `None` means "what the export implies".
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub recipe: Option<Recipe>,
    pub color: Option<ColorOrder>,
    pub range: Option<ValueRange>,
    pub threshold: Option<f32>,
    pub engine: EngineOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One tag per image (softmax).
    MultiClass,
    /// Each tag judged on its own (sigmoid).
    MultiLabel,
}

/// Probabilities for one image, in labels.txt order, with where the time went.
#[derive(Debug, Clone)]
pub struct Classification {
    pub probabilities: Vec<f32>,
    pub preprocess: Duration,
    pub inference: Duration,
}

pub struct Classifier {
    pub package: ExportPackage,
    pub labels: Vec<String>,
    pub preprocessor: Preprocessor,
    pub engine: Box<dyn Engine>,
    pub head: Box<dyn Head>,
    pub facts: GraphFacts,
    pub kind: Kind,
    pub threshold: f32,
    /// The iteration predictions name: the export's own, or the id of a head trained on the
    /// device (empty when the export does not say).
    pub iteration_id: String,
}

impl Classifier {
    /// Loads an export (zip, folder, model file), a trained iteration's folder, or an
    /// iterations folder (its published iteration).
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Classifier> {
        let classifier = match crate::iteration::resolve(path.as_ref())? {
            Some(dir) => crate::iteration::load_classifier(&dir, options),
            None => Classifier::load_export(path, options),
        };
        crate::memory::release_freed();
        classifier
    }

    /// Loads an export as it is, with the head it was exported with.
    pub fn load_export(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Classifier> {
        Classifier::from_package(ExportPackage::load(path)?, options)
    }

    /// Assembles a classifier from an export already read (from a file or from memory).
    pub fn from_package(mut package: ExportPackage, options: &LoadOptions) -> Result<Classifier> {
        let analysed = engine::analyse(&mut package, &options.engine)?;
        Classifier::from_analysed(package, analysed, options)
    }

    /// As [`Classifier::from_package`], on what [`engine::analyse`] found in the package.
    pub fn from_analysed(mut package: ExportPackage, analysed: engine::Analysed, options: &LoadOptions) -> Result<Classifier> {
        let labels = package.labels.clone().or_else(|| analysed.facts.embedded_labels.clone()).ok_or_else(|| {
            Error::package(
                &package.origin,
                "no labels.txt beside the model, and the graph does not name its tags",
                "put the export's labels.txt (one tag per line, in output order) beside the model",
            )
        })?;
        if labels.len() != analysed.head.tags() {
            return Err(Error::LabelCount { path: package.origin.clone(), labels: labels.len(), outputs: analysed.head.tags() });
        }
        let input = analysed.input.clone();
        let conventions = conventions(&package, &analysed.facts, &input, options);
        let preprocessor = Preprocessor { conventions, layout: input.layout, width: input.width, height: input.height };
        let mut check = vec![0f32; preprocessor.tensor_len()];
        if options.engine.choice == engine::EngineChoice::Auto {
            let image = crate::source::decode(CHECK_IMAGE, "the built-in check image")?;
            preprocessor.prepare(&image, &mut check);
        }
        let loaded = engine::build(&package, analysed, &options.engine, &check)?;
        // The bytes live on inside the engine; no need to hold a second copy.
        package.model_bytes = Vec::new();
        let kind = kind(&package, &loaded.facts);
        let threshold = options.threshold.unwrap_or(DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::Option(format!("threshold {threshold} is not a probability; use a value from 0 to 1")));
        }
        let iteration_id = package.iteration_id().unwrap_or_default().to_owned();
        Ok(Classifier { package, labels, preprocessor, engine: loaded.engine, head: loaded.head, facts: loaded.facts, kind, threshold, iteration_id })
    }

    /// Classifies one decoded, upright RGB image.
    pub fn classify(&self, image: &image::RgbImage) -> Result<Classification> {
        let started = Instant::now();
        let mut tensor = vec![0f32; self.preprocessor.tensor_len()];
        self.preprocessor.prepare(image, &mut tensor);
        let preprocessed = Instant::now();
        let features = self.engine.run(&tensor, 1)?;
        let mut probabilities = vec![0f32; self.head.tags()];
        self.head.apply(&features, &mut probabilities);
        Ok(Classification { probabilities, preprocess: preprocessed - started, inference: preprocessed.elapsed() })
    }

    /// The backbone's features for one image: preprocessing and engine, without the head (what
    /// training fits a new head on). `tensor` is scratch space of `preprocessor.tensor_len()`.
    pub fn backbone(&self, image: &image::RgbImage, tensor: &mut [f32]) -> Result<Vec<f32>> {
        self.preprocessor.prepare(image, tensor);
        self.engine.run(tensor, 1)
    }

    /// Tags at or above the threshold: every such tag for multilabel, the best one for multiclass.
    pub fn detected(&self, probabilities: &[f32]) -> Vec<usize> {
        let mut above: Vec<usize> = (0..probabilities.len()).filter(|&i| probabilities[i] >= self.threshold).collect();
        above.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        if self.kind == Kind::MultiClass {
            above.truncate(1);
        }
        above
    }
}

fn metadata<'a>(package: &'a ExportPackage, facts: &'a GraphFacts, key: &str) -> Option<&'a str> {
    package.metadata.get(key).or_else(|| facts.metadata_props.get(key)).map(String::as_str)
}

/// The recipe the export implies: its metadata when present, else its input size (227 is the
/// legacy SqueezeNet family, 300 is S1, anything else newer General (compact)).
pub fn default_recipe(package: &ExportPackage, facts: &GraphFacts, input: &InputSpec) -> Recipe {
    match metadata(package, facts, "CustomVision.Preprocess.ResizeMethod") {
        Some("Stretch") => Recipe::Stretch,
        Some(m) if m.starts_with("ByShorterSide") => {
            let target = metadata(package, facts, "CustomVision.Preprocess.TargetWidth")
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|t| *t as usize >= input.width.min(input.height))
                .unwrap_or(256);
            Recipe::ShorterSide { target }
        }
        _ => match input.width {
            227 => Recipe::LegacySquare256,
            300 => Recipe::Stretch,
            _ => Recipe::ShorterSide { target: 256 },
        },
    }
}

/// Colour order, range and mean per `shared/docs/custom-vision-exports.md`. The metadata file's
/// `Image.*` keys are wrong for TF/TFLite exports and are ignored there; only ONNX's own
/// `metadata_props` are trusted, and only for current exports.
fn conventions(package: &ExportPackage, facts: &GraphFacts, input: &InputSpec, options: &LoadOptions) -> Conventions {
    let recipe = options.recipe.unwrap_or_else(|| default_recipe(package, facts, input));
    let s1 = input.width == 300 || recipe == Recipe::Stretch;
    let (color, range) = match facts.generation {
        Generation::OnnxLegacy => (ColorOrder::Bgr, ValueRange::Byte),
        Generation::OnnxCurrent => {
            let color = match facts.metadata_props.get("Image.BitmapPixelFormat").map(String::as_str) {
                Some("Bgr8") | None => ColorOrder::Bgr,
                Some(_) => ColorOrder::Rgb,
            };
            let range = match facts.metadata_props.get("Image.NominalPixelRange").map(String::as_str) {
                Some("NominalRange_0_255") | None => ValueRange::Byte,
                Some(_) => ValueRange::Unit,
            };
            (color, range)
        }
        Generation::TfFrozenGraph | Generation::TfLite => (if s1 { ColorOrder::Rgb } else { ColorOrder::Bgr }, ValueRange::Byte),
    };
    // Only the 2019 TFLite generation (output `loss`, no batch-norm on the input) leaves the mean
    // subtraction to the caller.
    let mean_bgr = (facts.generation == Generation::TfLite && !facts.has_mean_layer && facts.output_name.contains("loss"))
        .then_some(LEGACY_MEAN_BGR);
    Conventions { recipe, color: options.color.unwrap_or(color), range: options.range.unwrap_or(range), mean_bgr }
}

fn kind(package: &ExportPackage, facts: &GraphFacts) -> Kind {
    match metadata(package, facts, "CustomVision.Postprocess.Method") {
        Some("ClassificationMultiLabel") => Kind::MultiLabel,
        Some("ClassificationMultiClass") => Kind::MultiClass,
        _ if facts.activation == Activation::Sigmoid => Kind::MultiLabel,
        _ => Kind::MultiClass,
    }
}
