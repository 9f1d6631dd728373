//! The protobuf surgery behind [`super::export_onnx`]: find the input of the base graph's final
//! fully connected layer, cut everything after it away, and append the new head so that the
//! graph reads `data` and writes probabilities to `model_output`.
//!
//! The walk mirrors `engine::split` on the ONNX side: from the graph output back through the
//! activation, reshapes, casts and constant `Add`/`Mul` (bias, scaling) to a `Gemm` or `MatMul`
//! whose other operand is constant. Its non-constant input is the features tensor. "Constant"
//! means an initializer, a `Constant` node, or anything computed from those alone (the fp16
//! Gemm rewrite in `engine::onnx` leaves `Transpose(W)` in front of the MatMul).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};

use crate::error::{Error, Result};
use crate::head::{Activation, LinearHead};

/// The current layout's tensor names.
pub const INPUT: &str = "data";
pub const OUTPUT: &str = "model_output";

/// A fully connected layer with its bias, scaling, reshapes and activation is a handful of
/// nodes; a walk longer than this has left the head.
const MAX_WALK: usize = 16;

/// What the surgery found in the base graph.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The final fully connected layer's input: the tensor the new head reads (its base name,
    /// unless it had to be renamed to make way for `data` / `model_output`).
    pub features: String,
    /// The base takes (and the export gives) fp16 tensors.
    pub float16: bool,
    /// The image input's height and width (0 when the graph leaves them open).
    pub input_size: (usize, usize),
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attribute(node: &NodeProto, name: &str) -> i64 {
    attribute(node, name).map(|a| a.i).unwrap_or(0)
}

fn not_found(path: &Path, detail: String) -> Error {
    Error::model(
        path,
        format!("cannot find the input of the final fully connected layer ({detail})"),
        "export needs a Custom Vision classification export whose graph ends in Gemm or MatMul and then softmax or sigmoid; report the model if it is one",
    )
}

/// Tensors computable without the image, in one pass (ONNX nodes are topologically sorted).
fn constant_tensors(graph: &GraphProto) -> HashSet<String> {
    let mut konst: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    for node in &graph.node {
        let mut inputs = node.input.iter().filter(|i| !i.is_empty()).peekable();
        let constant = if inputs.peek().is_none() { node.op_type == "Constant" } else { inputs.all(|i| konst.contains(i)) };
        if constant {
            konst.extend(node.output.iter().cloned());
        }
    }
    konst
}

/// Dims of a constant tensor, followed through the few ops exporters put in front of weights.
fn constant_dims(graph: &GraphProto, producers: &HashMap<&str, usize>, name: &str) -> Option<Vec<i64>> {
    if let Some(t) = graph.initializer.iter().find(|t| t.name == name) {
        return Some(t.dims.clone());
    }
    let node = &graph.node[*producers.get(name)?];
    match node.op_type.as_str() {
        "Constant" => attribute(node, "value").and_then(|a| a.t.as_ref()).map(|t| t.dims.clone()),
        "Identity" | "Cast" => constant_dims(graph, producers, node.input.first()?),
        "Transpose" => {
            let dims = constant_dims(graph, producers, node.input.first()?)?;
            let perm: Vec<i64> = match attribute(node, "perm") {
                Some(a) if !a.ints.is_empty() => a.ints.clone(),
                _ => (0..dims.len() as i64).rev().collect(),
            };
            perm.iter().map(|&p| dims.get(usize::try_from(p).ok()?).copied()).collect()
        }
        _ => None,
    }
}

