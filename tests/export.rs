//! Exporting a trained head: the exported folder must load in cvedge (split into backbone + head,
//! and as one whole graph) and in onnxruntime, and give the probabilities the base export with
//! the new head gave, with the same preprocessing and tags.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cvedge::classifier::{Classifier, Kind, LoadOptions};
use cvedge::engine::{EngineOptions, TensorType};
use cvedge::export::{export_onnx, ExportReport};
use cvedge::head::{Activation, LinearHead};
use cvedge::source::decode;

const ITERATION: &str = "0c5e2a7d-4b1f-4e39-9d2a-6f7b8c9d0e1f";
/// Tags with the spaces, capitals and punctuation real projects use.
const NEW_TAGS: [&str; 4] = ["hot dog", "Dr. Pepper", "Babbo Natale", "kiwi"];
/// Export vs base + head; fp16 exports run their backbone in fp16 in onnxruntime.
const F32_TOLERANCE: f32 = 1e-4;
const F16_TOLERANCE: f32 = 2e-3;

fn load_image(path: &Path) -> image::RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode(&bytes, &path.display().to_string()).unwrap()
}

/// A deterministic, non-trivial head: weights from a seeded LCG, scaled so the logits spread over
/// a few units whatever the width.
fn make_head(width: usize, tags: usize, activation: Activation, seed: u64) -> LinearHead {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let scale = 4.0 / (width as f32).sqrt();
    let weights = (0..tags * width).map(|_| scale * next()).collect();
    let bias = (0..tags).map(|t| 0.25 * t as f32 - 0.3).collect();
    LinearHead::new(weights, bias, activation)
}

/// An export in a temporary folder (removed on drop).
struct Exported {
    report: ExportReport,
    _dir: tempfile::TempDir,
}

/// Replaces the base's head with a new one (a different number of tags), exports, and checks the
/// exported folder against base + head in cvedge (split and whole graph) and, unless the opset is
/// too old for it, onnxruntime.
fn check_export(base_dir: &Path, images: &[PathBuf], activation: Activation, seed: u64) -> Exported {
    let what = base_dir.display().to_string();
    let mut base = Classifier::load(base_dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let fp16 = base.engine.input().dtype == TensorType::F16;
    let tolerance = if fp16 { F16_TOLERANCE } else { F32_TOLERANCE };
    let width = base.engine.output_width();
    let tags = if base.head.tags() == 3 { 4 } else { 3 };
    let head = make_head(width, tags, activation, seed);
    let labels: Vec<String> = NEW_TAGS[..tags].iter().map(|s| s.to_string()).collect();
    base.head = Box::new(head.clone());
    base.labels = labels.clone();
    let frames: Vec<image::RgbImage> = images.iter().map(|p| load_image(p)).collect();
    let want: Vec<Vec<f32>> = frames.iter().map(|f| base.classify(f).unwrap().probabilities).collect();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("iteration");
    let bytes = std::fs::read(&base.package.model_path).unwrap();
    let report = export_onnx(&bytes, &base.package.model_path, &head, &labels, ITERATION, &out).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!((report.width, report.tags, report.float16), (width, tags, fp16), "{what}");
    for name in ["model.onnx", "labels.txt", "metadata_properties.json", "cvexport.manifest"] {
        assert!(out.join(name).is_file(), "{what}: {name} not written");
    }

    for split in [true, false] {
        let options = LoadOptions { engine: EngineOptions { split, ..Default::default() }, ..Default::default() };
        let exported = Classifier::load(&out, &options).unwrap_or_else(|e| panic!("{what} exported (split {split}): {e}"));
        let what = format!("{what} exported (split {split})");
        assert!(exported.package.warnings.is_empty(), "{what}: {:?}", exported.package.warnings);
        let manifest = exported.package.manifest.as_ref().expect("manifest");
        assert_eq!(manifest.model_file_sha1.as_deref(), Some(report.model_sha1.as_str()), "{what}");
        assert_eq!(exported.package.flavor(), fp16.then_some("OnnxFloat16"), "{what}");
        assert_eq!(exported.labels, labels, "{what}");
        assert_eq!(exported.iteration_id, ITERATION, "{what}");
        assert_eq!(exported.preprocessor.conventions, base.preprocessor.conventions, "{what}: preprocessing");
        let (a, b) = (exported.engine.input(), base.engine.input());
        assert_eq!((a.width, a.height, a.layout, a.dtype), (b.width, b.height, b.layout, b.dtype), "{what}: input");
        assert_eq!(a.name, "data", "{what}");
        assert_eq!(exported.facts.output_name, "model_output", "{what}");
        assert_eq!(exported.facts.activation, activation, "{what}");
        assert_eq!(exported.kind, if activation == Activation::Sigmoid { Kind::MultiLabel } else { Kind::MultiClass }, "{what}");
        assert_eq!(exported.facts.split_at.is_some(), split, "{what}: split");
        for ((frame, want), image) in frames.iter().zip(&want).zip(images) {
            let got = exported.classify(frame).unwrap().probabilities;
            assert_near(&format!("{what} {}", image.display()), &got, want, tolerance);
        }
        // onnxruntime has no kernels for opset 6 (Mul, Gemm); the base was not loadable there either.
        if split && report.opset >= 7 && python_onnxruntime() {
            let got = onnxruntime_probabilities(&out.join("model.onnx"), &exported, &frames);
            assert_eq!(got.len(), frames.len());
            for ((got, want), image) in got.iter().zip(&want).zip(images) {
                assert_near(&format!("{what} onnxruntime {}", image.display()), got, want, tolerance);
            }
        }
    }
    Exported { report, _dir: tmp }
}

fn samples(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| repo().join("models/samples").join(n)).collect()
}

