//! Fitting a linear head on backbone features: softmax cross-entropy for multiclass, one sigmoid
//! per tag for multilabel, L2 on the weights, L-BFGS, early stopping.
//!
//! # Why this shape
//! - The backbone is frozen, so the head is a convex problem (multinomial or binary logistic
//!   regression), which L-BFGS (what scikit-learn's LogisticRegression uses) solves in tens of
//!   iterations with no learning rate to tune; a first-order optimiser (Adam) needed hundreds of
//!   epochs and a rate that suited one backbone width but overshot on another. Full-batch steps
//!   make every run deterministic: no sampling, no thread-order dependent sums.
//! - Features are standardised (zero mean, unit variance per feature) before fitting, so one
//!   learning rate suits every backbone; the scaling is folded back into `W` and `b` at the end,
//!   so the result is a plain [`LinearHead`] on raw features, exactly what inference runs.
//! - Early stopping watches the loss on monitor images the fit never trains on (the caller's
//!   choice; when there are none, it stops when the training objective stops improving) and
//!   keeps the best weights seen.

use crate::head::{Activation, LinearHead};

/// What each sample should output.
#[derive(Debug, Clone)]
pub enum Targets {
    /// One tag index per sample (softmax).
    MultiClass(Vec<usize>),
    /// Each sample's tag indices (independent sigmoids); empty = negative for every tag.
    MultiLabel(Vec<Vec<usize>>),
}

impl Targets {
    fn len(&self) -> usize {
        match self {
            Targets::MultiClass(t) => t.len(),
            Targets::MultiLabel(t) => t.len(),
        }
    }

    fn activation(&self) -> Activation {
        match self {
            Targets::MultiClass(_) => Activation::Softmax,
            Targets::MultiLabel(_) => Activation::Sigmoid,
        }
    }
}

/// Samples: `features` holds `targets.len()` rows of `width` values.
#[derive(Debug, Clone)]
pub struct Samples {
    pub features: Vec<f32>,
    pub width: usize,
    pub targets: Targets,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitOptions {
    /// L2 penalty on the (standardised) weights, added to the mean loss as `l2/2 * |W|^2`.
    pub l2: f32,
    /// L-BFGS iterations at most.
    pub max_epochs: usize,
    /// Iterations without a better monitor loss before stopping.
    pub patience: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { l2: 1e-2, max_epochs: 200, patience: 10 }
    }
}

/// Corrections L-BFGS remembers.
const HISTORY: usize = 10;

/// How the fit went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitReport {
    pub epochs: usize,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// The loss early stopping watched at that epoch (monitor loss, else training objective).
    pub best_loss: f32,
}

