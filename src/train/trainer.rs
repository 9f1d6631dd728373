//! One training run: tagged images in, a head and its cross-validated metrics out.
//!
//! Features come from [`super::features`] (cached); the k folds and the final fit on every image
//! are independent jobs run on one thread per core, each deterministic, collected in order, so
//! the result does not depend on the number of cores. Augmented variants of an image always go
//! with their image: into a fold's training side with it, never into validation, where only the
//! images themselves are judged (as in the portal, which evaluates on the photos you tagged).

use std::time::{Duration, Instant};

use crate::classifier::{Classifier, Kind};
use crate::dataset::{TaggedImage, MIN_IMAGES_PER_TAG};
use crate::error::{Error, Result};
use crate::head::{Head, LinearHead};

use super::features::{self, FeatureCache, Features};
use super::fit::{fit, FitOptions, FitReport, Samples, Targets};
use super::folds::{k_folds, stratified_k_folds};
use super::metrics::{self, Metrics, Summary};

/// Fits with at least this many training images hold a tenth out to decide when to stop; smaller
/// ones cannot spare images and stop when the training objective converges.
const MONITOR_MIN_IMAGES: usize = 50;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub multilabel: bool,
    /// Folds for cross-validation; below 2 skips evaluation.
    pub folds: usize,
    pub threshold: f32,
    /// Augmented variants per image (0: none; 1: flip; 2: flip and a jittered crop; ...).
    pub augment: usize,
    pub seed: u64,
    pub fit: FitOptions,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { multilabel: false, folds: 5, threshold: 0.5, augment: 0, seed: 0, fit: FitOptions::default() }
    }
}

/// What a training run produced.
pub struct Trained {
    pub head: LinearHead,
    pub tags: Vec<String>,
    pub kind: Kind,
    /// The images trained on (failed ones removed), in feature order.
    pub images: Vec<TaggedImage>,
    /// Images left out because they could not be read or decoded, with why.
    pub skipped: Vec<(TaggedImage, String)>,
    pub summary: Option<Summary>,
    /// Multiclass only: `confusion[truth][predicted]`, last column "below threshold".
    pub confusion: Option<Vec<Vec<usize>>>,
    pub final_fit: FitReport,
    pub folds: usize,
    /// Backbone passes run (not from the cache).
    pub computed_features: usize,
    pub feature_time: Duration,
    pub training_time: Duration,
}

fn training_error(problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Training { problem: problem.into(), fix: fix.into() }
}

/// Tag order: the base export's tags that the data has, in the export's order, then new tags
/// alphabetically.
fn tag_order(classifier: &Classifier, images: &[TaggedImage]) -> Vec<String> {
    let mut present: Vec<String> = images.iter().flat_map(|i| i.tags.iter().cloned()).collect();
    present.sort();
    present.dedup();
    let mut tags: Vec<String> = classifier.labels.iter().filter(|l| present.contains(l)).cloned().collect();
    tags.extend(present.into_iter().filter(|t| !classifier.labels.contains(t)));
    tags
}

fn check_data(images: &[TaggedImage], tags: &[String], multilabel: bool) -> Result<()> {
    if !multilabel {
        if let Some(image) = images.iter().find(|i| i.tags.len() > 1) {
            return Err(training_error(
                format!("{} is tagged {} at once, but multiclass training needs one tag per image", image.path.display(), image.tags.join(" and ")),
                "remove the copies from all but one tag folder, or train with --multilabel",
            ));
        }
        if tags.len() < 2 {
            return Err(training_error(
                format!("the data has {} tag(s); a multiclass classifier needs at least 2", tags.len()),
                "capture images of at least one more tag (cvedge capture --tag ...)",
            ));
        }
    }
    if tags.is_empty() {
        return Err(training_error("the data folder has no tagged images", "add some with `cvedge capture --tag TAG ...`"));
    }
    let few: Vec<String> = tags
        .iter()
        .filter_map(|t| {
            let n = images.iter().filter(|i| i.tags.contains(t)).count();
            (n < MIN_IMAGES_PER_TAG).then(|| format!("{t} ({n})"))
        })
        .collect();
    if !few.is_empty() {
        return Err(training_error(
            format!("tags with fewer than {MIN_IMAGES_PER_TAG} images: {}", few.join(", ")),
            format!("capture at least {MIN_IMAGES_PER_TAG} images of every tag (as the portal requires)"),
        ));
    }
    Ok(())
}

