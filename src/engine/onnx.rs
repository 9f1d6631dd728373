//! ONNX graph surgery done on the protobuf before tract sees it: the 2018-2020 exports start with
//! `ImageScaler` (dropped from ONNX in opset 10, unknown to tract) and end in an `ai.onnx.ml`
//! ZipMap tail (string maps no tensor runtime needs). Both are rewritten away here so that every
//! ONNX generation reaches tract as "image tensor in, probability tensor out".

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{self, ModelProto, NodeProto, TensorProto, ValueInfoProto};

use crate::error::{Error, Result};

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
