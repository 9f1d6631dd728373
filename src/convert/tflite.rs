//! TensorFlow Lite flatbuffers into the [`Builder`]: the float ops Custom Vision's TFLite
//! exports use (2019 SqueezeNet-like, 2025 ShuffleNet-like, fp16 weights behind DEQUANTIZE) and
//! the common float ops of other image classifiers. The file first goes through
//! [`normalize_tflite`], which folds the fp16 DEQUANTIZE ops into fp32 constants.
//! Shapes computed by the builder are checked against the shapes the file states.

use std::collections::HashMap;

use tract_core::ndarray::{ArrayD, IxDyn};
use tract_tflite::tflite::{self, ActivationFunctionType, BuiltinOperator, Operator, Padding as TflPadding, TensorType};

use super::builder::{axis, pad_pairs, permuted, unsupported, Activation, Binary, BuildResult, Builder, Padding, Unsupported, Value, Window};
use crate::engine::tflite_normalize::{builtin_code, normalize_tflite};

/// The source graph's input and output, as the frontends report them.
pub struct Io {
    pub input_name: String,
    /// NHWC.
    pub input_shape: Vec<usize>,
    pub output_name: String,
    /// Some tensor is named like the 2018-2019 mean layer (`data_bn`, `BatchNorm1`).
    pub has_mean_layer: bool,
}

fn activation(f: ActivationFunctionType) -> BuildResult<Activation> {
    Ok(match f {
        ActivationFunctionType::NONE => Activation::None,
        ActivationFunctionType::RELU => Activation::Relu,
        ActivationFunctionType::RELU6 => Activation::Clip(0.0, 6.0),
        ActivationFunctionType::RELU_N1_TO_1 => Activation::Clip(-1.0, 1.0),
        ActivationFunctionType::TANH => Activation::Tanh,
        other => return unsupported(format!("the fused activation {other:?}")),
    })
}

fn padding(p: TflPadding) -> Padding {
    if p == TflPadding::VALID {
        Padding::Valid
    } else {
        Padding::Same
    }
}

fn usize_of(v: i32, what: &str) -> BuildResult<usize> {
    usize::try_from(v).map_err(|_| Unsupported(format!("a negative {what} ({v})")))
}

/// A parsed, normalised TFLite model: its tensors as constants or pending values.
struct Reader<'a> {
    model: tflite::Model<'a>,
    graph: tflite::SubGraph<'a>,
    values: HashMap<i32, Value>,
}

impl<'a> Reader<'a> {
    fn tensor(&self, ix: i32) -> BuildResult<tflite::Tensor<'a>> {
        let tensors = self.graph.tensors().ok_or_else(|| Unsupported("a subgraph without tensors".into()))?;
        usize::try_from(ix).ok().filter(|&i| i < tensors.len()).map(|i| tensors.get(i)).ok_or_else(|| Unsupported(format!("a bad tensor index {ix}")))
    }

    fn shape(&self, ix: i32) -> BuildResult<Vec<usize>> {
        let t = self.tensor(ix)?;
        t.shape().into_iter().flatten().map(|d| usize_of(d, "dimension")).collect()
    }

    fn name(&self, ix: i32) -> String {
        self.tensor(ix).ok().and_then(|t| t.name()).unwrap_or("").to_owned()
    }

    /// The tensor's constant data, if its buffer holds any.
    fn constant(&self, ix: i32) -> BuildResult<Option<ArrayD<f32>>> {
        let t = self.tensor(ix)?;
        let buffers = self.model.buffers().ok_or_else(|| Unsupported("a model without buffers".into()))?;
        let b = t.buffer() as usize;
        let Some(data) = (b != 0 && b < buffers.len()).then(|| buffers.get(b).data()).flatten().map(|d| d.bytes()).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let shape = self.shape(ix)?;
        let values: Vec<f32> = match t.type_() {
            TensorType::FLOAT32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            TensorType::INT32 => data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
            TensorType::INT64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            other => return unsupported(format!("a constant of type {other:?} (`{}`; quantized TFLite models are not Custom Vision exports)", self.name(ix))),
        };
        ArrayD::from_shape_vec(IxDyn(&shape), values).map(Some).map_err(|_| Unsupported(format!("constant `{}` whose data does not fill its shape", self.name(ix))))
    }

    fn value(&self, ix: i32) -> BuildResult<Value> {
        if let Some(v) = self.values.get(&ix) {
            return Ok(v.clone());
        }
        match self.constant(ix)? {
            Some(c) => Ok(Value::Const(c)),
            None => unsupported(format!("tensor `{}` is read before any op writes it", self.name(ix))),
        }
    }

    fn const_input(&self, ix: i32, what: &str) -> BuildResult<ArrayD<f32>> {
        match self.value(ix)? {
            Value::Const(c) => Ok(c),
            Value::Tensor(_) => unsupported(format!("a {what} computed at run time (`{}`)", self.name(ix))),
        }
    }

    fn ints(&self, ix: i32, what: &str) -> BuildResult<Vec<i64>> {
        Ok(self.const_input(ix, what)?.iter().map(|&v| v as i64).collect())
    }
}

