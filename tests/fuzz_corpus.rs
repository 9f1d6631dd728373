//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets' entry
//! points (`cvedge::fuzzing`) on stable Rust, so CI, which has no nightly toolchain for
//! `cargo fuzz`, still fails when a crash the fuzzer once found comes back. Every input must
//! finish without a panic in cvedge's code (caught or not) and without hanging.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cvedge::fuzzing::{install_panic_hook, OWN_PANICS, TARGETS};

/// Far above what any input takes (milliseconds); only a hang gets near it.
const HANG: Duration = Duration::from_secs(60);

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; every fuzz target has a committed corpus", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one input on a thread of its own, so a panic is attributed to it and a hang times out.
fn replay(target: &str, run: fn(&[u8]), file: &Path) -> Result<(), String> {
    let data = std::fs::read(file).unwrap();
    let before = OWN_PANICS.load(Ordering::SeqCst);
    let (done, finished) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(target.to_string())
        .spawn(move || {
            run(&data);
            let _ = done.send(());
        })
        .unwrap();
    match finished.recv_timeout(HANG) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(format!("{target}: {} panicked", file.display())),
        // The thread cannot be stopped; the test fails and the process ends with it.
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("{target}: {} ran for more than {HANG:?}", file.display())),
    }
    worker.join().map_err(|_| format!("{target}: {} panicked", file.display()))?;
    if OWN_PANICS.load(Ordering::SeqCst) != before {
        return Err(format!("{target}: {} panicked in cvedge's code (the panic was caught, but it is a bug)", file.display()));
    }
    Ok(())
}

#[test]
fn committed_fuzz_corpora_replay_without_panics_or_hangs() {
    install_panic_hook();
    let started = Instant::now();
    let mut failures = vec![];
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        let target_started = Instant::now();
        failures.extend(files.iter().filter_map(|file| replay(target, run, file).err()));
        eprintln!("{target}: {} inputs in {:.1} s", files.len(), target_started.elapsed().as_secs_f64());
    }
    eprintln!("all corpora in {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A model tract panics on (found by fuzzing) is refused with an error naming the file, the
/// same as any other damaged model, instead of taking down the process loading it.
#[test]
fn a_graph_tract_panics_on_is_a_model_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.tflite");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/model_bytes/regression-tract-panic-tflite-tensor-shape"), &model).unwrap();
    std::fs::write(dir.path().join("labels.txt"), "a\nb\n").unwrap();
    let err = cvedge::Classifier::load(&model, &cvedge::LoadOptions::default()).err().expect("the model is refused").to_string();
    assert!(err.starts_with(&model.display().to_string()) && err.contains("the tract engine crashed while reading the graph"), "{err}");
}
