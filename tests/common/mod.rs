//! Shared test helpers: where the fixtures are, the golden outputs, tolerances.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cvedge::preprocess::Preprocess;

use serde::Deserialize;

pub mod browser;
pub mod serve;

/// Probabilities must match the reference runtime this closely.
pub const TOLERANCE: f32 = 1e-3;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$CVEDGE_FIXTURES`, default `../shared/fixtures/exports`; `None` (and a message saying the
/// test is skipped) where they are absent, as in a user's clone. CI always has them.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CVEDGE_FIXTURES").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/fixtures/exports"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no Custom Vision fixtures at {} (set CVEDGE_FIXTURES)", dir.display());
        None
    }
}

#[derive(Debug, Deserialize)]
pub struct GoldenModel {
    pub recipe: Option<String>,
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Vec<f32>>,
}

#[derive(Debug, Deserialize)]
pub struct Golden {
    pub models: BTreeMap<String, GoldenModel>,
}

pub fn golden() -> Golden {
    let path = repo().join("tests/golden/reference_outputs.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden JSON")
}

pub fn golden_for(key: &str) -> GoldenModel {
    golden().models.remove(key).unwrap_or_else(|| panic!("no golden outputs for {key}: run scripts/reference_outputs.py"))
}

/// Asserts every probability is within [`TOLERANCE`] of the reference.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: {} probabilities, reference has {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOLERANCE, "{what}: output {i} is {g}, reference {w} (got {got:?}, want {want:?})");
    }
}

/// Asserts every probability is within `tolerance` of the one expected.
pub fn assert_near(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: {} probabilities, expected {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance, "{what}: output {i} is {g}, expected {w} (got {got:?}, want {want:?})");
    }
}

pub fn argmax(v: &[f32]) -> usize {
    cvedge::head::top(v).expect("non-empty")
}

/// How many times longer than on a real machine a test may wait for the daemon: under qemu
/// (scripts/arm_check.sh sets CVEDGE_TEST_SLOWDOWN) starting it takes tens of seconds.
pub fn slowdown() -> u64 {
    std::env::var("CVEDGE_TEST_SLOWDOWN").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// What a `cvedge` command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs the `cvedge` binary from the repository root, as a user would.
pub fn cvedge(args: &[&str]) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cvedge")).args(args).current_dir(repo()).output().expect("run cvedge");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A child process (daemon, ffmpeg) that is killed when the test ends, even by a panic, so a
/// failing test never leaves a process spinning on the machine.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `done` every 50 ms until it holds; panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to `child` and returns how it exited; panics if it still runs after `within`.
pub fn sigterm_and_wait(child: &mut Child, within: Duration) -> ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success(), "kill -TERM {pid}");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < within, "process {pid} still running {within:?} after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names in folder `dir`, sorted; none when it does not exist.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    names
}

/// Starts `cvedge ARGS` (output discarded), waits until it exits or `ready()` holds (polled every
/// 200 µs), then `after` more, and kills it with SIGKILL. Returns whether `ready()` held while
/// cvedge still ran: false means it ended first, and the kill tested nothing.
#[must_use]
pub fn kill_cvedge_when(args: &[&str], mut ready: impl FnMut() -> bool, after: Duration) -> bool {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cvedge")).args(args).current_dir(repo()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start cvedge"),
    );
    let landed = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if ready() {
            break true;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    std::thread::sleep(after);
    landed
    // KillOnDrop's drop: SIGKILL, then wait.
}

/// Whether CI's `CVEDGE_REQUIRE_PEERS=1` is set: `.ci/run` installs every peer a test uses (the
/// reference runtimes, curl, requests, chromium), so there a missing one is a failure.
pub fn peers_required() -> bool {
    std::env::var("CVEDGE_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// A peer the test needs is missing: a failure in CI, elsewhere (a user's clone) a skip that says
/// how to install it.
pub fn peer_missing(what: &str, install: &str) {
    assert!(!peers_required(), "CVEDGE_REQUIRE_PEERS=1 but {what}: {install}");
    eprintln!("skipped: {what} ({install})");
}

/// Whether the onnxruntime library cvedge's engine loads is there; with `CVEDGE_REQUIRE_PEERS=1`
/// (CI) it must be.
pub fn require_onnxruntime() -> bool {
    let available = cvedge::engine::onnxruntime_available();
    if !available {
        peer_missing("libonnxruntime.so.1 cannot be loaded", "run scripts/install_onnxruntime.sh");
    }
    available
}

/// Whether Python's onnxruntime (the reference runtime) can be used; with `CVEDGE_REQUIRE_PEERS=1` (CI) it must be.
pub fn python_onnxruntime() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        Command::new("python3").args(["-c", "import onnxruntime"]).output().map(|o| o.status.success()).unwrap_or(false)
    });
    if !available {
        peer_missing("`python3 -c \"import onnxruntime\"` fails", "pip install onnxruntime");
    }
    available
}

/// Runs `scripts/run_onnx.py` on the images preprocessed as `classifier` does.
pub fn onnxruntime_probabilities(model: &Path, classifier: &cvedge::Classifier, frames: &[image::RgbImage]) -> Vec<Vec<f32>> {
    let p = &classifier.preprocessor;
    let mut tensor = vec![0f32; p.tensor_len() * frames.len()];
    for (frame, chunk) in frames.iter().zip(tensor.chunks_exact_mut(p.tensor_len())) {
        p.prepare(frame, chunk);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tensor.f32");
    std::fs::write(&file, tensor.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let shape = match p.layout {
        cvedge::preprocess::Layout::Nchw => [frames.len(), 3, p.height, p.width],
        cvedge::preprocess::Layout::Nhwc => [frames.len(), p.height, p.width, 3],
    };
    let shape = shape.map(|d| d.to_string()).join(",");
    let out = Command::new("python3")
        .arg(repo().join("scripts/run_onnx.py"))
        .arg(model)
        .arg(&file)
        .arg(&shape)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "run_onnx.py {}: {}", model.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("run_onnx.py output: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A small tmpfs mounted on a temp dir, to make a disk full on purpose; unmounted on drop.
/// `None` (and a message saying the test is skipped) where mounting is not permitted (not root).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: needs root for a tmpfs (a disk to fill)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with one file (`fill`) until a write fails; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("fill");
        let mut file = std::fs::File::create(&path).unwrap();
        for size in [65536, 4096, 1] {
            while file.write_all(&vec![0u8; size]).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
