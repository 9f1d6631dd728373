//! The onnxruntime engine: the backbone cut out of the ONNX protobuf (the same cut tract's split
//! makes; TFLite and TensorFlow exports are first rewritten as ONNX by [`crate::convert`]) run by
//! onnxruntime's CPU kernels, several times faster than tract and with real int8
//! kernels for `cvedge quantize`'s QDQ models.
//!
//! Nothing is linked at build time: `libonnxruntime.so.1` (>= 1.30) is loaded when the engine is
//! first asked for, from the first of these that exists:
//! `$CVEDGE_ONNXRUNTIME`, `$ORT_DYLIB_PATH`, beside the binary, `../lib/cvedge/` from the binary,
//! `/usr/local/lib/cvedge/`, `/usr/lib/cvedge/`, `~/.local/lib/cvedge/` (where
//! `scripts/install_onnxruntime.sh` puts it), then the system's library path.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorRef};
use prost::Message;

use tract_onnx::pb::ModelProto;

use super::{onnx, tract, EngineOptions, Generation, GraphFacts, InputSpec, TensorType};
use crate::error::{Error, Result};
use crate::head::{Head, PassThrough};
use crate::package::{ExportPackage, ModelFormat};

const ENGINE: &str = "onnxruntime";
const LIBRARY: &str = "libonnxruntime.so.1";
const NO_ARM32: &str = "there is no onnxruntime library for 32-bit ARM (this is cvedge's armv7 build, for 32-bit Raspberry Pi OS)";
const INSTALL: &str = "install it with scripts/install_onnxruntime.sh (or point CVEDGE_ONNXRUNTIME at the file), or use --engine tract";

/// Where the library may be, in the order they are tried.
fn candidates() -> Vec<PathBuf> {
    // `$CVEDGE_ONNXRUNTIME` is not among them: a path the user named is used or reported.
    let mut paths: Vec<PathBuf> = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).map(PathBuf::from).into_iter().collect();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)) {
        paths.push(dir.join(LIBRARY));
        paths.push(dir.join("../lib/cvedge").join(LIBRARY));
    }
    paths.push(PathBuf::from("/usr/local/lib/cvedge").join(LIBRARY));
    paths.push(PathBuf::from("/usr/lib/cvedge").join(LIBRARY));
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(home).join(".local/lib/cvedge").join(LIBRARY));
    }
    paths
}

/// Loads the library once per process (onnxruntime allows one environment per process).
fn environment() -> Result<&'static Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    let explicit = std::env::var_os("CVEDGE_ONNXRUNTIME").filter(|v| !v.is_empty()).map(PathBuf::from);
    // Microsoft ships no 32-bit ARM library (scripts/install_onnxruntime.sh has none to install):
    // on armv7 the engine is refused by name, not after a search that cannot succeed and a hint
    // to install what does not exist. A library the user built and named is still tried.
    if cfg!(target_arch = "arm") && explicit.is_none() {
        return Err(Error::engine(ENGINE, NO_ARM32, "use --engine tract or auto (which runs tract here); 64-bit Raspberry Pi OS with the arm64 package can use onnxruntime"));
    }
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = match &explicit {
            Some(path) => path.clone(),
            None => candidates().into_iter().find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(LIBRARY)),
        };
        super::onnxruntime_probe::check(&path)?;
        start(&path, explicit.is_some())
    });
    loaded.as_ref().map_err(|problem| Error::engine(ENGINE, problem.clone(), INSTALL))
}

/// Loads the library at `path` and starts onnxruntime; the error is the problem in one sentence.
/// `explicit`: the user named the path (`CVEDGE_ONNXRUNTIME`).
pub(super) fn start(path: &Path, explicit: bool) -> std::result::Result<Environment, String> {
    let builder = ort::init_from(path).map_err(|e| match explicit {
        true => format!("CVEDGE_ONNXRUNTIME names {}, which cannot be loaded ({e})", path.display()),
        false => format!("{LIBRARY} (onnxruntime 1.30 or newer) was not found or cannot be loaded ({e})"),
    })?;
    builder.with_name("cvedge").with_telemetry(false).build().map_err(|e| format!("onnxruntime failed to start ({e})"))
}

