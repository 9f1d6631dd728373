//! The tract engine: loads ONNX, TensorFlow frozen graphs and TFLite into one typed graph, splits
//! off the head, optimises the backbone and runs it. tract's types never leave this module.

use std::borrow::Cow;
use std::path::Path;

use tract_onnx::tract_hir::internal::*;
use tract_core::floats::FloatPrecisionTranslator;
use tract_core::ops::cast::Cast;
use tract_core::transform::ModelTransform;
use tract_core::ops::konst::Const;
use tract_core::ops::source::TypedSource;

use super::split::{find_activation, per_image_width, split_head};
use super::{onnx, tflite_normalize, Analysed, Backbone, EngineChoice, EngineOptions, Generation, GraphFacts, InputSpec, Precision, TensorType};
use crate::error::{Error, Result};
use crate::head::PassThrough;
use crate::package::{ExportPackage, ModelFormat};
use crate::preprocess::Layout;

pub struct TractEngine {
    plan: Arc<TypedRunnableModel>,
    input: InputSpec,
    output_width: usize,
}

/// Turns a tract error into one sentence with a fix. Unsupported operators are the common case
/// and get their own message.
fn engine_error(path: &Path, e: TractError) -> Error {
    let text = format!("{e:#}");
    let op = text
        .split("Unimplemented(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .or_else(|| text.contains("Unsupported").then_some("an operator"))
        .map(str::to_owned);
    match op {
        Some(op) => Error::model(
            path,
            format!("the graph uses {op}, which the tract engine does not support ({})", first_line(&text)),
            "re-export the iteration as ONNX, or report the model so the operator can be added",
        ),
        None => Error::model(
            path,
            format!("the tract engine cannot load this graph ({})", first_line(&text)),
            "check that the file is a Custom Vision classification export; report it if it is",
        ),
    }
}

/// Runs a stage of loading a graph into tract, turning a panic into an error. tract trusts the
/// graphs it reads and panics on some malformed ones (fuzzing found them); a damaged or hostile
/// model file must be refused with a message, not take down the daemon or server loading it.
fn guarded<T>(path: &Path, stage: &str, load: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        let message = panic_message(&*panic);
        Err(Error::model(
            path,
            format!("the tract engine crashed while {stage} ({})", first_line(&message)),
            "the file is damaged or not a Custom Vision export: copy it from the export again, and report it if it is one",
        ))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "no message".to_owned())
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    line.chars().take(300).collect()
}

fn load_onnx(path: &Path, bytes: Cow<[u8]>, int8_activations: bool) -> Result<(TypedModel, GraphFacts)> {
    let (mut proto, ofacts) = onnx::prepare(path, &bytes)?;
    drop(bytes);
    let opset = ofacts.opset;
    let input = onnx::input_spec(path, &proto)?;
    let mut facts = onnx::graph_facts(&proto, ofacts);
    if facts.precision == Precision::Int8 && !int8_activations {
        let pairs = proto.graph.as_mut().map(|g| onnx::strip_activation_quantization(g, opset)).unwrap_or(0);
        proto.graph.as_mut().map(onnx::fold_constant_dequantize);
        if pairs > 0 {
            facts.notes.push(format!("runs the int8 weights in float, activations clamped to their 8-bit ranges but not rounded ({pairs} quantize/dequantize pairs: tract has no fast int8 path for them)"));
        }
    }
    let model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .and_then(|m| m.with_input_fact(0, InferenceFact::dt_shape(datum_type(input.dtype), input.shape(1))))
        .and_then(|m| m.into_typed())
        .map_err(|e| engine_error(path, e))?;
    Ok((model, facts))
}

