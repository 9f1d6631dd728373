//! Engines run the backbone: everything from the image tensor up to the input of the export's
//! final fully connected layer. Every engine sits behind the same [`Engine`] trait, so no
//! engine's types appear outside its own module:
//!
//! - `tract` (built in, every format): reads the graph, learns its facts, splits off the head
//!   ([`split`]) and runs the backbone. It is also the reference the others are checked against.
//!   On int8 graphs it runs the weights at float speed (see [`onnx::strip_activation_quantization`]).
//! - `onnxruntime` (ONNX only, optional at build time, the library loaded at run time and tried
//!   in a child process first, [`onnxruntime_probe`]): runs the same backbone cut out of the
//!   protobuf; several times faster, and its int8 kernels are what makes `cvedge quantize`'s
//!   output pay off. Asked for by name, it reads the export without tract's graph of the backbone
//!   (facts and input from the protobuf, the head from the few nodes after the cut), so the
//!   weights are never held by two engines at once.
//! - [`auto`] loads both, keeps the fastest one that agrees with tract on a check image.

mod auto;
pub mod onnx;
#[cfg(feature = "onnxruntime")]
mod onnxruntime;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime_probe;
mod split;
pub mod tflite_normalize;
mod tract;

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::head::{Activation, Head};
use crate::package::ExportPackage;
use crate::preprocess::Layout;

/// The output node names Custom Vision's TensorFlow exports use, newest first.
pub(crate) const TF_OUTPUTS: [&str; 2] = ["model_outputs", "loss"];
/// Custom Vision's legacy input size, for graphs that leave the spatial size open.
pub(crate) const LEGACY_SIZE: usize = 227;

/// Whether a node or tensor name is the 2018-2019 mean layer's first batch norm. The 2019 TFLite
/// export has no mean layer inside; the rule from Microsoft's Android sample is to subtract the
/// mean only when no node is named like this.
pub(crate) fn names_mean_layer(name: &str) -> bool {
    name.contains("data_bn") || name.contains("BatchNorm1")
}

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

impl InputSpec {
    /// The tensor shape of a batch of `batch` images.
    pub fn shape(&self, batch: usize) -> [usize; 4] {
        match self.layout {
            Layout::Nchw => [batch, 3, self.height, self.width],
            Layout::Nhwc => [batch, self.height, self.width, 3],
        }
    }
}

/// The engine stage.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    fn input(&self) -> &InputSpec;
    /// Values per image in the backbone output.
    fn output_width(&self) -> usize;
    /// Runs one preprocessed image (f32, converted to the model's input type inside) and returns
    /// `output_width()` values.
    fn run_one(&self, image: &[f32]) -> Result<Vec<f32>>;
    /// Runs `images` preprocessed images laid out back to back in `batch` and returns
    /// `images * output_width()` values.
    fn run(&self, batch: &[f32], images: usize) -> Result<Vec<f32>> {
        let input = self.input();
        let per_image = input.width * input.height * 3;
        assert_eq!(batch.len(), per_image * images, "batch has the wrong length");
        let mut out = Vec::with_capacity(images * self.output_width());
        for image in batch.chunks_exact(per_image) {
            out.extend(self.run_one(image)?);
        }
        Ok(out)
    }
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
    pub precision: Precision,
}

/// Which engine runs the backbone. The library defaults to the reference, tract; the command
/// line and the daemon's config default to `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    #[default]
    Tract,
    OnnxRuntime,
    /// The fastest engine that loads and agrees with tract (tract when nothing else does).
    Auto,
}

impl std::str::FromStr for EngineChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tract" => Ok(EngineChoice::Tract),
            "onnxruntime" | "ort" => Ok(EngineChoice::OnnxRuntime),
            "auto" => Ok(EngineChoice::Auto),
            _ => Err(format!("unknown engine `{s}`: use tract, onnxruntime or auto")),
        }
    }
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineChoice::Tract => "tract",
            EngineChoice::OnnxRuntime => "onnxruntime",
            EngineChoice::Auto => "auto",
        })
    }
}

/// How to load.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Split the graph into backbone + head (default). Off: the engine runs the whole graph and
    /// the head passes probabilities through; used to prove the split changes nothing.
    pub split: bool,
    pub choice: EngineChoice,
    /// Threads one inference may use; 0 = one per core.
    pub threads: usize,
    /// tract only: on an int8 graph, also round the activations to 8 bits as integer engines do
    /// (tract then takes 1.8x its float time); off, tract runs the int8 weights at float speed.
    /// `cvedge quantize` turns it on to judge its candidates as integer kernels compute them.
    pub int8_activations: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { split: true, choice: EngineChoice::default(), threads: 1, int8_activations: false }
    }
}

