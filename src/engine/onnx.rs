//! ONNX graph surgery done on the protobuf before tract sees it: the 2018-2020 exports start with
//! `ImageScaler` (dropped from ONNX in opset 10, unknown to tract) and end in an `ai.onnx.ml`
//! ZipMap tail (string maps no tensor runtime needs). Both are rewritten away here so that every
//! ONNX generation reaches tract as "image tensor in, probability tensor out".

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{self, ModelProto, NodeProto, TensorProto, ValueInfoProto};

use super::{Generation, GraphFacts, InputSpec, Precision, TensorType};
use crate::error::{Error, Result};
use crate::preprocess::Layout;

/// What the surgery learnt about the export.
#[derive(Debug, Default)]
pub struct OnnxFacts {
    /// The ZipMap tail was present (2018-2020 "ONNX 1.2" or opset-6 "ONNX 1.0" export).
    pub legacy_tail: bool,
    pub had_image_scaler: bool,
    /// Tags from ZipMap's `classlabels_strings`, for exports shipped without labels.txt.
    pub zipmap_labels: Option<Vec<String>>,
    /// The model's `metadata_props` (current exports describe colour order and range here).
    pub metadata_props: BTreeMap<String, String>,
    pub opset: i64,
    pub output_name: String,
    /// fp16 Gemm nodes rewritten as MatMul + Add.
    pub rewrote_fp16_gemm: usize,
}

/// Ops of the early-2018 WinMLTools preview exports that were removed from ONNX.
const PREVIEW_OPS: [&str; 2] = ["FC", "LegacyPadding"];

pub fn prepare(path: &Path, bytes: &[u8]) -> Result<(ModelProto, OnnxFacts)> {
    let mut model = ModelProto::decode(bytes).map_err(|e| {
        Error::model(path, format!("the ONNX file cannot be parsed ({e})"), "the file is corrupt or truncated: copy it from the export again")
    })?;
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).unwrap_or(0);
    let graph = model.graph.as_mut().ok_or_else(|| {
        Error::model(path, "the ONNX file has no graph", "the file is corrupt or not a model: copy it from the export again")
    })?;
    if let Some(op) = graph.node.iter().find(|n| PREVIEW_OPS.contains(&n.op_type.as_str()) || n.domain == "com.microsoft") {
        return Err(Error::LegacyPreviewExport {
            path: path.to_path_buf(),
            detail: format!("it uses the removed op {}{}", if op.domain.is_empty() { "" } else { "com.microsoft." }, op.op_type),
        });
    }
    if opset > 0 && opset < 6 {
        return Err(Error::LegacyPreviewExport { path: path.to_path_buf(), detail: format!("opset {opset}") });
    }
    let mut facts = OnnxFacts {
        opset,
        metadata_props: model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
        ..OnnxFacts::default()
    };
    let graph = model.graph.as_mut().expect("checked above");
    facts.had_image_scaler = replace_image_scalers(graph);
    if is_float16(graph) {
        facts.rewrote_fp16_gemm = replace_gemms(graph);
    }

    if let Some(zipmap) = graph.node.iter().find(|n| n.op_type == "ZipMap") {
        facts.legacy_tail = true;
        let labels: Vec<String> = attribute(zipmap, "classlabels_strings")
            .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
            .unwrap_or_default();
        facts.zipmap_labels = (!labels.is_empty()).then_some(labels);
        let probabilities = zipmap.input.first().cloned().ok_or_else(|| {
            Error::model(path, "the ZipMap node has no input", "the file is corrupt: copy it from the export again")
        })?;
        graph.output = vec![ValueInfoProto { name: probabilities, ..Default::default() }];
    } else {
        // Current exports: `model_output`; anything else: the first output, as a user would expect.
        let keep = graph.output.iter().position(|o| o.name == "model_output").unwrap_or(0);
        if graph.output.is_empty() {
            return Err(Error::model(path, "the ONNX graph declares no output", "the file is not a usable model: re-export it"));
        }
        graph.output = vec![graph.output.swap_remove(keep)];
    }
    facts.output_name = graph.output[0].name.clone();
    prune_unused(graph);
    Ok((model, facts))
}

