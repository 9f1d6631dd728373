//! The graph side of quantization, on the ONNX protobuf: bring the graph to opset 13 (per-channel
//! QuantizeLinear / DequantizeLinear need it), decide which tensors to quantize ([`plan`]), and
//! write the QDQ graph for a set of calibrated ranges ([`apply`]).
//!
//! The layout is onnxruntime's static QDQ format, whose int8 kernels it fuses `DQ -> Conv -> Q`
//! into: every activation tensor next to a quantizable op gets one `Q -> DQ` pair (uint8,
//! asymmetric), convolution weights are int8 per output channel (symmetric), biases int32 at the
//! input scale times the weight scale. A `Relu` or `Clip(0, max)` right after a convolution is
//! folded into the convolution's output range (zero point 0 saturates exactly as the activation
//! does), as onnxruntime's own quantizer does. Only the backbone is touched: the head and its
//! softmax/sigmoid stay in float, which also keeps clear of tract's lookup-table rewrite that
//! turns a quantized softmax into a constant.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

use crate::error::{Error, Result};

/// Ops whose activation inputs and outputs are quantized.
const QUANTIZABLE: [&str; 8] = ["Conv", "Add", "GlobalAveragePool", "AveragePool", "MaxPool", "Concat", "Relu", "Clip"];
/// The opset per-channel QDQ needs.
const OPSET: i64 = 13;

fn refuse(problem: impl Into<String>) -> Error {
    Error::Quantize {
        problem: problem.into(),
        fix: "keep using the fp32 export (or report the model so its graph can be supported)".into(),
    }
}

fn take_attribute(node: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let ix = node.attribute.iter().position(|a| a.name == name)?;
    Some(node.attribute.remove(ix))
}

fn int_tensor(name: String, dims: Vec<i64>, values: &[i64]) -> TensorProto {
    TensorProto { name, dims, data_type: DataType::Int64 as i32, int64_data: values.to_vec(), ..Default::default() }
}

fn float_tensor(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    TensorProto { name, dims, data_type: DataType::Float as i32, float_data: values.to_vec(), ..Default::default() }
}

fn raw_tensor(name: String, dims: Vec<i64>, data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto { name, dims, data_type: data_type as i32, raw_data: raw, ..Default::default() }
}

/// Rewrites the default domain to opset 13: the attributes that became inputs (Pad, Clip,
/// Squeeze, Unsqueeze) become initializers, attributes that were dropped (`spatial`, `is_test`,
/// `consumed_inputs`) go, Dropout becomes Identity. Opset 6 graphs (whose Add/Mul broadcast by
/// attribute) and ops this does not know how to move are refused.
pub fn upgrade_opset(model: &mut ModelProto) -> Result<()> {
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).unwrap_or(0);
    if opset >= OPSET {
        return Ok(());
    }
    if opset < 7 {
        return Err(refuse(format!("the graph is opset {opset} (ONNX 1.0), whose broadcasting rules the quantized graph cannot keep")));
    }
    let graph = model.graph.as_mut().ok_or_else(|| refuse("the file has no graph"))?;
    let mut initializers = vec![];
    for node in &mut graph.node {
        for dropped in ["spatial", "is_test", "consumed_inputs"] {
            take_attribute(node, dropped);
        }
        let base = format!("{}__cvedge_opset13", node.output.first().cloned().unwrap_or_default());
        match node.op_type.as_str() {
            "Upsample" | "Scatter" | "Slice" | "TopK" | "Resize" => {
                return Err(refuse(format!("the graph's {} node would need rewriting for opset 13", node.op_type)));
            }
            "Dropout" => {
                node.op_type = "Identity".into();
                node.output.truncate(1);
                node.attribute.clear();
            }
            "Pad" if node.input.len() == 1 => {
                let pads = take_attribute(node, "pads").map(|a| a.ints).unwrap_or_default();
                let value = take_attribute(node, "value").map(|a| a.f).unwrap_or(0.0);
                initializers.push(int_tensor(format!("{base}_pads"), vec![pads.len() as i64], &pads));
                initializers.push(float_tensor(format!("{base}_value"), vec![], &[value]));
                node.input.push(format!("{base}_pads"));
                node.input.push(format!("{base}_value"));
            }
            "Clip" if node.input.len() == 1 => {
                let min = take_attribute(node, "min").map(|a| a.f).unwrap_or(f32::MIN);
                let max = take_attribute(node, "max").map(|a| a.f).unwrap_or(f32::MAX);
                initializers.push(float_tensor(format!("{base}_min"), vec![], &[min]));
                initializers.push(float_tensor(format!("{base}_max"), vec![], &[max]));
                node.input.push(format!("{base}_min"));
                node.input.push(format!("{base}_max"));
            }
            "Squeeze" | "Unsqueeze" if node.input.len() == 1 => {
                if let Some(axes) = take_attribute(node, "axes") {
                    initializers.push(int_tensor(format!("{base}_axes"), vec![axes.ints.len() as i64], &axes.ints));
                    node.input.push(format!("{base}_axes"));
                }
            }
            _ => {}
        }
    }
    graph.initializer.extend(initializers);
    model.opset_import.retain(|o| !(o.domain.is_empty() || o.domain == "ai.onnx"));
    model.opset_import.push(OperatorSetIdProto { domain: String::new(), version: OPSET });
    model.ir_version = model.ir_version.max(7);
    Ok(())
}

