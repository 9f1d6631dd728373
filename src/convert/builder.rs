//! An ONNX graph (opset 13, channels first) built op by op from a channels-last source graph.
//!
//! TensorFlow and TFLite compute in NHWC; ONNX convolutions and onnxruntime's int8 kernels want
//! NCHW. Instead of wrapping every convolution in transposes, each source tensor carries a
//! *layout*: the ONNX tensor holds the source tensor with its axes permuted by `perm` (ONNX axis
//! `i` is source axis `perm[i]`). Rank-4 activations live as NCHW (`perm = [0,3,1,2]`), and ops
//! that care about axes (concat, slice, pad, mean, softmax) translate their axis arguments.
//! Source transposes only change the layout (no node); reshapes are emitted directly whenever
//! the layout allows (ShuffleNet's channel shuffle becomes NCHW's own reshape-transpose-reshape)
//! and fall back to a Transpose first when it does not. Constants are folded here, so source
//! graphs may compute their batch-norm factors with ops (`Rsqrt`, `Mul`...) on constants.
//!
//! Shapes are the source's (NHWC) and computed by each op; frontends that know the source's own
//! shapes check them against these.

use std::collections::HashSet;

use tract_core::ndarray::{ArrayD, IxDyn, Slice};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};

/// The opset written (per-axis Softmax, ReduceMean with `axes` as attribute, Clip bounds as inputs).
pub const OPSET: i64 = 13;

/// What the source graph does that this builder cannot express.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

pub type BuildResult<T> = std::result::Result<T, Unsupported>;

pub fn unsupported<T>(what: impl Into<String>) -> BuildResult<T> {
    Err(Unsupported(what.into()))
}

/// A source axis argument (negative counts from the end) as an axis of a rank-`rank` tensor.
pub fn axis(a: i64, rank: usize) -> BuildResult<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        return unsupported(format!("axis {a} of a rank-{rank} tensor"));
    }
    Ok(a.rem_euclid(r) as usize)
}

/// A `[rank, 2]` padding constant as (before, after) pairs, negatives as 0.
pub fn pad_pairs(pads: &ArrayD<f32>) -> BuildResult<Vec<(usize, usize)>> {
    let [_, 2] = pads.shape() else { return unsupported(format!("paddings of shape {:?}, not [rank, 2]", pads.shape())) };
    Ok(pads.outer_iter().map(|row| (row[0].max(0.0) as usize, row[1].max(0.0) as usize)).collect())
}

/// Convolution weights in the source's layout, with their axes reordered by `axes`.
pub fn permuted(weights: &ArrayD<f32>, axes: &[usize]) -> BuildResult<ArrayD<f32>> {
    if weights.ndim() != axes.len() {
        return unsupported(format!("weights of shape {:?} (rank {} expected)", weights.shape(), axes.len()));
    }
    Ok(weights.view().permuted_axes(IxDyn(axes)).as_standard_layout().into_owned())
}

/// A computed tensor: ONNX tensor `name` is the source tensor of `shape` permuted by `perm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub perm: Vec<usize>,
}

impl Tensor {
    fn onnx_shape(&self) -> Vec<usize> {
        self.perm.iter().map(|&a| self.shape[a]).collect()
    }
    fn onnx_axis(&self, source_axis: usize) -> usize {
        self.perm.iter().position(|&a| a == source_axis).expect("perm is a permutation")
    }
}

/// A source tensor: known at conversion time, or computed by the graph.
#[derive(Debug, Clone)]
pub enum Value {
    /// Integer constants (shapes, paddings, axes) are held as f32 too: exact below 2^24.
    Const(ArrayD<f32>),
    Tensor(Tensor),
}

impl Value {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Const(a) => a.shape().to_vec(),
            Value::Tensor(t) => t.shape.clone(),
        }
    }
    pub fn as_const(&self) -> Option<&ArrayD<f32>> {
        match self {
            Value::Const(a) => Some(a),
            Value::Tensor(_) => None,
        }
    }
}

/// The layout ops that need channels first ask for: NCHW for rank 4 (`[0, r-1, 1, ..]` for any
/// rank from 3), the source order below.
pub fn default_perm(rank: usize) -> Vec<usize> {
    if rank < 3 {
        return (0..rank).collect();
    }
    let mut perm = vec![0, rank - 1];
    perm.extend(1..rank - 1);
    perm
}

/// `perm` inverted: `inverse[perm[i]] == i`.
fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Element-wise binary ops the builder computes (and folds on constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl Binary {
    fn onnx(self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
            Binary::Max => "Max",
            Binary::Min => "Min",
        }
    }
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max => a.max(b),
            Binary::Min => a.min(b),
        }
    }
}

/// Activations fused into (or following) an op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// Clip to `[lo, hi]` (ReLU6 is `0..6`).
    Clip(f32, f32),
    Sigmoid,
    Tanh,
}

/// How a window op treats the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow's SAME: output `ceil(in / stride)`, the extra padding at the end.
    Same,
    Valid,
}

/// `(pad_begin, pad_end, output)` along one spatial axis.
fn window(input: usize, kernel: usize, stride: usize, dilation: usize, padding: Padding) -> BuildResult<(usize, usize, usize)> {
    if input == 0 || kernel == 0 || stride == 0 || dilation == 0 {
        return unsupported(format!("a window of kernel {kernel}, stride {stride}, dilation {dilation} on an input of {input}"));
    }
    let span = (kernel - 1).checked_mul(dilation).and_then(|s| s.checked_add(1)).ok_or_else(|| Unsupported(format!("a kernel of {kernel} dilated {dilation}")))?;
    match padding {
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + span).saturating_sub(input);
            Ok((total / 2, total - total / 2, out))
        }
        Padding::Valid if span <= input => Ok((0, 0, (input - span) / stride + 1)),
        Padding::Valid => unsupported(format!("a window of {span} does not fit an input of {input}")),
    }
}