/// The image input, read from the protobuf (the batch may be symbolic).
pub fn input_spec(path: &Path, proto: &ModelProto) -> Result<InputSpec> {
    use pb::type_proto::Value;
    let not_an_image = |detail: String| Error::model(path, detail, "this is not a Custom Vision image classifier export");
    let graph = proto.graph.as_ref().ok_or_else(|| not_an_image("the ONNX file has no graph".into()))?;
    let initialized: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph.input.iter().find(|i| !initialized.contains(i.name.as_str()));
    let typed = input.and_then(|i| match i.r#type.as_ref()?.value.as_ref()? {
        Value::TensorType(t) => Some(t),
    });
    let (Some(input), Some(typed)) = (input, typed) else { return Err(not_an_image("the ONNX graph has no typed image input".into())) };
    let dims: Vec<i64> = typed
        .shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match &d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => *v,
            _ => -1,
        })
        .collect();
    let dtype = if typed.elem_type == pb::tensor_proto::DataType::Float16 as i32 { TensorType::F16 } else { TensorType::F32 };
    let spec = |layout, h: i64, w: i64| InputSpec { name: input.name.clone(), width: w as usize, height: h as usize, layout, dtype };
    match dims.as_slice() {
        [_, 3, h, w] if *h > 0 && *w > 0 => Ok(spec(Layout::Nchw, *h, *w)),
        [_, h, w, 3] if *h > 0 && *w > 0 => Ok(spec(Layout::Nhwc, *h, *w)),
        _ => Err(not_an_image(format!("input {} has shape {dims:?}, not a 3-channel image batch", input.name))),
    }
}

/// What the protobuf and [`prepare`] say about the graph (the activation and split are filled in
/// by whoever splits off the head).
pub fn graph_facts(proto: &ModelProto, ofacts: OnnxFacts) -> GraphFacts {
    let nodes = proto.graph.iter().flat_map(|g| &g.node);
    let quantized = nodes.clone().any(|n| n.op_type == "DequantizeLinear" || n.op_type.starts_with("QLinear"));
    let precision = if quantized {
        Precision::Int8
    } else if proto.graph.as_ref().is_some_and(is_float16) {
        Precision::Fp16
    } else {
        Precision::Fp32
    };
    let mut notes = vec![];
    if ofacts.had_image_scaler {
        notes.push("rewrote ImageScaler as Mul + Add".to_owned());
    }
    if ofacts.rewrote_fp16_gemm > 0 {
        notes.push(format!("rewrote {} fp16 Gemm as MatMul + Add", ofacts.rewrote_fp16_gemm));
    }
    if ofacts.legacy_tail {
        notes.push("dropped the ai.onnx.ml ZipMap/ArgMax tail".to_owned());
    }
    GraphFacts {
        generation: if ofacts.legacy_tail || ofacts.had_image_scaler { Generation::OnnxLegacy } else { Generation::OnnxCurrent },
        metadata_props: ofacts.metadata_props,
        embedded_labels: ofacts.zipmap_labels,
        has_mean_layer: true,
        op_count: nodes.count(),
        output_name: ofacts.output_name,
        activation: crate::head::Activation::Identity,
        split_at: None,
        notes,
        precision,
    }
}

