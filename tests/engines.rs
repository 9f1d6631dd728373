//! The engines: onnxruntime must give tract's probabilities on every ONNX layout (it runs the same
//! backbone cut out of the protobuf), `auto` must say what it picked and why, a missing library
//! must be one clear sentence, and more threads must not change a result.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cvedge::classifier::{Classifier, LoadOptions};
use cvedge::engine::{EngineChoice, EngineOptions};
use cvedge::source::decode;

fn options(choice: EngineChoice, threads: usize) -> LoadOptions {
    LoadOptions { engine: EngineOptions { choice, threads, ..Default::default() }, ..Default::default() }
}

fn samples() -> Vec<(String, image::RgbImage)> {
    let dir = repo().join("models/samples");
    let mut out = vec![];
    for name in ["cat", "dog", "rocket"] {
        let bytes = std::fs::read(dir.join(format!("{name}.jpg"))).unwrap();
        out.push((name.to_owned(), decode(&bytes, name).unwrap()));
    }
    out
}

/// Every ONNX model the repository and the fixtures hold.
fn onnx_models() -> Vec<PathBuf> {
    let mut models = vec![repo().join("models/demo"), repo().join("models/demo-fp16")];
    for entry in std::fs::read_dir(repo().join("models/conformance")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("onnx-") {
            models.push(path);
        }
    }
    if let Some(fixtures) = fixtures() {
        for name in ["onnx-catdog-2018", "onnx-officefruit-2018"] {
            models.push(fixtures.join(name));
        }
    }
    models.sort();
    models
}

fn assert_engines_agree(model: &Path, tolerance: f32) {
    let tract = Classifier::load(model, &options(EngineChoice::Tract, 1)).unwrap();
    let ort = Classifier::load(model, &options(EngineChoice::OnnxRuntime, 1)).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    assert_eq!(ort.engine.name(), "onnxruntime");
    assert_eq!(ort.labels, tract.labels);
    // onnxruntime reads the export without tract's graph of the backbone: what it learns from the
    // protobuf and the tail must be what tract learns from the whole graph.
    let what = |c: &Classifier| (c.facts.generation, c.facts.activation, c.facts.split_at.is_some(), c.facts.precision, c.kind, c.engine.input().clone(), c.engine.output_width(), c.head.tags());
    assert_eq!(what(&ort), what(&tract), "{}", model.display());
    assert_eq!(ort.preprocessor.conventions, tract.preprocessor.conventions, "{}", model.display());
    // What tract does to run a graph is tract's: onnxruntime computes fp16 exports in fp16.
    assert!(!ort.facts.notes.iter().any(|n| n.contains("fp16 graph in f32")), "{:?}", ort.facts.notes);
    for (name, image) in samples() {
        let want = tract.classify(&image).unwrap().probabilities;
        let got = ort.classify(&image).unwrap().probabilities;
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= tolerance, "{} {name}: onnxruntime {got:?} vs tract {want:?}", model.display());
        }
    }
}

#[test]
fn onnxruntime_agrees_with_tract_on_every_onnx_layout() {
    if !require_onnxruntime() {
        return;
    }
    for model in onnx_models() {
        // fp16 exports run in fp16 in onnxruntime and in f32 in tract.
        let tolerance = if model.ends_with("demo-fp16") { 2e-3 } else { 1e-4 };
        assert_engines_agree(&model, tolerance);
    }
}

#[test]
fn onnxruntime_runs_tflite_and_tensorflow_exports_through_their_onnx_twins() {
    if !require_onnxruntime() {
        return;
    }
    let mut models: Vec<PathBuf> = ["tflite-2019-fp32", "tflite-2025-fp16", "tf-frozen"].iter().map(|m| repo().join("models/conformance").join(m)).collect();
    if let Some(fixtures) = fixtures() {
        models.extend(["tflite-fp16-appleorange-2025", "tf-bananas-2018"].iter().map(|m| fixtures.join(m)));
    }
    for model in models {
        assert_engines_agree(&model, 1e-4);
        let ort = Classifier::load(&model, &options(EngineChoice::OnnxRuntime, 1)).unwrap();
        assert!(ort.facts.notes.iter().any(|n| n.contains("as ONNX for onnxruntime")), "{:?}", ort.facts.notes);
    }
}

#[test]
fn auto_picks_an_engine_that_agrees_and_says_so() {
    let ort = require_onnxruntime();
    let model = repo().join("models/demo");
    let auto = Classifier::load(&model, &options(EngineChoice::Auto, 1)).unwrap();
    let note = auto.facts.notes.iter().find(|n| n.starts_with("engine auto")).expect("auto explains its pick");
    assert!(note.contains(auto.engine.name()), "{note}");
    if ort {
        assert!(note.contains("agree"), "{note}");
    }
    let tract = Classifier::load(&model, &options(EngineChoice::Tract, 1)).unwrap();
    for (name, image) in samples() {
        let (a, t) = (auto.classify(&image).unwrap().probabilities, tract.classify(&image).unwrap().probabilities);
        assert_eq!(argmax(&a), argmax(&t), "{name}");
        assert_close(&name, &a, &t);
    }
    // TFLite exports are candidates too (onnxruntime runs their ONNX twin).
    let model = repo().join("models/conformance/tflite-2019-fp32");
    let tflite = Classifier::load(&model, &options(EngineChoice::Auto, 1)).unwrap();
    let note = tflite.facts.notes.iter().find(|n| n.starts_with("engine auto")).expect("auto explains its pick");
    if ort {
        assert!(note.contains("onnxruntime") && note.contains("agree"), "{note}");
    }
    let tract = Classifier::load(&model, &options(EngineChoice::Tract, 1)).unwrap();
    for (name, image) in samples() {
        assert_close(&name, &tflite.classify(&image).unwrap().probabilities, &tract.classify(&image).unwrap().probabilities);
    }
}