/// The source's input and output names and shapes (for [`super::to_onnx`]'s input tensor).
pub fn io(bytes: &[u8]) -> BuildResult<Io> {
    // The normaliser leaves the graph's inputs, outputs and names alone: the file as it is will do.
    let reader = reader(bytes)?;
    let one = |v: Option<flatbuffers::Vector<'_, i32>>, what: &str| -> BuildResult<i32> {
        let v: Vec<i32> = v.into_iter().flatten().collect();
        match v[..] {
            [ix] => Ok(ix),
            _ => unsupported(format!("{} {what}s (an image classifier has one)", v.len())),
        }
    };
    let input = one(reader.graph.inputs(), "input")?;
    let output = one(reader.graph.outputs(), "output")?;
    let tensors = reader.graph.tensors().into_iter().flatten();
    let has_mean_layer = tensors.filter_map(|t| t.name()).any(crate::engine::names_mean_layer);
    Ok(Io { input_name: reader.name(input), input_shape: reader.shape(input)?, output_name: reader.name(output), has_mean_layer })
}

fn reader(bytes: &[u8]) -> BuildResult<Reader<'_>> {
    let model = tflite::root_as_model(bytes).map_err(|e| Unsupported(format!("an unreadable flatbuffer ({e})")))?;
    let graph = model.subgraphs().filter(|s| !s.is_empty()).map(|s| s.get(0)).ok_or_else(|| Unsupported("a model without a subgraph".into()))?;
    Ok(Reader { model, graph, values: HashMap::new() })
}

/// Adds the graph's ops to `b`, reading `input` as the graph's input; returns its output.
pub fn build(bytes: &[u8], b: &mut Builder, input: Value) -> BuildResult<Value> {
    let (normalized, _) = normalize_tflite(bytes).map_err(|e| Unsupported(e.to_string()))?;
    let mut r = reader(&normalized)?;
    let codes = r.model.operator_codes().ok_or_else(|| Unsupported("a model without operator codes".into()))?;
    let graph_input = r.graph.inputs().and_then(|v| v.iter().next()).ok_or_else(|| Unsupported("a graph without an input".into()))?;
    r.values.insert(graph_input, input);
    for op in r.graph.operators().into_iter().flatten() {
        let code = usize::try_from(op.opcode_index()).ok().filter(|&i| i < codes.len()).map(|i| codes.get(i));
        let code = BuiltinOperator(builtin_code(&code.ok_or_else(|| Unsupported(format!("an operator with opcode index {}", op.opcode_index())))?));
        let outs: Vec<i32> = op.outputs().into_iter().flatten().collect();
        let [out] = outs[..] else { return unsupported(format!("{code:?} with {} outputs", outs.len())) };
        let value = convert_op(&r, b, code, &op, out).map_err(|e| Unsupported(format!("{code:?} writing `{}`: {e}", r.name(out))))?;
        let stated = r.shape(out)?;
        if !stated.is_empty() && value.shape() != stated {
            return unsupported(format!("{code:?} writing `{}`: computed shape {:?} where the file says {stated:?}", r.name(out), value.shape()));
        }
        r.values.insert(out, value);
    }
    let output = r.graph.outputs().and_then(|v| v.iter().next()).ok_or_else(|| Unsupported("a graph without an output".into()))?;
    r.value(output)
}

