//! The head: the export's final fully connected layer and its activation, applied to the
//! backbone's features. Split out of the graph so a head trained on the device can replace it.
//! Outputs are probabilities; nothing downstream ever applies softmax or sigmoid again.

use std::fmt;

/// The final activation, which also tells multiclass (softmax) from multilabel (sigmoid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Softmax,
    Sigmoid,
    /// The graph ends without one (its outputs are taken as they are).
    Identity,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Softmax => "softmax",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "none",
        })
    }
}

impl Activation {
    pub fn apply(self, values: &mut [f32]) {
        match self {
            Activation::Softmax => {
                let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in values.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                values.iter_mut().for_each(|v| *v /= sum);
            }
            Activation::Sigmoid => values.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Activation::Identity => {}
        }
    }
}

/// The head stage.
pub trait Head: Send + Sync {
    /// Number of tags (outputs).
    fn tags(&self) -> usize;
    fn activation(&self) -> Activation;
    /// Features of one image in, probabilities out (`out.len() == self.tags()`).
    fn apply(&self, features: &[f32], out: &mut [f32]);
    /// The weights, when the head is a linear layer (what export and quantize rebuild graphs from).
    fn linear(&self) -> Option<&LinearHead> {
        None
    }
}

/// The index of the largest probability (the first one on a tie); `None` when there are none.
pub fn top(probabilities: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (tag, &p) in probabilities.iter().enumerate() {
        if best.is_none_or(|b| p > probabilities[b]) {
            best = Some(tag);
        }
    }
    best
}

/// `activation(W · features + b)`, with `W` as `tags` rows of `width` weights.
#[derive(Debug, Clone)]
pub struct LinearHead {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub width: usize,
    pub activation: Activation,
}

impl LinearHead {
    pub fn new(weights: Vec<f32>, bias: Vec<f32>, activation: Activation) -> LinearHead {
        let width = if bias.is_empty() { 0 } else { weights.len() / bias.len() };
        assert_eq!(width * bias.len(), weights.len(), "weights must be tags x width");
        LinearHead { weights, bias, width, activation }
    }
}

impl Head for LinearHead {
    fn tags(&self) -> usize {
        self.bias.len()
    }

    fn linear(&self) -> Option<&LinearHead> {
        Some(self)
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    fn apply(&self, features: &[f32], out: &mut [f32]) {
        assert_eq!(features.len(), self.width, "feature width mismatch");
        for ((o, row), b) in out.iter_mut().zip(self.weights.chunks_exact(self.width)).zip(&self.bias) {
            *o = b + row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>();
        }
        self.activation.apply(out);
    }
}

/// For graphs that could not be split: the engine already produced probabilities.
#[derive(Debug, Clone)]
pub struct PassThrough {
    pub tags: usize,
    /// The activation the graph ends with (informational: it has been applied already).
    pub activation: Activation,
}

impl Head for PassThrough {
    fn tags(&self) -> usize {
        self.tags
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    fn apply(&self, features: &[f32], out: &mut [f32]) {
        out.copy_from_slice(features);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_head_with_softmax_sums_to_one() {
        let head = LinearHead::new(vec![1.0, 0.0, 0.0, 1.0], vec![0.0, 1.0], Activation::Softmax);
        let mut out = [0.0; 2];
        head.apply(&[2.0, 2.0], &mut out);
        assert!((out[0] - 1.0 / (1.0 + 1f32.exp())).abs() < 1e-6);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_judges_each_tag_alone() {
        let mut v = [0.0, 100.0, -100.0];
        Activation::Sigmoid.apply(&mut v);
        assert_eq!(v[0], 0.5);
        assert!(v[1] > 0.999 && v[2] < 0.001);
    }
}