/// Everything a fit job needs, shared read-only across threads.
struct Problem<'a> {
    features: &'a Features,
    truth: Vec<Vec<usize>>,
    tags: usize,
    options: &'a TrainOptions,
}

impl Problem<'_> {
    fn targets(&self, images: &[usize], variants: usize) -> Targets {
        let rows = images.iter().flat_map(|&i| std::iter::repeat_n(i, variants));
        if self.options.multilabel {
            Targets::MultiLabel(rows.map(|i| self.truth[i].clone()).collect())
        } else {
            Targets::MultiClass(rows.map(|i| self.truth[i][0]).collect())
        }
    }

    /// Samples for `images`, with all their variants (training) or just the images themselves.
    fn samples(&self, images: &[usize], with_variants: bool) -> Samples {
        let variants = if with_variants { self.features.variants } else { 1 };
        let mut values = Vec::with_capacity(images.len() * variants * self.features.width);
        for &i in images {
            for v in 0..variants {
                values.extend_from_slice(self.features.row(i, v));
            }
        }
        Samples { features: values, width: self.features.width, targets: self.targets(images, variants) }
    }

    /// Fits on `images`, holding out a stratified tenth as the early-stopping monitor when there
    /// are enough of them.
    fn fit_on(&self, images: &[usize]) -> (LinearHead, FitReport) {
        let (train, monitor): (Vec<usize>, Vec<usize>) = if images.len() >= MONITOR_MIN_IMAGES {
            let strata: Vec<usize> = images.iter().map(|&i| self.truth[i].first().copied().unwrap_or(self.tags)).collect();
            let split = stratified_k_folds(&strata, 10, self.options.seed ^ 0x6d6f6e69746f72);
            let (train, monitor) = &split[0];
            (train.iter().map(|&p| images[p]).collect(), monitor.iter().map(|&p| images[p]).collect())
        } else {
            (images.to_vec(), vec![])
        };
        let monitor = (!monitor.is_empty()).then(|| self.samples(&monitor, false));
        fit(&self.samples(&train, true), monitor.as_ref(), self.tags, &self.options.fit)
    }

    fn probabilities(&self, head: &LinearHead, images: &[usize]) -> Vec<Vec<f32>> {
        images
            .iter()
            .map(|&i| {
                let mut out = vec![0.0; self.tags];
                head.apply(self.features.row(i, 0), &mut out);
                out
            })
            .collect()
    }
}

/// Result of one fold: its metrics and, for multiclass, its confusion matrix.
type FoldResult = (Metrics, Option<Vec<Vec<usize>>>);

fn evaluate_fold(problem: &Problem, tag_names: &[String], train: &[usize], validation: &[usize]) -> Result<FoldResult> {
    let (head, _) = problem.fit_on(train);
    let probabilities = problem.probabilities(&head, validation);
    let threshold = problem.options.threshold;
    let evaluated = if problem.options.multilabel {
        let truth: Vec<Vec<usize>> = validation.iter().map(|&i| problem.truth[i].clone()).collect();
        metrics::multilabel(tag_names, &truth, &probabilities, threshold).map(|m| (m, None))
    } else {
        let truth: Vec<usize> = validation.iter().map(|&i| problem.truth[i][0]).collect();
        metrics::multiclass(tag_names, &truth, &probabilities, threshold)
            .and_then(|m| Ok((m, Some(metrics::confusion(&truth, &probabilities, threshold)?))))
    };
    evaluated.map_err(|e| Error::Inference(format!("evaluation: {e}")))
}

