//! TensorFlow frozen graphs (`model.pb`) into the [`Builder`]: the NHWC float ops of Custom
//! Vision's TensorFlow exports (Conv2D, BiasAdd, the mean layer computed from constants with
//! Rsqrt/Mul/Neg, MaxPool, ConcatV2, AvgPool, Reshape, MatMul, Softmax/Sigmoid) and the usual ops
//! of other image classifiers. Nodes are visited from the output back, so dead branches (training
//! leftovers) are never read.

use std::collections::HashMap;

use prost::Message;
use tract_core::ndarray::{ArrayD, IxDyn};
use tract_tensorflow::tfpb::tensorflow::attr_value::Value as Attr;
use tract_tensorflow::tfpb::tensorflow::{DataType, GraphDef, NodeDef, TensorProto};

use super::builder::{axis, pad_pairs, permuted, unsupported, Activation, Binary, BuildResult, Builder, Padding, Unsupported, Value, Window};
use super::tflite::Io;
use crate::engine::{LEGACY_SIZE, TF_OUTPUTS};

/// 1 GB of f32: ten times the largest compact-domain export.
const MAX_CONSTANT_VALUES: usize = 1 << 28;

fn parse(bytes: &[u8]) -> BuildResult<GraphDef> {
    GraphDef::decode(bytes).map_err(|e| Unsupported(format!("an unreadable GraphDef ({e})")))
}

fn nodes(graph: &GraphDef) -> HashMap<&str, &NodeDef> {
    graph.node.iter().map(|n| (n.name.as_str(), n)).collect()
}

/// The node name an input refers to (`name`, `name:0`; control inputs `^name` are skipped).
fn source(input: &str) -> BuildResult<&str> {
    match input.split_once(':') {
        None => Ok(input),
        Some((name, "0")) => Ok(name),
        Some((name, port)) => unsupported(format!("an input from output {port} of `{name}`")),
    }
}

fn data_inputs(node: &NodeDef) -> impl Iterator<Item = &str> {
    node.input.iter().filter(|i| !i.starts_with('^')).map(String::as_str)
}

pub fn io(bytes: &[u8]) -> BuildResult<Io> {
    let graph = parse(bytes)?;
    let by_name = nodes(&graph);
    let output = TF_OUTPUTS.into_iter().find(|n| by_name.contains_key(n)).ok_or_else(|| Unsupported("a graph with neither a `model_outputs` nor a `loss` node".into()))?;
    let placeholders: Vec<&NodeDef> = graph.node.iter().filter(|n| n.op == "Placeholder").collect();
    let [input] = placeholders[..] else { return unsupported(format!("{} inputs (an image classifier has one)", placeholders.len())) };
    let dims: Vec<i64> = match input.attr.get("shape").and_then(|a| a.value.as_ref()) {
        Some(Attr::Shape(s)) if !s.unknown_rank => s.dim.iter().map(|d| d.size).collect(),
        _ => vec![],
    };
    // An open batch is one image; an open size is the legacy 227 (as tract's loader assumes).
    let input_shape = match dims[..] {
        [_, h, w, c] => vec![1, if h > 0 { h as usize } else { LEGACY_SIZE }, if w > 0 { w as usize } else { LEGACY_SIZE }, c.max(0) as usize],
        [] => vec![1, LEGACY_SIZE, LEGACY_SIZE, 3],
        _ => return unsupported(format!("input `{}` of rank {}", input.name, dims.len())),
    };
    Ok(Io { input_name: input.name.clone(), input_shape, output_name: output.to_owned(), has_mean_layer: true })
}