/// A spatial window op's geometry (kernel, strides, dilations, padding), source order H, W.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
}

impl Window {
    /// ONNX `pads` (`[top, left, bottom, right]`) and the output height and width.
    fn geometry(&self, h: usize, w: usize) -> BuildResult<([i64; 4], [usize; 2])> {
        if self.strides.contains(&0) || self.dilations.contains(&0) || self.kernel.contains(&0) {
            return unsupported("a window with a zero kernel, stride or dilation");
        }
        let (t, b, oh) = window(h, self.kernel[0], self.strides[0], self.dilations[0], self.padding)?;
        let (l, r, ow) = window(w, self.kernel[1], self.strides[1], self.dilations[1], self.padding)?;
        Ok(([t as i64, l as i64, b as i64, r as i64], [oh, ow]))
    }
}

fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: value, ..Default::default() }
}

fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d as i64)), ..Default::default() }).collect();
    let tensor = type_proto::Tensor { elem_type: DataType::Float as i32, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto { name: name.into(), r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }), ..Default::default() }
}

/// Broadcast shape of two source shapes (numpy rules), or `None`.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Some(x),
            (1, y) => Some(y),
            _ => None,
        })
        .collect()
}

/// Runs of non-unit axes that a reshape maps onto each other: `(source axes, new axes)` with
/// equal products, each in source order. `None` when the element counts differ.
fn reshape_groups(from: &[usize], to: &[usize]) -> Option<Vec<(Vec<usize>, Vec<usize>)>> {
    let a: Vec<usize> = (0..from.len()).filter(|&i| from[i] != 1).collect();
    let b: Vec<usize> = (0..to.len()).filter(|&i| to[i] != 1).collect();
    let (mut i, mut j, mut groups) = (0, 0, vec![]);
    while i < a.len() && j < b.len() {
        let (mut ga, mut gb) = (vec![a[i]], vec![b[j]]);
        let (mut pa, mut pb) = (from[a[i]], to[b[j]]);
        (i, j) = (i + 1, j + 1);
        while pa != pb {
            if pa < pb {
                pa *= from[*a.get(i)?];
                ga.push(a[i]);
                i += 1;
            } else {
                pb *= to[*b.get(j)?];
                gb.push(b[j]);
                j += 1;
            }
        }
        groups.push((ga, gb));
    }
    (i == a.len() && j == b.len()).then_some(groups)
}

/// `perm` with its slots that hold non-unit axes refilled, in order, from `order`.
fn refill(perm: &[usize], shape: &[usize], order: &[usize]) -> Vec<usize> {
    let mut next = order.iter();
    perm.iter().map(|&a| if shape[a] == 1 { a } else { *next.next().expect("as many non-unit axes") }).collect()
}

#[derive(Default)]
pub struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
}