#[test]
fn demo_exports_with_new_tags() {
    let report = check_export(&repo().join("models/demo"), &samples(&["cat.jpg", "eagle.jpg", "coffee.jpg"]), Activation::Softmax, 1).report;
    assert_eq!(report.features, "/Flatten_output_0");
    assert_eq!(report.opset, 13);
    assert!(!report.legacy_base);
}

#[test]
fn demo_fp16_exports_with_fp16_io() {
    let report = check_export(&repo().join("models/demo-fp16"), &samples(&["dog.jpg", "rocket.jpg"]), Activation::Softmax, 2).report;
    assert!(report.float16);
}

#[test]
fn multiclass_base_exports_a_multilabel_head() {
    // The kind follows the head: Postprocess.Method is rewritten; RGB 0..1 metadata is kept.
    let report = check_export(&repo().join("models/conformance/onnx-current-rgb01"), &samples(&["cat.jpg", "dog.jpg"]), Activation::Sigmoid, 3).report;
    assert_eq!(report.metadata["CustomVision.Postprocess.Method"], "ClassificationMultiLabel");
    assert_eq!(report.metadata["Image.NominalPixelRange"], "Normalized_0_1");
}

#[test]
fn current_multilabel_base_exports() {
    check_export(&repo().join("models/conformance/onnx-current-multilabel"), &samples(&["eagle.jpg", "rocket.jpg"]), Activation::Sigmoid, 4);
}

#[test]
fn legacy_opset7_zipmap_bases_export_in_the_current_layout() {
    for (dir, seed) in [("onnx-opset7-zipmap", 5), ("onnx-opset7-zipmap-nolabels", 6)] {
        let exported = check_export(&repo().join("models/conformance").join(dir), &samples(&["cat.jpg", "coffee.jpg"]), Activation::Softmax, seed);
        let report = &exported.report;
        assert!(report.legacy_base);
        assert_eq!(report.opset, 7);
        assert_eq!(report.metadata["Image.BitmapPixelFormat"], "Bgr8");
        assert_eq!(report.metadata["Image.NominalPixelRange"], "NominalRange_0_255");
        let model = std::fs::read(report.dir.join("model.onnx")).unwrap();
        let text = String::from_utf8_lossy(&model);
        assert!(!text.contains("ai.onnx.ml") && !text.contains("ZipMap"), "{dir}: the ai.onnx.ml tail is gone");
    }
}

#[test]
fn legacy_sigmoid_base_exports() {
    check_export(&repo().join("models/conformance/onnx-opset7-sigmoid"), &samples(&["eagle.jpg", "dog.jpg"]), Activation::Sigmoid, 7);
}