fn load_tf(path: &Path, bytes: Cow<[u8]>) -> Result<(TypedModel, GraphFacts)> {
    let tf = tract_tensorflow::tensorflow();
    let mut model = tf.model_for_read(&mut &*bytes).map_err(|e| engine_error(path, e))?;
    drop(bytes);
    let names: Vec<String> = model.nodes().iter().map(|n| n.name.clone()).collect();
    let output = super::TF_OUTPUTS.into_iter().find(|n| names.iter().any(|m| m == n)).ok_or_else(|| {
        Error::model(path, "the graph has neither a `model_outputs` nor a `loss` node", "this is not a Custom Vision TensorFlow export")
    })?;
    model.select_output_outlets(&[OutletId::new(model.node_by_name(output).map_err(|e| engine_error(path, e))?.id, 0)])
        .map_err(|e| engine_error(path, e))?;
    let input_fact = model.input_fact(0).map_err(|e| engine_error(path, e))?.clone();
    let hw: Vec<usize> = input_fact
        .shape
        .dims()
        .skip(1)
        .filter_map(|d| d.concretize().and_then(|d| d.to_i64().ok()))
        .map(|d| d as usize)
        .collect();
    // Old graphs may leave the spatial size open; Custom Vision's legacy size is 227.
    let (h, w) = match hw.as_slice() {
        [h, w, 3] => (*h, *w),
        _ => (super::LEGACY_SIZE, super::LEGACY_SIZE),
    };
    // The batch stays symbolic: tract's optimiser trips on these graphs when it is fixed to 1.
    let batch = model.symbols.sym("N");
    let fact = f32::fact(&[batch.to_dim(), h.to_dim(), w.to_dim(), 3.to_dim()]);
    let op_count = model.nodes().len();
    let typed = model
        .with_input_fact(0, fact.into())
        .and_then(|m| m.into_typed())
        .map_err(|e| engine_error(path, e))?;
    let facts = GraphFacts {
        generation: Generation::TfFrozenGraph,
        metadata_props: Default::default(),
        embedded_labels: None,
        has_mean_layer: true,
        op_count,
        output_name: output.to_owned(),
        activation: crate::head::Activation::Identity,
        split_at: None,
        notes: vec![],
        precision: Precision::Fp32,
    };
    Ok((typed, facts))
}

fn load_tflite(path: &Path, bytes: Cow<[u8]>) -> Result<(TypedModel, GraphFacts)> {
    let (normalized, report) = tflite_normalize::normalize_tflite(&bytes).map_err(|e| {
        Error::model(path, format!("the TensorFlow Lite file cannot be read ({e})"), "the file is corrupt or truncated: copy it from the export again")
    })?;
    drop(bytes);
    let model = tract_tflite::tflite().model_for_read(&mut &*normalized).map_err(|e| engine_error(path, e))?;
    let op_count = model.nodes().iter().filter(|n| !n.op_is::<Const>() && !n.op_is::<TypedSource>()).count();
    let has_mean_layer = model.nodes().iter().any(|n| super::names_mean_layer(&n.name));
    let output_name = model.output_outlets().ok().and_then(|o| o.first().map(|o| model.node(o.node).name.clone())).unwrap_or_default();
    let mut notes = vec![];
    if report.folded_dequantize > 0 {
        notes.push(format!("folded {} fp16 DEQUANTIZE ops into fp32 constants", report.folded_dequantize));
    }
    if report.reshapes_inserted > 0 {
        notes.push(format!("inserted {} RESHAPE before rank-4 FULLY_CONNECTED", report.reshapes_inserted));
    }
    let facts = GraphFacts {
        generation: Generation::TfLite,
        metadata_props: Default::default(),
        embedded_labels: None,
        has_mean_layer,
        op_count,
        output_name,
        activation: crate::head::Activation::Identity,
        split_at: None,
        notes,
        precision: Precision::Fp32,
    };
    Ok((model, facts))
}

