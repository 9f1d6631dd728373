//! The ways users hand over an export: zip, folder, bare model file, Docker layout; tags from
//! labels.txt or the graph; the manifest's SHA1 checked but never fatal.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::source::decode;

fn probabilities(model: &Path, image: &str) -> Vec<f32> {
    let c = Classifier::load(model, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let frame = decode(&std::fs::read(repo().join(image)).unwrap(), image).unwrap();
    c.classify(&frame).unwrap().probabilities
}

#[test]
fn zip_folder_and_bare_file_give_the_same_answer() {
    let golden = golden_for("repo:models/conformance/onnx-opset7-sigmoid/model.onnx");
    let want = &golden.outputs["models/samples/cat.jpg"];
    let r = repo();
    for model in [
        r.join("tests/data/corrupt/good.zip"),
        r.join("models/conformance/onnx-opset7-sigmoid"),
        r.join("models/conformance/onnx-opset7-sigmoid/model.onnx"),
    ] {
        assert_close(&model.display().to_string(), &probabilities(&model, "models/samples/cat.jpg"), want);
    }
}

/// Docker exports keep the model under `app/`, next to a Python server.
#[test]
fn docker_zip_layout_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("docker-export.zip");
    let src = repo().join("models/conformance/tflite-2025-fp16");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("Dockerfile", options).unwrap();
    zip.write_all(b"FROM python:3.9\n").unwrap();
    for name in ["model.tflite", "labels.txt", "metadata_properties.json"] {
        zip.start_file(format!("app/{name}"), options).unwrap();
        zip.write_all(&std::fs::read(src.join(name)).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    let golden = golden_for("repo:models/conformance/tflite-2025-fp16/model.tflite");
    assert_close("docker zip", &probabilities(&zip_path, "models/samples/dog.jpg"), &golden.outputs["models/samples/dog.jpg"]);
}

#[test]
fn tags_come_from_zipmap_when_labels_txt_is_missing() {
    let c = Classifier::load(repo().join("models/conformance/onnx-opset7-zipmap-nolabels"), &LoadOptions::default()).unwrap();
    assert!(c.package.labels.is_none());
    assert_eq!(c.labels, ["Dr. Pepper", "cola", "water"]);
}

#[test]
fn manifest_sha1_mismatch_warns_but_loads() {
    let c = Classifier::load(repo().join("models/demo"), &LoadOptions::default()).unwrap();
    assert!(c.package.warnings.is_empty(), "the demo's manifest SHA1 is right: {:?}", c.package.warnings);

    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("models/demo")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let manifest = std::fs::read_to_string(dir.path().join("cvexport.manifest")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let sha = value["ModelFileSHA1"].as_str().unwrap().to_owned();
    std::fs::write(dir.path().join("cvexport.manifest"), manifest.replace(&sha, "0000000000000000000000000000000000000000")).unwrap();
    let c = Classifier::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(c.package.warnings.len(), 1);
    assert!(c.package.warnings[0].contains("SHA1"), "{:?}", c.package.warnings);
}

#[test]
fn exif_rotated_photo_classifies_like_the_upright_one() {
    let model = repo().join("models/demo");
    let upright = probabilities(&model, "models/samples/dog.jpg");
    let rotated = probabilities(&model, "tests/data/exif_rotated.jpg");
    assert_eq!(argmax(&rotated), argmax(&upright));
    assert_close("exif_rotated vs upright", &rotated, &upright);
    // And the rotation matters: without EXIF the pixels would be sideways.
    let frame = decode(&std::fs::read(repo().join("tests/data/exif_rotated.jpg")).unwrap(), "r").unwrap();
    let dog = decode(&std::fs::read(repo().join("models/samples/dog.jpg")).unwrap(), "d").unwrap();
    assert_eq!(frame.dimensions(), dog.dimensions());
}

#[test]
fn user_can_override_colour_order_and_recipe() {
    let options = LoadOptions { recipe: Some("stretch".parse().unwrap()), color: Some(cvedge::preprocess::ColorOrder::Rgb), ..Default::default() };
    let c = Classifier::load(repo().join("models/demo"), &options).unwrap();
    assert_eq!(c.preprocessor.conventions.recipe.to_string(), "stretch");
    assert_eq!(c.preprocessor.conventions.color, cvedge::preprocess::ColorOrder::Rgb);
    let default = probabilities(&repo().join("models/demo"), "models/samples/eagle.jpg");
    let frame = decode(&std::fs::read(repo().join("models/samples/eagle.jpg")).unwrap(), "e").unwrap();
    let changed = c.classify(&frame).unwrap().probabilities;
    assert!(default.iter().zip(&changed).any(|(a, b)| (a - b).abs() > 1e-3), "overrides had no effect");
}
