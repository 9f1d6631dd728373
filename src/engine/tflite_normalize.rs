//! Rewrites Custom Vision TensorFlow Lite exports into the subset `tract-tflite` 0.23.9 loads.
//!
//! tract's op registry is private, so missing ops cannot be registered from outside; the only
//! lever is the file itself. Three patterns occur in Custom Vision exports:
//!  * fp16 weights stored as FLOAT16 constants feeding DEQUANTIZE (tract has no DEQUANTIZE):
//!    each such op is folded into an fp32 constant assigned to its output tensor.
//!  * FULLY_CONNECTED fed by a [1,1,1,C] tensor (tract insists on rank 2; tf.lite flattens
//!    implicitly): a RESHAPE to [batch, C] is inserted, with the new shape as a constant int32
//!    second input, which both tract's and tf.lite's RESHAPE accept.
//!  * quantization tables whose scale/zero_point vectors are present but empty: tract reads
//!    element 0 of them and panics, tf.lite treats "no scale" as "not quantized", so they are
//!    dropped.
//!
//! Technique: instead of deep-copying the model (which would need per-options-type copy code
//! for every builtin op), the original bytes are embedded verbatim at the very end of a new
//! flatbuffer. Flatbuffer offsets only point forward and `FlatBufferBuilder` builds back to
//! front, so every table written afterwards can point at any untouched original table, vector
//! or string. Only the changed objects (tensors, a few operators, buffers, the subgraph, the
//! model root) are rebuilt. Cost: the superseded original root/vectors stay as dead bytes.
//! Caveat: rebuilt tables only carry the fields known to tract's (older) generated schema, e.g.
//! a rebuilt Operator loses `builtin_options_2`/debug metadata; untouched tables keep everything.
//! Only subgraph 0 (the one tract reads) is rewritten; other subgraphs are kept as they are.
//! Buffers stored outside the flatbuffer (`Buffer.offset`, only used by >2 GiB models) are not
//! handled: such files exceed what this rewrite can produce anyway.

use std::collections::{HashMap, HashSet};

use flatbuffers::{FlatBufferBuilder, Push, PushAlignment, Table, Vector, WIPOffset};
use tract_core::prelude::f16;
use tract_tflite::tflite::{
    self, Buffer, BufferArgs, BuiltinOperator, BuiltinOptions, Operator, OperatorArgs, OperatorCode,
    OperatorCodeArgs, QuantizationParameters, SubGraph, SubGraphArgs, Tensor, TensorArgs,
    TensorType,
};

/// What the normaliser changed, for `cvedge inspect` and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormalizeReport {
    pub folded_dequantize: usize,
    pub reshapes_inserted: usize,
    pub dropped_empty_quantization: usize,
}

