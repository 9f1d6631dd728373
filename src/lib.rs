//! cvedge: run Azure Custom Vision compact-domain classifier exports on the edge.
//!
//! # Layout
//! A classification is a pipeline of five stages, each a module with one small trait, shared by
//! every command (`predict` today; the daemon, trainer and benchmarks later):
//!
//! ```text
//! source ──frames──▶ preprocess ──tensor──▶ engine (backbone) ──features──▶ head ──probabilities──▶ sinks
//! ```
//!
//! - [`package`]: finds the model file, `labels.txt`, `cvexport.manifest` and
//!   `metadata_properties.json` in a zip, a folder or beside a bare model file, and detects the
//!   model format from its bytes.
//! - [`source`]: produces decoded, EXIF-upright RGB frames ([`source::Source`]).
//! - [`preprocess`]: reproduces the cloud's resize/crop recipe, colour order and value range
//!   ([`preprocess::Preprocessor`]).
//! - [`engine`]: runs the export's backbone, everything up to the input of the final fully
//!   connected layer ([`engine::Engine`]): tract (every format, the reference) or onnxruntime
//!   (ONNX, loaded at run time), or `auto`, the fastest that agrees with tract. No engine's types
//!   leave its module.
//! - [`head`]: the final fully connected layer and its activation ([`head::Head`]), split out of the
//!   export so a head trained on the device can replace it.
//! - [`sink`]: where results go (JSON lines, a table, MQTT) ([`sink::Sink`]).
//!
//! Around the stages: [`daemon`] (`cvedge run`: cameras, latest-frame-wins, smoothing, MQTT,
//! capture commands and review frames),
//! [`config`] (its validated TOML), [`dataset`] (tagged captures for training), [`train`] and
//! [`iteration`] (heads trained on the device), [`export`] (iterations back to ONNX exports),
//! [`convert`] (TFLite and TensorFlow graphs as ONNX, so every export can be exported and quantized),
//! [`quantize`] (int8 on the device, calibrated on its captures, behind an accuracy gate),
//! [`serve`] (`cvedge serve`: the Custom Vision container's prediction API over HTTP).
//!
//! [`classifier::Classifier`] assembles package, preprocessing, engine and head from an export;
//! [`prediction`] holds the cloud's prediction JSON.

mod backoff;
pub mod classifier;
pub mod config;
pub mod convert;
pub mod daemon;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod export;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod head;
pub mod iteration;
pub mod memory;
pub mod package;
pub mod prediction;
pub mod preprocess;
pub mod quantize;
pub mod serve;
pub mod sink;
pub mod source;
mod tls;
pub mod train;

pub use classifier::{Classifier, LoadOptions};
pub use error::{Error, Result};

/// Starts a named thread (the name shows in logs, `top -H` and panics); failing to is an error.
pub(crate) fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(body).map_err(|e| Error::Inference(format!("cannot start a thread: {e}")))
}