/// Runs `jobs` on one thread per core; results come back in job order.
fn run_jobs<T: Send>(jobs: usize, progress: &indicatif::ProgressBar, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs).max(1);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = vec![];
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= jobs {
                            return done;
                        }
                        done.push((i, job(i)));
                        progress.inc(1);
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a training job panicked")).collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Progress bars draw on stderr when it is a terminal and hide otherwise.
pub trait Progress {
    fn bar(&self, message: &'static str, total: usize) -> indicatif::ProgressBar;
}

/// No progress output (tests, JSON mode, libraries).
pub struct Quiet;

impl Progress for Quiet {
    fn bar(&self, _: &'static str, total: usize) -> indicatif::ProgressBar {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_length(total as u64);
        bar
    }
}

/// Bars on stderr with time left (hidden by indicatif when stderr is not a terminal).
pub struct Bars;

impl Progress for Bars {
    fn bar(&self, message: &'static str, total: usize) -> indicatif::ProgressBar {
        let style = indicatif::ProgressStyle::with_template("{msg:>9} [{bar:30}] {pos}/{len}  {elapsed} elapsed, {eta} left")
            .expect("the template is valid")
            .progress_chars("=> ");
        indicatif::ProgressBar::new(total as u64).with_style(style).with_message(message)
    }
}

/// Trains a head for `classifier`'s backbone on `images`.
pub fn train(classifier: &Classifier, images: Vec<TaggedImage>, cache: &FeatureCache, options: &TrainOptions, progress: &dyn Progress) -> Result<Trained> {
    if !(0.0..=1.0).contains(&options.threshold) {
        return Err(Error::Option(format!("threshold {} is not a probability; use a value from 0 to 1", options.threshold)));
    }
    let tags = tag_order(classifier, &images);
    check_data(&images, &tags, options.multilabel)?;

    let started = Instant::now();
    let bar = progress.bar("features", images.len());
    let features = features::extract(classifier, cache, &images, options.augment + 1, options.seed, &bar)?;
    bar.finish();
    let feature_time = started.elapsed();

    // Unreadable images are left out, and the data checked again without them.
    let failed: Vec<usize> = features.failed.iter().map(|(i, _)| *i).collect();
    let skipped: Vec<(TaggedImage, String)> = features.failed.iter().map(|(i, e)| (images[*i].clone(), e.to_string())).collect();
    let kept: Vec<usize> = (0..images.len()).filter(|i| !failed.contains(i)).collect();
    let kept_images: Vec<TaggedImage> = kept.iter().map(|&i| images[i].clone()).collect();
    check_data(&kept_images, &tags, options.multilabel)?;

    let truth: Vec<Vec<usize>> =
        images.iter().map(|i| i.tags.iter().map(|t| tags.iter().position(|x| x == t).expect("tag listed")).collect()).collect();
    let problem = Problem { features: &features, truth, tags: tags.len(), options };

    let started = Instant::now();
    let folds = if options.folds >= 2 {
        if options.multilabel {
            k_folds(kept.len(), options.folds, options.seed)
        } else {
            stratified_k_folds(&kept.iter().map(|&i| problem.truth[i][0]).collect::<Vec<_>>(), options.folds, options.seed)
        }
    } else {
        vec![]
    };
    // Fold positions index `kept`; map them back to image indices.
    let folds: Vec<(Vec<usize>, Vec<usize>)> =
        folds.into_iter().map(|(t, v)| (t.into_iter().map(|p| kept[p]).collect(), v.into_iter().map(|p| kept[p]).collect())).collect();
    let bar = progress.bar("training", folds.len() + 1);
    enum Job {
        Fold(Result<FoldResult>),
        Final(LinearHead, FitReport),
    }
    let mut results = run_jobs(folds.len() + 1, &bar, |job| match folds.get(job) {
        Some((train, validation)) => Job::Fold(evaluate_fold(&problem, &tags, train, validation)),
        None => {
            let (head, report) = problem.fit_on(&kept);
            Job::Final(head, report)
        }
    });
    bar.finish();
    let Some(Job::Final(head, final_fit)) = results.pop() else { unreachable!("the last job is the final fit") };
    let mut per_fold = vec![];
    let mut confusion: Option<Vec<Vec<usize>>> = None;
    for result in results {
        let Job::Fold(result) = result else { unreachable!("only the last job is the final fit") };
        let (fold_metrics, fold_confusion) = result?;
        per_fold.push(fold_metrics);
        if let Some(matrix) = fold_confusion {
            let total = confusion.get_or_insert_with(|| vec![vec![0; tags.len() + 1]; tags.len()]);
            for (row, add) in total.iter_mut().zip(matrix) {
                row.iter_mut().zip(add).for_each(|(a, b)| *a += b);
            }
        }
    }
    let summary = if per_fold.is_empty() { None } else { Some(metrics::summarize(&per_fold).map_err(|e| Error::Inference(format!("evaluation: {e}")))?) };
    Ok(Trained {
        head,
        kind: if options.multilabel { Kind::MultiLabel } else { Kind::MultiClass },
        tags,
        images: kept_images,
        skipped,
        summary,
        confusion,
        final_fit,
        folds: per_fold.len(),
        computed_features: features.computed,
        feature_time,
        training_time: started.elapsed(),
    })
}