impl NormalizeReport {
    pub fn is_noop(&self) -> bool {
        *self == NormalizeReport::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TfliteNormalizeError {
    #[error("not a TensorFlow Lite flatbuffer: {0}")]
    NotTflite(String),
    #[error("malformed TensorFlow Lite model: {0}")]
    Malformed(String),
    #[error("cannot fold DEQUANTIZE of constant tensor `{tensor}`: {detail}")]
    UnsupportedDequantize { tensor: String, detail: String },
    #[error("cannot make FULLY_CONNECTED input `{tensor}` rank 2: {detail}")]
    UnsupportedFullyConnected { tensor: String, detail: String },
    #[error("rewritten model would exceed the 2 GiB flatbuffer limit ({0} bytes)")]
    TooLarge(usize),
}

type E = TfliteNormalizeError;

/// The verifier's messages carry a multi-line trace; logs want one line.
fn one_line(e: &impl std::fmt::Display) -> String {
    let words: Vec<String> = e.to_string().split_whitespace().map(String::from).collect();
    words.join(" ")
}

fn malformed(msg: impl Into<String>) -> E {
    E::Malformed(msg.into())
}

/// A zero-sized push whose only effect is to align the builder head to 16 bytes (and to make the
/// finished buffer's size a multiple of 16), which `FlatBufferBuilder` does not expose otherwise.
struct Align16;
impl Push for Align16 {
    type Output = ();
    // Nothing is written, so none of the trait's safety preconditions come into play.
    unsafe fn push(&self, _dst: &mut [u8], _written_len: usize) {}
    fn size() -> usize {
        0
    }
    fn alignment() -> PushAlignment {
        PushAlignment::new(16)
    }
}

/// Maps positions inside the original bytes to builder offsets. The original bytes end up at
/// `final_len - padded`, so an object at original position `p` is `padded - p` bytes from the
/// end of the finished buffer, which is exactly what a `WIPOffset` measures.
struct Orig<'b> {
    bytes: &'b [u8],
    padded: usize,
}

impl<'b> Orig<'b> {
    fn at<T>(&self, pos: usize) -> WIPOffset<T> {
        WIPOffset::new((self.padded - pos) as u32)
    }
    fn tab<T>(&self, t: Table<'b>) -> WIPOffset<T> {
        self.at(t.loc())
    }
    // A vector/string offset points at its u32 length prefix, 4 bytes before the payload.
    fn vec<T, U>(&self, v: Option<Vector<'b, T>>) -> Option<WIPOffset<U>> {
        v.map(|v| self.at(v.bytes().as_ptr() as usize - self.bytes.as_ptr() as usize - 4))
    }
    fn str<U>(&self, s: Option<&'b str>) -> Option<WIPOffset<U>> {
        s.map(|s| self.at(s.as_ptr() as usize - self.bytes.as_ptr() as usize - 4))
    }
}

/// An operator's options table, when flatbuffers' verifier has checked it: the verifier skips the
/// value of a union whose type is NONE or unknown, so such a value may point anywhere (fuzzing
/// found one past the end of the file, which made the offset arithmetic underflow).
fn verified_options<'b>(op: &Operator<'b>) -> Option<Table<'b>> {
    let kind = op.builtin_options_type();
    (kind != BuiltinOptions::NONE && kind.variant_name().is_some()).then(|| op.builtin_options()).flatten()
}

/// tf.lite's rule (GetBuiltinCode): new files put codes > 127 in `builtin_code` only.
pub(crate) fn builtin_code(oc: &OperatorCode) -> i32 {
    (oc.deprecated_builtin_code() as i32).max(oc.builtin_code().0)
}

fn req<T>(o: Option<T>, what: &str) -> Result<T, E> {
    o.ok_or_else(|| malformed(format!("missing or out-of-range {what}")))
}

fn name(t: &Tensor) -> String {
    t.name().unwrap_or("<unnamed>").to_string()
}

fn deq_err(t: &Tensor, detail: impl Into<String>) -> E {
    E::UnsupportedDequantize {
        tensor: name(t),
        detail: detail.into(),
    }
}

fn dims(t: &Tensor) -> Result<Vec<usize>, E> {
    let bad = || malformed(format!("tensor `{}` has a dynamic shape", name(t)));
    let shape = t.shape().into_iter().flatten();
    shape
        .map(|d| usize::try_from(d).map_err(|_| bad()))
        .collect()
}

/// Element count, refusing absurd (overflowing) shapes instead of wrapping or panicking.
fn numel(t: &Tensor) -> Result<usize, E> {
    let n = dims(t)?.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    n.ok_or_else(|| malformed(format!("tensor `{}` has an absurd shape", name(t))))
}

