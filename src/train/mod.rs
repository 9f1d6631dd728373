//! Training a new head on an export's backbone, on the device: the portal's train and
//! evaluate steps.
//!
//! # Layout
//! - [`features`]: decode, augment, preprocess and run the backbone once per image (and variant),
//!   streamed through one worker per core, cached on disk by the image's content hash.
//! - [`augment`]: the deterministic variants (mirror, jittered crop) `--augment` adds.
//! - [`fit`]: the head itself: softmax or independent sigmoids on standardised features, L2,
//!   L-BFGS, early stopping; folded back into a plain [`crate::head::LinearHead`].
//! - [`folds`]: deterministic k-fold splits of the training images (plain and stratified by tag),
//!   so every image is validated exactly once by a head that never saw it.
//! - [`metrics`]: one fold's validation probabilities in, [`metrics::Metrics`] out (multiclass and
//!   multilabel rules), the multiclass confusion matrix, and [`metrics::summarize`], which
//!   combines folds into the portal's JSON shape ([`metrics::Summary`]).
//! - `trainer` ([`train`]): one run: checks the data, gets the features, fits a head per fold and
//!   one on everything (in parallel, each deterministic), and summarises the folds.
//!
//! Storing the result is [`crate::iteration`]'s job.

pub mod augment;
pub mod features;
pub mod fit;
pub mod folds;
pub mod metrics;
mod trainer;

pub use trainer::{train, Bars, Progress, Quiet, TrainOptions, Trained};

/// Inputs the evaluation cannot make sense of. Kept local to training (rather than in
/// [`crate::Error`]) because these are caller bugs in the trainer, not user-facing conditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    #[error("image {image} has {found} probabilities but there are {expected} tags; pass one probability per tag, in tag order")]
    RowLength { image: usize, found: usize, expected: usize },

    #[error("{truths} ground truths for {images} images; pass exactly one ground truth per image")]
    TruthCount { truths: usize, images: usize },

    #[error("image {image}: ground-truth tag index {tag} is out of range for {tags} tags; tag indices count from 0 in tag order")]
    TagOutOfRange { image: usize, tag: usize, tags: usize },

    #[error("image {image}, tag {tag}: the probability is NaN; the head produced an invalid output, check its weights")]
    NotANumber { image: usize, tag: usize },

    #[error("the threshold is NaN; pass a threshold between 0 and 1")]
    ThresholdNotANumber,

    #[error("fold {fold} was evaluated with different tags than fold 0; evaluate every fold with the same tag list")]
    FoldTagsDiffer { fold: usize },

    #[error("no folds to summarize; evaluate at least one fold first")]
    NoFolds,
}