/// Whether the library can be loaded here (for `auto` and `cvedge bench`).
pub fn available() -> bool {
    environment().is_ok()
}

pub struct OrtEngine {
    session: Mutex<Session>,
    input: InputSpec,
    output_width: usize,
}

fn ort_error(e: impl std::fmt::Display) -> Error {
    Error::engine(ENGINE, format!("onnxruntime refused the model ({e})"), "use --engine tract, and report the model so it can be fixed")
}

/// The export's graph as ONNX bytes: its own, or for TFLite and TensorFlow exports their
/// [`crate::convert::engine_twin`] (which takes the source's own input tensor), with what the
/// source says about itself.
fn onnx_graph<'a>(package: &ExportPackage, bytes: &'a [u8]) -> Result<(Cow<'a, [u8]>, Option<crate::convert::Io>)> {
    if package.format == ModelFormat::Onnx {
        return Ok((Cow::Borrowed(bytes), None));
    }
    let (twin, io) = crate::convert::engine_twin(bytes, package.format, &package.model_path)?;
    Ok((Cow::Owned(twin.encode_to_vec()), Some(io)))
}

/// The twin's facts are the source's: its generation decides the preprocessing.
fn source_facts(facts: &mut GraphFacts, format: ModelFormat, io: crate::convert::Io) {
    facts.generation = if format == ModelFormat::TfLite { Generation::TfLite } else { Generation::TfFrozenGraph };
    facts.has_mean_layer = io.has_mean_layer;
    facts.output_name = io.output_name;
    facts.notes.push(format!("rewritten from {format} as ONNX for onnxruntime"));
}

/// Loads an ONNX export with onnxruntime alone: facts and input from the protobuf, the backbone
/// cut out of it, the head read by tract from the few nodes after the cut. When that tail is not
/// a linear layer (or `options.split` is off) onnxruntime runs the whole graph and the head
/// passes its output through, as tract does.
pub fn analyse(package: &mut ExportPackage, options: &EngineOptions) -> Result<(OrtEngine, Box<dyn Head>, GraphFacts)> {
    let environment = environment()?;
    let path = package.model_path.as_path();
    // Nothing reads the bytes after this: freed before the session is made, they stay out of the
    // peak memory (the fallback below reads the file again).
    let original = std::mem::take(&mut package.model_bytes);
    let (bytes, source) = onnx_graph(package, &original)?;
    let (mut proto, ofacts) = onnx::prepare(path, &bytes)?;
    let opset = ofacts.opset;
    let mut facts = onnx::graph_facts(&proto, ofacts);
    if let Some(io) = source {
        source_facts(&mut facts, package.format, io);
    }
    let input = onnx::input_spec(path, &proto)?;
    let activation = onnx::final_activation(&proto);
    let tail = if options.split { crate::export::cut_tail(path, &proto).ok() } else { None };
    if tail.is_some() {
        crate::export::cut_backbone(path, &mut proto, &bytes, opset)?;
    }
    drop(bytes);
    drop(original);
    let (engine, per_image) = OrtEngine::new(environment, proto, input, options)?;
    if let Some((features, tail)) = tail {
        if let Ok(Some(head)) = tract::tail_head(path, &tail, &per_image, engine.input.dtype) {
            facts.activation = head.activation();
            facts.split_at = Some(features);
            return Ok((engine, head, facts));
        }
        drop(engine);
        let mut package = ExportPackage::load(&package.origin)?;
        return analyse(&mut package, &EngineOptions { split: false, ..options.clone() });
    }
    facts.activation = activation;
    let head = Box::new(PassThrough { tags: engine.output_width, activation });
    Ok((engine, head, facts))
}

