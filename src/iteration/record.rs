//! The files of one iteration, as serde types: `iteration.json` (what it is and how good it
//! is), `head.json` (the weights) and `data.json` (which images, with which tags).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classifier::LoadOptions;
use crate::error::{Error, Result};
use crate::head::{Activation, LinearHead};
use crate::preprocess::{ColorOrder, Conventions, ValueRange};
use crate::train::metrics::Summary;
use crate::train::TrainOptions;

/// `iteration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    pub number: u32,
    /// A UUID, as Custom Vision's iteration ids are; predictions carry it.
    pub id: String,
    /// UTC, RFC 3339.
    pub created: String,
    /// `multiclass` or `multilabel`.
    pub kind: String,
    pub tags: Vec<String>,
    /// The threshold the metrics were computed at, and `predict`'s default for this iteration.
    pub threshold: f32,
    pub base: BaseRecord,
    pub preprocessing: PreprocessingRecord,
    pub training: TrainingRecord,
    /// The portal's numbers over the folds (absent when trained with fewer than 2 folds).
    pub performance: Option<Summary>,
    /// Multiclass: `confusion[truth][predicted]` summed over folds; last column: below threshold.
    pub confusion: Option<Vec<Vec<usize>>>,
}

/// The export whose backbone the head sits on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// SHA1 of the model file; the copy lives in `bases/<sha1>/`.
    pub sha1: String,
    pub format: String,
    /// Where it was loaded from when the iteration was trained.
    pub origin: String,
    /// The export's own Custom Vision iteration id, if its manifest had one.
    pub iteration: Option<String>,
    pub tags: Vec<String>,
}

/// The preprocessing the features were computed with, so loading the iteration later uses the
/// same even if the user overrode the export's defaults when training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessingRecord {
    pub recipe: String,
    pub color: String,
    pub range: String,
}

impl PreprocessingRecord {
    pub fn of(conventions: &Conventions) -> PreprocessingRecord {
        PreprocessingRecord {
            recipe: conventions.recipe.to_string(),
            color: match conventions.color {
                ColorOrder::Bgr => "BGR",
                ColorOrder::Rgb => "RGB",
            }
            .to_owned(),
            range: match conventions.range {
                ValueRange::Byte => "0..255",
                ValueRange::Unit => "0..1",
            }
            .to_owned(),
        }
    }

    /// Fills the options the user left unset with the recorded preprocessing, so the iteration
    /// sees images exactly as its features were computed.
    pub fn fill(&self, options: &mut LoadOptions) {
        options.recipe = options.recipe.or_else(|| self.recipe.parse().ok());
        options.color = options.color.or(match self.color.as_str() {
            "RGB" => Some(ColorOrder::Rgb),
            "BGR" => Some(ColorOrder::Bgr),
            _ => None,
        });
        options.range = options.range.or(match self.range.as_str() {
            "0..1" => Some(ValueRange::Unit),
            "0..255" => Some(ValueRange::Byte),
            _ => None,
        });
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub options: TrainOptions,
    pub images: usize,
    /// Images left out (unreadable), with why.
    pub skipped: Vec<String>,
    pub folds: usize,
    /// L-BFGS iterations of the final fit, and the one whose weights were kept.
    pub epochs: usize,
    pub best_epoch: usize,
    pub computed_features: usize,
    pub feature_seconds: f64,
    pub training_seconds: f64,
}

/// `head.json`: `weights[tag]` is one row of `width` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadRecord {
    pub activation: String,
    pub width: usize,
    pub bias: Vec<f32>,
    pub weights: Vec<Vec<f32>>,
}

impl HeadRecord {
    pub fn of(head: &LinearHead) -> HeadRecord {
        HeadRecord {
            activation: head.activation.to_string(),
            width: head.width,
            bias: head.bias.clone(),
            weights: head.weights.chunks(head.width.max(1)).map(<[f32]>::to_vec).collect(),
        }
    }

    pub fn to_head(&self, path: &Path) -> Result<LinearHead> {
        let activation = match self.activation.as_str() {
            "softmax" => Activation::Softmax,
            "sigmoid" => Activation::Sigmoid,
            other => return Err(damaged(path, format!("unknown activation {other:?}"))),
        };
        if self.weights.len() != self.bias.len() || self.weights.iter().any(|r| r.len() != self.width) {
            return Err(damaged(path, "the weights are not one row of `width` values per tag".to_owned()));
        }
        if self.weights.iter().flatten().chain(&self.bias).any(|v| !v.is_finite()) {
            return Err(damaged(path, "the weights contain NaN or infinity".to_owned()));
        }
        Ok(LinearHead::new(self.weights.concat(), self.bias.clone(), activation))
    }
}

/// `data.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataManifest {
    pub images: Vec<DataImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataImage {
    pub sha1: String,
    /// The snapshot, relative to the iterations folder (`images/<sha1>.<ext>`).
    pub file: String,
    /// Where it was in the data folder when trained.
    pub source: String,
    pub tags: Vec<String>,
}

pub(super) fn damaged(path: &Path, problem: String) -> Error {
    Error::Iteration {
        path: path.to_path_buf(),
        problem,
        fix: "the iteration is damaged: train a new one (or restore the folder from a backup)".to_owned(),
    }
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| damaged(path, format!("cannot parse it ({e})")))
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Inference(format!("serialising {}: {e}", path.display())))?;
    crate::fsutil::write_atomic(path, &text)
}