fn input_spec(path: &Path, model: &TypedModel) -> Result<InputSpec> {
    let fact = model.input_fact(0).map_err(|e| engine_error(path, e))?;
    let dims: Vec<Option<usize>> = fact.shape.dims().iter().map(|d| d.to_usize().ok()).collect();
    let dtype = if fact.datum_type == f16::datum_type() { TensorType::F16 } else { TensorType::F32 };
    let name = model.node(model.input_outlets().map_err(|e| engine_error(path, e))?[0].node).name.clone();
    match dims.as_slice() {
        [_, Some(3), Some(h), Some(w)] => Ok(InputSpec { name, width: *w, height: *h, layout: Layout::Nchw, dtype }),
        [_, Some(h), Some(w), Some(3)] => Ok(InputSpec { name, width: *w, height: *h, layout: Layout::Nhwc, dtype }),
        _ => Err(Error::model(path, format!("input {name} has shape {:?}, not a 3-channel image", fact.shape), "this is not a Custom Vision image classifier export")),
    }
}

/// tract's backbone graph, decluttered but not yet optimised (opaque outside this module).
pub struct Graph(TypedModel);

/// Reads the export's graph into tract and splits it into backbone + head.
pub fn analyse(package: &mut ExportPackage, options: &EngineOptions) -> Result<Analysed> {
    let path = package.model_path.clone();
    guarded(&path, "reading the graph", || analyse_unguarded(&path, package, options))
}

fn analyse_unguarded(path: &Path, package: &mut ExportPackage, options: &EngineOptions) -> Result<Analysed> {
    // `auto` hands the bytes to onnxruntime next; otherwise tract is their last reader, and
    // freeing them once parsed keeps one copy of the weights out of the peak memory.
    let bytes = match options.choice {
        EngineChoice::Auto => Cow::Borrowed(package.model_bytes.as_slice()),
        EngineChoice::Tract | EngineChoice::OnnxRuntime => Cow::Owned(std::mem::take(&mut package.model_bytes)),
    };
    let (model, mut facts) = match package.format {
        ModelFormat::Onnx => load_onnx(path, bytes, options.int8_activations)?,
        ModelFormat::TfFrozenGraph => load_tf(path, bytes)?,
        ModelFormat::TfLite => load_tflite(path, bytes)?,
    };
    let input = input_spec(path, &model)?;
    let split = split(path, model, input.dtype, options.split)?;
    if input.dtype == TensorType::F16 {
        facts.notes.push("runs the fp16 graph in f32".to_owned());
    }
    facts.activation = split.head.activation();
    facts.split_at = split.split_at;
    Ok(Analysed { backbone: Backbone::Tract(Graph(split.backbone)), head: split.head, facts, input, output_width: split.output_width })
}

/// A typed graph cut in two.
struct Split {
    backbone: TypedModel,
    head: Box<dyn crate::head::Head>,
    output_width: usize,
    /// The backbone's output tensor, when the graph was split.
    split_at: Option<String>,
}

/// Splits `model` at the input of its final fully connected layer (when `split` and the graph
/// ends in one).
fn split(path: &Path, mut model: TypedModel, dtype: TensorType, split: bool) -> Result<Split> {
    if dtype == TensorType::F16 {
        // No Pi (nor x86) core before ARMv8.2 computes in fp16: emulated fp16 is slower and
        // rounds at every op. Run fp16 exports in f32 (weights widened exactly) and feed the
        // image as f16-rounded values, which are exact for 0..255 pixels. Done before the split,
        // so the head's weights are the fp16 weights widened exactly.
        FloatPrecisionTranslator::new(f16::datum_type(), f32::datum_type())
            .transform(&mut model)
            .map_err(|e| engine_error(path, e))?;
    }
    let mut model = model.into_decluttered().map_err(|e| engine_error(path, e))?;
    let (activation, logits) = find_activation(&model).map_err(|e| engine_error(path, e))?;
    let output = model.output_outlets().map_err(|e| engine_error(path, e))?[0];
    let tags = per_image_width(model.outlet_fact(output).map_err(|e| engine_error(path, e))?);
    let found = if split { split_head(&model, activation, logits).map_err(|e| engine_error(path, e))? } else { None };
    let mut split_at = None;
    let head: Box<dyn crate::head::Head> = match found {
        Some((features, head)) => {
            split_at = Some(model.outlet_label(features).map(str::to_owned).unwrap_or_else(|| model.node(features.node).name.clone()));
            model.select_output_outlets(&[features]).map_err(|e| engine_error(path, e))?;
            Box::new(head)
        }
        None => Box::new(PassThrough { tags, activation }),
    };
    let output = model.output_outlets().map_err(|e| engine_error(path, e))?[0];
    if model.outlet_fact(output).map_err(|e| engine_error(path, e))?.datum_type != f32::datum_type() {
        model.wire_node("cvedge.output_f32", Cast { to: f32::datum_type() }, &[output])
            .and_then(|w| model.select_output_outlets(&w))
            .map_err(|e| engine_error(path, e))?;
    }
    let output_width = per_image_width(model.outlet_fact(model.output_outlets().map_err(|e| engine_error(path, e))?[0]).map_err(|e| engine_error(path, e))?);
    Ok(Split { backbone: model, head, output_width, split_at })
}