/// Replaces the activations' QuantizeLinear -> DequantizeLinear pairs of a QDQ graph with the
/// clamp to the 8-bit range they imply (`Clip((qmin - z) * s, (qmax - z) * s)`), leaving the
/// weights' DequantizeLinear, which tract folds into float constants. Returns how many pairs.
///
/// Why: tract 0.23 fuses none of the QDQ patterns, so it computes every quantized tensor in float
/// *and* round-trips it through scalar QuantizeLinear, 1.8x slower than the float graph (see
/// docs/benchmarks.md). The clamp must stay: `cvedge quantize` folds ReLU/ReLU6 into the ranges,
/// so the saturation *is* the activation. What is left out is only the rounding to 256 levels;
/// the output then differs from onnxruntime's integer kernels by that rounding, well within
/// `auto`'s int8 tolerance. Pairs whose scale or zero point is not a constant scalar, and graph
/// outputs, are left as they are; so is everything below opset 11 (no Clip with tensor bounds).
pub fn strip_activation_quantization(graph: &mut pb::GraphProto, opset: i64) -> usize {
    use std::collections::HashMap;
    if opset < 11 {
        return 0;
    }
    let scalar = |name: Option<&String>| -> Option<(f32, i32)> {
        let Some(name) = name else { return Some((0.0, pb::tensor_proto::DataType::Uint8 as i32)) };
        let t = graph.initializer.iter().find(|t| &t.name == name && t.dims.iter().product::<i64>() == 1)?;
        use pb::tensor_proto::DataType;
        let value = match DataType::try_from(t.data_type).ok()? {
            DataType::Float => t.float_data.first().copied().or_else(|| Some(f32::from_le_bytes(t.raw_data.get(..4)?.try_into().ok()?)))?,
            DataType::Uint8 => t.int32_data.first().map(|v| *v as f32).or_else(|| t.raw_data.first().map(|b| *b as f32))?,
            DataType::Int8 => t.int32_data.first().map(|v| *v as f32).or_else(|| t.raw_data.first().map(|b| *b as i8 as f32))?,
            _ => return None,
        };
        Some((value, t.data_type))
    };
    // QuantizeLinear output -> (its float input, the clamp bounds).
    let mut quantized: HashMap<String, (String, f32, f32)> = HashMap::new();
    for node in graph.node.iter().filter(|n| n.op_type == "QuantizeLinear" && n.input.len() >= 2 && n.output.len() == 1) {
        let (Some((scale, _)), Some((zero, kind))) = (scalar(node.input.get(1)), scalar(node.input.get(2))) else { continue };
        let (qmin, qmax) = if kind == pb::tensor_proto::DataType::Int8 as i32 { (-128.0, 127.0) } else { (0.0, 255.0) };
        quantized.insert(node.output[0].clone(), (node.input[0].clone(), (qmin - zero) * scale, (qmax - zero) * scale));
    }
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut initializers = vec![];
    let mut stripped = 0;
    for node in graph.node.iter_mut() {
        let pair = node.op_type == "DequantizeLinear" && node.output.len() == 1 && !outputs.contains(node.output[0].as_str());
        let Some((float, lo, hi)) = pair.then(|| node.input.first().and_then(|q| quantized.get(q))).flatten().cloned() else { continue };
        let (lo_name, hi_name) = (format!("{}__cvedge_clip_lo", node.output[0]), format!("{}__cvedge_clip_hi", node.output[0]));
        initializers.push(float_tensor(&lo_name, vec![], vec![lo]));
        initializers.push(float_tensor(&hi_name, vec![], vec![hi]));
        *node = NodeProto {
            op_type: "Clip".into(),
            name: format!("{}__cvedge_clip", node.output[0]),
            input: vec![float, lo_name, hi_name],
            output: node.output.clone(),
            ..Default::default()
        };
        stripped += 1;
    }
    graph.initializer.extend(initializers);
    if stripped > 0 {
        prune_unused(graph);
    }
    stripped
}