/// Per-feature mean and inverse standard deviation. Constant features get scale 0 (they carry
/// no information), and no feature's deviation counts as less than a tenth of the median
/// feature's: a feature that is almost always zero in the training images (deviation ~1e-5)
/// would otherwise turn one unseen image's ordinary value into a standardised 20,000 and let
/// that single image's loss decide early stopping (seen on a real fold). A floor, unlike
/// clipping, keeps standardisation linear, so it still folds into the head's weights.
struct Standardizer {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Standardizer {
    fn of(samples: &Samples) -> Standardizer {
        let (n, d) = (samples.len().max(1) as f64, samples.width);
        let mut sum = vec![0f64; d];
        let mut sq = vec![0f64; d];
        for row in samples.features.chunks_exact(d) {
            for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                *s += v as f64;
                *q += v as f64 * v as f64;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std: Vec<f64> = (0..d).map(|j| (sq[j] / n - mean[j] * mean[j]).max(0.0).sqrt()).collect();
        let mut informative: Vec<f64> = std.iter().copied().filter(|s| *s > 1e-6).collect();
        informative.sort_by(f64::total_cmp);
        let floor = informative.get(informative.len() / 2).map_or(0.0, |median| median / 10.0);
        let inv_std = std.iter().map(|&s| if s > 1e-6 { (1.0 / s.max(floor)) as f32 } else { 0.0 }).collect();
        Standardizer { mean: mean.into_iter().map(|m| m as f32).collect(), inv_std }
    }

    fn apply(&self, features: &[f32]) -> Vec<f32> {
        let d = self.mean.len();
        let mut out = features.to_vec();
        for row in out.chunks_exact_mut(d) {
            for ((v, mean), inv_std) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = (*v - mean) * inv_std;
            }
        }
        out
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it (a single
/// running sum is a dependency chain it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += alpha * x`.
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// Mean loss over `z` (standardised rows) for the parameters `x` (`tags` rows of `d` weights,
/// then `tags` biases) and, when `grad` is given, its gradient (without L2).
fn loss_and_gradient(x: &[f32], tags: usize, z: &[f32], d: usize, targets: &Targets, mut grad: Option<&mut [f32]>) -> f32 {
    let n = targets.len();
    if n == 0 {
        return 0.0;
    }
    let (weights, bias) = x.split_at(tags * d);
    let mut logits = vec![0f32; tags];
    let mut total = 0f64;
    for (i, row) in z.chunks_exact(d).enumerate() {
        for (t, logit) in logits.iter_mut().enumerate() {
            *logit = bias[t] + dot(row, &weights[t * d..(t + 1) * d]);
        }
        // `logits` becomes dLoss/dlogit for this sample.
        match targets {
            Targets::MultiClass(truth) => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
                let log_sum = max + sum.ln();
                total += (log_sum - logits[truth[i]]) as f64;
                for l in logits.iter_mut() {
                    *l = (*l - log_sum).exp();
                }
                logits[truth[i]] -= 1.0;
            }
            Targets::MultiLabel(truth) => {
                for (t, l) in logits.iter_mut().enumerate() {
                    let y = if truth[i].contains(&t) { 1.0 } else { 0.0 };
                    // log(1 + e^-|l|) + max(l, 0) - y*l, stable for any l.
                    total += ((-l.abs()).exp().ln_1p() + l.max(0.0) - y * *l) as f64;
                    *l = 1.0 / (1.0 + (-*l).exp()) - y;
                }
            }
        }
        if let Some(g) = grad.as_deref_mut() {
            let (gw, gb) = g.split_at_mut(tags * d);
            for (t, &dl) in logits.iter().enumerate() {
                gb[t] += dl / n as f32;
                axpy(dl / n as f32, row, &mut gw[t * d..(t + 1) * d]);
            }
        }
    }
    (total / n as f64) as f32
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// The training objective (mean loss + L2 on the weights) and its gradient.
struct Objective<'a> {
    z: &'a [f32],
    d: usize,
    tags: usize,
    targets: &'a Targets,
    l2: f32,
}

impl Objective<'_> {
    fn eval(&self, x: &[f32], grad: &mut [f32]) -> f64 {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let loss = loss_and_gradient(x, self.tags, self.z, self.d, self.targets, Some(grad)) as f64;
        let weights = &x[..self.tags * self.d];
        axpy(self.l2, weights, &mut grad[..self.tags * self.d]);
        loss + dot64(weights, weights) * self.l2 as f64 / 2.0
    }
}

/// The L-BFGS direction `-H g` from the stored corrections (two-loop recursion).
fn direction(g: &[f32], history: &std::collections::VecDeque<(Vec<f32>, Vec<f32>)>) -> Vec<f32> {
    let mut q: Vec<f64> = g.iter().map(|v| *v as f64).collect();
    let mut alphas = vec![];
    for (s, y) in history.iter().rev() {
        let rho = 1.0 / dot64(y, s);
        let alpha = rho * s.iter().zip(&q).map(|(s, q)| *s as f64 * q).sum::<f64>();
        q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha * *y as f64);
        alphas.push((rho, alpha));
    }
    let gamma = match history.back() {
        Some((s, y)) => dot64(s, y) / dot64(y, y),
        // First step: a unit-length move along the gradient, whatever its scale.
        None => 1.0 / dot64(g, g).sqrt().max(1e-12),
    };
    q.iter_mut().for_each(|q| *q *= gamma);
    for ((s, y), (rho, alpha)) in history.iter().zip(alphas.into_iter().rev()) {
        let beta = rho * y.iter().zip(&q).map(|(y, q)| *y as f64 * q).sum::<f64>();
        q.iter_mut().zip(s).for_each(|(q, s)| *q += (alpha - beta) * *s as f64);
    }
    q.into_iter().map(|v| -v as f32).collect()
}

/// Fits a head on `train`, stopping early on `monitor` when given. The weights start at zero,
/// not at the export's head: exported heads have very large weights (their probabilities are
/// near 0 or 1), and starting from them gave overconfident heads that generalised worse on the
/// fixtures than starting from scratch.
pub fn fit(train: &Samples, monitor: Option<&Samples>, tags: usize, options: &FitOptions) -> (LinearHead, FitReport) {
    let d = train.width;
    let scaler = Standardizer::of(train);
    let z = scaler.apply(&train.features);
    let monitor_z = monitor.filter(|m| !m.is_empty()).map(|m| (scaler.apply(&m.features), &m.targets));
    let objective = Objective { z: &z, d, tags, targets: &train.targets, l2: options.l2 };
    let mut x = vec![0f32; tags * d + tags];
    let mut grad = vec![0f32; x.len()];
    let mut value = objective.eval(&x, &mut grad);
    let mut history = std::collections::VecDeque::with_capacity(HISTORY);
    let mut best = (x.clone(), f32::INFINITY, 0usize);
    let mut epoch = 0;
    while epoch < options.max_epochs {
        let watched = match &monitor_z {
            Some((mz, mt)) => loss_and_gradient(&x, tags, mz, d, mt, None),
            None => value as f32,
        };
        // "Improved" means by more than a relative 1e-4, so a loss creeping down by rounding
        // noise does not keep a converged fit running to max_epochs.
        if watched < best.1 * (1.0 - 1e-4) || !best.1.is_finite() {
            best = (x.clone(), watched, epoch);
        } else if epoch - best.2 >= options.patience {
            break;
        }
        epoch += 1;
        let p = direction(&grad, &history);
        let slope = dot64(&grad, &p);
        if slope >= 0.0 || grad.iter().all(|g| g.abs() < 1e-6) {
            break; // converged (or no descent direction left in f32)
        }
        // Backtracking line search (Armijo): the full L-BFGS step is usually accepted.
        let mut step = 1.0f32;
        let mut next_grad = vec![0f32; x.len()];
        let (next_x, next_value) = loop {
            let candidate: Vec<f32> = x.iter().zip(&p).map(|(x, p)| x + step * p).collect();
            let v = objective.eval(&candidate, &mut next_grad);
            if v <= value + 1e-4 * step as f64 * slope || step < 1e-10 {
                break (candidate, v);
            }
            step *= 0.5;
        };
        let s_vec: Vec<f32> = next_x.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y_vec: Vec<f32> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        if dot64(&s_vec, &y_vec) > 1e-12 {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back((s_vec, y_vec));
        }
        let improvement = value - next_value;
        (x, grad, value) = (next_x, next_grad, next_value);
        if monitor_z.is_none() && improvement.abs() <= 1e-9 * value.abs().max(1.0) {
            best = (x.clone(), value as f32, epoch);
            break;
        }
    }
    if monitor_z.is_none() && (value as f32) < best.1 {
        best = (x.clone(), value as f32, epoch);
    }
    let (params, best_loss, best_epoch) = best;
    // Back to raw features: W_raw = W_std * inv_std, b_raw = b_std - W_raw · mean.
    let (weights, bias) = params.split_at(tags * d);
    let (mut weights, mut bias) = (weights.to_vec(), bias.to_vec());
    for t in 0..tags {
        let row = &mut weights[t * d..(t + 1) * d];
        row.iter_mut().zip(&scaler.inv_std).for_each(|(w, inv_std)| *w *= inv_std);
        bias[t] -= dot(row, &scaler.mean);
    }
    let head = LinearHead::new(weights, bias, train.targets.activation());
    (head, FitReport { epochs: epoch, best_epoch, best_loss })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Head;

    /// Two well separated clusters per tag in 3-D, with a useless constant feature.
    fn blobs(tags: usize, per_tag: usize) -> Samples {
        let mut features = vec![];
        let mut truth = vec![];
        for t in 0..tags {
            for i in 0..per_tag {
                let jitter = (i as f32 * 0.37).sin() * 0.3;
                features.extend([t as f32 * 2.0 + jitter, 10.0 - t as f32 + jitter * 0.5, 7.0, jitter]);
                truth.push(t);
            }
        }
        Samples { features, width: 4, targets: Targets::MultiClass(truth) }
    }

    fn accuracy(head: &LinearHead, samples: &Samples) -> f32 {
        let Targets::MultiClass(truth) = &samples.targets else { unreachable!() };
        let mut out = vec![0.0; head.tags()];
        let right = samples
            .features
            .chunks_exact(samples.width)
            .zip(truth)
            .filter(|(row, &t)| {
                head.apply(row, &mut out);
                out.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 == t
            })
            .count();
        right as f32 / truth.len() as f32
    }

    #[test]
    fn separable_multiclass_is_learnt_and_the_fit_is_deterministic() {
        let data = blobs(3, 20);
        let (head, report) = fit(&data, None, 3, &FitOptions::default());
        assert_eq!(accuracy(&head, &data), 1.0);
        assert!(report.epochs <= FitOptions::default().max_epochs);
        let (again, _) = fit(&data, None, 3, &FitOptions::default());
        assert_eq!(head.weights, again.weights);
        assert_eq!(head.bias, again.bias);
        // The constant feature got no weight (it was scaled to zero, not divided by ~0).
        assert!((0..3).all(|t| head.weights[t * 4 + 2] == 0.0));
    }

    #[test]
    fn standardisation_is_folded_back_into_raw_space() {
        // Same data with features scaled by 1000 and shifted: raw-space heads must agree on
        // probabilities, proving W and b were mapped back correctly.
        let data = blobs(2, 15);
        let mut scaled = data.clone();
        scaled.features.iter_mut().enumerate().for_each(|(i, v)| *v = *v * 1000.0 + (i % 4) as f32 * 50.0);
        let (a, _) = fit(&data, None, 2, &FitOptions::default());
        let (b, _) = fit(&scaled, None, 2, &FitOptions::default());
        let (mut pa, mut pb) = (vec![0.0; 2], vec![0.0; 2]);
        for (ra, rb) in data.features.chunks_exact(4).zip(scaled.features.chunks_exact(4)) {
            a.apply(ra, &mut pa);
            b.apply(rb, &mut pb);
            assert!((pa[0] - pb[0]).abs() < 1e-3, "{pa:?} vs {pb:?}");
        }
    }

    #[test]
    fn multilabel_learns_each_tag_on_its_own() {
        // Tag 0 follows feature 0's sign, tag 1 follows feature 1's sign.
        let mut features = vec![];
        let mut truth = vec![];
        for i in 0..40 {
            let (a, b) = (if i % 2 == 0 { 1.0 } else { -1.0 }, if (i / 2) % 2 == 0 { 1.0 } else { -1.0 });
            features.extend([a + (i as f32 * 0.1).sin() * 0.2, b]);
            truth.push([(a > 0.0).then_some(0), (b > 0.0).then_some(1)].into_iter().flatten().collect());
        }
        let data = Samples { features, width: 2, targets: Targets::MultiLabel(truth.clone()) };
        let (head, _) = fit(&data, None, 2, &FitOptions::default());
        assert_eq!(head.activation, Activation::Sigmoid);
        let mut out = vec![0.0; 2];
        for (row, tags) in data.features.chunks_exact(2).zip(&truth) {
            head.apply(row, &mut out);
            for t in 0..2 {
                assert_eq!(out[t] >= 0.5, tags.contains(&t), "{row:?} -> {out:?}");
            }
        }
    }

    #[test]
    fn early_stopping_keeps_the_best_monitor_epoch() {
        let train = blobs(2, 10);
        // A monitor set with the tags swapped: the better the fit, the worse the monitor loss,
        // so the best epoch is the first one.
        let mut monitor = blobs(2, 5);
        monitor.targets = Targets::MultiClass(match monitor.targets {
            Targets::MultiClass(t) => t.into_iter().map(|t| 1 - t).collect(),
            _ => unreachable!(),
        });
        let options = FitOptions { patience: 5, ..FitOptions::default() };
        let (head, report) = fit(&train, Some(&monitor), 2, &options);
        assert_eq!(report.best_epoch, 0);
        assert_eq!(report.epochs, 5, "stopped after `patience` iterations without improvement");
        // Epoch 0's weights are the zero initialisation: every image gets 1/2.
        let mut out = vec![0.0; 2];
        head.apply(&train.features[..4], &mut out);
        assert!((out[0] - 0.5).abs() < 1e-6);
    }
}