/// The features tensor and, when the weights' shape says it, the width the layer expects.
fn find_features(path: &Path, graph: &GraphProto) -> Result<(String, Option<usize>)> {
    let konst = constant_tensors(graph);
    let mut producers: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for output in &node.output {
            producers.insert(output.as_str(), i);
        }
    }
    let mut tensor = graph.output.first().map(|o| o.name.clone()).ok_or_else(|| not_found(path, "the graph has no output".into()))?;
    for _ in 0..MAX_WALK {
        let Some(&ix) = producers.get(tensor.as_str()) else {
            return Err(not_found(path, format!("`{tensor}` is not computed by any node")));
        };
        let node = &graph.node[ix];
        let live: Vec<usize> = (0..node.input.len()).filter(|&i| !node.input[i].is_empty() && !konst.contains(&node.input[i])).collect();
        let op = node.op_type.as_str();
        let product = (op == "MatMul" || (op == "Gemm" && int_attribute(node, "transA") == 0)) && node.input.len() >= 2;
        if product && live == [0] {
            let width = constant_dims(graph, &producers, &node.input[1]).and_then(|dims| {
                // Gemm(transB=1) holds W as [tags, width]; otherwise the weights are [width, tags].
                let axis = if op == "Gemm" && int_attribute(node, "transB") != 0 { dims.len().checked_sub(1)? } else { dims.len().checked_sub(2)? };
                usize::try_from(dims[axis]).ok()
            });
            return Ok((node.input[0].clone(), width));
        } else if (op == "Softmax" || op == "Sigmoid" || crate::engine::onnx::SHAPE_ONLY.contains(&op)) && live == [0] {
            tensor = node.input[0].clone();
        } else if (op == "Add" || op == "Mul") && live.len() == 1 {
            tensor = node.input[live[0]].clone();
        } else {
            let name = if node.name.is_empty() { String::new() } else { format!(" `{}`", node.name) };
            return Err(not_found(path, format!("walking back from the output, the {op} node{name} is neither the layer nor part of its tail")));
        }
    }
    Err(not_found(path, format!("no Gemm or MatMul within {MAX_WALK} nodes of the output")))
}

/// Keeps only the nodes, initializers and value infos `roots` depend on (and the image input).
fn prune(graph: &mut GraphProto, roots: &[&str], image_input: &str) {
    let needed = crate::engine::onnx::prune_to(graph, roots.iter().map(|r| r.to_string()));
    graph.input.retain(|i| i.name == image_input || needed.contains(&i.name));
    let produced: HashSet<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
    // tract's protobuf knows only tensor types; a value info it could not read is dropped.
    graph.value_info.retain(|v| produced.contains(&v.name) && v.r#type.as_ref().is_some_and(|t| t.value.is_some()));
}

fn tensor_names(graph: &GraphProto) -> HashSet<String> {
    let mut names: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().chain(&n.output)).cloned().collect();
    names.extend(graph.node.iter().map(|n| n.name.clone()));
    names.extend(graph.initializer.iter().map(|t| t.name.clone()));
    names.extend(graph.input.iter().chain(&graph.output).chain(&graph.value_info).map(|v| v.name.clone()));
    names
}

/// `base`, or `base_1`, `base_2`... whichever the graph does not use yet (then reserved).
fn fresh(names: &mut HashSet<String>, base: &str) -> String {
    let name = std::iter::once(base.to_owned()).chain((1..).map(|i| format!("{base}_{i}"))).find(|n| !names.contains(n)).expect("unbounded");
    names.insert(name.clone());
    name
}

/// Renames a tensor everywhere in the graph (Custom Vision graphs have no subgraphs).
fn rename(graph: &mut GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for s in node.input.iter_mut().chain(node.output.iter_mut()).filter(|s| *s == from) {
            *s = to.to_owned();
        }
    }
    for v in graph.input.iter_mut().chain(graph.output.iter_mut()).chain(graph.value_info.iter_mut()).filter(|v| v.name == from) {
        v.name = to.to_owned();
    }
    for t in graph.initializer.iter_mut().filter(|t| t.name == from) {
        t.name = to.to_owned();
    }
}

fn tensor_type(elem_type: i32, dims: Vec<Dimension>) -> Option<TypeProto> {
    Some(TypeProto { value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type, shape: Some(TensorShapeProto { dim: dims }) })), ..Default::default() })
}

fn dim(value: i64) -> Dimension {
    Dimension { value: Some(dimension::Value::DimValue(value)), ..Default::default() }
}

fn node(op: &str, name: String, input: Vec<String>, output: String, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto { op_type: op.into(), name, input, output: vec![output], attribute, ..Default::default() }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: AttributeType::Int as i32, ..Default::default() }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f, r#type: AttributeType::Float as i32, ..Default::default() }
}

/// `engine::onnx::prepare` rewrites ImageScaler as Mul + Add with opset-7 broadcasting. Opset-6
/// Mul/Add only broadcast with a `broadcast` attribute, so there the base's own ImageScaler
/// (an opset-6 op that every runtime able to load the base knows) is put back; the orphaned
/// Mul and its constants are pruned afterwards.
fn restore_image_scalers(graph: &mut GraphProto, base_model: &[u8]) {
    // `prepare` parsed these bytes already.
    let Some(base) = ModelProto::decode(base_model).ok().and_then(|m| m.graph) else { return };
    for scaler in base.node.iter().filter(|n| n.op_type == "ImageScaler" && n.output.len() == 1) {
        // The Add that `prepare` left computing the scaler's output.
        let rewritten = graph.node.iter_mut().find(|n| n.op_type == "Add" && n.output == scaler.output && n.name.ends_with("__cvedge_image_scaler_add"));
        if let Some(add) = rewritten {
            *add = scaler.clone();
        }
    }
}

