//! TensorFlow Lite and TensorFlow frozen-graph exports rewritten as ONNX graphs, so that what
//! only ONNX bases could do works on every export: `cvedge quantize` (int8 QDQ graphs),
//! `cvedge export` (a trained head on the base's backbone, or the export itself as ONNX), and
//! onnxruntime.
//!
//! - [`builder`]: the ONNX side, channels first, with the layout bookkeeping that keeps
//!   NHWC source graphs free of transposes.
//! - [`tflite`], [`tf`]: the frontends, one per source format.
//!
//! [`to_onnx`] writes the graph in the *current* Custom Vision ONNX layout: input `data`
//! (`[1,3,H,W]`), output `model_output`, and `metadata_props` that say how to preprocess. The
//! source's own conventions (colour order, value range, recipe) go into those keys, and the mean
//! the 2019 TFLite export leaves to the caller becomes a `Sub` at the front of the graph, so the
//! ONNX file needs nothing the current layout cannot say.

pub mod builder;
pub mod tf;
pub mod tflite;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;

use tract_core::ndarray::{ArrayD, IxDyn};
use tract_onnx::pb::{ModelProto, StringStringEntryProto};

use crate::classifier::{Classifier, Kind};
use crate::error::{Error, Result};
use crate::package::{ExportPackage, ModelFormat};
use crate::preprocess::{ColorOrder, Conventions, Recipe, ValueRange};
use builder::{default_perm, Binary, Builder, Value};
pub use tflite::Io;

/// What the converted graph must reproduce besides the source graph itself.
#[derive(Debug, Clone)]
pub struct Target {
    pub conventions: Conventions,
    pub kind: Kind,
}

/// The ONNX bytes of `package` (loaded, with its bytes), rewritten from TFLite or TensorFlow
/// when it is not ONNX, with the conventions `classifier` (the same export, loaded) runs it with.
pub fn onnx_bytes<'a>(package: &'a ExportPackage, classifier: &Classifier) -> Result<Cow<'a, [u8]>> {
    if package.format == ModelFormat::Onnx {
        return Ok(Cow::Borrowed(&package.model_bytes));
    }
    let target = Target { conventions: classifier.preprocessor.conventions.clone(), kind: classifier.kind };
    Ok(Cow::Owned(to_onnx(&package.model_bytes, package.format, &package.model_path, &target)?.encode_to_vec()))
}

/// The source export's graph as a current-layout ONNX model (see the module doc).
pub fn to_onnx(bytes: &[u8], format: ModelFormat, path: &Path, target: &Target) -> Result<ModelProto> {
    let (mut model, io) = build(bytes, format, path, Some(&target.conventions))?;
    let (height, width) = (io.input_shape[1], io.input_shape[2]);
    model.metadata_props = metadata(&target.conventions, target.kind, height, width)
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect();
    Ok(model)
}

/// The source export's graph as ONNX for an engine to run in place of the source: its input
/// (named as in the source) takes exactly the tensor the source takes (NHWC, mean not
/// subtracted), so the preprocessing stays the source's. Also returns what the source says
/// about itself.
pub fn engine_twin(bytes: &[u8], format: ModelFormat, path: &Path) -> Result<(ModelProto, Io)> {
    build(bytes, format, path, None)
}