impl Builder {
    /// A tensor name not used yet, from the source's name where there is one.
    fn fresh(&mut self, hint: &str) -> String {
        let base = if hint.is_empty() { "t" } else { hint };
        let mut name = base.to_owned();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}__{n}");
            n += 1;
        }
        name
    }

    fn initializer(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh(hint);
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.initializers.push(TensorProto { name: name.clone(), dims, data_type: DataType::Float as i32, raw_data: raw, ..Default::default() });
        name
    }

    fn int64s(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto { name: name.clone(), dims: vec![values.len() as i64], data_type: DataType::Int64 as i32, int64_data: values.to_vec(), ..Default::default() });
        name
    }

    fn node(&mut self, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>, hint: &str) -> String {
        let output = self.fresh(hint);
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto { op_type: op.into(), name, input: inputs, output: vec![output.clone()], attribute, ..Default::default() });
        output
    }

    /// Keeps `name` for the caller (the graph's output): no source tensor gets it.
    pub fn reserve(&mut self, name: &str) {
        self.names.insert(name.to_owned());
    }

    /// The graph input: an ONNX tensor `name` of `shape` holding the source tensor permuted by `perm`.
    pub fn input(&mut self, name: &str, shape: &[usize], perm: Vec<usize>) -> BuildResult<Tensor> {
        if !self.names.insert(name.to_owned()) {
            return unsupported(format!("an input named `{name}`, the name of the graph's output"));
        }
        Ok(Tensor { name: name.into(), shape: shape.to_vec(), perm })
    }

    /// `t` in layout `perm` (a Transpose when it is not already).
    pub fn to_layout(&mut self, t: &Tensor, perm: &[usize]) -> Tensor {
        if t.perm == perm || Self::same_order(t, perm) {
            return Tensor { perm: perm.to_vec(), ..t.clone() };
        }
        let inv = inverse(&t.perm);
        let onnx_perm: Vec<i64> = perm.iter().map(|&a| inv[a] as i64).collect();
        let name = self.node("Transpose", vec![t.name.clone()], vec![ints_attr("perm", &onnx_perm)], &t.name);
        Tensor { name, shape: t.shape.clone(), perm: perm.to_vec() }
    }

    /// Whether `t` laid out as `perm` is the same ONNX tensor (its non-unit axes in one order and
    /// its unit axes where `perm` puts them): relabelling then needs no node.
    fn same_order(t: &Tensor, perm: &[usize]) -> bool {
        let onnx_shape: Vec<usize> = perm.iter().map(|&a| t.shape[a]).collect();
        let non_unit = |p: &[usize]| p.iter().copied().filter(|&a| t.shape[a] != 1).collect::<Vec<_>>();
        onnx_shape == t.onnx_shape() && non_unit(&t.perm) == non_unit(perm)
    }

    /// `v` as a computed tensor (a constant becomes an initializer in the default layout).
    pub fn tensor(&mut self, v: &Value, hint: &str) -> Tensor {
        match v {
            Value::Tensor(t) => t.clone(),
            Value::Const(a) => {
                let perm = default_perm(a.ndim());
                let onnx = a.view().permuted_axes(IxDyn(&perm));
                let values: Vec<f32> = onnx.iter().copied().collect();
                let name = self.initializer(hint, onnx.shape(), &values);
                Tensor { name, shape: a.shape().to_vec(), perm }
            }
        }
    }

    /// `v` in the default layout of its rank (what convolutions and pools read).
    pub fn channels_first(&mut self, v: &Value, hint: &str) -> Tensor {
        let t = self.tensor(v, hint);
        self.to_layout(&t, &default_perm(t.shape.len()))
    }

    /// A source constant broadcast against `t`, as an initializer laid out like it.
    fn const_like(&mut self, c: &ArrayD<f32>, t: &Tensor, hint: &str) -> BuildResult<String> {
        if c.len() == 1 {
            return Ok(self.initializer(hint, &[], &[c.iter().copied().next().expect("one value")]));
        }
        if c.ndim() > t.shape.len() {
            return unsupported(format!("a constant of rank {} combined with a tensor of rank {}", c.ndim(), t.shape.len()));
        }
        let mut shape = vec![1; t.shape.len() - c.ndim()];
        shape.extend(c.shape());
        let c = c.view().into_shape_with_order(IxDyn(&shape)).expect("same element count");
        let onnx = c.permuted_axes(IxDyn(&t.perm));
        let values: Vec<f32> = onnx.iter().copied().collect();
        Ok(self.initializer(hint, onnx.shape(), &values))
    }

    pub fn binary(&mut self, op: Binary, a: &Value, b: &Value, hint: &str) -> BuildResult<Value> {
        let shape = broadcast(&a.shape(), &b.shape()).ok_or_else(|| Unsupported(format!("{:?} of shapes {:?} and {:?}, which do not broadcast", op, a.shape(), b.shape())))?;
        let (inputs, perm) = match (a, b) {
            (Value::Const(x), Value::Const(y)) => {
                let out = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
                    let pick = |arr: &ArrayD<f32>| {
                        let off = shape.len() - arr.ndim();
                        let ix: Vec<usize> = (0..arr.ndim()).map(|k| if arr.shape()[k] == 1 { 0 } else { ix[k + off] }).collect();
                        arr[IxDyn(&ix)]
                    };
                    op.apply(pick(x), pick(y))
                });
                return Ok(Value::Const(out));
            }
            (Value::Tensor(t), Value::Const(c)) => (vec![t.name.clone(), self.const_like(c, t, &format!("{hint}_b"))?], t.perm.clone()),
            (Value::Const(c), Value::Tensor(t)) => (vec![self.const_like(c, t, &format!("{hint}_a"))?, t.name.clone()], t.perm.clone()),
            (Value::Tensor(x), Value::Tensor(y)) => {
                if x.shape.len() != y.shape.len() {
                    return unsupported(format!("{op:?} of tensors of rank {} and {}", x.shape.len(), y.shape.len()));
                }
                let y = self.to_layout(y, &x.perm);
                (vec![x.name.clone(), y.name], x.perm.clone())
            }
        };
        if perm.len() != shape.len() {
            return unsupported(format!("{op:?} that broadcasts a tensor to a higher rank"));
        }
        let name = self.node(op.onnx(), inputs, vec![], hint);
        Ok(Value::Tensor(Tensor { name, shape, perm }))
    }

    /// A one-input op that keeps the shape (`Relu`, `Sigmoid`, `Tanh`...), folded on constants by `fold`.
    pub fn unary(&mut self, op: &str, x: &Value, fold: fn(f32) -> f32, hint: &str) -> Value {
        match x {
            Value::Const(a) => Value::Const(a.mapv(fold)),
            Value::Tensor(t) => {
                let name = self.node(op, vec![t.name.clone()], vec![], hint);
                Value::Tensor(Tensor { name, ..t.clone() })
            }
        }
    }

    pub fn activation(&mut self, x: Value, activation: Activation, hint: &str) -> Value {
        match activation {
            Activation::None => x,
            Activation::Relu => self.unary("Relu", &x, |v| v.max(0.0), hint),
            Activation::Sigmoid => self.unary("Sigmoid", &x, |v| 1.0 / (1.0 + (-v).exp()), hint),
            Activation::Tanh => self.unary("Tanh", &x, f32::tanh, hint),
            Activation::Clip(lo, hi) => match &x {
                Value::Const(a) => Value::Const(a.mapv(|v| v.clamp(lo, hi))),
                Value::Tensor(t) => {
                    let bounds = vec![t.name.clone(), self.initializer(&format!("{hint}_min"), &[], &[lo]), self.initializer(&format!("{hint}_max"), &[], &[hi])];
                    let name = self.node("Clip", bounds, vec![], hint);
                    Value::Tensor(Tensor { name, ..t.clone() })
                }
            },
        }
    }

    /// A 2-D convolution of an NHWC value. `weights` are ONNX's `[out, in / group, kh, kw]`.
    pub fn conv(&mut self, x: &Value, weights: ArrayD<f32>, bias: Option<ArrayD<f32>>, group: usize, window: &Window, hint: &str) -> BuildResult<Tensor> {
        let x = self.channels_first(x, &format!("{hint}_input"));
        let [n, h, w, c] = x.shape[..] else { return unsupported(format!("a convolution of a rank-{} tensor", x.shape.len())) };
        let ws = weights.shape().to_vec();
        if ws.len() != 4 || ws[1] * group != c || ws[0] % group != 0 || bias.as_ref().is_some_and(|b| b.len() != ws[0]) {
            return unsupported(format!("a convolution of {c} channels with weights {ws:?} in {group} groups"));
        }
        let (pads, [oh, ow]) = Window { kernel: [ws[2], ws[3]], ..*window }.geometry(h, w)?;
        let mut inputs = vec![x.name.clone(), self.initializer(&format!("{hint}_weights"), &ws, weights.as_slice().expect("standard layout"))];
        if let Some(b) = bias {
            inputs.push(self.initializer(&format!("{hint}_bias"), &[ws[0]], &b.iter().copied().collect::<Vec<_>>()));
        }
        let attributes = vec![
            ints_attr("kernel_shape", &[ws[2] as i64, ws[3] as i64]),
            ints_attr("strides", &window.strides.map(|s| s as i64)),
            ints_attr("dilations", &window.dilations.map(|d| d as i64)),
            ints_attr("pads", &pads),
            int_attr("group", group as i64),
        ];
        let name = self.node("Conv", inputs, attributes, hint);
        Ok(Tensor { name, shape: vec![n, oh, ow, ws[0]], perm: default_perm(4) })
    }

    /// Max or average pooling (padding excluded from averages, as TensorFlow does).
    pub fn pool(&mut self, max: bool, x: &Value, window: &Window, hint: &str) -> BuildResult<Tensor> {
        let x = self.channels_first(x, &format!("{hint}_input"));
        let [n, h, w, c] = x.shape[..] else { return unsupported(format!("pooling of a rank-{} tensor", x.shape.len())) };
        let (pads, [oh, ow]) = window.geometry(h, w)?;
        let whole = window.kernel == [h, w] && pads == [0; 4];
        let name = if whole {
            self.node(if max { "GlobalMaxPool" } else { "GlobalAveragePool" }, vec![x.name.clone()], vec![], hint)
        } else {
            let attributes = vec![
                ints_attr("kernel_shape", &window.kernel.map(|k| k as i64)),
                ints_attr("strides", &window.strides.map(|s| s as i64)),
                ints_attr("pads", &pads),
            ];
            self.node(if max { "MaxPool" } else { "AveragePool" }, vec![x.name.clone()], attributes, hint)
        };
        Ok(Tensor { name, shape: vec![n, oh, ow, c], perm: default_perm(4) })
    }

    /// Mean over source `axes`: GlobalAveragePool when it is the spatial mean of an image.
    pub fn mean(&mut self, x: &Value, axes: &[usize], keep_dims: bool, hint: &str) -> BuildResult<Value> {
        let t = self.tensor(x, hint);
        let rank = t.shape.len();
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        if axes.iter().any(|&a| a >= rank) {
            return unsupported(format!("a mean over axes {axes:?} of a rank-{rank} tensor"));
        }
        let mut kept_shape = t.shape.clone();
        for &a in &axes {
            kept_shape[a] = 1;
        }
        let kept = if rank == 4 && axes == [1, 2] {
            let whole = Window { kernel: [t.shape[1], t.shape[2]], strides: [1, 1], dilations: [1, 1], padding: Padding::Valid };
            self.pool(false, &Value::Tensor(t.clone()), &whole, hint)?
        } else {
            let onnx_axes: Vec<i64> = axes.iter().map(|&a| t.onnx_axis(a) as i64).collect();
            let name = self.node("ReduceMean", vec![t.name.clone()], vec![ints_attr("axes", &onnx_axes), int_attr("keepdims", 1)], hint);
            Tensor { name, shape: kept_shape.clone(), perm: t.perm.clone() }
        };
        if keep_dims {
            return Ok(Value::Tensor(kept));
        }
        let dropped: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).map(|a| t.shape[a]).collect();
        self.reshape(&Value::Tensor(kept), &dropped, hint)
    }

    /// A reshape (also squeeze / expand): emitted as ONNX Reshape straight from the current
    /// layout when the merged and split axes sit together in it, after a Transpose otherwise.
    pub fn reshape(&mut self, x: &Value, shape: &[usize], hint: &str) -> BuildResult<Value> {
        let from = x.shape();
        let groups = reshape_groups(&from, shape).ok_or_else(|| Unsupported(format!("a reshape of {from:?} to {shape:?}")))?;
        let t = match x {
            Value::Const(a) => {
                let flat: Vec<f32> = a.iter().copied().collect();
                return Ok(Value::Const(ArrayD::from_shape_vec(IxDyn(shape), flat).expect("same element count")));
            }
            Value::Tensor(t) => t,
        };
        // The groups in the order the current layout holds them.
        let non_unit: Vec<usize> = t.perm.iter().copied().filter(|&a| from[a] != 1).collect();
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&g| non_unit.iter().position(|&a| a == groups[g].0[0]));
        let wanted: Vec<usize> = order.iter().flat_map(|&g| groups[g].0.clone()).collect();
        let t = if wanted == non_unit { t.clone() } else { self.to_layout(t, &refill(&t.perm, &from, &wanted)) };
        let new_order: Vec<usize> = order.iter().flat_map(|&g| groups[g].1.clone()).collect();
        let perm = refill(&default_perm(shape.len()), shape, &new_order);
        let out = Tensor { name: t.name.clone(), shape: shape.to_vec(), perm };
        if out.onnx_shape() == t.onnx_shape() {
            return Ok(Value::Tensor(out));
        }
        let dims: Vec<i64> = out.onnx_shape().iter().map(|&d| d as i64).collect();
        let target = self.int64s(&format!("{hint}_shape"), &dims);
        let name = self.node("Reshape", vec![t.name.clone(), target], vec![], hint);
        Ok(Value::Tensor(Tensor { name, ..out }))
    }

    /// A source transpose: only the layout changes, no node.
    pub fn transpose(&mut self, x: &Value, perm: &[usize]) -> BuildResult<Value> {
        let from = x.shape();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..from.len()).collect::<Vec<_>>() {
            return unsupported(format!("a transpose by {perm:?} of a rank-{} tensor", from.len()));
        }
        Ok(match x {
            Value::Const(a) => Value::Const(a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned()),
            Value::Tensor(t) => {
                let inv = inverse(perm);
                Value::Tensor(Tensor { name: t.name.clone(), shape: perm.iter().map(|&a| from[a]).collect(), perm: t.perm.iter().map(|&a| inv[a]).collect() })
            }
        })
    }

    pub fn concat(&mut self, xs: &[Value], axis: usize, hint: &str) -> BuildResult<Value> {
        let Some(first) = xs.iter().find_map(|x| if let Value::Tensor(t) = x { Some(t.clone()) } else { None }) else {
            let views: Vec<_> = xs.iter().map(|x| x.as_const().expect("all constant").view()).collect();
            let joined = tract_core::ndarray::concatenate(tract_core::ndarray::Axis(axis), &views).map_err(|e| Unsupported(format!("a concatenation of constants: {e}")))?;
            return Ok(Value::Const(joined));
        };
        let mut shape = first.shape.clone();
        if axis >= shape.len() {
            return unsupported(format!("a concatenation along axis {axis} of rank-{} tensors", shape.len()));
        }
        shape[axis] = 0;
        let mut inputs = vec![];
        for (k, x) in xs.iter().enumerate() {
            let t = match x {
                Value::Tensor(t) => self.to_layout(t, &first.perm),
                Value::Const(c) => Tensor { name: self.const_like(c, &first, &format!("{hint}_{k}"))?, shape: c.shape().to_vec(), perm: first.perm.clone() },
            };
            if t.shape.len() != shape.len() || (0..shape.len()).any(|a| a != axis && t.shape[a] != first.shape[a]) {
                return unsupported(format!("a concatenation of shapes {:?} and {:?}", first.shape, t.shape));
            }
            shape[axis] += t.shape[axis];
            inputs.push(t.name);
        }
        let name = self.node("Concat", inputs, vec![int_attr("axis", first.onnx_axis(axis) as i64)], hint);
        Ok(Value::Tensor(Tensor { name, shape, perm: first.perm }))
    }

    /// Elements `begin[a]..end[a]` along each source axis `a`.
    pub fn slice(&mut self, x: &Value, begin: &[usize], end: &[usize], hint: &str) -> BuildResult<Value> {
        let from = x.shape();
        if begin.len() != from.len() || end.len() != from.len() || (0..from.len()).any(|a| begin[a] > end[a] || end[a] > from[a]) {
            return unsupported(format!("a slice {begin:?}..{end:?} of shape {from:?}"));
        }
        let shape: Vec<usize> = (0..from.len()).map(|a| end[a] - begin[a]).collect();
        let t = match x {
            Value::Const(c) => {
                let mut view = c.view();
                for a in 0..from.len() {
                    view.slice_axis_inplace(tract_core::ndarray::Axis(a), Slice::from(begin[a]..end[a]));
                }
                return Ok(Value::Const(view.to_owned()));
            }
            Value::Tensor(t) => t,
        };
        let cut: Vec<usize> = (0..from.len()).filter(|&a| shape[a] != from[a]).collect();
        if cut.is_empty() {
            return Ok(x.clone());
        }
        let starts: Vec<i64> = cut.iter().map(|&a| begin[a] as i64).collect();
        let ends: Vec<i64> = cut.iter().map(|&a| end[a] as i64).collect();
        let axes: Vec<i64> = cut.iter().map(|&a| t.onnx_axis(a) as i64).collect();
        let inputs = vec![t.name.clone(), self.int64s(&format!("{hint}_starts"), &starts), self.int64s(&format!("{hint}_ends"), &ends), self.int64s(&format!("{hint}_axes"), &axes)];
        let name = self.node("Slice", inputs, vec![], hint);
        Ok(Value::Tensor(Tensor { name, shape, perm: t.perm.clone() }))
    }

    /// Constant padding by `pads[a] = (before, after)` along each source axis.
    pub fn pad(&mut self, x: &Value, pads: &[(usize, usize)], value: f32, hint: &str) -> BuildResult<Value> {
        let t = self.tensor(x, hint);
        if pads.len() != t.shape.len() {
            return unsupported(format!("padding of {} axes for a rank-{} tensor", pads.len(), t.shape.len()));
        }
        if pads.iter().all(|&p| p == (0, 0)) {
            return Ok(Value::Tensor(t));
        }
        let mut onnx: Vec<i64> = t.perm.iter().map(|&a| pads[a].0 as i64).collect();
        onnx.extend(t.perm.iter().map(|&a| pads[a].1 as i64));
        let mut inputs = vec![t.name.clone(), self.int64s(&format!("{hint}_pads"), &onnx)];
        if value != 0.0 {
            inputs.push(self.initializer(&format!("{hint}_value"), &[], &[value]));
        }
        let name = self.node("Pad", inputs, vec![], hint);
        let shape = t.shape.iter().zip(pads).map(|(d, (b, e))| d + b + e).collect();
        Ok(Value::Tensor(Tensor { name, shape, perm: t.perm }))
    }

    /// A fully connected layer: `x [n, in] · weightsᵀ + bias`, `weights [out, in]`.
    pub fn fully_connected(&mut self, x: &Value, weights: &ArrayD<f32>, bias: Option<&ArrayD<f32>>, hint: &str) -> BuildResult<Tensor> {
        let [out, width] = weights.shape()[..] else { return unsupported(format!("fully connected weights of shape {:?}", weights.shape())) };
        let shape = x.shape();
        let count: usize = shape.iter().product();
        if width == 0 || count % width != 0 || bias.is_some_and(|b| b.len() != out) {
            return unsupported(format!("a fully connected layer of {width} inputs on shape {shape:?}"));
        }
        let flat = self.reshape(x, &[count / width, width], hint)?;
        let flat = self.tensor(&flat, hint);
        let flat = self.to_layout(&flat, &[0, 1]);
        let weights = weights.as_standard_layout();
        let mut inputs = vec![flat.name.clone(), self.initializer(&format!("{hint}_weights"), &[out, width], weights.as_slice().expect("standard layout"))];
        if let Some(b) = bias {
            inputs.push(self.initializer(&format!("{hint}_bias"), &[out], &b.iter().copied().collect::<Vec<_>>()));
        }
        let name = self.node("Gemm", inputs, vec![int_attr("transB", 1)], hint);
        Ok(Tensor { name, shape: vec![count / width, out], perm: vec![0, 1] })
    }

    /// A dense product `x · w` with a constant `w [in, out]` (TensorFlow's MatMul).
    pub fn matmul(&mut self, x: &Value, w: &ArrayD<f32>, hint: &str) -> BuildResult<Tensor> {
        if w.ndim() != 2 {
            return unsupported(format!("a matrix product with a constant of shape {:?}", w.shape()));
        }
        let transposed = w.t().as_standard_layout().into_owned();
        self.fully_connected(x, &transposed, None, hint)
    }

    /// Softmax along source `axis`, `exp(beta * x)` normalised.
    pub fn softmax(&mut self, x: &Value, axis: usize, beta: f32, hint: &str) -> BuildResult<Value> {
        let x = if beta != 1.0 { self.binary(Binary::Mul, x, &Value::Const(ArrayD::from_elem(IxDyn(&[]), beta)), &format!("{hint}_beta"))? } else { x.clone() };
        let t = self.tensor(&x, hint);
        if axis >= t.shape.len() {
            return unsupported(format!("a softmax along axis {axis} of a rank-{} tensor", t.shape.len()));
        }
        let name = self.node("Softmax", vec![t.name.clone()], vec![int_attr("axis", t.onnx_axis(axis) as i64)], hint);
        Ok(Value::Tensor(Tensor { name, ..t }))
    }

    /// `x * HardSigmoid(x)` (HardSwish is opset 14).
    pub fn hard_swish(&mut self, x: &Value, hint: &str) -> Value {
        let Value::Tensor(t) = x else {
            return self.unary("Identity", x, |v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0, hint);
        };
        let gate = self.node("HardSigmoid", vec![t.name.clone()], vec![float_attr("alpha", 1.0 / 6.0), float_attr("beta", 0.5)], &format!("{hint}_gate"));
        let name = self.node("Mul", vec![t.name.clone(), gate], vec![], hint);
        Value::Tensor(Tensor { name, ..t.clone() })
    }

    /// The finished model: `input` in, `output` (brought to the source's own layout) out as
    /// `output_name`.
    pub fn finish(mut self, input: &Tensor, output: &Value, output_name: &str) -> BuildResult<ModelProto> {
        let Value::Tensor(out) = output else { return unsupported("a graph whose output is a constant") };
        let out = self.to_layout(out, &(0..out.shape.len()).collect::<Vec<_>>());
        if out.name == input.name {
            return unsupported("a graph whose output is its input");
        }
        // Renaming the producer's output (or an Identity when the output is an initializer
        // alias or read by other nodes too) gives the output its fixed name.
        self.nodes.push(NodeProto { op_type: "Identity".into(), name: "output".into(), input: vec![out.name.clone()], output: vec![output_name.into()], ..Default::default() });
        self.fold_zero_pads();
        self.fuse_conv_bias();
        let graph = GraphProto {
            name: "cvedge".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(&input.name, &input.onnx_shape())],
            output: vec![value_info(output_name, &out.shape)],
            ..Default::default()
        };
        Ok(ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "cvedge".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            ..Default::default()
        })
    }
}

