//! Splitting a tract graph at the input of its final fully connected layer.
//!
//! From the output, walk back through casts and reshapes to the final activation (softmax or
//! sigmoid), then through the affine tail (bias add, scaling, reshapes) to the matrix product
//! (`EinSum`) with a constant weight: its other input is the backbone's output. The tail is cut
//! out into a little model of its own and evaluated on basis vectors, which recovers `W` and `b`
//! whatever shape the exporter gave them (Gemm with transB, MatMul + BiasAdd, FULLY_CONNECTED);
//! a random probe then checks the tail really is affine before the split is accepted.

use tract_core::internal::*;
use tract_core::ops::cast::Cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::nn::Softmax;

use crate::head::{Activation, Head, LinearHead};

/// The final activation and the outlet feeding it (the logits).
pub fn find_activation(model: &TypedModel) -> TractResult<(Activation, OutletId)> {
    let mut outlet = model.output_outlets()?[0];
    loop {
        let node = model.node(outlet.node);
        if node.op_is::<Cast>() || node.op_is::<AxisOp>() {
            outlet = node.inputs[0];
            continue;
        }
        if let Some(softmax) = node.op_as::<Softmax>() {
            let rank = model.outlet_fact(node.inputs[0])?.rank();
            if softmax.axes.as_slice() == [rank - 1] {
                return Ok((Activation::Softmax, node.inputs[0]));
            }
        }
        if node.op.name() == "Sigmoid" {
            return Ok((Activation::Sigmoid, node.inputs[0]));
        }
        return Ok((Activation::Identity, model.output_outlets()?[0]));
    }
}

fn is_const(model: &TypedModel, outlet: OutletId) -> TractResult<bool> {
    Ok(model.outlet_fact(outlet)?.konst.is_some())
}

/// The backbone output (the final layer's input) and the tail nodes from the matrix product to
/// the logits, in evaluation order. `None` when the graph does not end in a linear layer.
fn find_tail(model: &TypedModel, logits: OutletId) -> TractResult<Option<(OutletId, Vec<usize>)>> {
    let mut tail = vec![];
    let mut outlet = logits;
    // A fully connected layer with its bias, scaling and reshapes is a handful of nodes; a walk
    // longer than this has left the head.
    for _ in 0..12 {
        let node = model.node(outlet.node);
        let mut live = vec![];
        for input in &node.inputs {
            if !is_const(model, *input)? {
                live.push(*input);
            }
        }
        if live.len() != 1 {
            return Ok(None);
        }
        tail.push(node.id);
        if node.op_is::<EinSum>() {
            tail.reverse();
            return Ok(Some((live[0], tail)));
        }
        outlet = live[0];
    }
    Ok(None)
}

/// A model computing the logits from the features: a source plus copies of the tail nodes.
fn tail_model(model: &TypedModel, features: OutletId, tail: &[usize], logits: OutletId) -> TractResult<TypedModel> {
    let mut out = TypedModel::default();
    let mut mapping: HashMap<OutletId, OutletId> = HashMap::new();
    let source_fact = model.outlet_fact(features)?.without_value();
    mapping.insert(features, out.add_source("features", source_fact)?);
    for &id in tail {
        let node = model.node(id);
        let mut inputs = tvec![];
        for input in &node.inputs {
            let wire = match mapping.get(input) {
                Some(w) => *w,
                None => {
                    let konst = model.outlet_fact(*input)?.konst.clone().context("tail input is neither source nor constant")?;
                    out.add_const(format!("{}.{}", node.name, inputs.len()), konst)?
                }
            };
            inputs.push(wire);
        }
        let wires = out.wire_node(&node.name, node.op.clone(), &inputs)?;
        for (ix, w) in wires.into_iter().enumerate() {
            mapping.insert(OutletId::new(id, ix), w);
        }
    }
    out.select_output_outlets(&[mapping[&logits]])?;
    Ok(out)
}

/// The shape of one image's worth of an outlet: the symbolic batch (TF graphs) becomes 1. The
/// batch is not always the leading axis once tract has decluttered the graph.
pub fn per_image_shape(fact: &TypedFact) -> TVec<usize> {
    fact.shape.dims().iter().map(|d| d.to_usize().unwrap_or(1)).collect()
}

/// Values per image in an outlet.
pub fn per_image_width(fact: &TypedFact) -> usize {
    per_image_shape(fact).iter().product()
}

/// Splits off the head. Returns the backbone output outlet and the head, or `None` when the
/// graph does not end in a linear layer we can take out.
pub fn split_head(model: &TypedModel, activation: Activation, logits: OutletId) -> TractResult<Option<(OutletId, LinearHead)>> {
    let Some((features, tail)) = find_tail(model, logits)? else { return Ok(None) };
    let fact = model.outlet_fact(features)?.clone();
    let width = per_image_width(&fact);
    let shape = per_image_shape(&fact);
    let plan = tail_model(model, features, &tail, logits)?.into_runnable()?;
    let eval = |x: &[f32]| -> TractResult<Vec<f32>> {
        let t = tract_ndarray::ArrayD::from_shape_vec(&*shape, x.to_vec())?.into_tensor();
        let out = plan.run(tvec![t.into_tvalue()])?;
        Ok(out[0].cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().copied().collect())
    };
    let mut x = vec![0f32; width];
    let bias = eval(&x)?;
    let tags = bias.len();
    let mut weights = vec![0f32; tags * width];
    for i in 0..width {
        x[i] = 1.0;
        let column = eval(&x)?;
        x[i] = 0.0;
        for t in 0..tags {
            weights[t * width + i] = column[t] - bias[t];
        }
    }
    let head = LinearHead::new(weights, bias, activation);
    // The probe: a deterministic pseudo-random vector must give the same logits both ways.
    let probe: Vec<f32> = (0..width).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let expected = eval(&probe)?;
    let mut logits_out = vec![0f32; tags];
    LinearHead { activation: Activation::Identity, ..head.clone() }.apply(&probe, &mut logits_out);
    let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
    if expected.iter().zip(&logits_out).any(|(a, b)| (a - b).abs() > 1e-4 * scale) {
        return Ok(None);
    }
    Ok(Some((features, head)))
}
