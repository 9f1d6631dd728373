//! Conformance against real Custom Vision exports (from `$CVEDGE_FIXTURES`) and the project's own
//! models: top tag as expected, every probability within 1e-3 of the reference runtime
//! (goldens made by `scripts/reference_outputs.py`), and the backbone/head split changing nothing.

mod common;

use std::path::Path;

use common::*;
use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::engine::EngineOptions;
use cvedge::source::decode;

fn classify(classifier: &Classifier, image: &Path) -> Vec<f32> {
    let bytes = std::fs::read(image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let frame = decode(&bytes, &image.display().to_string()).unwrap();
    classifier.classify(&frame).unwrap().probabilities
}

/// Checks one model against its goldens. `base` resolves the golden's image keys.
fn check_against_golden(key: &str, model: &Path, base: &Path) {
    let golden = golden_for(key);
    let classifier = Classifier::load(model, &LoadOptions::default()).unwrap_or_else(|e| panic!("{key}: {e}"));
    if let Some(labels) = &golden.labels {
        assert_eq!(&classifier.labels, labels, "{key}: tags");
    }
    if let Some(recipe) = &golden.recipe {
        assert_eq!(&classifier.preprocessor.conventions.recipe.to_string(), recipe, "{key}: default recipe");
    }
    assert!(!golden.outputs.is_empty(), "{key}: golden has no outputs");
    for (image, want) in &golden.outputs {
        let got = classify(&classifier, &base.join(image));
        assert_close(&format!("{key} {image}"), &got, want);
        assert_eq!(argmax(&got), argmax(want), "{key} {image}: top tag");
    }
}

/// The fixture's `expected.json` top tag for every sample, from our own pipeline.
fn check_expected_top_tags(dir: &Path, model_file: &str) {
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let classifier = Classifier::load(dir, &LoadOptions::default()).unwrap();
    let samples = expected[model_file].as_object().expect("expected.json lists samples");
    assert!(!samples.is_empty());
    for (sample, want) in samples {
        let got = classify(&classifier, &dir.join("samples").join(sample));
        let top = &classifier.labels[argmax(&got)];
        assert_eq!(top, want["top"][0][0].as_str().unwrap(), "{}: {sample}", dir.display());
    }
}

macro_rules! fixture_test {
    ($name:ident, $dir:literal, $file:literal) => {
        #[test]
        fn $name() {
            let Some(fixtures) = fixtures() else { return };
            let dir = fixtures.join($dir);
            check_expected_top_tags(&dir, $file);
            check_against_golden(concat!("fixture:", $dir, "/", $file), &dir, &dir);
        }
    };
}

fixture_test!(onnx_catdog_2018_matches_reference, "onnx-catdog-2018", "model.onnx");
fixture_test!(onnx_officefruit_2018_matches_reference, "onnx-officefruit-2018", "model.onnx");
fixture_test!(tf_bananas_2018_matches_reference, "tf-bananas-2018", "model.pb");
fixture_test!(tflite_fp16_2025_matches_reference, "tflite-fp16-appleorange-2025", "model.tflite");

macro_rules! own_model_test {
    ($name:ident, $dir:literal, $file:literal) => {
        #[test]
        fn $name() {
            let dir = repo().join($dir);
            check_against_golden(concat!("repo:", $dir, "/", $file), &dir, &repo());
        }
    };
}

own_model_test!(demo_model_matches_reference, "models/demo", "model.onnx");
own_model_test!(demo_fp16_matches_reference, "models/demo-fp16", "model.onnx");
own_model_test!(onnx_opset7_zipmap_matches_reference, "models/conformance/onnx-opset7-zipmap", "model.onnx");
own_model_test!(onnx_opset7_zipmap_nolabels_matches_reference, "models/conformance/onnx-opset7-zipmap-nolabels", "model.onnx");
own_model_test!(onnx_opset6_map_matches_reference, "models/conformance/onnx-opset6-map", "model.onnx");
own_model_test!(onnx_opset7_sigmoid_matches_reference, "models/conformance/onnx-opset7-sigmoid", "model.onnx");
own_model_test!(onnx_current_multilabel_matches_reference, "models/conformance/onnx-current-multilabel", "model.onnx");
own_model_test!(onnx_current_rgb01_matches_reference, "models/conformance/onnx-current-rgb01", "model.onnx");
own_model_test!(tflite_2019_fp32_matches_reference, "models/conformance/tflite-2019-fp32", "model.tflite");
own_model_test!(tflite_2025_fp16_matches_reference, "models/conformance/tflite-2025-fp16", "model.tflite");
own_model_test!(tf_frozen_matches_reference, "models/conformance/tf-frozen", "model.pb");

/// The split (backbone + head) must give the same probabilities as the whole graph.
fn check_split_is_exact(model: &Path, images: &[&Path]) {
    let split = Classifier::load(model, &LoadOptions::default()).unwrap();
    assert!(split.facts.split_at.is_some(), "{}: graph was not split", model.display());
    let whole = Classifier::load(model, &LoadOptions { engine: EngineOptions { split: false, ..Default::default() }, ..Default::default() }).unwrap();
    assert!(whole.facts.split_at.is_none());
    for image in images {
        let (a, b) = (classify(&split, image), classify(&whole, image));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{} {}: split {a:?} vs whole {b:?}", model.display(), image.display());
        }
    }
}

#[test]
fn split_changes_nothing_on_own_models() {
    let r = repo();
    let images = [r.join("models/samples/cat.jpg"), r.join("tests/data/gray.jpg")];
    let images: Vec<&Path> = images.iter().map(|p| p.as_path()).collect();
    for dir in ["models/demo", "models/conformance/onnx-opset7-sigmoid", "models/conformance/tflite-2019-fp32", "models/conformance/tf-frozen"] {
        check_split_is_exact(&r.join(dir), &images);
    }
}

#[test]
fn split_changes_nothing_on_fixtures() {
    let Some(fixtures) = fixtures() else { return };
    for (dir, sample) in [
        ("onnx-catdog-2018", "kitten_224.png"),
        ("onnx-officefruit-2018", "pear.jpg"),
        ("tf-bananas-2018", "mslearn_banana.jpg"),
        ("tflite-fp16-appleorange-2025", "mslearn_IMG_TEST_2_banana_OOD.jpg"),
    ] {
        let d = fixtures.join(dir);
        check_split_is_exact(&d, &[&d.join("samples").join(sample)]);
    }
}

#[test]
fn legacy_opset1_export_is_refused_with_reexport_advice() {
    let Some(fixtures) = fixtures() else { return };
    let err = Classifier::load(fixtures.join("onnx-legacy-opset1-2018"), &LoadOptions::default()).err().expect("must refuse");
    let text = err.to_string();
    assert!(text.contains("2018 preview") && text.contains("re-export"), "{text}");
}