/// The image input: the graph input no initializer feeds, with its element type and dims.
fn image_input(path: &Path, graph: &GraphProto) -> Result<(ValueInfoProto, i32, Vec<Dimension>)> {
    let initialized: HashSet<&String> = graph.initializer.iter().map(|t| &t.name).collect();
    let input = graph.input.iter().find(|i| !initialized.contains(&i.name)).cloned().ok_or_else(|| {
        Error::model(path, "the ONNX graph has no image input", "this is not a Custom Vision image classifier export")
    })?;
    let (elem_type, dims) = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => (t.elem_type, t.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default()),
        None => (DataType::Float as i32, vec![]),
    };
    Ok((input, elem_type, dims))
}

/// A tensor type whose shape is left to the runtime.
fn shapeless(elem_type: i32) -> Option<TypeProto> {
    Some(TypeProto { value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type, shape: None })), ..Default::default() })
}

/// Cuts the graph at the features, in place: the backbone alone, with the features tensor as its
/// only output (typed like the image input, the shape left to the runtime). Returns its name.
/// This is the backbone every engine other than tract runs, and what `cvedge quantize` quantizes.
/// `model`, `base_model` and `opset` as for [`replace_head`].
pub fn cut_backbone(path: &Path, model: &mut ModelProto, base_model: &[u8], opset: i64) -> Result<String> {
    let graph = model.graph.as_mut().ok_or_else(|| not_found(path, "the file has no graph".into()))?;
    if opset < 7 {
        restore_image_scalers(graph, base_model);
    }
    let (features, _) = find_features(path, graph)?;
    let (input, elem_type, _) = image_input(path, graph)?;
    prune(graph, &[&features], &input.name);
    graph.output = vec![ValueInfoProto { name: features.clone(), r#type: shapeless(elem_type), ..Default::default() }];
    graph.value_info.retain(|v| v.name != features);
    Ok(features)
}

/// The nodes after the cut as a model of their own: the features tensor in (typed like the
/// image input, shape left open), the graph's output out. `model` is the cleaned proto from
/// `engine::onnx::prepare`; only the tail's nodes and weights are copied. Returns the features'
/// name and the tail.
pub fn cut_tail(path: &Path, model: &ModelProto) -> Result<(String, ModelProto)> {
    let graph = model.graph.as_ref().ok_or_else(|| not_found(path, "the file has no graph".into()))?;
    let (features, _) = find_features(path, graph)?;
    let (_, elem_type, _) = image_input(path, graph)?;
    let mut needed: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut nodes = vec![];
    for node in graph.node.iter().rev() {
        if node.output.iter().any(|o| needed.contains(o.as_str())) {
            nodes.push(node.clone());
            needed.extend(node.input.iter().map(String::as_str).filter(|i| !i.is_empty() && *i != features));
        }
    }
    nodes.reverse();
    let tail = GraphProto {
        name: "cvedge_tail".into(),
        node: nodes,
        initializer: graph.initializer.iter().filter(|t| needed.contains(t.name.as_str())).cloned().collect(),
        input: vec![ValueInfoProto { name: features.clone(), r#type: shapeless(elem_type), ..Default::default() }],
        output: graph.output.clone(),
        ..Default::default()
    };
    let tail = ModelProto { ir_version: model.ir_version, opset_import: model.opset_import.clone(), graph: Some(tail), ..Default::default() };
    Ok((features, tail))
}

/// Replaces everything after the features with `head`, in place. `model` is the cleaned proto
/// from `engine::onnx::prepare` of `base_model`; `opset` its default-domain opset.
pub fn replace_head(path: &Path, model: &mut ModelProto, base_model: &[u8], head: &LinearHead, opset: i64) -> Result<Cut> {
    let ir_version = model.ir_version;
    let graph = model.graph.as_mut().ok_or_else(|| not_found(path, "the file has no graph".into()))?;
    if opset < 7 {
        restore_image_scalers(graph, base_model);
    }
    let (mut features, width) = find_features(path, graph)?;
    if let Some(width) = width.filter(|w| *w != head.width) {
        return Err(Error::model(
            path,
            format!("the trained head reads {} features but this export's final layer reads {width}", head.width),
            "export the head together with the base export it was trained on",
        ));
    }
    let (input, elem_type, dims) = image_input(path, graph)?;
    let float16 = elem_type == DataType::Float16 as i32;
    let size = |i: usize| match dims.get(i).and_then(|d| d.value.as_ref()) {
        Some(dimension::Value::DimValue(v)) => usize::try_from(*v).unwrap_or(0),
        _ => 0,
    };
    let input_size = (size(2), size(3));

    prune(graph, &[&features], &input.name);
    graph.output.clear();
    let mut names = tensor_names(graph);
    // The layout's two names belong to the input and output: move any other tensor so named.
    for reserved in [INPUT, OUTPUT] {
        if reserved != input.name && names.contains(reserved) {
            let moved = fresh(&mut names, &format!("{reserved}_base"));
            rename(graph, reserved, &moved);
            if features == reserved {
                features = moved;
            }
        }
    }
    if input.name != INPUT {
        rename(graph, &input.name, INPUT);
        if features == input.name {
            features = INPUT.to_owned();
        }
    }

    let tags = head.bias.len();
    let weight = fresh(&mut names, "cvedge_head.weight");
    let bias = fresh(&mut names, "cvedge_head.bias");
    let mut x = features.clone();
    if float16 {
        // The head is computed in float (as cvedge computes it); only the I/O stays fp16.
        let widened = fresh(&mut names, "cvedge_head/features_float");
        graph.node.push(node("Cast", fresh(&mut names, "cvedge_head/cast_features"), vec![x], widened.clone(), vec![int("to", DataType::Float as i64)]));
        x = widened;
    }
    let flat = fresh(&mut names, "cvedge_head/features_flat");
    graph.node.push(node("Flatten", fresh(&mut names, "cvedge_head/flatten"), vec![x], flat.clone(), vec![int("axis", 1)]));
    let logits = fresh(&mut names, "cvedge_head/logits");
    let mut gemm = vec![float("alpha", 1.0), float("beta", 1.0), int("transB", 1)];
    if opset < 7 {
        gemm.push(int("broadcast", 1)); // before opset 7 Gemm broadcast C only when asked
    }
    graph.node.push(node("Gemm", fresh(&mut names, "cvedge_head/gemm"), vec![flat, weight.clone(), bias.clone()], logits.clone(), gemm));
    let probabilities = if float16 { fresh(&mut names, "cvedge_head/probabilities") } else { OUTPUT.to_owned() };
    let activation = fresh(&mut names, "cvedge_head/activation");
    match head.activation {
        Activation::Softmax => graph.node.push(node("Softmax", activation, vec![logits], probabilities.clone(), vec![int("axis", 1)])),
        Activation::Sigmoid => graph.node.push(node("Sigmoid", activation, vec![logits], probabilities.clone(), vec![])),
        Activation::Identity => unreachable!("checked by export_onnx"),
    }
    if float16 {
        graph.node.push(node("Cast", fresh(&mut names, "cvedge_head/cast_output"), vec![probabilities], OUTPUT.to_owned(), vec![int("to", DataType::Float16 as i64)]));
    }
    let float_tensor = |name: String, dims: Vec<i64>, data: &[f32]| TensorProto {
        name,
        dims,
        data_type: DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    };
    graph.initializer.push(float_tensor(weight, vec![tags as i64, head.width as i64], &head.weights));
    graph.initializer.push(float_tensor(bias, vec![tags as i64], &head.bias));
    if ir_version < 4 {
        // IR 3 (the 2018-2020 exports) wants every initializer listed among the graph inputs.
        let listed: HashSet<String> = graph.input.iter().map(|i| i.name.clone()).collect();
        let missing: Vec<ValueInfoProto> = graph
            .initializer
            .iter()
            .filter(|t| !listed.contains(&t.name))
            .map(|t| ValueInfoProto { name: t.name.clone(), r#type: tensor_type(t.data_type, t.dims.iter().map(|d| dim(*d)).collect()), ..Default::default() })
            .collect();
        graph.input.extend(missing);
    }
    let batch = dims.first().cloned().unwrap_or_else(|| Dimension { value: Some(dimension::Value::DimParam("N".into())), ..Default::default() });
    graph.output = vec![ValueInfoProto { name: OUTPUT.into(), r#type: tensor_type(elem_type, vec![batch, dim(tags as i64)]), ..Default::default() }];

    // Only the default domain is left in a Custom Vision graph once the ZipMap tail is gone.
    let used: HashSet<&str> = graph.node.iter().map(|n| n.domain.as_str()).collect();
    model.opset_import.retain(|o| o.domain.is_empty() || o.domain == "ai.onnx" || used.contains(o.domain.as_str()));
    Ok(Cut { features, float16, input_size })
}