/// Replaces every DequantizeLinear of a constant (the int8 weights and int32 biases of a QDQ
/// graph) with the float initializer it computes, per tensor or per `axis`. Returns how many.
///
/// tract would fold them itself, node by node while optimising, which more than doubled its load
/// time on `cvedge quantize`'s output; done here it costs one pass over the weights.
pub fn fold_constant_dequantize(graph: &mut pb::GraphProto) -> usize {
    use pb::tensor_proto::DataType;
    use std::collections::HashMap;
    let by_name: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let values = |t: &TensorProto| -> Option<Vec<f32>> {
        let raw = &t.raw_data;
        Some(match DataType::try_from(t.data_type).ok()? {
            DataType::Float if raw.is_empty() => t.float_data.clone(),
            DataType::Float => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            DataType::Int8 if raw.is_empty() => t.int32_data.iter().map(|v| *v as f32).collect(),
            DataType::Int8 => raw.iter().map(|b| *b as i8 as f32).collect(),
            DataType::Uint8 if raw.is_empty() => t.int32_data.iter().map(|v| *v as f32).collect(),
            DataType::Uint8 => raw.iter().map(|b| *b as f32).collect(),
            DataType::Int32 if raw.is_empty() => t.int32_data.iter().map(|v| *v as f32).collect(),
            DataType::Int32 => raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32).collect(),
            _ => return None,
        })
    };
    let mut folded: std::collections::BTreeMap<usize, TensorProto> = Default::default();
    for (i, node) in graph.node.iter().enumerate().filter(|(_, n)| n.op_type == "DequantizeLinear" && n.output.len() == 1) {
        let Some(input) = node.input.first().and_then(|x| by_name.get(x.as_str())) else { continue };
        let Some(scale) = node.input.get(1).and_then(|x| by_name.get(x.as_str())).and_then(|t| values(t)) else { continue };
        let zero = match node.input.get(2).filter(|z| !z.is_empty()) {
            Some(z) => match by_name.get(z.as_str()).and_then(|t| values(t)) {
                Some(zero) => zero,
                None => continue,
            },
            None => vec![0.0],
        };
        let Some(x) = values(input) else { continue };
        let dims = &input.dims;
        let axis = attribute(node, "axis").map(|a| a.i).unwrap_or(1);
        let axis = if axis < 0 { axis + dims.len() as i64 } else { axis } as usize;
        // Elements per step along the axis, and the axis' length (1: one scale for the tensor).
        let (inner, channels) = if scale.len() == 1 {
            (x.len().max(1), 1)
        } else if axis < dims.len() && dims[axis] as usize == scale.len() && zero.len() == scale.len() {
            (dims[axis + 1..].iter().product::<i64>() as usize, scale.len())
        } else {
            continue;
        };
        let out: Vec<f32> = x.iter().enumerate().map(|(j, q)| {
            let c = (j / inner) % channels;
            (q - zero[c.min(zero.len() - 1)]) * scale[c]
        }).collect();
        folded.insert(i, float_tensor(&node.output[0], dims.clone(), out));
    }
    let count = folded.len();
    if count == 0 {
        return 0;
    }
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !folded.contains_key(&(index - 1))
    });
    graph.initializer.extend(folded.into_values());
    prune_unused(graph);
    count
}

/// Ops that only reshape or retype a tensor (or pass it through at inference), which walks from
/// the output towards the final layer step over.
pub(crate) const SHAPE_ONLY: [&str; 7] = ["Reshape", "Flatten", "Identity", "Cast", "Squeeze", "Unsqueeze", "Dropout"];