/// Builds the ONNX graph: with `conventions`, its input is the current layout's `data` (NCHW)
/// with the conventions' mean subtracted first; without, the source's own input.
fn build(bytes: &[u8], format: ModelFormat, path: &Path, conventions: Option<&Conventions>) -> Result<(ModelProto, Io)> {
    let problem = |e: builder::Unsupported| {
        Error::model(
            path,
            format!("its {format} graph cannot be rewritten as ONNX: {e}"),
            "the export still runs as it is on tract (fp32); please report the model so the op can be supported",
        )
    };
    let io = match format {
        ModelFormat::TfLite => tflite::io(bytes),
        ModelFormat::TfFrozenGraph => tf::io(bytes),
        ModelFormat::Onnx => return Err(Error::model(path, "is already ONNX", "use it as it is")),
    }
    .map_err(problem)?;
    let [1, height, width, 3] = io.input_shape[..] else {
        return Err(problem(builder::Unsupported(format!("input `{}` has shape {:?}, not one NHWC colour image", io.input_name, io.input_shape))));
    };
    let mut b = Builder::default();
    b.reserve(crate::export::OUTPUT);
    let data = match conventions {
        Some(_) => b.input(crate::export::INPUT, &[1, height, width, 3], default_perm(4)),
        None => b.input(&io.input_name, &[1, height, width, 3], (0..4).collect()),
    };
    // Channels first from the start: elementwise ops and padding in front of the first
    // convolution then sit where onnxruntime fuses them (an NHWC Pad before the transpose cost
    // ShuffleNet 1.2 ms of its 4.8).
    let mut input = Value::Tensor(b.to_layout(&data, &default_perm(4)));
    if let Some(mean) = conventions.and_then(mean_in_tensor_order) {
        let mean = Value::Const(ArrayD::from_shape_vec(IxDyn(&[3]), mean.to_vec()).expect("three values"));
        input = b.binary(Binary::Sub, &input, &mean, "data_minus_mean").map_err(problem)?;
    }
    let output = match format {
        ModelFormat::TfLite => tflite::build(bytes, &mut b, input),
        _ => tf::build(bytes, &io, &mut b, input),
    }
    .map_err(problem)?;
    if output.shape().len() != 2 || output.shape()[0] != 1 {
        return Err(problem(builder::Unsupported(format!("output `{}` has shape {:?}, not one row of probabilities", io.output_name, output.shape()))));
    }
    let model = b.finish(&data, &output, crate::export::OUTPUT).map_err(problem)?;
    Ok((model, io))
}

/// The mean the preprocessor subtracts, per channel of the tensor it fills.
fn mean_in_tensor_order(c: &Conventions) -> Option<[f32; 3]> {
    let [b, g, r] = c.mean_bgr?;
    Some(match c.color {
        ColorOrder::Bgr => [b, g, r],
        ColorOrder::Rgb => [r, g, b],
    })
}

/// The current exports' `metadata_props` describing `conventions` (the mean is in the graph).
fn metadata(c: &Conventions, kind: Kind, height: usize, width: usize) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        props.insert(key.to_owned(), value);
    };
    set("CustomVision.Metadata.Version", "1.2".into());
    set("CustomVision.Preprocess.NormalizeMean", "[0.0, 0.0, 0.0]".into());
    set("CustomVision.Preprocess.NormalizeStd", "[1.0, 1.0, 1.0]".into());
    set("Image.BitmapPixelFormat", if c.color == ColorOrder::Bgr { "Bgr8" } else { "Rgb8" }.into());
    set("Image.ColorSpaceGamma", "SRGB".into());
    set("Image.NominalPixelRange", if c.range == ValueRange::Byte { "NominalRange_0_255" } else { "Normalized_0_1" }.into());
    // The legacy square-256 recipe has no key: readers fall back to it for 227 inputs.
    let recipe = match c.recipe {
        Recipe::LegacySquare256 => None,
        Recipe::ShorterSide { target } => Some(("ByShorterSide", target as usize, "OneCropCenter")),
        Recipe::Stretch => Some(("Stretch", width, "NoCrop")),
    };
    if let Some((resize, target, crop)) = recipe {
        set("CustomVision.Preprocess.ResizeMethod", resize.into());
        set("CustomVision.Preprocess.TargetWidth", target.to_string());
        set("CustomVision.Preprocess.TargetHeight", target.to_string());
        set("CustomVision.Preprocess.CropMethod", crop.into());
        set("CustomVision.Preprocess.CropWidth", width.to_string());
        set("CustomVision.Preprocess.CropHeight", height.to_string());
    }
    let method = if kind == Kind::MultiLabel { "ClassificationMultiLabel" } else { "ClassificationMultiClass" };
    set("CustomVision.Postprocess.Method", method.into());
    props
}