impl EngineOptions {
    /// The thread count with 0 resolved to the number of cores.
    pub fn resolved_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }
}

/// Numbers an engine computes with, as far as speed and accuracy go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    /// An `OnnxFloat16` export, computed in fp32 by tract and in fp16 by onnxruntime.
    Fp16,
    /// Quantized (QuantizeLinear / DequantizeLinear in the graph).
    Int8,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        })
    }
}

/// What loading learnt about an export (its facts, input and head) and its backbone, ready for
/// [`build`] to put an engine on.
pub struct Analysed {
    pub head: Box<dyn Head>,
    pub facts: GraphFacts,
    pub input: InputSpec,
    /// Values per image in the backbone's output.
    pub output_width: usize,
    backbone: Backbone,
}

enum Backbone {
    /// tract's graph: tract optimises it, `auto` keeps it as the reference.
    Tract(tract::Graph),
    /// An engine that read the export without tract (`--engine onnxruntime`).
    Built(Box<dyn Engine>),
}

/// Reads the export: with onnxruntime alone when that is the engine asked for (tract then never
/// holds the backbone: a second copy of the weights stays out of peak memory), else with tract, whose graph every other
/// engine is checked against (see the module doc).
pub fn analyse(package: &mut ExportPackage, options: &EngineOptions) -> Result<Analysed> {
    match options.choice {
        EngineChoice::OnnxRuntime => onnxruntime_analyse(package, options),
        EngineChoice::Tract | EngineChoice::Auto => tract::analyse(package, options),
    }
}

/// Builds the engine `options` ask for on what [`analyse`] found. `check` is one preprocessed
/// image, the input `auto` compares the engines on.
pub fn build(package: &ExportPackage, analysed: Analysed, options: &EngineOptions, check: &[f32]) -> Result<LoadedModel> {
    let Analysed { head, facts, input, output_width, backbone } = analysed;
    let graph = match backbone {
        Backbone::Built(engine) => return Ok(LoadedModel { engine, head, facts }),
        Backbone::Tract(graph) => graph,
    };
    let tract = |graph| -> Result<tract::TractEngine> { tract::TractEngine::new(&package.model_path, graph, input.clone(), output_width, options.resolved_threads()) };
    match options.choice {
        EngineChoice::Tract => Ok(LoadedModel { engine: Box::new(tract(graph)?), head, facts }),
        EngineChoice::OnnxRuntime => {
            let engine = onnxruntime_engine(package, &input, output_width, facts.split_at.is_some(), options)?;
            Ok(LoadedModel { engine, head, facts })
        }
        EngineChoice::Auto => {
            let reference = tract(graph)?;
            auto::pick(package, LoadedModel { engine: Box::new(reference), head, facts }, options, check)
        }
    }
}

/// Whether the onnxruntime library can be loaded on this machine.
pub fn onnxruntime_available() -> bool {
    #[cfg(feature = "onnxruntime")]
    return onnxruntime::available();
    #[cfg(not(feature = "onnxruntime"))]
    return false;
}

/// An onnxruntime engine running the same cut as tract's analysis did (for `auto`).
#[cfg(feature = "onnxruntime")]
fn onnxruntime_engine(package: &ExportPackage, input: &InputSpec, output_width: usize, split: bool, options: &EngineOptions) -> Result<Box<dyn Engine>> {
    Ok(Box::new(onnxruntime::OrtEngine::load(package, input, output_width, split, options)?))
}

#[cfg(feature = "onnxruntime")]
fn onnxruntime_analyse(package: &mut ExportPackage, options: &EngineOptions) -> Result<Analysed> {
    let (engine, head, facts) = onnxruntime::analyse(package, options)?;
    Ok(Analysed { input: engine.input().clone(), output_width: engine.output_width(), backbone: Backbone::Built(Box::new(engine)), head, facts })
}

#[cfg(not(feature = "onnxruntime"))]
fn not_built() -> crate::error::Error {
    crate::error::Error::engine(
        "onnxruntime",
        "this cvedge was built without the onnxruntime engine",
        "use --engine tract, or build cvedge with `--features onnxruntime`",
    )
}

#[cfg(not(feature = "onnxruntime"))]
fn onnxruntime_engine(_: &ExportPackage, _: &InputSpec, _: usize, _: bool, _: &EngineOptions) -> Result<Box<dyn Engine>> {
    Err(not_built())
}

#[cfg(not(feature = "onnxruntime"))]
fn onnxruntime_analyse(_: &mut ExportPackage, _: &EngineOptions) -> Result<Analysed> {
    Err(not_built())
}

/// An engine with the head taken from the same graph.
pub struct LoadedModel {
    pub engine: Box<dyn Engine>,
    pub head: Box<dyn Head>,
    pub facts: GraphFacts,
}
