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

use crate::error::{Error, Result};
use crate::package::{ExportPackage, ModelFormat};
use crate::preprocess::{Conventions, Recipe};
use builder::{default_perm, Binary, Builder, Value};
pub use tflite::Io;

/// The ONNX bytes of `package` (loaded, with its bytes), rewritten from TFLite or TensorFlow
/// when it is not ONNX, with the `conventions` the export is run with.
pub fn onnx_bytes<'a>(package: &'a ExportPackage, conventions: &Conventions) -> Result<Cow<'a, [u8]>> {
    if package.format == ModelFormat::Onnx {
        return Ok(Cow::Borrowed(&package.model_bytes));
    }
    Ok(Cow::Owned(to_onnx(&package.model_bytes, package.format, &package.model_path, conventions)?.encode_to_vec()))
}

/// The source export's graph as a current-layout ONNX model (see the module doc). Its
/// `metadata_props` say how to preprocess; the postprocessing key is the head's, written by
/// [`crate::export`] with the head.
pub fn to_onnx(bytes: &[u8], format: ModelFormat, path: &Path, conventions: &Conventions) -> Result<ModelProto> {
    let (mut model, io) = build(bytes, format, path, Some(conventions))?;
    let (height, width) = (io.input_shape[1], io.input_shape[2]);
    let recipe = match conventions.recipe {
        Recipe::LegacySquare256 => None,
        Recipe::ShorterSide { target } => Some(("ByShorterSide", target as usize, "OneCropCenter")),
        Recipe::Stretch => Some(("Stretch", width, "NoCrop")),
    };
    let mut props = BTreeMap::new();
    crate::export::preprocess_props(&mut props, conventions.color, conventions.range, recipe, (height, width));
    model.metadata_props = props.into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect();
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
            // The converter cannot tell an op it lacks from a damaged file (an index past the end,
            // a cycle): tract, which reads the file as it is, can.
            "if `cvedge predict --engine tract` runs the export, it still runs as it is on tract (fp32): please report the model so the graph can be supported; if it does not, the file is damaged: copy it from the export again",
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
    }
    .map_err(problem)?;
    // Channels first from the start: elementwise ops and padding in front of the first
    // convolution then sit where onnxruntime fuses them (an NHWC Pad before the transpose cost
    // ShuffleNet 1.2 ms of its 4.8).
    let mut input = Value::Tensor(b.to_layout(&data, &default_perm(4)));
    if let Some(mean) = conventions.and_then(Conventions::mean_in_tensor_order) {
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