/// The graph's final activation, walking back from the output through ops that only reshape or
/// retype (what tract's split finds, for engines that run a graph without splitting it).
pub fn final_activation(proto: &ModelProto) -> crate::head::Activation {
    use crate::head::Activation;
    let Some(graph) = proto.graph.as_ref() else { return Activation::Identity };
    let mut tensor = graph.output.first().map(|o| o.name.as_str());
    while let Some(name) = tensor {
        let Some(node) = graph.node.iter().find(|n| n.output.iter().any(|o| o == name)) else { break };
        match node.op_type.as_str() {
            "Softmax" => return Activation::Softmax,
            "Sigmoid" => return Activation::Sigmoid,
            op if SHAPE_ONLY.contains(&op) => tensor = node.input.first().map(String::as_str),
            _ => break,
        }
    }
    Activation::Identity
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// `ImageScaler(x) = scale * x + bias[c]` becomes `Add(Mul(x, scale), bias)`, which every opset
/// from 7 on broadcasts.
fn replace_image_scalers(graph: &mut pb::GraphProto) -> bool {
    let mut replaced = false;
    let mut nodes = Vec::with_capacity(graph.node.len() + 1);
    for node in std::mem::take(&mut graph.node) {
        if node.op_type != "ImageScaler" || node.input.is_empty() || node.output.is_empty() {
            nodes.push(node);
            continue;
        }
        replaced = true;
        let scale = attribute(&node, "scale").map(|a| a.f).unwrap_or(1.0);
        let bias: Vec<f32> = attribute(&node, "bias").map(|a| a.floats.clone()).unwrap_or_default();
        let base = format!("{}__cvedge_image_scaler", node.output[0]);
        let (scale_name, bias_name, scaled) = (format!("{base}_scale"), format!("{base}_bias"), format!("{base}_scaled"));
        graph.initializer.push(float_tensor(&scale_name, vec![1], vec![scale]));
        let channels = bias.len().max(1) as i64;
        let bias = if bias.is_empty() { vec![0.0] } else { bias };
        graph.initializer.push(float_tensor(&bias_name, vec![1, channels, 1, 1], bias));
        nodes.push(NodeProto {
            op_type: "Mul".into(),
            name: format!("{base}_mul"),
            input: vec![node.input[0].clone(), scale_name],
            output: vec![scaled.clone()],
            ..Default::default()
        });
        nodes.push(NodeProto {
            op_type: "Add".into(),
            name: format!("{base}_add"),
            input: vec![scaled, bias_name],
            output: vec![node.output[0].clone()],
            ..Default::default()
        });
    }
    graph.node = nodes;
    replaced
}

fn is_float16(graph: &pb::GraphProto) -> bool {
    use pb::type_proto::Value;
    graph.input.iter().any(|i| {
        matches!(i.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(Value::TensorType(t)) if t.elem_type == pb::tensor_proto::DataType::Float16 as i32)
    })
}

/// tract 0.23.9 mistypes `Gemm` in fp16 graphs (its expansion yields f32). The plain
/// `Gemm(A, B, C)` of a final layer (alpha = beta = 1, A not transposed) is rewritten as
/// `Add(MatMul(A, B or Transpose(B)), C)`, which it types correctly. Returns how many.
fn replace_gemms(graph: &mut pb::GraphProto) -> usize {
    let mut replaced = 0;
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let int = |name: &str| attribute(&node, name).map(|a| a.i).unwrap_or(0);
        let float = |name: &str| attribute(&node, name).map(|a| a.f).unwrap_or(1.0);
        let plain = node.op_type == "Gemm" && node.input.len() == 3 && node.output.len() == 1 && int("transA") == 0;
        if !plain || float("alpha") != 1.0 || float("beta") != 1.0 {
            nodes.push(node);
            continue;
        }
        replaced += 1;
        let base = format!("{}__cvedge_gemm", node.output[0]);
        let mut b = node.input[1].clone();
        if int("transB") != 0 {
            let transposed = format!("{base}_bt");
            nodes.push(NodeProto {
                op_type: "Transpose".into(),
                name: format!("{base}_transpose"),
                input: vec![b],
                output: vec![transposed.clone()],
                attribute: vec![pb::AttributeProto {
                    name: "perm".into(),
                    ints: vec![1, 0],
                    r#type: pb::attribute_proto::AttributeType::Ints as i32,
                    ..Default::default()
                }],
                ..Default::default()
            });
            b = transposed;
        }
        let product = format!("{base}_matmul");
        nodes.push(NodeProto {
            op_type: "MatMul".into(),
            name: product.clone(),
            input: vec![node.input[0].clone(), b],
            output: vec![product.clone()],
            ..Default::default()
        });
        nodes.push(NodeProto {
            op_type: "Add".into(),
            name: format!("{base}_add"),
            input: vec![product, node.input[2].clone()],
            output: node.output.clone(),
            ..Default::default()
        });
    }
    graph.node = nodes;
    replaced
}

fn float_tensor(name: &str, dims: Vec<i64>, data: Vec<f32>) -> TensorProto {
    TensorProto { name: name.into(), dims, data_type: pb::tensor_proto::DataType::Float as i32, float_data: data, ..Default::default() }
}

/// Keeps only the nodes the graph's outputs depend on, so the ai.onnx.ml tail (and anything else
/// dangling) never reaches tract.
fn prune_unused(graph: &mut pb::GraphProto) {
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let needed = prune_to(graph, outputs);
    graph.input.retain(|i| needed.contains(&i.name));
}