/// What to quantize in a graph.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Activation tensors that get a `Q -> DQ` pair, in graph order; also what calibration
    /// measures.
    pub tensors: Vec<String>,
    /// Activation nodes folded into their producer's output range.
    folded: HashSet<usize>,
    /// Convolutions whose weights become int8.
    convs: Vec<usize>,
}

impl Plan {
    pub fn int8_convolutions(&self) -> usize {
        self.convs.len()
    }
}

/// Plans the quantization of the nodes `features` depends on.
pub fn plan(graph: &GraphProto, features: &str) -> Plan {
    let (backbone, _) = crate::engine::onnx::dependencies(graph, [features.to_owned()]);
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let quantizable = |i: usize| backbone[i] && QUANTIZABLE.contains(&graph.node[i].op_type.as_str());
    let mut folded = HashSet::new();
    for (i, node) in graph.node.iter().enumerate() {
        if !quantizable(i) || node.op_type != "Conv" || node.output.len() != 1 {
            continue;
        }
        let next = consumers.get(node.output[0].as_str()).map(Vec::as_slice).unwrap_or_default();
        if let [activation] = next {
            let act = &graph.node[*activation];
            let min_is_zero = act.op_type == "Relu"
                || (act.op_type == "Clip" && act.input.get(1).and_then(|m| constant_scalar(graph, m)) == Some(0.0));
            if min_is_zero && backbone[*activation] {
                folded.insert(*activation);
            }
        }
    }
    let select = |folded: &HashSet<usize>| -> Vec<String> {
        let mut tensors = vec![];
        let mut seen = HashSet::new();
        let mut consider = |tensor: &str, producer: Option<usize>| {
            if tensor.is_empty() || initializers.contains(tensor) || !seen.insert(tensor.to_owned()) {
                return;
            }
            // Legacy exports pad with -FLT_MAX before max pooling: no 8-bit range holds that.
            if producer.is_some_and(|p| graph.node[p].op_type == "Pad") {
                return;
            }
            let producer_quantizable = producer.is_some_and(quantizable);
            let users = consumers.get(tensor).map(Vec::as_slice).unwrap_or_default();
            // tract's DequantizeLinear rewrite breaks on a Pad behind it: keep its input float.
            if users.iter().any(|&j| graph.node[j].op_type == "Pad") {
                return;
            }
            let used_by_quantized = users.iter().any(|&j| quantizable(j) && !folded.contains(&j));
            if producer_quantizable || used_by_quantized {
                tensors.push(tensor.to_owned());
            }
        };
        let produced: HashSet<&str> = graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
        for input in graph.input.iter().filter(|i| !produced.contains(i.name.as_str())) {
            consider(&input.name, None);
        }
        for (i, node) in graph.node.iter().enumerate() {
            if !backbone[i] || folded.contains(&i) {
                continue;
            }
            // A convolution whose activation is folded outputs the activation's tensor.
            let output = match consumers.get(node.output.first().map(String::as_str).unwrap_or_default()).map(Vec::as_slice) {
                Some([j]) if folded.contains(j) => graph.node[*j].output[0].as_str(),
                _ => node.output.first().map(String::as_str).unwrap_or_default(),
            };
            consider(output, Some(i));
        }
        tensors
    };
    // An activation is only folded when its output is quantized: the saturation of the
    // quantized tensor is what performs it.
    let tentative = select(&folded);
    folded.retain(|&j| tentative.contains(&graph.node[j].output[0]));
    let tensors = select(&folded);
    let convs = (0..graph.node.len())
        .filter(|&i| quantizable(i) && graph.node[i].op_type == "Conv" && graph.node[i].input.get(1).is_some_and(|w| initializers.contains(w.as_str())))
        .collect();
    Plan { tensors, folded, convs }
}