impl Builder {
    /// `Pad(zeros, spatial axes only) -> Conv` becomes one Conv with the pads added to its own,
    /// when the Conv is the Pad's only reader (TFLite spells stride-2 SAME padding as an explicit
    /// PAD). The result is the same, and the QDQ quantizer, which does not quantize Pad, then
    /// keeps the depthwise convolutions after it in int8 instead of float.
    fn fold_zero_pads(&mut self) {
        let mut readers: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for input in &node.input {
                readers.entry(input.clone()).or_default().push(i);
            }
        }
        let mut removed = HashSet::new();
        for pad in 0..self.nodes.len() {
            let node = &self.nodes[pad];
            // Two inputs: no fill value given, so zeros; no `mode` attribute: constant.
            if node.op_type != "Pad" || node.input.len() != 2 || !node.attribute.is_empty() {
                continue;
            }
            let Some(pads) = self.initializers.iter().find(|t| t.name == node.input[1]).map(|t| t.int64_data.clone()) else { continue };
            let Some(&[conv]) = readers.get(&node.output[0]).map(Vec::as_slice) else { continue };
            let convolution = &self.nodes[conv];
            let rank = pads.len() / 2;
            let spatial_only = rank >= 3 && pads.len() == 2 * rank && [0, 1, rank, rank + 1].iter().all(|&i| pads[i] == 0) && pads.iter().all(|&p| p >= 0);
            if convolution.op_type != "Conv" || convolution.input[0] != node.output[0] || !spatial_only {
                continue;
            }
            let Some(attribute) = self.nodes[conv].attribute.iter().position(|a| a.name == "pads") else { continue };
            let (input, spatial) = (self.nodes[pad].input[0].clone(), rank - 2);
            let conv_pads = &mut self.nodes[conv].attribute[attribute].ints;
            for axis in 0..spatial {
                conv_pads[axis] += pads[2 + axis];
                conv_pads[spatial + axis] += pads[rank + 2 + axis];
            }
            self.nodes[conv].input[0] = input;
            removed.insert(pad);
        }
        let mut index = 0;
        self.nodes.retain(|_| {
            index += 1;
            !removed.contains(&(index - 1))
        });
    }

    /// `Conv -> Add(per-channel constant)` becomes one Conv with that bias, when the Add is the
    /// convolution's only reader (TensorFlow keeps biases in BiasAdd). onnxruntime would fuse it
    /// too, but the QDQ quantizer wants the bias on the Conv (int32), and tract's axis
    /// optimiser trips on some conv-then-add chains it meets in these graphs.
    fn fuse_conv_bias(&mut self) {
        let mut readers: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for node in &self.nodes {
            for input in &node.input {
                *readers.entry(input.as_str()).or_default() += 1;
            }
        }
        let producer: std::collections::HashMap<String, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.output[0].clone(), i)).collect();
        let mut fusions = vec![];
        for (add, node) in self.nodes.iter().enumerate() {
            if node.op_type != "Add" || node.input.len() != 2 {
                continue;
            }
            for (x, c) in [(0, 1), (1, 0)] {
                let Some(&conv) = producer.get(&node.input[x]) else { continue };
                let Some(bias) = self.initializers.iter().position(|t| t.name == node.input[c]) else { continue };
                let convolution = &self.nodes[conv];
                let channels = self.initializers.iter().find(|t| Some(&t.name) == convolution.input.get(1)).map(|w| w.dims[0]);
                let dims = &self.initializers[bias].dims;
                let per_channel = dims.len() >= 3 && dims.iter().rev().take(2).all(|&d| d == 1) && Some(dims[dims.len() - 3]) == channels && dims[..dims.len() - 3].iter().all(|&d| d == 1);
                if convolution.op_type == "Conv" && readers.get(node.input[x].as_str()) == Some(&1) && per_channel && readers.get(node.input[c].as_str()) == Some(&1) {
                    fusions.push((conv, add, bias));
                    break;
                }
            }
        }
        let mut removed = HashSet::new();
        for (conv, add, bias) in fusions {
            let values = raw_floats(&self.initializers[bias]);
            let output = self.nodes[add].output[0].clone();
            let convolution = &mut self.nodes[conv];
            match convolution.input.get(2).cloned() {
                Some(existing) => {
                    let old = self.initializers.iter_mut().find(|t| t.name == existing).expect("the bias is an initializer");
                    let sum: Vec<f32> = raw_floats(old).iter().zip(&values).map(|(a, b)| a + b).collect();
                    old.raw_data = sum.iter().flat_map(|v| v.to_le_bytes()).collect();
                }
                None => convolution.input.push(self.initializers[bias].name.clone()),
            }
            let channels = values.len() as i64;
            self.initializers[bias].dims = vec![channels];
            convolution.output[0] = output;
            removed.insert(add);
        }
        let mut index = 0;
        self.nodes.retain(|_| {
            index += 1;
            !removed.contains(&(index - 1))
        });
        let used: HashSet<String> = self.nodes.iter().flat_map(|n| n.input.clone()).collect();
        self.initializers.retain(|t| used.contains(&t.name));
    }
}

