//! `cvedge quantize`: the int8 folder must load like any export (precision int8, in tract and in
//! onnxruntime), agree with the float model, be the same bytes for the same images, and be refused
//! (nothing written) when calibration does not represent what the camera sees.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::engine::{EngineChoice, EngineOptions, Precision};
use cvedge::source::decode;

/// Calibration photos made from the bundled samples: crops, mirror images and exposure changes,
/// the variety a camera's own captures have. Deterministic.
fn calibration_images(dir: &Path, per_sample: usize) -> Vec<PathBuf> {
    variations_of(&["cat", "coffee", "dog", "eagle", "rocket"], dir, per_sample)
}

/// `per_sample` variations of each named sample photo, written into `dir`.
fn variations_of(names: &[&str], dir: &Path, per_sample: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut written = vec![];
    for &name in names {
        let bytes = std::fs::read(repo().join(format!("models/samples/{name}.jpg"))).unwrap();
        let image = decode(&bytes, name).unwrap();
        let (w, h) = image.dimensions();
        for i in 0..per_sample {
            let margin = (i as u32 % 4) * w.min(h) / 16;
            let mut variant = image::imageops::crop_imm(&image, margin, margin / 2, w - 2 * margin, h - margin).to_image();
            if i % 2 == 1 {
                variant = image::imageops::flip_horizontal(&variant);
            }
            let gain = 0.8 + 0.1 * (i % 5) as f32;
            for p in variant.pixels_mut() {
                for c in p.0.iter_mut() {
                    *c = (*c as f32 * gain).min(255.0) as u8;
                }
            }
            let path = dir.join(format!("{name}_{i:02}.jpg"));
            variant.save(&path).unwrap();
            written.push(path);
        }
    }
    written
}

fn load(model: &Path, choice: EngineChoice) -> Classifier {
    Classifier::load(model, &LoadOptions { engine: EngineOptions { choice, ..Default::default() }, ..Default::default() })
        .unwrap_or_else(|e| panic!("{}: {e}", model.display()))
}

fn quantize(model: &Path, calibrate: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["quantize", "--model", model.to_str().unwrap(), "--calibrate", calibrate.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    cvedge(&args)
}

fn samples() -> Vec<(String, image::RgbImage)> {
    ["cat", "coffee", "dog", "eagle", "rocket"]
        .iter()
        .map(|n| (n.to_string(), decode(&std::fs::read(repo().join(format!("models/samples/{n}.jpg"))).unwrap(), n).unwrap()))
        .collect()
}

#[test]
fn int8_demo_loads_agrees_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let calibrate = dir.path().join("captures");
    calibration_images(&calibrate, 4);
    let (first, second) = (dir.path().join("int8-a"), dir.path().join("int8-b"));
    let demo = repo().join("models/demo");
    let run = quantize(&demo, &calibrate, &first, &["--json", "--engine", "tract"]);
    assert!(run.ok(), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert!(report["chosen"]["agreement"].as_f64().unwrap() >= 0.99, "{report}");
    assert_eq!(report["holdout_images"], 4, "every fifth of 20 images is held out: {report}");
    assert!(report["int8_convolutions"].as_u64().unwrap() > 40, "{report}");
    assert!(first.join("quantization.json").is_file());

    // Same images, same bytes.
    let run = quantize(&demo, &calibrate, &second, &["--engine", "tract"]);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stderr.contains("gate: 99.0% agreement required"), "{}", run.stderr);
    assert_eq!(std::fs::read(first.join("model.onnx")).unwrap(), std::fs::read(second.join("model.onnx")).unwrap());
    assert!(std::fs::metadata(first.join("model.onnx")).unwrap().len() * 3 < std::fs::metadata(demo.join("model.onnx")).unwrap().len());

    // The folder is an export like any other: int8, same tags, same top tag as fp32.
    let float = load(&demo, EngineChoice::Tract);
    let mut engines = vec![EngineChoice::Tract];
    if require_onnxruntime() {
        engines.push(EngineChoice::OnnxRuntime);
    }
    for engine in engines {
        let int8 = load(&first, engine);
        assert_eq!(int8.facts.precision, Precision::Int8);
        assert_eq!(int8.labels, float.labels);
        for (name, image) in samples() {
            let (want, got) = (float.classify(&image).unwrap().probabilities, int8.classify(&image).unwrap().probabilities);
            assert_eq!(argmax(&got), argmax(&want), "{engine} {name}: int8 {got:?} vs fp32 {want:?}");
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 0.05, "{engine} {name}: int8 {got:?} vs fp32 {want:?}");
        }
    }

    // tract runs the int8 weights at float speed: the activations' quantize/dequantize pairs
    // become the clamps they imply (ReLU is folded into them), unless the rounding is asked for.
    let fast = load(&first, EngineChoice::Tract);
    let note = fast.facts.notes.iter().find(|n| n.contains("activations clamped")).unwrap_or_else(|| panic!("{:?}", fast.facts.notes));
    let pairs: usize = note.split('(').nth(1).and_then(|n| n.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert_eq!(pairs as u64, report["quantized_tensors"].as_u64().unwrap(), "{note}");
    let rounded = Classifier::load(&first, &LoadOptions { engine: EngineOptions { int8_activations: true, ..Default::default() }, ..Default::default() }).unwrap();
    assert!(!rounded.facts.notes.iter().any(|n| n.contains("activations clamped")), "{:?}", rounded.facts.notes);
    for (name, image) in samples() {
        let (a, b) = (fast.classify(&image).unwrap().probabilities, rounded.classify(&image).unwrap().probabilities);
        assert_eq!(argmax(&a), argmax(&b), "{name}: clamped {a:?} vs rounded {b:?}");
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.05), "{name}: clamped {a:?} vs rounded {b:?}");
    }
}

