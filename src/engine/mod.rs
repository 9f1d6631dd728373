//! Engines run the backbone: everything from the image tensor up to the input of the export's
//! final fully connected layer. tract is the default; other engines (onnxruntime, int8) will sit
//! behind the same [`Engine`] trait, so no engine's types appear outside its own module.

pub mod onnx;
mod split;
pub mod tflite_normalize;
mod tract;

use std::collections::BTreeMap;
use std::fmt;

pub use tract::load_tract;

use crate::error::Result;
use crate::head::{Activation, Head};
use crate::preprocess::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
}

/// The image tensor an engine wants (batch excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
    pub dtype: TensorType,
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (layout, shape) = match self.layout {
            Layout::Nchw => ("NCHW", format!("[1,3,{},{}]", self.height, self.width)),
            Layout::Nhwc => ("NHWC", format!("[1,{},{},3]", self.height, self.width)),
        };
        let dtype = match self.dtype {
            TensorType::F32 => "float32",
            TensorType::F16 => "float16",
        };
        write!(f, "{} {dtype} {shape} {layout}", self.name)
    }
}

/// The engine stage.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    fn input(&self) -> &InputSpec;
    /// Values per image in the backbone output.
    fn output_width(&self) -> usize;
    /// Runs `images` preprocessed images laid out back to back in `batch` (f32, converted to the
    /// model's input type inside) and returns `images * output_width()` values.
    fn run(&self, batch: &[f32], images: usize) -> Result<Vec<f32>>;
}

/// Which exporter generation produced the graph: decides colour order, range and mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// 2018-2020 ONNX with ImageScaler and the ZipMap tail (opset 6 or 7).
    OnnxLegacy,
    /// `data` -> `model_output`, described by the model's metadata_props.
    OnnxCurrent,
    TfFrozenGraph,
    TfLite,
}

/// What loading learnt about the graph, for preprocessing rules and `cvedge inspect`.
#[derive(Debug, Clone)]
pub struct GraphFacts {
    pub generation: Generation,
    /// ONNX `metadata_props`.
    pub metadata_props: BTreeMap<String, String>,
    /// Tags stored in the graph (ZipMap), for exports without labels.txt.
    pub embedded_labels: Option<Vec<String>>,
    /// The graph normalises pixels itself (a `data_bn`/`BatchNorm1` layer).
    pub has_mean_layer: bool,
    /// Operators in the graph as loaded (before optimisation).
    pub op_count: usize,
    pub output_name: String,
    pub activation: Activation,
    /// Where the graph was split: the backbone's output tensor, or `None` when it was not.
    pub split_at: Option<String>,
    /// What was rewritten to load the file.
    pub notes: Vec<String>,
}

/// How to load.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Split the graph into backbone + head (default). Off: the engine runs the whole graph and
    /// the head passes probabilities through; used to prove the split changes nothing.
    pub split: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { split: true }
    }
}

/// An engine with the head taken from the same graph.
pub struct LoadedModel {
    pub engine: Box<dyn Engine>,
    pub head: Box<dyn Head>,
    pub facts: GraphFacts,
}