fn raw_floats(t: &TensorProto) -> Vec<f32> {
    t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_at_the_end() {
        assert_eq!(window(224, 3, 2, 1, Padding::Same).unwrap(), (0, 1, 112));
        assert_eq!(window(7, 3, 1, 1, Padding::Same).unwrap(), (1, 1, 7));
        assert_eq!(window(227, 3, 2, 1, Padding::Valid).unwrap(), (0, 0, 113));
        assert!(window(2, 3, 1, 1, Padding::Valid).is_err());
    }

    /// Damaged files give shapes and numbers no exporter writes: each is refused, none panics.
    #[test]
    fn malformed_arguments_are_refused() {
        assert!(window(0, 3, 1, 1, Padding::Same).is_err());
        assert!(window(8, 0, 1, 1, Padding::Valid).is_err());
        assert!(window(8, 3, 0, 1, Padding::Same).is_err());
        assert!(window(8, usize::MAX, 1, 2, Padding::Same).is_err());
        assert!(axis(4, 4).is_err() && axis(-5, 4).is_err());
        assert_eq!(axis(-1, 4).unwrap(), 3);
        assert!(pad_pairs(&ArrayD::zeros(IxDyn(&[4]))).is_err());
        assert_eq!(pad_pairs(&ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.0, 1.0, -2.0, 3.0]).unwrap()).unwrap(), [(0, 1), (0, 3)]);
        assert!(permuted(&ArrayD::zeros(IxDyn(&[3, 3])), &[0, 3, 1, 2]).is_err());
        let mut b = Builder::default();
        b.reserve("model_output");
        assert!(b.input("model_output", &[1, 8, 8, 3], default_perm(4)).is_err());
    }

    #[test]
    fn reshape_groups_skip_unit_axes() {
        assert_eq!(reshape_groups(&[1, 1, 1, 8], &[1, 8]).unwrap(), vec![(vec![3], vec![1])]);
        assert_eq!(reshape_groups(&[1, 4, 4, 6], &[1, 4, 4, 2, 3]).unwrap(), vec![(vec![1], vec![1]), (vec![2], vec![2]), (vec![3], vec![3, 4])]);
        assert_eq!(reshape_groups(&[2, 3], &[3, 2]).unwrap(), vec![(vec![0, 1], vec![0, 1])]);
        assert!(reshape_groups(&[2, 3], &[5]).is_none());
    }

    /// ShuffleNet's channel shuffle: two reshapes around a transpose become NCHW's own
    /// reshape, one transpose, reshape.
    #[test]
    fn channel_shuffle_needs_one_transpose() {
        let mut b = Builder::default();
        let x = Value::Tensor(b.input("x", &[1, 4, 4, 6], default_perm(4)).unwrap());
        let split = b.reshape(&x, &[1, 4, 4, 2, 3], "split").unwrap();
        let swapped = b.transpose(&split, &[0, 1, 2, 4, 3]).unwrap();
        let merged = b.reshape(&swapped, &[1, 4, 4, 6], "merged").unwrap();
        let ops: Vec<&str> = b.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Reshape", "Transpose", "Reshape"]);
        let Value::Tensor(t) = merged else { panic!() };
        assert_eq!((t.shape, t.perm), (vec![1, 4, 4, 6], default_perm(4)));
        assert_eq!(b.nodes[1].attribute[0].ints, [0, 2, 1, 3, 4]);
    }

    #[test]
    fn flattening_a_pooled_image_needs_no_transpose() {
        let mut b = Builder::default();
        let x = Value::Tensor(b.input("x", &[1, 1, 1, 8], default_perm(4)).unwrap());
        b.reshape(&x, &[1, 8], "flat").unwrap();
        assert!(b.nodes.iter().all(|n| n.op_type == "Reshape"));
        let x = Value::Tensor(b.input("y", &[1, 2, 2, 8], default_perm(4)).unwrap());
        b.reshape(&x, &[1, 32], "flat").unwrap();
        assert_eq!(b.nodes.iter().filter(|n| n.op_type == "Transpose").count(), 1, "a real NHWC flatten transposes back first");
    }

    #[test]
    fn constants_fold_with_broadcasting() {
        let mut b = Builder::default();
        let a = Value::Const(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.0, 2.0]).unwrap());
        let c = Value::Const(ArrayD::from_shape_vec(IxDyn(&[3]), vec![10.0, 20.0, 30.0]).unwrap());
        let Value::Const(sum) = b.binary(Binary::Add, &a, &c, "s").unwrap() else { panic!() };
        assert_eq!(sum.shape(), &[2, 3]);
        assert_eq!(sum.iter().copied().collect::<Vec<_>>(), [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        assert!(b.nodes.is_empty());
    }

    /// TFLite's explicit PAD in front of a stride-2 depthwise convolution: folded into the
    /// convolution's own pads; a non-zero fill value is not.
    #[test]
    fn zero_pads_fold_into_the_convolution_after_them() {
        let fold = |value: f32| {
            let mut b = Builder::default();
            let input = b.input("x", &[1, 6, 6, 4], default_perm(4)).unwrap();
            let padded = b.pad(&Value::Tensor(input.clone()), &[(0, 0), (1, 1), (0, 1), (0, 0)], value, "pad").unwrap();
            let window = Window { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], padding: Padding::Valid };
            let weights = ArrayD::from_elem(IxDyn(&[4, 1, 3, 3]), 0.5);
            let conv = b.conv(&padded, weights, None, 4, &window, "dw").unwrap();
            let graph = b.finish(&input, &Value::Tensor(conv), "out").unwrap().graph.unwrap();
            let ops: Vec<String> = graph.node.iter().map(|n| n.op_type.clone()).collect();
            let pads = graph.node.iter().find(|n| n.op_type == "Conv").unwrap().attribute.iter().find(|a| a.name == "pads").unwrap().ints.clone();
            (ops, pads, graph.node[0].input[0].clone())
        };
        let (ops, pads, first_input) = fold(0.0);
        assert_eq!((ops, pads, first_input), (vec!["Conv".to_string(), "Transpose".into(), "Identity".into()], vec![1, 0, 1, 1], "x".to_string()));
        let (ops, pads, _) = fold(1.0);
        assert_eq!((ops, pads), (vec!["Pad".to_string(), "Conv".into(), "Transpose".into(), "Identity".into()], vec![0, 0, 0, 0]));
    }

    #[test]
    fn axis_arguments_follow_the_layout() {
        let mut b = Builder::default();
        let x = Value::Tensor(b.input("x", &[1, 4, 4, 6], default_perm(4)).unwrap());
        b.concat(&[x.clone(), x.clone()], 3, "cat").unwrap();
        assert_eq!(b.nodes[0].attribute[0].i, 1, "NHWC channels are NCHW axis 1");
        let s = b.slice(&x, &[0, 0, 0, 3], &[1, 4, 4, 6], "half").unwrap();
        assert_eq!(s.shape(), [1, 4, 4, 3]);
        let axes = &b.initializers.iter().find(|t| t.name == "half_axes").unwrap().int64_data;
        assert_eq!(axes, &[1]);
    }
}