#[test]
fn calibration_unlike_the_camera_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // Calibrated on flat grey frames, judged on real photos: the ranges cannot fit.
    let grey = dir.path().join("grey");
    std::fs::create_dir_all(&grey).unwrap();
    for i in 0..12u8 {
        image::RgbImage::from_pixel(320, 240, image::Rgb([120 + i, 120 + i, 120 + i])).save(grey.join(format!("{i}.png"))).unwrap();
    }
    let holdout = dir.path().join("photos");
    calibration_images(&holdout, 4);
    let out = dir.path().join("int8");
    let run = quantize(&repo().join("models/demo"), &grey, &out, &["--holdout", holdout.to_str().unwrap(), "--engine", "tract"]);
    assert!(!run.ok(), "{}", run.stdout);
    assert!(run.stderr.contains("below the 99.0% gate") && run.stderr.contains("nothing was written"), "{}", run.stderr);
    assert!(run.stderr.contains("calibrate on more captures"), "{}", run.stderr);
    assert!(!out.exists(), "a refused quantization must leave no folder");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("candidate")), "scratch candidates left behind: {left:?}");
}

#[test]
fn bad_inputs_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let few = dir.path().join("few");
    calibration_images(&few, 1);
    let out = dir.path().join("int8");
    let run = quantize(&repo().join("models/demo"), &few, &out, &[]);
    assert!(!run.ok() && run.stderr.contains("needs at least 10") && run.stderr.contains("cvedge capture"), "{}", run.stderr);
    let many = dir.path().join("many");
    calibration_images(&many, 2);
    let run = quantize(&repo().join("models/demo-fp16"), &many, &out, &[]);
    assert!(!run.ok() && run.stderr.contains("fp32 export"), "{}", run.stderr);
}

#[test]
fn a_2018_export_is_brought_to_opset_13_and_still_classifies() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let calibrate = dir.path().join("captures");
    calibration_images(&calibrate, 4);
    let model = fixtures.join("onnx-catdog-2018");
    let out = dir.path().join("int8");
    let run = quantize(&model, &calibrate, &out, &["--engine", "tract"]);
    assert!(run.ok(), "{}", run.stderr);
    let float = load(&model, EngineChoice::Tract);
    let int8 = load(&out, EngineChoice::Tract);
    assert_eq!(int8.facts.precision, Precision::Int8);
    let kitten = image::open(model.join("samples/kitten_224.png")).unwrap().to_rgb8();
    let (want, got) = (float.classify(&kitten).unwrap().probabilities, int8.classify(&kitten).unwrap().probabilities);
    assert_eq!(argmax(&got), argmax(&want), "int8 {got:?} vs fp32 {want:?}");
    if require_onnxruntime() {
        let ort = load(&out, EngineChoice::OnnxRuntime);
        assert_eq!(argmax(&ort.classify(&kitten).unwrap().probabilities), argmax(&want));
    }
}

/// TFLite and TensorFlow exports quantize through their ONNX twin; the int8 folder is an ONNX
/// export with the original's preprocessing and tags.
fn quantizes_through_the_onnx_twin(model: &Path, images: &[(String, image::RgbImage)]) {
    let dir = tempfile::tempdir().unwrap();
    let calibrate = dir.path().join("captures");
    calibration_images(&calibrate, 4);
    let out = dir.path().join("int8");
    let run = quantize(model, &calibrate, &out, &["--engine", "tract"]);
    assert!(run.ok(), "{}: {}", model.display(), run.stderr);
    let float = load(model, EngineChoice::Tract);
    let int8 = load(&out, EngineChoice::Tract);
    assert_eq!(int8.facts.precision, Precision::Int8);
    assert_eq!(int8.labels, float.labels);
    let (a, b) = (&int8.preprocessor.conventions, &float.preprocessor.conventions);
    assert_eq!((a.recipe, a.color, a.range), (b.recipe, b.color, b.range), "{}", model.display());
    let mut engines = vec![int8];
    if require_onnxruntime() {
        engines.push(load(&out, EngineChoice::OnnxRuntime));
    }
    for engine in &engines {
        for (name, image) in images {
            let (want, got) = (float.classify(image).unwrap().probabilities, engine.classify(image).unwrap().probabilities);
            assert_eq!(argmax(&got), argmax(&want), "{} {name} on {}: int8 {got:?} vs float {want:?}", model.display(), engine.engine.name());
            // int8 moves probabilities (the gate judges top-1); a broken graph moves them much more.
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
            assert!(worst < 0.25, "{} {name} on {}: int8 {got:?} vs float {want:?}", model.display(), engine.engine.name());
        }
    }
}