#[test]
fn legacy_opset6_base_exports() {
    let exported = check_export(&repo().join("models/conformance/onnx-opset6-map"), &samples(&["cat.jpg"]), Activation::Softmax, 8);
    assert_eq!(exported.report.opset, 6);
    // Opset-6 Mul/Add cannot broadcast the channel bias without attributes: the base's own
    // ImageScaler stays.
    let model = std::fs::read(exported.report.dir.join("model.onnx")).unwrap();
    let text = String::from_utf8_lossy(&model);
    assert!(text.contains("ImageScaler") && !text.contains("__cvedge_image_scaler"), "opset 6 keeps ImageScaler");
}

#[test]
fn real_legacy_onnx_exports_export() {
    let Some(fixtures) = fixtures() else { return };
    for (dir, images, seed) in [
        ("onnx-catdog-2018", &["kitten_224.png"][..], 9),
        ("onnx-officefruit-2018", &["apple.jpg", "pear.jpg", "pen.jpg"][..], 10),
    ] {
        let d = fixtures.join(dir);
        let images: Vec<PathBuf> = images.iter().map(|i| d.join("samples").join(i)).collect();
        let report = check_export(&d, &images, Activation::Softmax, seed).report;
        assert_eq!(report.width, 512, "{dir}: the SqueezeNet backbone's width");
    }
}

#[test]
fn real_preview_export_is_refused() {
    let Some(fixtures) = fixtures() else { return };
    let model = fixtures.join("onnx-legacy-opset1-2018/model.onnx");
    let out = tempfile::tempdir().unwrap();
    let head = make_head(512, 2, Activation::Softmax, 11);
    let err = export_onnx(&std::fs::read(&model).unwrap(), &model, &head, &["a".into(), "b".into()], ITERATION, &out.path().join("x")).unwrap_err();
    assert!(err.to_string().contains("re-export"), "{err}");
}

fn two_tags() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[test]
fn tflite_bytes_given_to_the_onnx_writer_are_refused() {
    // TFLite and TensorFlow bases reach the writer rewritten (tests/convert.rs); raw bytes are a bug.
    let model = repo().join("models/conformance/tflite-2025-fp16/model.tflite");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("iteration");
    let head = make_head(1024, 2, Activation::Softmax, 12);
    let err = export_onnx(&std::fs::read(&model).unwrap(), &model, &head, &two_tags(), ITERATION, &target).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not ONNX") && text.contains("onnx_bytes"), "{text}");
    assert!(!target.exists(), "nothing may be written");
}

#[test]
fn head_not_matching_the_base_is_refused() {
    let model = repo().join("models/demo/model.onnx");
    let bytes = std::fs::read(&model).unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("iteration");
    let narrow = make_head(7, 2, Activation::Softmax, 13);
    let err = export_onnx(&bytes, &model, &narrow, &two_tags(), ITERATION, &target).unwrap_err().to_string();
    assert!(err.contains("reads 7 features") && err.contains("reads 1280"), "{err}");
    let head = make_head(1280, 2, Activation::Softmax, 13);
    let err = export_onnx(&bytes, &model, &head, &["only one".into()], ITERATION, &target).unwrap_err().to_string();
    assert!(err.contains("1 tags given for a head with 2 outputs"), "{err}");
    let err = export_onnx(&bytes, &model, &head, &["a".into(), "two\nlines".into()], ITERATION, &target).unwrap_err().to_string();
    assert!(err.contains("line break"), "{err}");
    let identity = LinearHead { activation: Activation::Identity, ..head };
    let err = export_onnx(&bytes, &model, &identity, &two_tags(), ITERATION, &target).unwrap_err().to_string();
    assert!(err.contains("softmax or sigmoid"), "{err}");
    assert!(!target.exists(), "nothing may be written");
}

#[test]
fn exporting_over_the_base_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["model.onnx", "labels.txt", "cvexport.manifest", "metadata_properties.json"] {
        std::fs::copy(repo().join("models/demo").join(name), tmp.path().join(name)).unwrap();
    }
    let model = tmp.path().join("model.onnx");
    let bytes = std::fs::read(&model).unwrap();
    let head = make_head(1280, 2, Activation::Softmax, 14);
    let err = export_onnx(&bytes, &model, &head, &two_tags(), ITERATION, tmp.path()).unwrap_err().to_string();
    assert!(err.contains("overwrite the base"), "{err}");
    assert_eq!(std::fs::read(&model).unwrap(), bytes, "the base is untouched");
}