/// The head of an ONNX graph's tail (the nodes after the cut, `features` in and the graph's
/// output out; see `export::cut_tail`), for engines that run the backbone without tract. tract
/// reads only these few nodes, so the backbone is never held twice. `features` is the shape of
/// one image's features. Returns `None` when the tail is not a linear layer; the head knows its
/// activation.
pub fn tail_head(path: &Path, tail: &tract_onnx::pb::ModelProto, features: &[usize], dtype: TensorType) -> Result<Option<Box<dyn crate::head::Head>>> {
    guarded(path, "reading the graph's head", || {
        let model = tract_onnx::onnx()
            .model_for_proto_model(tail)
            .and_then(|m| m.with_input_fact(0, InferenceFact::dt_shape(datum_type(dtype), features)))
            .and_then(|m| m.into_typed())
            .map_err(|e| engine_error(path, e))?;
        let split = split(path, model, dtype, true)?;
        Ok(split.split_at.map(|_| split.head))
    })
}

fn datum_type(dtype: TensorType) -> DatumType {
    match dtype {
        TensorType::F16 => f16::datum_type(),
        TensorType::F32 => f32::datum_type(),
    }
}

impl TractEngine {
    /// Optimises `backbone` and plans it for `threads` threads (tract parallelises matrix
    /// products only, so more threads help convolution-heavy graphs little).
    pub fn new(path: &Path, backbone: Graph, input: InputSpec, output_width: usize, threads: usize) -> Result<TractEngine> {
        let mut run_options = RunOptions::default();
        if threads > 1 {
            run_options.executor = Some(tract_linalg::multithread::Executor::multithread_with_name(threads, "cvedge-tract"));
        }
        let plan = guarded(path, "optimising the graph", || {
            backbone.0.into_optimized().and_then(|m| m.into_runnable_with_options(&run_options)).map_err(|e| engine_error(path, e))
        })?;
        Ok(TractEngine { plan, input, output_width })
    }
}

impl super::Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn input(&self) -> &InputSpec {
        &self.input
    }

    fn output_width(&self) -> usize {
        self.output_width
    }

    fn run_one(&self, image: &[f32]) -> Result<Vec<f32>> {
        let shape = match self.input.layout {
            Layout::Nchw => [1, 3, self.input.height, self.input.width],
            Layout::Nhwc => [1, self.input.height, self.input.width, 3],
        };
        let run = || -> TractResult<Vec<f32>> {
            let mut tensor = Tensor::from_shape(&shape, image)?;
            if self.input.dtype == TensorType::F16 {
                // Round as the fp16 input would, then widen for the f32 graph.
                tensor = tensor.cast_to::<f16>()?.cast_to::<f32>()?.into_owned();
            }
            let result = self.plan.run(tvec![tensor.into_tvalue()])?;
            Ok(result[0].to_plain_array_view::<f32>()?.iter().copied().collect())
        };
        // A graph tract accepted at load can still panic in a kernel: the caller (a camera's
        // worker, an HTTP worker, a training pass) loses this image, not its thread.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(|e| Error::Inference(format!("{e:#}"))),
            Err(panic) => Err(Error::Inference(format!("the tract engine crashed ({})", first_line(&panic_message(&*panic))))),
        }
    }
}
