//! TFLite and TensorFlow exports rewritten as ONNX (`cvedge export MODEL --out DIR`): the ONNX
//! twin must describe its own preprocessing (current layout, metadata, the 2019 TFLite mean inside
//! the graph) and classify like the original, in cvedge and in onnxruntime.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::engine::{EngineChoice, EngineOptions, Generation};
use cvedge::package::ModelFormat;
use cvedge::source::decode;

/// The twin computes the same sums in another order.
const TOLERANCE: f32 = 1e-4;

fn frames(images: &[PathBuf]) -> Vec<image::RgbImage> {
    images.iter().map(|p| decode(&std::fs::read(p).unwrap(), &p.display().to_string()).unwrap()).collect()
}

fn samples() -> Vec<PathBuf> {
    ["cat", "coffee", "dog", "eagle", "rocket"].iter().map(|n| repo().join(format!("models/samples/{n}.jpg"))).collect()
}

fn fixture_samples(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("samples")).unwrap().map(|e| e.unwrap().path()).collect();
    found.sort();
    found
}

/// Exports `model` as its ONNX twin and checks the twin against the original.
fn check_twin(model: &Path, images: &[PathBuf]) {
    let what = model.display().to_string();
    let original = Classifier::load(model, &LoadOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_ne!(original.package.format, ModelFormat::Onnx, "{what}: the test wants a TFLite or TensorFlow export");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("onnx");
    let run = cvedge(&["export", model.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(run.ok(), "{what}: {}", run.stderr);
    assert!(run.stdout.contains("model.onnx"), "{}", run.stdout);

    let twin = Classifier::load(&out, &LoadOptions::default()).unwrap_or_else(|e| panic!("{what} twin: {e}"));
    assert_eq!(twin.package.format, ModelFormat::Onnx);
    assert_eq!(twin.facts.generation, Generation::OnnxCurrent, "{what}");
    assert_eq!(twin.labels, original.labels, "{what}");
    assert_eq!(twin.kind, original.kind, "{what}");
    assert_eq!(twin.facts.activation, original.facts.activation, "{what}");
    let (a, b) = (&twin.preprocessor.conventions, &original.preprocessor.conventions);
    assert_eq!((a.recipe, a.color, a.range), (b.recipe, b.color, b.range), "{what}: the metadata must describe the original's preprocessing");
    assert_eq!(a.mean_bgr, None, "{what}: the mean is inside the twin's graph");
    assert_eq!((twin.preprocessor.width, twin.preprocessor.height), (original.preprocessor.width, original.preprocessor.height));

    let frames = frames(images);
    let want: Vec<Vec<f32>> = frames.iter().map(|f| original.classify(f).unwrap().probabilities).collect();
    for ((frame, want), image) in frames.iter().zip(&want).zip(images) {
        let got = twin.classify(frame).unwrap().probabilities;
        assert_near(&format!("{what} twin on {}", image.display()), &got, want, TOLERANCE);
    }
    if python_onnxruntime() {
        let got = onnxruntime_probabilities(&out.join("model.onnx"), &twin, &frames);
        for ((got, want), image) in got.iter().zip(&want).zip(images) {
            assert_near(&format!("{what} twin in onnxruntime on {}", image.display()), got, want, TOLERANCE);
        }
    }
    if require_onnxruntime() {
        let options = LoadOptions { engine: EngineOptions { choice: EngineChoice::OnnxRuntime, ..Default::default() }, ..Default::default() };
        let ort = Classifier::load(&out, &options).unwrap_or_else(|e| panic!("{what} twin in cvedge's onnxruntime: {e}"));
        let got = ort.classify(&frames[0]).unwrap().probabilities;
        assert_near(&format!("{what} twin in cvedge's onnxruntime"), &got, &want[0], TOLERANCE);
    }
}

#[test]
fn tflite_2019_fp32_twin_subtracts_the_mean_inside() {
    check_twin(&repo().join("models/conformance/tflite-2019-fp32"), &samples());
}

#[test]
fn tflite_2025_fp16_twin() {
    check_twin(&repo().join("models/conformance/tflite-2025-fp16"), &samples());
}

#[test]
fn tf_frozen_twin() {
    check_twin(&repo().join("models/conformance/tf-frozen"), &samples());
}

/// A real export among the fixtures, checked on its own sample photos and the bundled ones.
fn check_fixture_twin(name: &str) {
    let Some(fixtures) = fixtures() else { return };
    let dir = fixtures.join(name);
    let mut images = fixture_samples(&dir);
    images.extend(samples());
    check_twin(&dir, &images);
}

#[test]
fn real_shufflenet_tflite_export_twin() {
    check_fixture_twin("tflite-fp16-appleorange-2025");
}

#[test]
fn real_2018_tensorflow_export_twin() {
    check_fixture_twin("tf-bananas-2018");
}

/// A TensorFlow graph: `data` NHWC 8x8x3 -> `op` (reading `op_input`) -> mean over H, W -> `loss`.
fn tf_graph(op: &str, op_input: &str) -> Vec<u8> {
    use prost::Message;
    use tract_tensorflow::tfpb::tensorflow::{attr_value, AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto};
    let node = |name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, attr_value::Value)>| NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs.into_iter().map(|(k, v)| (k.to_string(), AttrValue { value: Some(v) })).collect(),
        ..Default::default()
    };
    let dim = |size| tract_tensorflow::tfpb::tensorflow::tensor_shape_proto::Dim { size, ..Default::default() };
    let shape = TensorShapeProto { dim: vec![dim(1), dim(8), dim(8), dim(3)], ..Default::default() };
    let axes = TensorProto { dtype: DataType::DtInt32 as i32, tensor_shape: Some(TensorShapeProto { dim: vec![dim(2)], ..Default::default() }), int_val: vec![1, 2], ..Default::default() };
    GraphDef {
        node: vec![
            node("Placeholder", "Placeholder", &[], vec![("shape", attr_value::Value::Shape(shape))]),
            node("odd", op, &[op_input], vec![]),
            node("axes", "Const", &[], vec![("value", attr_value::Value::Tensor(axes))]),
            node("pooled", "Mean", &["odd", "axes"], vec![]),
            node("loss", "Softmax", &["pooled"], vec![]),
        ],
        ..Default::default()
    }
    .encode_to_vec()
}

fn conventions() -> cvedge::preprocess::Conventions {
    use cvedge::preprocess::{ColorOrder, Conventions, Recipe, ValueRange};
    Conventions { recipe: Recipe::ShorterSide { target: 256 }, color: ColorOrder::Bgr, range: ValueRange::Byte, mean_bgr: None }
}

#[test]
fn unconvertible_ops_are_named_with_what_still_works() {
    let path = Path::new("model.pb");
    let model = cvedge::convert::to_onnx(&tf_graph("Relu", "Placeholder"), ModelFormat::TfFrozenGraph, path, &conventions()).unwrap();
    let ops: Vec<&str> = model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Relu", "GlobalAveragePool", "Reshape", "Softmax", "Identity"]);
    let err = cvedge::convert::to_onnx(&tf_graph("Erf", "Placeholder"), ModelFormat::TfFrozenGraph, path, &conventions()).unwrap_err().to_string();
    assert!(err.contains("the op Erf") && err.contains("`odd`") && err.contains("still runs"), "{err}");
    let err = cvedge::convert::to_onnx(b"not a graph", ModelFormat::TfLite, path, &conventions()).unwrap_err().to_string();
    assert!(err.contains("cannot be rewritten as ONNX") && err.contains("copy it from the export again"), "{err}");
}

/// A damaged graph whose op reads its own output, through the mean: refused, not walked for ever.
#[test]
fn a_cycle_in_a_tensorflow_graph_is_refused() {
    let Err(err) = cvedge::convert::engine_twin(&tf_graph("Relu", "pooled"), ModelFormat::TfFrozenGraph, Path::new("model.pb")) else { panic!("a cyclic graph was converted") };
    let err = err.to_string();
    assert!(err.contains("a cycle through") && err.contains("cannot be rewritten as ONNX"), "{err}");
}
