//! Trying the onnxruntime library in a child process before it is let into cvedge's own.
//!
//! A library built for instructions the CPU lacks dies with SIGILL the moment it uses them, and
//! onnxruntime's CPU detection has crashed on emulated `/proc/cpuinfo` (qemu): in cvedge's own
//! process either would take the daemon, and every camera, down with it. So the `cvedge` binary
//! registers itself ([`register`]) and, the first time the library is needed,
//! `cvedge probe-onnxruntime LIB` loads it, starts it and runs a one-convolution model ([`run`]);
//! only a clean exit lets the library in, anything else becomes an engine error that says what
//! happened (and `auto` falls back to tract). Library users that do not register (tests,
//! embedders) load it directly.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::Tensor;
use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};

/// The probe's subcommand (hidden in `cvedge --help`).
pub const SUBCOMMAND: &str = "probe-onnxruntime";
/// Loading, starting and one small run take well under a second; a probe this slow is stuck.
const TIMEOUT: Duration = Duration::from_secs(30);

static EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every later library load go through `exe probe-onnxruntime LIB` first.
pub fn register(exe: PathBuf) {
    let _ = EXE.set(exe);
}

/// In the parent: whether `library` loads and runs in a child process (always `Ok` when no
/// binary was registered). The error is the problem, in one sentence.
pub fn check(library: &Path) -> Result<(), String> {
    let Some(exe) = EXE.get() else { return Ok(()) };
    let mut child = match Command::new(exe).arg(SUBCOMMAND).arg(library).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => {
            log::warn!("cannot start {} to try the onnxruntime library first ({e}); loading it directly", exe.display());
            return Ok(());
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not start within {} s in a test process", library.display(), TIMEOUT.as_secs()));
            }
        }
    };
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    let library = library.display();
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        // SIGILL
        (_, Some(4)) => {
            Err(format!("{library} stopped with an illegal instruction when tried in a test process: it was built for CPU instructions this processor lacks"))
        }
        (_, Some(signal)) => Err(format!(
            "{library} crashed (signal {signal}) when tried in a test process; under qemu this is its CPU detection reading an emulated /proc/cpuinfo"
        )),
        (Some(code), None) => Err(match said.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(line) => line.trim().to_owned(),
            // e.g. qemu-user without binfmt, which cannot start an ARM child.
            None => format!("{library} could not be tried: `{} {SUBCOMMAND}` exited with code {code} and said nothing", exe.display()),
        }),
        (None, None) => Err(format!("{library} failed in a test process")),
    }
}

/// In the child: load `library`, start it, run a one-convolution model. The error is one sentence.
pub fn run(library: &Path) -> Result<(), String> {
    let environment = super::onnxruntime::start(library, false)?;
    let refused = |e: ort::Error<_>| format!("onnxruntime cannot load a one-convolution model ({e})");
    let mut builder = Session::builder(&environment).map_err(|e| refused(e.into()))?.with_intra_threads(1).map_err(|e| refused(e.into()))?;
    let mut session = builder.commit_from_memory(&convolution().encode_to_vec()).map_err(refused)?;
    let image = Tensor::from_array(([1i64, 3, 8, 8], vec![1f32; 3 * 8 * 8])).map_err(|e| e.to_string())?;
    let outputs = session.run(ort::inputs!["x" => image]).map_err(|e| format!("onnxruntime failed to run a one-convolution model ({e})"))?;
    let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
    // All ones through a 3x3x3 kernel of ones, no padding: 27 everywhere.
    match values.iter().all(|v| (*v - 27.0).abs() < 1e-4) {
        true => Ok(()),
        false => Err(format!("{} computes a convolution wrong on this CPU", library.display())),
    }
}

/// `y = Conv(x[1,3,8,8], ones[4,3,3,3])` at opset 13.
fn convolution() -> ModelProto {
    let tensor_type = |dims: &[i64]| {
        let dim = dims.iter().map(|d| Dimension { value: Some(dimension::Value::DimValue(*d)), ..Default::default() }).collect();
        Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: DataType::Float as i32, shape: Some(TensorShapeProto { dim }) })),
            ..Default::default()
        })
    };
    let graph = GraphProto {
        name: "probe".into(),
        node: vec![NodeProto { op_type: "Conv".into(), input: vec!["x".into(), "w".into()], output: vec!["y".into()], ..Default::default() }],
        initializer: vec![TensorProto { name: "w".into(), dims: vec![4, 3, 3, 3], data_type: DataType::Float as i32, float_data: vec![1.0; 108], ..Default::default() }],
        input: vec![ValueInfoProto { name: "x".into(), r#type: tensor_type(&[1, 3, 8, 8]), ..Default::default() }],
        output: vec![ValueInfoProto { name: "y".into(), r#type: tensor_type(&[1, 4, 6, 6]), ..Default::default() }],
        ..Default::default()
    };
    ModelProto { ir_version: 7, opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }], graph: Some(graph), ..Default::default() }
}
