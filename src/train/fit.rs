//! Fitting a linear head on backbone features: softmax cross-entropy for multiclass, one sigmoid
//! per tag for multilabel, L2 on the weights, full-batch Adam, early stopping.
//!
//! # Why this shape
//! - The backbone is frozen, so the head is a convex problem (multinomial or binary logistic
//!   regression). Full-batch steps make every run deterministic: no sampling, no thread-order
//!   dependent sums, the same result for the same features on every machine.
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
    pub learning_rate: f32,
    pub max_epochs: usize,
    /// Epochs without improvement before stopping.
    pub patience: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { l2: 1e-2, learning_rate: 0.01, max_epochs: 400, patience: 20 }
    }
}

/// How the fit went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitReport {
    pub epochs: usize,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// The loss early stopping watched at that epoch (monitor loss, else training objective).
    pub best_loss: f32,
}

/// Per-feature mean and inverse standard deviation; constant features get scale 0 (they carry
/// no information, and dividing by a near-zero deviation would amplify rounding noise).
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
            for j in 0..d {
                let v = row[j] as f64;
                sum[j] += v;
                sq[j] += v * v;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let inv_std = (0..d)
            .map(|j| {
                let var = (sq[j] / n - mean[j] * mean[j]).max(0.0);
                if var > 1e-12 { (1.0 / var.sqrt()) as f32 } else { 0.0 }
            })
            .collect();
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

/// The head's parameters in standardised feature space.
#[derive(Clone)]
struct Params {
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Mean loss over `z` (standardised rows) and, when `grad` is given, its gradient (without L2).
fn loss_and_gradient(params: &Params, z: &[f32], d: usize, targets: &Targets, mut grad: Option<&mut Params>) -> f32 {
    let k = params.bias.len();
    let n = targets.len();
    if n == 0 {
        return 0.0;
    }
    let mut logits = vec![0f32; k];
    let mut total = 0f64;
    for (i, row) in z.chunks_exact(d).enumerate() {
        for (t, logit) in logits.iter_mut().enumerate() {
            *logit = params.bias[t] + dot(row, &params.weights[t * d..(t + 1) * d]);
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
            for (t, &dl) in logits.iter().enumerate() {
                g.bias[t] += dl / n as f32;
                axpy(dl / n as f32, row, &mut g.weights[t * d..(t + 1) * d]);
            }
        }
    }
    (total / n as f64) as f32
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
    let mut params = Params { weights: vec![0.0; tags * d], bias: vec![0.0; tags] };
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut m = Params { weights: vec![0.0; tags * d], bias: vec![0.0; tags] };
    let mut v = m.clone();
    let mut best = (params.clone(), f32::INFINITY, 0usize);
    let mut epoch = 0;
    while epoch < options.max_epochs {
        epoch += 1;
        let mut grad = Params { weights: vec![0.0; tags * d], bias: vec![0.0; tags] };
        let data_loss = loss_and_gradient(&params, &z, d, &train.targets, Some(&mut grad));
        let penalty: f32 = params.weights.iter().map(|w| w * w).sum::<f32>() * options.l2 / 2.0;
        let watched = match &monitor_z {
            Some((mz, mt)) => loss_and_gradient(&params, mz, d, mt, None),
            None => data_loss + penalty,
        };
        // "Improved" means by more than a relative 1e-4, so a loss creeping down by rounding
        // noise does not keep a converged fit running to max_epochs.
        if watched < best.1 * (1.0 - 1e-4) || !best.1.is_finite() {
            best = (params.clone(), watched, epoch - 1);
        } else if epoch - 1 - best.2 >= options.patience {
            break;
        }
        axpy(options.l2, &params.weights, &mut grad.weights);
        let (c1, c2) = (1.0 - beta1.powi(epoch as i32), 1.0 - beta2.powi(epoch as i32));
        for (p, (g, (m, v))) in params
            .weights
            .iter_mut()
            .chain(params.bias.iter_mut())
            .zip(grad.weights.iter().chain(&grad.bias).zip(m.weights.iter_mut().chain(m.bias.iter_mut()).zip(v.weights.iter_mut().chain(v.bias.iter_mut()))))
        {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *p -= options.learning_rate * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    }
    let (params, best_loss, best_epoch) = best;
    // Back to raw features: W_raw = W_std * inv_std, b_raw = b_std - W_raw · mean.
    let mut weights = params.weights;
    let mut bias = params.bias;
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
        assert_eq!(report.epochs, 6);
        // Epoch 0's weights are the zero initialisation: every image gets 1/2.
        let mut out = vec![0.0; 2];
        head.apply(&train.features[..4], &mut out);
        assert!((out[0] - 0.5).abs() < 1e-6);
    }
}
