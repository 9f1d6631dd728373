//! Calibration: the float graph run by tract on the device's own images with every planned tensor
//! made an output, to learn the ranges its activations take. Two passes: the first finds each
//! tensor's minimum and maximum, the second fills a histogram between them, from which the
//! percentile ranges are read (a few outliers then no longer stretch the scale for every value).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{type_proto, ModelProto, TypeProto, ValueInfoProto};
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::preprocess::{Preprocess, Preprocessor};

const BINS: usize = 2048;
/// The share of values left outside the percentile range at each end.
const TAIL: f64 = 1e-4;

/// Ranges per tensor, by method.
pub struct Ranges {
    pub minmax: HashMap<String, (f32, f32)>,
    pub percentile: HashMap<String, (f32, f32)>,
}

fn engine_error(e: impl std::fmt::Display) -> Error {
    Error::Quantize { problem: format!("tract cannot run the float graph for calibration ({e})"), fix: "report the model so it can be supported".into() }
}

/// Decodes and preprocesses one calibration image.
pub fn tensor(path: &Path, preprocessor: &Preprocessor) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let image = crate::source::decode(&bytes, &path.display().to_string())?;
    let mut tensor = vec![0f32; preprocessor.tensor_len()];
    preprocessor.prepare(&image, &mut tensor);
    Ok(tensor)
}

pub fn calibrate(model: &ModelProto, tensors: &[String], preprocessor: &Preprocessor, images: &[PathBuf], bar: &indicatif::ProgressBar) -> Result<Ranges> {
    let mut probe = model.clone();
    let graph = probe.graph.as_mut().expect("a graph");
    let float = Some(TypeProto { value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: DataType::Float as i32, shape: None })), ..Default::default() });
    graph.output = tensors.iter().map(|t| ValueInfoProto { name: t.clone(), r#type: float.clone(), ..Default::default() }).collect();
    let shape = [1, 3, preprocessor.height, preprocessor.width];
    let plan = tract_onnx::onnx()
        .model_for_proto_model(&probe)
        .and_then(|m| m.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape)))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(engine_error)?;
    let run = |path: &PathBuf, each: &mut dyn FnMut(usize, &[f32])| -> Result<()> {
        let input = tensor(path, preprocessor)?;
        let outputs = plan.run(tvec![Tensor::from_shape(&shape, &input).map_err(engine_error)?.into_tvalue()]).map_err(engine_error)?;
        for (k, output) in outputs.iter().enumerate() {
            let values = output.to_plain_array_view::<f32>().map_err(engine_error)?;
            each(k, values.as_slice().unwrap_or(&values.iter().copied().collect::<Vec<_>>()));
        }
        Ok(())
    };
    bar.set_length(2 * images.len() as u64);
    let mut bounds = vec![(f32::INFINITY, f32::NEG_INFINITY); tensors.len()];
    for path in images {
        run(path, &mut |k, values| {
            for &v in values {
                bounds[k].0 = bounds[k].0.min(v);
                bounds[k].1 = bounds[k].1.max(v);
            }
        })?;
        bar.inc(1);
    }
    let mut histograms = vec![vec![0u64; BINS]; tensors.len()];
    for path in images {
        run(path, &mut |k, values| {
            let (lo, hi) = bounds[k];
            let width = (hi - lo).max(f32::MIN_POSITIVE);
            for &v in values {
                let bin = (((v - lo) / width) * BINS as f32) as usize;
                histograms[k][bin.min(BINS - 1)] += 1;
            }
        })?;
        bar.inc(1);
    }
    let mut ranges = Ranges { minmax: HashMap::new(), percentile: HashMap::new() };
    for (k, name) in tensors.iter().enumerate() {
        let (lo, hi) = bounds[k];
        ranges.minmax.insert(name.clone(), (lo, hi));
        ranges.percentile.insert(name.clone(), percentile_range(&histograms[k], lo, hi));
    }
    Ok(ranges)
}

/// The range leaving [`TAIL`] of the values out at each end (bin edges, never inside the data's
/// own bounds).
fn percentile_range(histogram: &[u64], lo: f32, hi: f32) -> (f32, f32) {
    let total: u64 = histogram.iter().sum();
    if total == 0 || !(hi > lo) {
        return (lo, hi);
    }
    let cut = (total as f64 * TAIL) as u64;
    let width = (hi - lo) / histogram.len() as f32;
    let (mut below, mut first) = (0u64, 0usize);
    while first < histogram.len() && below + histogram[first] <= cut {
        below += histogram[first];
        first += 1;
    }
    let (mut above, mut last) = (0u64, histogram.len());
    while last > first + 1 && above + histogram[last - 1] <= cut {
        above += histogram[last - 1];
        last -= 1;
    }
    (lo + first as f32 * width, lo + last as f32 * width)
}

#[cfg(test)]
mod tests {
    use super::percentile_range;

    #[test]
    fn percentile_drops_rare_outliers_only() {
        // 100,000 values spread over the lower half of the bins and one far outlier at the top.
        let mut histogram = vec![0u64; 2048];
        for bin in histogram.iter_mut().take(1024) {
            *bin = 100_000 / 1024;
        }
        histogram[2047] = 1;
        let (lo, hi) = percentile_range(&histogram, 0.0, 2048.0);
        assert_eq!(lo, 0.0);
        assert_eq!(hi, 1024.0);
        // Nothing to drop: the full range.
        let flat = vec![1000u64; 2048];
        assert_eq!(percentile_range(&flat, -1.0, 1.0), (-1.0, 1.0));
    }
}