fn convert_op(r: &Reader, b: &mut Builder, code: BuiltinOperator, op: &Operator, out: i32) -> BuildResult<Value> {
    let ins: Vec<i32> = op.inputs().into_iter().flatten().collect();
    let hint = r.name(out);
    let at = |k: usize| input_at(&ins, k);
    let input = |k: usize| -> BuildResult<Value> { r.value(at(k)?) };
    let optional_const = |k: usize, what: &str| -> BuildResult<Option<ArrayD<f32>>> {
        match ins.get(k) {
            Some(&ix) if ix >= 0 => r.const_input(ix, what).map(Some),
            _ => Ok(None),
        }
    };
    let binary = |b: &mut Builder, which: Binary, fused: ActivationFunctionType| -> BuildResult<Value> {
        let v = b.binary(which, &input(0)?, &input(1)?, &hint)?;
        Ok(b.activation(v, activation(fused)?, &hint))
    };
    Ok(match code {
        BuiltinOperator::CONV_2D => {
            let o = op.builtin_options_as_conv_2_doptions().ok_or_else(|| Unsupported("no options".into()))?;
            // OHWI -> OIHW
            let w = optional_const(1, "weight")?.ok_or_else(|| Unsupported("no weights".into()))?;
            let w = permuted(&w, &[0, 3, 1, 2])?;
            let x = input(0)?;
            let group = x.shape().last().copied().unwrap_or(0) / w.shape()[1].max(1);
            let window = conv_window(o.stride_h(), o.stride_w(), o.dilation_h_factor(), o.dilation_w_factor(), padding(o.padding()))?;
            let y = b.conv(&x, w, optional_const(2, "bias")?, group, &window, &hint)?;
            b.activation(Value::Tensor(y), activation(o.fused_activation_function())?, &hint)
        }
        BuiltinOperator::DEPTHWISE_CONV_2D => {
            let o = op.builtin_options_as_depthwise_conv_2_doptions().ok_or_else(|| Unsupported("no options".into()))?;
            // [1, H, W, C * M] -> [C * M, 1, H, W], one group per input channel.
            let w = optional_const(1, "weight")?.ok_or_else(|| Unsupported("no weights".into()))?;
            let w = permuted(&w, &[3, 0, 1, 2])?;
            let x = input(0)?;
            let channels = x.shape().last().copied().unwrap_or(0);
            let window = conv_window(o.stride_h(), o.stride_w(), o.dilation_h_factor(), o.dilation_w_factor(), padding(o.padding()))?;
            let y = b.conv(&x, w, optional_const(2, "bias")?, channels, &window, &hint)?;
            b.activation(Value::Tensor(y), activation(o.fused_activation_function())?, &hint)
        }
        BuiltinOperator::AVERAGE_POOL_2D | BuiltinOperator::MAX_POOL_2D => {
            let o = op.builtin_options_as_pool_2_doptions().ok_or_else(|| Unsupported("no options".into()))?;
            let window = Window {
                kernel: [usize_of(o.filter_height(), "filter")?, usize_of(o.filter_width(), "filter")?],
                strides: [usize_of(o.stride_h(), "stride")?, usize_of(o.stride_w(), "stride")?],
                dilations: [1, 1],
                padding: padding(o.padding()),
            };
            let y = b.pool(code == BuiltinOperator::MAX_POOL_2D, &input(0)?, &window, &hint)?;
            b.activation(Value::Tensor(y), activation(o.fused_activation_function())?, &hint)
        }
        BuiltinOperator::FULLY_CONNECTED => {
            let o = op.builtin_options_as_fully_connected_options();
            let w = optional_const(1, "weight")?.ok_or_else(|| Unsupported("no weights".into()))?;
            let x = input(0)?;
            if o.is_some_and(|o| o.keep_num_dims()) && x.shape().len() != 2 {
                return unsupported("keep_num_dims on a tensor of rank other than 2");
            }
            let y = b.fully_connected(&x, &w, optional_const(2, "bias")?.as_ref(), &hint)?;
            let fused = o.map_or(ActivationFunctionType::NONE, |o| o.fused_activation_function());
            b.activation(Value::Tensor(y), activation(fused)?, &hint)
        }
        BuiltinOperator::ADD => binary(b, Binary::Add, op.builtin_options_as_add_options().map_or(ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        BuiltinOperator::SUB => binary(b, Binary::Sub, op.builtin_options_as_sub_options().map_or(ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        BuiltinOperator::MUL => binary(b, Binary::Mul, op.builtin_options_as_mul_options().map_or(ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        BuiltinOperator::DIV => binary(b, Binary::Div, op.builtin_options_as_div_options().map_or(ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        BuiltinOperator::MAXIMUM => binary(b, Binary::Max, ActivationFunctionType::NONE)?,
        BuiltinOperator::MINIMUM => binary(b, Binary::Min, ActivationFunctionType::NONE)?,
        BuiltinOperator::RELU => b.activation(input(0)?, Activation::Relu, &hint),
        BuiltinOperator::RELU6 => b.activation(input(0)?, Activation::Clip(0.0, 6.0), &hint),
        BuiltinOperator::LOGISTIC => b.activation(input(0)?, Activation::Sigmoid, &hint),
        BuiltinOperator::TANH => b.activation(input(0)?, Activation::Tanh, &hint),
        BuiltinOperator::HARD_SWISH => b.hard_swish(&input(0)?, &hint),
        BuiltinOperator::SOFTMAX => {
            let beta = op.builtin_options_as_softmax_options().map_or(1.0, |o| o.beta());
            let x = input(0)?;
            let last = x.shape().len().checked_sub(1).ok_or_else(|| Unsupported("a softmax of a scalar".into()))?;
            b.softmax(&x, last, beta, &hint)?
        }
        BuiltinOperator::RESHAPE | BuiltinOperator::SQUEEZE | BuiltinOperator::EXPAND_DIMS => {
            // The file states the output shape; the shape operands agree with it or tf.lite fails.
            b.reshape(&input(0)?, &r.shape(out)?, &hint)?
        }
        BuiltinOperator::TRANSPOSE => {
            let perm: Vec<usize> = r.ints(at(1)?, "permutation")?.into_iter().map(|a| a as usize).collect();
            b.transpose(&input(0)?, &perm)?
        }
        BuiltinOperator::CONCATENATION => {
            let o = op.builtin_options_as_concatenation_options().ok_or_else(|| Unsupported("no options".into()))?;
            let xs = ins.iter().map(|&ix| r.value(ix)).collect::<BuildResult<Vec<_>>>()?;
            let rank = xs.first().map(|x| x.shape().len()).unwrap_or(0);
            let y = b.concat(&xs, axis(o.axis() as i64, rank)?, &hint)?;
            b.activation(y, activation(o.fused_activation_function())?, &hint)
        }
        BuiltinOperator::SLICE => {
            let x = input(0)?;
            let from = x.shape();
            let begin = r.ints(at(1)?, "slice start")?;
            let size = r.ints(at(2)?, "slice size")?;
            if begin.len() != from.len() || size.len() != from.len() {
                return unsupported("a slice whose start and size do not cover every axis");
            }
            let begin: Vec<usize> = begin.iter().map(|&v| v.max(0) as usize).collect();
            let end: Vec<usize> = (0..from.len()).map(|a| if size[a] < 0 { from[a] } else { begin[a].saturating_add(size[a] as usize) }).collect();
            b.slice(&x, &begin, &end, &hint)?
        }
        BuiltinOperator::STRIDED_SLICE => strided_slice(r, b, op, &ins, &hint)?,
        BuiltinOperator::MEAN => {
            let x = input(0)?;
            let rank = x.shape().len();
            let axes = r.ints(at(1)?, "axes")?.into_iter().map(|a| axis(a, rank)).collect::<BuildResult<Vec<_>>>()?;
            let keep = op.builtin_options_as_reducer_options().is_some_and(|o| o.keep_dims());
            b.mean(&x, &axes, keep, &hint)?
        }
        BuiltinOperator::PAD | BuiltinOperator::PADV2 => {
            let pads = pad_pairs(&r.const_input(at(1)?, "padding")?)?;
            let value = match optional_const(2, "padding value")? {
                Some(v) => v.iter().copied().next().unwrap_or(0.0),
                None => 0.0,
            };
            b.pad(&input(0)?, &pads, value, &hint)?
        }
        BuiltinOperator::DEQUANTIZE | BuiltinOperator::QUANTIZE => {
            return unsupported("quantized activations (cvedge quantizes float exports itself)");
        }
        other => return unsupported(format!("the op {other:?}, which cvedge cannot convert yet")),
    })
}

/// The tensor index of an operator's `k`th input.
fn input_at(ins: &[i32], k: usize) -> BuildResult<i32> {
    ins.get(k).copied().ok_or_else(|| Unsupported(format!("input {k} missing")))
}

fn conv_window(sh: i32, sw: i32, dh: i32, dw: i32, padding: Padding) -> BuildResult<Window> {
    Ok(Window {
        kernel: [0, 0], // from the weights
        strides: [usize_of(sh, "stride")?, usize_of(sw, "stride")?],
        dilations: [usize_of(dh.max(1), "dilation")?, usize_of(dw.max(1), "dilation")?],
        padding,
    })
}

/// STRIDED_SLICE with unit strides and begin/end masks (what classifiers use to split tensors).
fn strided_slice(r: &Reader, b: &mut Builder, op: &Operator, ins: &[i32], hint: &str) -> BuildResult<Value> {
    let o = op.builtin_options_as_strided_slice_options();
    let (begin_mask, end_mask) = o.map_or((0, 0), |o| (o.begin_mask(), o.end_mask()));
    if o.is_some_and(|o| o.ellipsis_mask() != 0 || o.new_axis_mask() != 0 || o.shrink_axis_mask() != 0) {
        return unsupported("a strided slice with ellipsis, new-axis or shrink-axis masks");
    }
    let x = r.value(input_at(ins, 0)?)?;
    let from = x.shape();
    let (begin, end, strides) = (r.ints(input_at(ins, 1)?, "start")?, r.ints(input_at(ins, 2)?, "end")?, r.ints(input_at(ins, 3)?, "stride")?);
    if strides.iter().any(|&s| s != 1) || begin.len() != from.len() || end.len() != from.len() {
        return unsupported("a strided slice with strides other than 1");
    }
    let clamp = |v: i64, d: usize| (if v < 0 { v + d as i64 } else { v }).clamp(0, d as i64) as usize;
    let start: Vec<usize> = (0..from.len()).map(|a| if begin_mask >> a & 1 == 1 { 0 } else { clamp(begin[a], from[a]) }).collect();
    let stop: Vec<usize> = (0..from.len()).map(|a| if end_mask >> a & 1 == 1 { from[a] } else { clamp(end[a], from[a]) }).collect();
    b.slice(&x, &start, &stop, hint)
}