/// fp32 little-endian bytes of what tf.lite's DEQUANTIZE computes for this constant.
fn dequantize(t: &Tensor, data: &[u8]) -> Result<Vec<u8>, E> {
    let (shape, n, ty) = (dims(t)?, numel(t)?, t.type_());
    let esize = match ty {
        TensorType::FLOAT16 | TensorType::INT16 => 2,
        TensorType::INT8 | TensorType::UINT8 => 1,
        other => return Err(deq_err(t, format!("unsupported constant type {other:?}"))),
    };
    if n.checked_mul(esize) != Some(data.len()) {
        let msg = format!("{} data bytes for shape {shape:?}", data.len());
        return Err(deq_err(t, msg));
    }
    if ty == TensorType::FLOAT16 {
        let f = |c: &[u8]| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
        return Ok(data
            .chunks_exact(2)
            .flat_map(|c| f(c).to_le_bytes())
            .collect());
    }
    let q = t.quantization();
    let scale: Vec<f32> = q.and_then(|q| q.scale()).into_iter().flatten().collect();
    let mut zp: Vec<i64> = q
        .and_then(|q| q.zero_point())
        .into_iter()
        .flatten()
        .collect();
    if zp.is_empty() {
        zp = vec![0; scale.len()];
    }
    if scale.is_empty() || zp.len() != scale.len() {
        return Err(deq_err(
            t,
            "integer constant without usable scale/zero point",
        ));
    }
    // Per-channel scales index along `quantized_dimension`: element i is in channel
    // (i / stride) % channels.
    let (mut stride, mut channels) = (1, 1);
    if scale.len() > 1 {
        let axis = q.map_or(-1, |q| q.quantized_dimension());
        let axis = usize::try_from(axis).ok();
        match axis.filter(|&a| shape.get(a) == Some(&scale.len())) {
            Some(a) => (stride, channels) = (shape[a + 1..].iter().product(), scale.len()),
            None => return Err(deq_err(t, "per-channel scales do not match the shape")),
        }
    }
    let raw = |i: usize| match ty {
        TensorType::INT16 => i16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as i64,
        TensorType::INT8 => data[i] as i8 as i64,
        _ => data[i] as i64,
    };
    let value = |i: usize| {
        let ch = (i / stride.max(1)) % channels;
        (raw(i) - zp[ch]) as f32 * scale[ch]
    };
    Ok((0..n).flat_map(|i| value(i).to_le_bytes()).collect())
}

/// tf.lite reads an empty scale as "not quantized"; tract indexes it and panics, so such tables
/// are dropped. Scales without zero points are rejected by tf.lite, and here too.
fn drop_quantization(t: &Tensor) -> Result<bool, E> {
    let Some(q) = t.quantization() else {
        return Ok(false);
    };
    match (q.scale(), q.zero_point()) {
        (Some(s), Some(_)) if s.is_empty() => Ok(true),
        (Some(_), Some(z)) if z.is_empty() => {
            Err(malformed(format!("`{}` has no zero point", name(t))))
        }
        _ => Ok(false),
    }
}

/// Appends a Buffer whose payload starts on a 16-byte boundary, like the converter's (XNNPACK
/// and mmap-style readers appreciate it), and returns its index.
fn new_buffer<'f>(
    fbb: &mut FlatBufferBuilder<'f>,
    offs: &mut Vec<WIPOffset<Buffer<'f>>>,
    data: &[u8],
) -> u32 {
    fbb.push(Align16);
    for _ in 0..(16 - data.len() % 16) % 16 {
        fbb.push(0u8);
    }
    let data = Some(fbb.create_vector(data));
    offs.push(Buffer::create(fbb, &BufferArgs { data }));
    (offs.len() - 1) as u32
}

fn new_tensor<'f>(
    fbb: &mut FlatBufferBuilder<'f>,
    name: &str,
    shape: &[i32],
    (type_, buffer): (TensorType, u32),
    quantization: Option<WIPOffset<QuantizationParameters<'f>>>,
) -> WIPOffset<Tensor<'f>> {
    let name = Some(fbb.create_string(name));
    let shape = Some(fbb.create_vector(shape));
    let args = TensorArgs {
        shape,
        type_,
        buffer,
        name,
        quantization,
        ..Default::default()
    };
    Tensor::create(fbb, &args)
}