#[test]
fn a_2019_tflite_export_quantizes_through_its_onnx_twin() {
    quantizes_through_the_onnx_twin(&repo().join("models/conformance/tflite-2019-fp32"), &samples());
}

#[test]
fn a_real_shufflenet_tflite_export_quantizes() {
    let Some(fixtures) = fixtures() else { return };
    let model = fixtures.join("tflite-fp16-appleorange-2025");
    let mut images = samples();
    for entry in std::fs::read_dir(model.join("samples")).unwrap() {
        let path = entry.unwrap().path();
        images.push((path.display().to_string(), decode(&std::fs::read(&path).unwrap(), "sample").unwrap()));
    }
    quantizes_through_the_onnx_twin(&model, &images);
}

#[test]
fn a_trained_iteration_quantizes_with_its_own_tags_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    variations_of(&["cat"], &data.join("kitty"), 6);
    variations_of(&["rocket"], &data.join("launch"), 6);
    let iterations = dir.path().join("iterations");
    let run = cvedge(&["train", "--model", "models/demo", "--data", data.to_str().unwrap(), "--iterations", iterations.to_str().unwrap(), "--folds", "0"]);
    assert!(run.ok(), "{}", run.stderr);
    let iteration = PathBuf::from(run.stdout.trim());
    let out = dir.path().join("int8");
    let run = quantize(&iteration, &data, &out, &["--engine", "tract"]);
    assert!(run.ok(), "{}", run.stderr);
    let float = load(&iteration, EngineChoice::Tract);
    let int8 = load(&out, EngineChoice::Tract);
    assert_eq!(int8.facts.precision, Precision::Int8);
    assert_eq!(int8.labels, float.labels);
    assert_eq!(int8.iteration_id, float.iteration_id, "the export names the iteration it was made from");
    for (name, image) in samples().into_iter().filter(|(n, _)| n == "cat" || n == "rocket") {
        let (want, got) = (float.classify(&image).unwrap().probabilities, int8.classify(&image).unwrap().probabilities);
        assert_eq!(argmax(&got), argmax(&want), "{name}: int8 {got:?} vs float {want:?}");
    }
}

#[test]
fn bench_measures_the_int8_twin_beside_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let calibrate = dir.path().join("captures");
    calibration_images(&calibrate, 2);
    let run = cvedge(&["bench", "--model", "models/demo", "--engine", "tract", "--calibrate", calibrate.to_str().unwrap(), "--runs", "2", "--json"]);
    assert!(run.ok(), "{}", run.stderr);
    let precisions: Vec<String> = run.stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["precision"].as_str().unwrap().to_owned()).collect();
    assert_eq!(precisions, ["fp32", "int8"], "{}", run.stdout);
    assert!(run.stderr.contains("int8 twin agrees"), "{}", run.stderr);
}

/// A kill -9 while the int8 folder is being written leaves it absent, never a model without its
/// labels, manifest or record; a second run replaces an earlier output whole; a folder holding
/// someone else's files is refused rather than emptied.
#[test]
fn a_kill_while_writing_leaves_the_output_absent_or_complete() {
    let dir = tempfile::tempdir().unwrap();
    let calibrate = dir.path().join("captures");
    calibration_images(&calibrate, 2);
    let out = dir.path().join("int8");
    let args = ["quantize", "--model", "models/demo", "--calibrate", calibrate.to_str().unwrap(), "--out", out.to_str().unwrap(), "--engine", "tract"];
    // Killed the moment anything but the scratch candidates appears beside the output.
    let writing = || file_names(dir.path()).iter().any(|name| name != "captures" && !name.ends_with(".candidate"));
    assert!(kill_cvedge_when(&args, writing, std::time::Duration::ZERO), "quantize ended before its output appeared");
    let complete = ["cvexport.manifest", "labels.txt", "metadata_properties.json", "model.onnx", "quantization.json"];
    assert!(!out.exists() || file_names(&out) == complete, "a killed quantization left a partial output: {:?}", file_names(&out));

    let run = cvedge(&args);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(file_names(&out), complete);
    let first = std::fs::read(out.join("model.onnx")).unwrap();
    let run = cvedge(&args);
    assert!(run.ok(), "an earlier output is replaced: {}", run.stderr);
    assert_eq!(std::fs::read(out.join("model.onnx")).unwrap(), first);
    assert_eq!(file_names(dir.path()), ["captures", "int8"], "temporary folders left beside the output");

    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let run = cvedge(&["quantize", "--model", "models/demo", "--calibrate", calibrate.to_str().unwrap(), "--out", mine.to_str().unwrap(), "--engine", "tract"]);
    assert!(!run.ok() && run.stderr.contains("notes.txt") && run.stderr.contains("new or empty folder"), "{}", run.stderr);
    assert_eq!(file_names(&mine), ["notes.txt"]);
}