fn constant_scalar(graph: &GraphProto, name: &str) -> Option<f32> {
    let t = graph.initializer.iter().find(|t| t.name == name)?;
    t.float_data.first().copied().or_else(|| t.raw_data.get(..4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    if !t.float_data.is_empty() {
        return Some(t.float_data.clone());
    }
    Some(t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Scale and zero point of a uint8 asymmetric activation covering `[lo, hi]` (and 0, which must
/// be exact: padding and ReLU produce it).
pub fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if !(hi - lo > 1e-12) || !lo.is_finite() || !hi.is_finite() {
        return (1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

fn node(op: &str, name: String, input: Vec<String>, output: String, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto { op_type: op.into(), name, input, output: vec![output], attribute, ..Default::default() }
}

fn axis(value: i64) -> Vec<AttributeProto> {
    vec![AttributeProto { name: "axis".into(), i: value, r#type: AttributeType::Int as i32, ..Default::default() }]
}

/// Stores `raw` (int8 or int32 values of shape `dims`) with per-output-channel `scales` and zero
/// points of 0, and a DequantizeLinear along axis 0 computing its float value; returns that
/// value's name.
fn per_channel_constant(base: &str, dims: Vec<i64>, data_type: DataType, raw: Vec<u8>, scales: &[f32], initializers: &mut Vec<TensorProto>, nodes: &mut Vec<NodeProto>) -> String {
    let width = if data_type == DataType::Int32 { 4 } else { 1 };
    let channels = vec![scales.len() as i64];
    let (q, s, z, dq) = (format!("{base}_q"), format!("{base}_scale"), format!("{base}_zero"), format!("{base}_dq"));
    initializers.push(raw_tensor(q.clone(), dims, data_type, raw));
    initializers.push(float_tensor(s.clone(), channels.clone(), scales));
    initializers.push(raw_tensor(z.clone(), channels, data_type, vec![0; width * scales.len()]));
    nodes.push(node("DequantizeLinear", format!("{base}_dequantize"), vec![q, s, z], dq.clone(), axis(0)));
    dq
}

/// The QDQ graph for `ranges` (tensor -> `[lo, hi]`, one per planned tensor).
pub fn apply(model: &ModelProto, plan: &Plan, ranges: &HashMap<String, (f32, f32)>) -> Result<ModelProto> {
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or_else(|| refuse("the file has no graph"))?;
    let mut params: HashMap<&str, (f32, u8)> = HashMap::new();
    for tensor in &plan.tensors {
        let (lo, hi) = ranges.get(tensor).copied().ok_or_else(|| refuse(format!("calibration did not measure `{tensor}`")))?;
        params.insert(tensor.as_str(), activation_params(lo, hi));
    }
    // Folded activations: the convolution writes the activation's output directly.
    let mut renames: HashMap<String, String> = HashMap::new();
    for &i in &plan.folded {
        renames.insert(graph.node[i].input[0].clone(), graph.node[i].output[0].clone());
    }
    let dequantized = |t: &str| format!("{t}__cvedge_dq");
    let original_initializers: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut initializers = std::mem::take(&mut graph.initializer);
    // Per convolution: its weights' name, shape, int8 values and per-channel scales.
    let mut weights: HashMap<usize, (String, Vec<i64>, Vec<u8>, Vec<f32>)> = HashMap::new();
    for &i in &plan.convs {
        let name = &graph.node[i].input[1];
        let t = initializers.iter().find(|t| &t.name == name).ok_or_else(|| refuse(format!("weights `{name}` are not stored in the file")))?;
        let w = floats(t).ok_or_else(|| refuse(format!("weights `{name}` are not float32")))?;
        let channels = *t.dims.first().ok_or_else(|| refuse(format!("weights `{name}` have no shape")))? as usize;
        if channels == 0 || w.len() % channels != 0 {
            return Err(refuse(format!("weights `{name}` do not split into {channels} output channels")));
        }
        let per = w.len() / channels;
        let scales: Vec<f32> = w.chunks_exact(per).map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0).map(|s| if s > 0.0 { s } else { 1.0 }).collect();
        let q: Vec<u8> = w.iter().enumerate().map(|(k, v)| ((v / scales[k / per]).round().clamp(-127.0, 127.0) as i8) as u8).collect();
        weights.insert(i, (format!("{name}__cvedge_int8"), t.dims.clone(), q, scales));
    }

    let mut nodes = Vec::with_capacity(graph.node.len() * 3);
    let pair = |tensor: &str, nodes: &mut Vec<NodeProto>, initializers: &mut Vec<TensorProto>| {
        let (scale, zero) = params[tensor];
        let (s, z, q) = (format!("{tensor}__cvedge_scale"), format!("{tensor}__cvedge_zero"), format!("{tensor}__cvedge_q"));
        initializers.push(float_tensor(s.clone(), vec![], &[scale]));
        initializers.push(raw_tensor(z.clone(), vec![], DataType::Uint8, vec![zero]));
        nodes.push(node("QuantizeLinear", format!("{tensor}__cvedge_quantize"), vec![tensor.to_owned(), s.clone(), z.clone()], q.clone(), vec![]));
        nodes.push(node("DequantizeLinear", format!("{tensor}__cvedge_dequantize"), vec![q, s, z], dequantized(tensor), vec![]));
    };
    let produced: HashSet<String> = graph.node.iter().flat_map(|n| n.output.clone()).collect();
    for input in graph.input.iter().filter(|i| !produced.contains(&i.name) && params.contains_key(i.name.as_str())) {
        pair(&input.name, &mut nodes, &mut initializers);
    }
    for (i, original) in graph.node.iter().enumerate() {
        if plan.folded.contains(&i) {
            continue;
        }
        let mut n = original.clone();
        for output in &mut n.output {
            if let Some(to) = renames.get(output) {
                *output = to.clone();
            }
        }
        for input in &mut n.input {
            if params.contains_key(input.as_str()) {
                *input = dequantized(input);
            }
        }
        if let Some((base, dims, q, w_scales)) = weights.remove(&i) {
            n.input[1] = per_channel_constant(&base, dims, DataType::Int8, q, &w_scales, &mut initializers, &mut nodes);
            // int32 bias at input scale x weight scale, so onnxruntime can fuse the convolution.
            let bias = original.input.get(2).and_then(|b| initializers.iter().find(|t| &t.name == b)).and_then(floats);
            if let (Some(&(x_scale, _)), Some(b)) = (params.get(original.input[0].as_str()), bias.filter(|b| b.len() == w_scales.len())) {
                let scales: Vec<f32> = w_scales.iter().map(|s| s * x_scale).collect();
                let q: Vec<u8> = b.iter().zip(&scales).flat_map(|(v, s)| ((v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()).collect();
                let base = format!("{}__cvedge_int32", original.input[2]);
                n.input[2] = per_channel_constant(&base, vec![b.len() as i64], DataType::Int32, q, &scales, &mut initializers, &mut nodes);
            }
        }
        let outputs = n.output.clone();
        nodes.push(n);
        for output in outputs.iter().filter(|o| params.contains_key(o.as_str())) {
            pair(output, &mut nodes, &mut initializers);
        }
    }
    // The float weights and biases the int8 ones replaced go; graph inputs that listed them
    // (IR 3 lists every initializer) go with them.
    let used: HashSet<String> = nodes.iter().flat_map(|n| n.input.clone()).collect();
    initializers.retain(|t| used.contains(&t.name));
    let kept: HashSet<&String> = initializers.iter().map(|t| &t.name).collect();
    graph.input.retain(|i| !original_initializers.contains(&i.name) || kept.contains(&i.name));
    graph.initializer = initializers;
    graph.node = nodes;
    graph.value_info.clear();
    Ok(model)
}