#[test]
fn input_is_renamed_to_data() {
    use prost::Message;
    let source = repo().join("models/conformance/onnx-current-multilabel");
    let mut model = tract_onnx::pb::ModelProto::decode(&*std::fs::read(source.join("model.onnx")).unwrap()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.input[0].name = "image".into();
    for node in &mut graph.node {
        node.input.iter_mut().filter(|i| *i == "data").for_each(|i| *i = "image".into());
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("model.onnx"), model.encode_to_vec()).unwrap();
    for name in ["labels.txt", "metadata_properties.json"] {
        std::fs::copy(source.join(name), tmp.path().join(name)).unwrap();
    }
    let base = Classifier::load(tmp.path(), &LoadOptions::default()).unwrap();
    assert_eq!(base.engine.input().name, "image");
    check_export(tmp.path(), &samples(&["dog.jpg"]), Activation::Sigmoid, 16);
}

/// A graph with no fully connected layer: image -> GlobalAveragePool -> Flatten -> Softmax.
fn model_without_fc() -> Vec<u8> {
    use prost::Message;
    use tract_onnx::pb;
    let tensor_type = |dims: &[i64]| {
        Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| pb::tensor_shape_proto::Dimension { value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(*d)), ..Default::default() })
                        .collect(),
                }),
            })),
            ..Default::default()
        })
    };
    let node = |op: &str, input: &str, output: &str| pb::NodeProto {
        op_type: op.into(),
        name: op.into(),
        input: vec![input.into()],
        output: vec![output.into()],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(pb::GraphProto {
            name: "no_fc".into(),
            node: vec![node("GlobalAveragePool", "data", "pooled"), node("Flatten", "pooled", "flat"), node("Softmax", "flat", "model_output")],
            input: vec![pb::ValueInfoProto { name: "data".into(), r#type: tensor_type(&[1, 3, 8, 8]), ..Default::default() }],
            output: vec![pb::ValueInfoProto { name: "model_output".into(), r#type: tensor_type(&[1, 3]), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn graph_without_a_final_fc_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("base/model.onnx");
    let head = make_head(3, 2, Activation::Softmax, 15);
    let err = export_onnx(&model_without_fc(), &model, &head, &two_tags(), ITERATION, &tmp.path().join("out")).unwrap_err().to_string();
    assert!(err.contains("final fully connected layer") && err.contains("GlobalAveragePool"), "{err}");
}

/// A kill -9 while `cvedge export` writes leaves no partial folder (a model without its labels or
/// manifest); exporting again replaces an earlier export whole; a folder holding other files is
/// refused, not written into.
#[test]
fn an_export_is_written_whole_and_never_over_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let args = ["export", "models/demo", "--out", out.to_str().unwrap()];
    let complete = ["cvexport.manifest", "labels.txt", "metadata_properties.json", "model.onnx"];
    for round in 0..3 {
        // Each round from an empty folder: what the last one left would trigger the kill at once.
        for name in file_names(dir.path()) {
            std::fs::remove_dir_all(dir.path().join(name)).unwrap();
        }
        // Killed the moment anything appears beside the output (its staging folder), plus a little.
        let landed = kill_cvedge_when(&args, || !file_names(dir.path()).is_empty(), std::time::Duration::from_millis(round));
        assert!(landed, "round {round}: the export ended before anything of it appeared");
        assert!(!out.exists() || file_names(&out) == complete, "round {round}: a killed export left {:?}", file_names(&out));
    }
    let run = cvedge(&args);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stdout.contains(&out.join("model.onnx").display().to_string()), "{}", run.stdout);
    let run = cvedge(&args);
    assert!(run.ok(), "an earlier export is replaced: {}", run.stderr);
    assert_eq!(file_names(&out), complete);
    assert_eq!(file_names(dir.path()), ["export"], "temporary folders left beside the export");
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let run = cvedge(&args);
    assert!(!run.ok() && run.stderr.contains("notes.txt") && run.stderr.contains("new or empty folder"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
}