impl OrtEngine {
    /// A session on `proto` (consumed: its bytes are dropped as soon as the session has them),
    /// and the shape of one image's output.
    fn new(environment: &Environment, proto: ModelProto, input: InputSpec, options: &EngineOptions) -> Result<(OrtEngine, Vec<usize>)> {
        let bytes = proto.encode_to_vec();
        drop(proto);
        let threads = options.resolved_threads();
        let mut builder = Session::builder(environment)
            .map_err(ort_error)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .and_then(|b| b.with_intra_threads(threads))
            .and_then(|b| b.with_inter_threads(1))
            .map_err(ort_error)?;
        let session = builder.commit_from_memory(&bytes).map_err(ort_error)?;
        let mut engine = OrtEngine { session: Mutex::new(session), input, output_width: 0 };
        // One run of a single image learns the output's shape (and warms the session up).
        let (shape, out) = engine.run_shaped(&vec![0f32; engine.input.width * engine.input.height * 3])?;
        engine.output_width = out.len();
        Ok((engine, shape.iter().map(|d| *d as usize).collect()))
    }

    /// The backbone tract found (`split`: cut at the final layer's input, as tract cut it), from
    /// `package`'s ONNX graph; `auto` compares it with tract's.
    pub fn load(package: &ExportPackage, input: &InputSpec, output_width: usize, split: bool, options: &EngineOptions) -> Result<OrtEngine> {
        let environment = environment()?;
        let (bytes, _) = onnx_graph(package, &package.model_bytes)?;
        let (mut proto, facts) = onnx::prepare(&package.model_path, &bytes)?;
        if split {
            crate::export::cut_backbone(&package.model_path, &mut proto, &bytes, facts.opset)?;
        }
        drop(bytes);
        // The same tensor as tract's, under the name the graph gives it (a twin keeps the source's).
        let name = onnx::input_spec(&package.model_path, &proto)?.name;
        let (engine, _) = OrtEngine::new(environment, proto, InputSpec { name, ..input.clone() }, options)?;
        if engine.output_width != output_width {
            return Err(Error::engine(
                ENGINE,
                format!("the backbone it runs gives {} values where tract's gives {output_width}", engine.output_width),
                "use --engine tract, and report the model so it can be fixed",
            ));
        }
        Ok(engine)
    }

    /// Runs one image; returns the output's shape and values.
    fn run_shaped(&self, image: &[f32]) -> Result<(Vec<i64>, Vec<f32>)> {
        let shape = self.input.shape(1).map(|d| d as i64).to_vec();
        let inference = |e: ort::Error| Error::Inference(format!("onnxruntime: {e}"));
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = match self.input.dtype {
            TensorType::F32 => {
                // A view of the caller's buffer: no copy of the image per frame.
                let tensor = TensorRef::from_array_view((shape, image)).map_err(inference)?;
                session.run(ort::inputs![self.input.name.as_str() => tensor]).map_err(inference)?
            }
            TensorType::F16 => {
                let half: Vec<half::f16> = image.iter().map(|v| half::f16::from_f32(*v)).collect();
                let tensor = Tensor::from_array((shape, half)).map_err(inference)?;
                session.run(ort::inputs![self.input.name.as_str() => tensor]).map_err(inference)?
            }
        };
        let output = &outputs[0];
        match output.try_extract_tensor::<f32>() {
            Ok((shape, values)) => Ok((shape.to_vec(), values.to_vec())),
            Err(_) => {
                let (shape, values) = output.try_extract_tensor::<half::f16>().map_err(inference)?;
                Ok((shape.to_vec(), values.iter().map(|v| v.to_f32()).collect()))
            }
        }
    }
}

impl super::Engine for OrtEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn input(&self) -> &InputSpec {
        &self.input
    }

    fn output_width(&self) -> usize {
        self.output_width
    }

    fn run_one(&self, image: &[f32]) -> Result<Vec<f32>> {
        self.run_shaped(image).map(|(_, values)| values)
    }
}