#[test]
fn threads_do_not_change_results() {
    let model = repo().join("models/demo");
    let mut engines = vec![EngineChoice::Tract];
    if require_onnxruntime() {
        engines.push(EngineChoice::OnnxRuntime);
    }
    for engine in engines {
        let one = Classifier::load(&model, &options(engine, 1)).unwrap();
        let all = Classifier::load(&model, &options(engine, 0)).unwrap();
        for (name, image) in samples() {
            assert_close(&format!("{engine} {name}"), &all.classify(&image).unwrap().probabilities, &one.classify(&image).unwrap().probabilities);
        }
    }
}

#[test]
fn a_missing_library_is_one_clear_sentence_and_auto_falls_back() {
    let run = |engine: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cvedge"))
            .args(["predict", "--engine", engine, "--model", "models/demo", "models/samples/cat.jpg"])
            .env("CVEDGE_ONNXRUNTIME", "/nonexistent/libonnxruntime.so.1")
            .current_dir(repo())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, _, stderr) = run("onnxruntime");
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/libonnxruntime.so.1") && stderr.contains("scripts/install_onnxruntime.sh"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
    let (ok, stdout, stderr) = run("auto");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cat"), "{stdout}");
}

#[test]
fn onnxruntime_runs_the_whole_graph_when_asked_not_to_split() {
    if !require_onnxruntime() {
        return;
    }
    for model in [repo().join("models/demo"), repo().join("models/conformance/onnx-opset7-sigmoid")] {
        let whole = |choice| LoadOptions { engine: EngineOptions { choice, split: false, ..Default::default() }, ..Default::default() };
        let ort = Classifier::load(&model, &whole(EngineChoice::OnnxRuntime)).unwrap();
        let tract = Classifier::load(&model, &whole(EngineChoice::Tract)).unwrap();
        assert_eq!(ort.facts.split_at, None);
        assert_eq!((ort.facts.activation, ort.kind), (tract.facts.activation, tract.kind), "{}", model.display());
        for (name, image) in samples() {
            assert_close(&format!("{} {name}", model.display()), &ort.classify(&image).unwrap().probabilities, &tract.classify(&image).unwrap().probabilities);
        }
    }
}

/// A stand-in `libonnxruntime.so.1` that dies as soon as it is loaded: with SIGILL, as a library
/// built for instructions the CPU lacks does, or with a real segmentation fault (a write through
/// a null pointer: Rust's own SIGSEGV handler lets a merely raised one pass), as one whose CPU
/// detection crashes under qemu.
fn library_dying_with(dir: &Path, signal: &str) -> PathBuf {
    let source = dir.join(format!("{signal}.c"));
    let die = match signal {
        "SIGILL" => "raise(SIGILL);",
        _ => "*(volatile int *)0 = 0;",
    };
    std::fs::write(&source, format!("#include <signal.h>\n__attribute__((constructor)) static void die(void) {{ {die} }}\n")).unwrap();
    let library = dir.join(format!("{signal}.so"));
    // Test binaries cross-built for ARM (scripts/arm_check.sh runs them under qemu) need a library
    // of their own architecture: the cross compiler comes in CVEDGE_TEST_CC.
    let cc = std::env::var("CVEDGE_TEST_CC").unwrap_or_else(|_| "cc".to_string());
    let status = std::process::Command::new(&cc).args(["-shared", "-fPIC", "-o"]).arg(&library).arg(&source).status().unwrap_or_else(|e| panic!("{cc} (build-essential) is needed: {e}"));
    assert!(status.success());
    library
}

#[test]
fn a_library_that_crashes_on_this_cpu_is_tried_in_a_child_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (signal, said) in [("SIGILL", "illegal instruction"), ("SIGSEGV", "crashed (signal 11)")] {
        let library = library_dying_with(dir.path(), signal);
        let run = |engine: &str| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_cvedge"))
                .args(["predict", "--engine", engine, "--model", "models/demo", "models/samples/cat.jpg"])
                .env("CVEDGE_ONNXRUNTIME", &library)
                .current_dir(repo())
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        // cvedge itself survives and says what happened, in one sentence.
        let (code, _, stderr) = run("onnxruntime");
        assert_eq!(code, Some(1), "{signal}: {stderr}");
        assert!(stderr.contains(said) && stderr.contains("--engine tract"), "{signal}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
        let (code, stdout, stderr) = run("auto");
        assert_eq!(code, Some(0), "{signal}: {stderr}");
        assert!(stdout.contains("cat"), "{stdout}");
    }
}

/// A graph tract accepts at load can still panic in a kernel: here an out-of-bounds Gather on a
/// bright image (tests/data/corrupt/crashes_tract, made by scripts/make_test_images.py). The
/// panic is that image's error, and the same classifier goes on classifying.
#[test]
fn a_panic_inside_tract_fails_one_image_and_the_engine_goes_on() {
    let classifier = Classifier::load(&repo().join("tests/data/corrupt/crashes_tract"), &options(EngineChoice::Tract, 1)).unwrap();
    let black = image::RgbImage::from_pixel(64, 64, image::Rgb([0, 0, 0]));
    let white = image::RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]));
    assert_eq!(classifier.classify(&black).unwrap().probabilities.len(), 3);
    let error = classifier.classify(&white).unwrap_err().to_string();
    assert!(error.contains("the tract engine crashed"), "{error}");
    assert_eq!(classifier.classify(&black).unwrap().probabilities.len(), 3, "the engine no longer classifies after the panic");
}