fn tensor(t: &TensorProto) -> BuildResult<ArrayD<f32>> {
    let shape: Vec<usize> = t.tensor_shape.iter().flat_map(|s| &s.dim).map(|d| d.size.max(0) as usize).collect();
    // TensorFlow fills a shape from one repeated value: a damaged shape must not ask for terabytes.
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_CONSTANT_VALUES);
    let Some(count) = count else { return unsupported(format!("a constant of shape {shape:?}, larger than any classifier's weights")) };
    let content = &t.tensor_content;
    let values: Vec<f32> = match DataType::try_from(t.dtype) {
        Ok(DataType::DtFloat) if !content.is_empty() => content.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Ok(DataType::DtFloat) => t.float_val.clone(),
        Ok(DataType::DtInt32) if !content.is_empty() => content.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        Ok(DataType::DtInt32) => t.int_val.iter().map(|&v| v as f32).collect(),
        Ok(DataType::DtInt64) if !content.is_empty() => content.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
        Ok(DataType::DtInt64) => t.int64_val.iter().map(|&v| v as f32).collect(),
        other => return unsupported(format!("a constant of type {other:?}")),
    };
    // TensorFlow repeats the last listed value to fill the shape.
    let values = match values.last() {
        Some(&last) if values.len() < count => values.iter().copied().chain(std::iter::repeat(last)).take(count).collect(),
        _ => values,
    };
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|_| Unsupported("a constant whose values do not fill its shape".into()))
}

fn attr<'a>(node: &'a NodeDef, name: &str) -> Option<&'a Attr> {
    node.attr.get(name).and_then(|a| a.value.as_ref())
}

fn attr_ints(node: &NodeDef, name: &str) -> Vec<i64> {
    match attr(node, name) {
        Some(Attr::List(l)) => l.i.clone(),
        _ => vec![],
    }
}

