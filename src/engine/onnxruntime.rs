//! The onnxruntime engine: the backbone cut out of the ONNX protobuf (the same cut tract's split
//! makes) run by onnxruntime's CPU kernels, several times faster than tract and with real int8
//! kernels for `cvedge quantize`'s QDQ models.
//!
//! Nothing is linked at build time: `libonnxruntime.so.1` (>= 1.30) is loaded when the engine is
//! first asked for, from the first of these that exists:
//! `$CVEDGE_ONNXRUNTIME`, `$ORT_DYLIB_PATH`, beside the binary, `../lib/cvedge/` from the binary,
//! `/usr/local/lib/cvedge/`, `/usr/lib/cvedge/`, `~/.local/lib/cvedge/` (where
//! `scripts/install_onnxruntime.sh` puts it), then the system's library path.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorRef};
use prost::Message;

use super::tract::Analysed;
use super::{onnx, EngineOptions, InputSpec, TensorType};
use crate::error::{Error, Result};
use crate::package::{ExportPackage, ModelFormat};
use crate::preprocess::Layout;

const ENGINE: &str = "onnxruntime";
const LIBRARY: &str = "libonnxruntime.so.1";
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
    let loaded = ENVIRONMENT.get_or_init(|| {
        let explicit = std::env::var_os("CVEDGE_ONNXRUNTIME").filter(|v| !v.is_empty()).map(PathBuf::from);
        let path = match &explicit {
            Some(path) => path.clone(),
            None => candidates().into_iter().find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(LIBRARY)),
        };
        let builder = ort::init_from(&path).map_err(|e| match &explicit {
            Some(_) => format!("CVEDGE_ONNXRUNTIME names {}, which cannot be loaded ({e})", path.display()),
            None => format!("{LIBRARY} (onnxruntime 1.30 or newer) was not found or cannot be loaded ({e})"),
        })?;
        builder.with_name("cvedge").with_telemetry(false).build().map_err(|e| format!("onnxruntime failed to start ({e})"))
    });
    loaded.as_ref().map_err(|problem| Error::engine(ENGINE, problem.clone(), INSTALL))
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

impl OrtEngine {
    /// The backbone tract found in `analysed`, cut out of `package`'s ONNX graph.
    pub fn load(package: &ExportPackage, analysed: &Analysed, options: &EngineOptions) -> Result<OrtEngine> {
        if package.format != ModelFormat::Onnx {
            return Err(Error::engine(
                ENGINE,
                format!("it runs ONNX exports only, and {} is {}", package.model_path.display(), package.format),
                "use --engine tract (or auto), or export the project from Custom Vision as ONNX",
            ));
        }
        let environment = environment()?;
        let (mut proto, facts) = onnx::prepare(&package.model_path, &package.model_bytes)?;
        if analysed.facts.split_at.is_some() {
            crate::export::cut_backbone(&package.model_path, &mut proto, &package.model_bytes, facts.opset)?;
        }
        let bytes = proto.encode_to_vec();
        let threads = options.resolved_threads();
        let mut builder = Session::builder(environment)
            .map_err(ort_error)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .and_then(|b| b.with_intra_threads(threads))
            .and_then(|b| b.with_inter_threads(1))
            .map_err(ort_error)?;
        let session = builder.commit_from_memory(&bytes).map_err(ort_error)?;
        let engine = OrtEngine { session: Mutex::new(session), input: analysed.input.clone(), output_width: analysed.output_width };
        // One run proves the cut gives what the head reads (and warms the session up).
        let probe = vec![0f32; engine.input.width * engine.input.height * 3];
        let out = super::Engine::run_one(&engine, &probe)?;
        if out.len() != engine.output_width {
            return Err(Error::engine(
                ENGINE,
                format!("the backbone it runs gives {} values where tract's gives {}", out.len(), engine.output_width),
                "use --engine tract, and report the model so it can be fixed",
            ));
        }
        Ok(engine)
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
        let shape: Vec<i64> = match self.input.layout {
            Layout::Nchw => vec![1, 3, self.input.height as i64, self.input.width as i64],
            Layout::Nhwc => vec![1, self.input.height as i64, self.input.width as i64, 3],
        };
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
            Ok((_, values)) => Ok(values.to_vec()),
            Err(_) => {
                let (_, values) = output.try_extract_tensor::<half::f16>().map_err(inference)?;
                Ok(values.iter().map(|v| v.to_f32()).collect())
            }
        }
    }
}