/// Which nodes the tensors `roots` depend on (a flag per node) and the names of every tensor they
/// depend on, inputs included. ONNX nodes are topologically sorted, so one backward pass does.
pub(crate) fn dependencies(graph: &pb::GraphProto, roots: impl IntoIterator<Item = String>) -> (Vec<bool>, HashSet<String>) {
    let mut needed: HashSet<String> = roots.into_iter().collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
        }
    }
    (keep, needed)
}

/// Drops every node and initializer the tensors `roots` do not depend on, and returns the names
/// of all the tensors they do depend on (inputs included), for the caller to prune the rest.
pub(crate) fn prune_to(graph: &mut pb::GraphProto, roots: impl IntoIterator<Item = String>) -> HashSet<String> {
    let (keep, needed) = dependencies(graph, roots);
    let mut flags = keep.into_iter();
    graph.node.retain(|_| flags.next().unwrap_or(false));
    graph.initializer.retain(|t| needed.contains(&t.name));
    needed
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::tensor_proto::DataType;

    fn node(op: &str, input: &[&str], output: &str, attribute: Vec<pb::AttributeProto>) -> NodeProto {
        NodeProto { op_type: op.into(), input: input.iter().map(|s| s.to_string()).collect(), output: vec![output.into()], attribute, ..Default::default() }
    }

    fn tensor(name: &str, dims: Vec<i64>, data_type: DataType, raw: Vec<u8>) -> TensorProto {
        TensorProto { name: name.into(), dims, data_type: data_type as i32, raw_data: raw, ..Default::default() }
    }

    fn floats(graph: &pb::GraphProto, name: &str) -> Vec<f32> {
        graph.initializer.iter().find(|t| t.name == name).map(|t| t.float_data.clone()).unwrap_or_default()
    }

    #[test]
    fn constant_dequantize_folds_per_output_channel() {
        let axis = pb::AttributeProto { name: "axis".into(), i: 0, r#type: pb::attribute_proto::AttributeType::Int as i32, ..Default::default() };
        let mut graph = pb::GraphProto {
            node: vec![node("DequantizeLinear", &["q", "s", "z"], "w", vec![axis]), node("Identity", &["w"], "out", vec![])],
            initializer: vec![
                tensor("q", vec![2, 3], DataType::Int8, [1i8, -2, 3, 10, 0, -10].iter().map(|v| *v as u8).collect()),
                float_tensor("s", vec![2], vec![0.5, 2.0]),
                tensor("z", vec![2], DataType::Int8, vec![1, 0]),
            ],
            output: vec![ValueInfoProto { name: "out".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(fold_constant_dequantize(&mut graph), 1);
        assert_eq!(graph.node.len(), 1, "only the Identity is left");
        assert_eq!(floats(&graph, "w"), vec![0.0, -1.5, 1.0, 20.0, 0.0, -20.0]);
        assert!(graph.initializer.iter().all(|t| t.name != "q"), "the int8 weights are pruned");
    }

    #[test]
    fn activation_pairs_become_the_clamp_of_their_range() {
        let mut graph = pb::GraphProto {
            node: vec![
                node("Conv", &["x", "w"], "c", vec![]),
                node("QuantizeLinear", &["c", "s", "z"], "cq", vec![]),
                node("DequantizeLinear", &["cq", "s", "z"], "cd", vec![]),
                node("Identity", &["cd"], "out", vec![]),
            ],
            initializer: vec![float_tensor("s", vec![], vec![0.1]), tensor("z", vec![], DataType::Uint8, vec![10])],
            output: vec![ValueInfoProto { name: "out".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(strip_activation_quantization(&mut graph.clone(), 10), 0, "no Clip with tensor bounds before opset 11");
        assert_eq!(strip_activation_quantization(&mut graph, 13), 1);
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Clip", "Identity"]);
        let clip = &graph.node[1];
        assert_eq!((clip.input[0].as_str(), clip.output[0].as_str()), ("c", "cd"));
        // uint8 with zero point 10 and scale 0.1 covers (0 - 10) * 0.1 ..= (255 - 10) * 0.1.
        assert_eq!(floats(&graph, &clip.input[1]), vec![-1.0]);
        assert!((floats(&graph, &clip.input[2])[0] - 24.5).abs() < 1e-5);
    }
}