fn attr_str(node: &NodeDef, name: &str) -> String {
    match attr(node, name) {
        Some(Attr::S(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => String::new(),
    }
}

fn attr_bool(node: &NodeDef, name: &str) -> bool {
    matches!(attr(node, name), Some(Attr::B(true)))
}

/// A window op's geometry from NHWC `strides`/`ksize`/`dilations` lists.
fn window(node: &NodeDef, kernel: [usize; 2]) -> BuildResult<Window> {
    let format = attr_str(node, "data_format");
    if !(format.is_empty() || format == "NHWC") {
        return unsupported(format!("data format {format}"));
    }
    let pair = |name: &str| -> BuildResult<[usize; 2]> {
        match attr_ints(node, name)[..] {
            [] => Ok([1, 1]),
            [1, h, w, 1] if h > 0 && w > 0 => Ok([h as usize, w as usize]),
            ref other => unsupported(format!("{name} {other:?}")),
        }
    };
    let padding = match attr_str(node, "padding").as_str() {
        "SAME" => Padding::Same,
        "VALID" => Padding::Valid,
        other => return unsupported(format!("padding {other:?}")),
    };
    let kernel = if kernel == [0, 0] { pair("ksize")? } else { kernel };
    Ok(Window { kernel, strides: pair("strides")?, dilations: pair("dilations")?, padding })
}

/// Adds the ops the output depends on to `b`, reading `input` for the placeholder.
pub fn build(bytes: &[u8], io: &Io, b: &mut Builder, input: Value) -> BuildResult<Value> {
    let graph = parse(bytes)?;
    let by_name = nodes(&graph);
    let mut values: HashMap<&str, Value> = HashMap::new();
    values.insert(io.input_name.as_str(), input);
    // Depth-first from the output, without recursion (graphs are hundreds of nodes deep).
    let mut stack = vec![(io.output_name.as_str(), false)];
    // Nodes whose inputs are being visited: meeting one again before it is converted is a cycle
    // (a damaged graph), which would otherwise push the same nodes for ever.
    let mut visiting = std::collections::HashSet::new();
    while let Some((name, ready)) = stack.pop() {
        if values.contains_key(name) {
            continue;
        }
        let node = *by_name.get(name).ok_or_else(|| Unsupported(format!("an input from missing node `{name}`")))?;
        if !ready {
            if !visiting.insert(name) {
                return unsupported(format!("a cycle through `{name}`"));
            }
            stack.push((name, true));
            for input in data_inputs(node) {
                stack.push((source(input)?, false));
            }
            continue;
        }
        let inputs = data_inputs(node).map(|i| values.get(source(i)?).cloned().ok_or_else(|| Unsupported(format!("a cycle through `{name}`")))).collect::<BuildResult<Vec<_>>>()?;
        let value = convert_node(b, node, &inputs).map_err(|e| Unsupported(format!("{} `{name}`: {e}", node.op)))?;
        values.insert(name, value);
    }
    Ok(values.remove(io.output_name.as_str()).expect("the output was converted"))
}

fn convert_node(b: &mut Builder, node: &NodeDef, inputs: &[Value]) -> BuildResult<Value> {
    let hint = node.name.as_str();
    let input = |k: usize| inputs.get(k).ok_or_else(|| Unsupported(format!("input {k} missing")));
    let constant = |k: usize, what: &str| -> BuildResult<&ArrayD<f32>> { input(k)?.as_const().ok_or_else(|| Unsupported(format!("a {what} computed at run time"))) };
    let binary = |b: &mut Builder, op: Binary| b.binary(op, input(0)?, input(1)?, hint);
    Ok(match node.op.as_str() {
        "Identity" | "StopGradient" | "Snapshot" | "PreventGradient" => input(0)?.clone(),
        "Placeholder" => return unsupported("a second input"),
        "Const" => match attr(node, "value") {
            Some(Attr::Tensor(t)) => Value::Const(tensor(t)?),
            _ => return unsupported("a constant without a value"),
        },
        "Conv2D" => {
            // HWIO -> OIHW
            let w = permuted(constant(1, "filter")?, &[3, 2, 0, 1])?;
            let x = input(0)?;
            let group = x.shape().last().copied().unwrap_or(0) / w.shape().get(1).copied().unwrap_or(1).max(1);
            let window = window(node, [w.shape()[2], w.shape()[3]])?;
            Value::Tensor(b.conv(x, w, None, group, &window, hint)?)
        }
        "DepthwiseConv2dNative" => {
            // [H, W, C, M] -> [C * M, 1, H, W]: output channel c * M + m, as TensorFlow orders them.
            let w = constant(1, "filter")?;
            let &[kh, kw, c, m] = w.shape() else { return unsupported(format!("a depthwise filter of shape {:?}", w.shape())) };
            let flat = w.view().into_shape_with_order(IxDyn(&[kh, kw, c * m])).expect("same count");
            let w = flat.permuted_axes(IxDyn(&[2, 0, 1])).as_standard_layout().into_owned().into_shape_with_order(IxDyn(&[c * m, 1, kh, kw])).expect("same count");
            let window = window(node, [kh, kw])?;
            Value::Tensor(b.conv(input(0)?, w, None, c, &window, hint)?)
        }
        "BiasAdd" | "Add" | "AddV2" => binary(b, Binary::Add)?,
        "Sub" => binary(b, Binary::Sub)?,
        "Mul" => binary(b, Binary::Mul)?,
        "RealDiv" | "Div" => binary(b, Binary::Div)?,
        "Maximum" => binary(b, Binary::Max)?,
        "Minimum" => binary(b, Binary::Min)?,
        "Neg" => b.unary("Neg", input(0)?, |v| -v, hint),
        "Sqrt" => b.unary("Sqrt", input(0)?, f32::sqrt, hint),
        "Rsqrt" => {
            let root = b.unary("Sqrt", input(0)?, f32::sqrt, &format!("{hint}_sqrt"));
            b.unary("Reciprocal", &root, |v| 1.0 / v, hint)
        }
        "Relu" => b.activation(input(0)?.clone(), Activation::Relu, hint),
        "Relu6" => b.activation(input(0)?.clone(), Activation::Clip(0.0, 6.0), hint),
        "Sigmoid" => b.activation(input(0)?.clone(), Activation::Sigmoid, hint),
        "Tanh" => b.activation(input(0)?.clone(), Activation::Tanh, hint),
        "Softmax" => {
            let x = input(0)?;
            let last = x.shape().len().checked_sub(1).ok_or_else(|| Unsupported("a softmax of a scalar".into()))?;
            b.softmax(x, last, 1.0, hint)?
        }
        "MaxPool" | "AvgPool" => Value::Tensor(b.pool(node.op == "MaxPool", input(0)?, &window(node, [0, 0])?, hint)?),
        "ConcatV2" | "Concat" => {
            if inputs.is_empty() {
                return unsupported("a concatenation of nothing");
            }
            let (axis_ix, xs) = if node.op == "Concat" { (0, &inputs[1..]) } else { (inputs.len() - 1, &inputs[..inputs.len() - 1]) };
            let a = constant(axis_ix, "concatenation axis")?.iter().copied().next().unwrap_or(0.0);
            let rank = xs.first().map(|x| x.shape().len()).unwrap_or(0);
            b.concat(xs, axis(a as i64, rank)?, hint)?
        }
        "Mean" => {
            let x = input(0)?;
            let rank = x.shape().len();
            let axes = constant(1, "axes")?.iter().map(|&a| axis(a as i64, rank)).collect::<BuildResult<Vec<_>>>()?;
            b.mean(x, &axes, attr_bool(node, "keep_dims"), hint)?
        }
        "MatMul" => {
            if attr_bool(node, "transpose_a") {
                return unsupported("a transposed left operand");
            }
            let w = constant(1, "weight")?;
            if attr_bool(node, "transpose_b") {
                Value::Tensor(b.fully_connected(input(0)?, w, None, hint)?)
            } else {
                Value::Tensor(b.matmul(input(0)?, w, hint)?)
            }
        }
        "Reshape" => {
            let x = input(0)?;
            let count: usize = x.shape().iter().product();
            let wanted = constant(1, "shape")?;
            let known: usize = wanted.iter().filter(|&&d| d >= 0.0).map(|&d| d as usize).product();
            let shape: Vec<usize> = wanted.iter().map(|&d| if d < 0.0 { count / known.max(1) } else { d as usize }).collect();
            b.reshape(x, &shape, hint)?
        }
        "Squeeze" => {
            let x = input(0)?;
            let from = x.shape();
            let dims = attr_ints(node, "squeeze_dims");
            let dims = dims.iter().map(|&a| axis(a, from.len())).collect::<BuildResult<Vec<_>>>()?;
            let shape: Vec<usize> = (0..from.len()).filter(|a| if dims.is_empty() { from[*a] != 1 } else { !dims.contains(a) }).map(|a| from[a]).collect();
            b.reshape(x, &shape, hint)?
        }
        "ExpandDims" => {
            let x = input(0)?;
            let mut shape = x.shape();
            let at = axis(constant(1, "axis")?.iter().copied().next().unwrap_or(0.0) as i64, shape.len() + 1)?;
            shape.insert(at, 1);
            b.reshape(x, &shape, hint)?
        }
        "Pad" => {
            b.pad(input(0)?, &pad_pairs(constant(1, "padding")?)?, 0.0, hint)?
        }
        "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => {
            if attr_bool(node, "is_training") {
                return unsupported("batch normalisation in training mode");
            }
            let epsilon = match attr(node, "epsilon") {
                Some(Attr::F(e)) => *e,
                _ => 1e-3,
            };
            let (scale, offset, mean, variance) = (constant(1, "scale")?, constant(2, "offset")?, constant(3, "mean")?, constant(4, "variance")?);
            if [offset, mean, variance].iter().any(|v| v.shape() != scale.shape()) || scale.ndim() != 1 {
                return unsupported("scale, offset, mean and variance that are not one value per channel");
            }
            let factor = scale * &variance.mapv(|v| 1.0 / (v + epsilon).sqrt());
            let shift = offset - &(mean * &factor);
            let scaled = b.binary(Binary::Mul, input(0)?, &Value::Const(factor), &format!("{hint}_scale"))?;
            b.binary(Binary::Add, &scaled, &Value::Const(shift), hint)?
        }
        "Shape" => Value::Const(ArrayD::from_shape_vec(IxDyn(&[input(0)?.shape().len()]), input(0)?.shape().iter().map(|&d| d as f32).collect()).expect("one per axis")),
        other => return unsupported(format!("the op {other}, which cvedge cannot convert yet")),
    })
}