/// Rewrites `bytes` so that tract-tflite can load it, or returns a copy and an all-zero report
/// when it already can (as far as these three patterns go).
pub fn normalize_tflite(bytes: &[u8]) -> Result<(Vec<u8>, NormalizeReport), TfliteNormalizeError> {
    if bytes.len() < 8 || !tflite::model_buffer_has_identifier(bytes) {
        return Err(E::NotTflite("missing the `TFL3` file identifier".into()));
    }
    let model = tflite::root_as_model(bytes).map_err(|e| E::NotTflite(one_line(&e)))?;
    let subgraphs = req(model.subgraphs().filter(|s| !s.is_empty()), "subgraph")?;
    let g = subgraphs.get(0);
    let tensors = req(g.tensors(), "subgraph tensors")?;
    let ops = req(g.operators(), "subgraph operators")?;
    let buffers = req(model.buffers(), "buffers")?;
    let codes = req(model.operator_codes(), "operator codes")?;
    let tensor = |ix: i32| {
        let t = usize::try_from(ix).ok().filter(|&i| i < tensors.len());
        t.map(|i| tensors.get(i))
            .ok_or_else(|| malformed(format!("bad tensor index {ix}")))
    };
    let io = g.inputs().into_iter().chain(g.outputs());
    let graph_io: HashSet<i32> = io.flatten().collect();

    // ---- Plan everything before writing, so that "nothing to do" returns the input as is.
    let mut folded: HashMap<usize, Vec<u8>> = HashMap::new(); // output tensor -> fp32 data
    let mut skip_op = vec![false; ops.len()];
    let mut rank2: HashMap<usize, (usize, [i32; 2])> = HashMap::new(); // FC op -> (input, shape)
    for (i, op) in ops.iter().enumerate() {
        let oc = op.opcode_index() as usize;
        let code = req((oc < codes.len()).then(|| codes.get(oc)), "operator code")?;
        let code = BuiltinOperator(builtin_code(&code));
        let ins: Vec<i32> = op.inputs().into_iter().flatten().collect();
        let outs: Vec<i32> = op.outputs().into_iter().flatten().collect();
        if code == BuiltinOperator::DEQUANTIZE && ins.len() == 1 && outs.len() == 1 {
            let (src, dst) = (tensor(ins[0])?, tensor(outs[0])?);
            let b = src.buffer() as usize;
            let data = req((b < buffers.len()).then(|| buffers.get(b)), "buffer")?.data();
            // Non-constant inputs are left to tract. So are folded graph outputs: tract only
            // materialises constants that some operator consumes.
            let Some(data) = data.map(|d| d.bytes()).filter(|d| b != 0 && !d.is_empty()) else {
                continue;
            };
            if graph_io.contains(&outs[0]) {
                continue;
            }
            if dst.type_() != TensorType::FLOAT32 {
                return Err(deq_err(&src, format!("output type is {:?}", dst.type_())));
            }
            let fp32 = dequantize(&src, data)?;
            if Some(fp32.len()) != numel(&dst)?.checked_mul(4) {
                return Err(deq_err(&src, "output shape differs from input shape"));
            }
            folded.insert(outs[0] as usize, fp32);
            skip_op[i] = true;
        } else if code == BuiltinOperator::FULLY_CONNECTED && ins.len() >= 2 {
            let (x, w) = (tensor(ins[0])?, tensor(ins[1])?);
            if dims(&x)?.len() == 2 {
                continue;
            }
            let fail = |detail: &str| E::UnsupportedFullyConnected {
                tensor: name(&x),
                detail: detail.into(),
            };
            let opts = op.builtin_options_as_fully_connected_options();
            if opts.is_some_and(|o| o.keep_num_dims()) {
                return Err(fail(
                    "keep_num_dims is set (the output would need a reshape too)",
                ));
            }
            let (ws, n) = (dims(&w)?, numel(&x)?);
            let c = ws.get(1).filter(|&&c| ws.len() == 2 && c > 0);
            let c = *c.ok_or(fail("weights are not [out, in]"))?;
            let shape = [n / c, c].map(|d| i32::try_from(d).unwrap_or(-1));
            if n == 0 || n % c != 0 || shape.contains(&-1) {
                return Err(fail(&format!("{:?} is not [batch, {c}]", dims(&x)?)));
            }
            rank2.insert(i, (ins[0] as usize, shape));
        }
    }
    let drop_quant = tensors.iter().map(|t| drop_quantization(&t));
    let drop_quant = drop_quant.collect::<Result<Vec<bool>, E>>()?;
    let report = NormalizeReport {
        folded_dequantize: folded.len(),
        reshapes_inserted: rank2.len(),
        dropped_empty_quantization: drop_quant.iter().filter(|q| **q).count(),
    };
    if report.is_noop() {
        return Ok((bytes.to_vec(), report));
    }
    let padded = bytes.len().div_ceil(16) * 16;
    let estimate = padded
        + folded.values().map(|d| d.len() + 64).sum::<usize>()
        + 256 * (tensors.len() + ops.len() + buffers.len() + 4 * rank2.len())
        + 4096;
    if estimate >= i32::MAX as usize {
        return Err(E::TooLarge(estimate));
    }

    // ---- Build. The original bytes go first, i.e. at the end of the output, 16-aligned.
    let mut fbb = FlatBufferBuilder::with_capacity(estimate);
    fbb.push(Align16);
    for _ in bytes.len()..padded {
        fbb.push(0u8);
    }
    fbb.create_vector(bytes);
    let o = Orig { bytes, padded };

    // Folded fp16 sources keep their (now unused) buffers: their bytes stay in the embedded
    // original anyway, so blanking them would not make the file any smaller.
    let mut buffer_offs: Vec<_> = buffers.iter().map(|b| o.tab(b._tab)).collect();
    let mut tensor_offs = vec![];
    for (i, t) in tensors.iter().enumerate() {
        let fold = folded.get(&i);
        if fold.is_none() && !drop_quant[i] {
            tensor_offs.push(o.tab(t._tab));
            continue;
        }
        let (type_, buffer) = match fold {
            Some(d) => (
                TensorType::FLOAT32,
                new_buffer(&mut fbb, &mut buffer_offs, d),
            ),
            None => (t.type_(), t.buffer()),
        };
        let args = TensorArgs {
            shape: o.vec(t.shape()),
            type_,
            buffer,
            name: o.str(t.name()),
            quantization: None, // folded constants are plain fp32; the others had empty tables
            is_variable: t.is_variable(),
            sparsity: t.sparsity().map(|s| o.tab(s._tab)),
            shape_signature: o.vec(t.shape_signature()),
            has_rank: t.has_rank(),
            variant_tensors: o.vec(t.variant_tensors()),
        };
        tensor_offs.push(Tensor::create(&mut fbb, &args));
    }

    // RESHAPE's operator code: reuse the file's, else append one.
    let mut code_offs: Vec<_> = codes.iter().map(|c| o.tab(c._tab)).collect();
    let is_reshape = |c: OperatorCode| builtin_code(&c) == BuiltinOperator::RESHAPE.0;
    let reshape_code = match codes.iter().position(is_reshape) {
        Some(ix) => ix as u32,
        None if rank2.is_empty() => 0,
        None => {
            let args = OperatorCodeArgs {
                deprecated_builtin_code: BuiltinOperator::RESHAPE.0 as i8,
                builtin_code: BuiltinOperator::RESHAPE,
                ..Default::default()
            };
            code_offs.push(OperatorCode::create(&mut fbb, &args));
            code_offs.len() as u32 - 1
        }
    };

    let mut op_offs = vec![];
    for (i, op) in ops.iter().enumerate().filter(|(i, _)| !skip_op[*i]) {
        let Some(&(input, shape)) = rank2.get(&i) else {
            op_offs.push(o.tab(op._tab));
            continue;
        };
        // RESHAPE(x, shape const) -> new tensor of x's type and quantization.
        let x = tensors.get(input);
        let x_name = format!("{}/cvedge_rank2", x.name().unwrap_or("fc_input"));
        let data: Vec<u8> = shape.iter().flat_map(|d| d.to_le_bytes()).collect();
        let shape_buf = new_buffer(&mut fbb, &mut buffer_offs, &data);
        let shape_ty = (TensorType::INT32, shape_buf);
        let shape_t = new_tensor(&mut fbb, &format!("{x_name}_shape"), &[2], shape_ty, None);
        let x_quant = x.quantization().filter(|_| !drop_quant[input]);
        let x_quant = x_quant.map(|q| o.tab(q._tab));
        let out_t = new_tensor(&mut fbb, &x_name, &shape, (x.type_(), 0), x_quant);
        tensor_offs.extend([shape_t, out_t]);
        let out_ix = tensor_offs.len() as i32 - 1;
        let inputs = Some(fbb.create_vector(&[input as i32, out_ix - 1]));
        let outputs = Some(fbb.create_vector(&[out_ix]));
        let args = OperatorArgs {
            opcode_index: reshape_code,
            inputs,
            outputs,
            ..Default::default()
        };
        op_offs.push(Operator::create(&mut fbb, &args));
        // The FULLY_CONNECTED itself, identical but for its first input.
        let mut ins: Vec<i32> = op.inputs().into_iter().flatten().collect();
        ins[0] = out_ix;
        let fc = OperatorArgs {
            opcode_index: op.opcode_index(),
            inputs: Some(fbb.create_vector(&ins)),
            outputs: o.vec(op.outputs()),
            builtin_options_type: op.builtin_options_type(),
            builtin_options: verified_options(&op).map(|t| o.tab(t)),
            custom_options: o.vec(op.custom_options()),
            custom_options_format: op.custom_options_format(),
            mutating_variable_inputs: o.vec(op.mutating_variable_inputs()),
            intermediates: o.vec(op.intermediates()),
        };
        op_offs.push(Operator::create(&mut fbb, &fc));
    }

    let sub0 = SubGraphArgs {
        tensors: Some(fbb.create_vector(&tensor_offs)),
        inputs: o.vec(g.inputs()),
        outputs: o.vec(g.outputs()),
        operators: Some(fbb.create_vector(&op_offs)),
        name: o.str(g.name()),
    };
    let sub0 = SubGraph::create(&mut fbb, &sub0);
    let others = subgraphs.iter().skip(1).map(|s| o.tab(s._tab));
    let sub_offs: Vec<_> = std::iter::once(sub0).chain(others).collect();
    let root = tflite::ModelArgs {
        version: model.version(),
        operator_codes: Some(fbb.create_vector(&code_offs)),
        subgraphs: Some(fbb.create_vector(&sub_offs)),
        description: o.str(model.description()),
        buffers: Some(fbb.create_vector(&buffer_offs)),
        metadata_buffer: o.vec(model.metadata_buffer()),
        metadata: o.vec(model.metadata()),
        signature_defs: o.vec(model.signature_defs()),
    };
    let root = tflite::Model::create(&mut fbb, &root);
    tflite::finish_model_buffer(&mut fbb, root);
    let out = fbb.finished_data().to_vec();
    // Cheap insurance that the offset arithmetic above produced a well-formed file.
    if let Err(e) = tflite::root_as_model(&out) {
        return Err(malformed(format!(
            "rewrite does not verify (bug): {}",
            one_line(&e)
        )));
    }
    Ok((out, report))
}
