//! Writing a trained iteration back out as a standalone Custom Vision export (ONNX bases).
//!
//! A head trained on the device only makes sense on the backbone it was trained on, so the export
//! is the base export's own graph, cut at the input of its final fully connected layer (the same
//! place [`crate::engine`] splits it), with the new head appended. [`export_onnx`] writes a folder (whole:
//! under a hidden name beside it, then renamed, so a kill never leaves a part of one)
//! in the *current* Custom Vision layout, whatever generation the base was, because that is the
//! layout every consumer of ONNX exports (cvedge, onnxruntime, Windows ML, the Custom Vision
//! samples) reads without special cases:
//!
//! - `model.onnx`: input `data` (`[N,3,H,W]`, the base's element type), output `model_output`
//!   (`[N,tags]` probabilities): `… features -> Flatten(axis=1) -> Gemm(W, b, transB=1) ->
//!   Softmax(axis=1) | Sigmoid`. The base's cleaning (`engine::onnx::prepare`) is kept: ImageScaler
//!   becomes Mul + Add (opset 6, which cannot express that broadcast, keeps its ImageScaler), the
//!   `ai.onnx.ml` ZipMap/ArgMax tail is gone (and its opset import with it).
//!   The base's opset and IR version are kept, so a 2018 opset-7 export stays loadable by the
//!   runtimes that loaded the base. `OnnxFloat16` bases keep fp16 `data` and `model_output`; the
//!   head runs in float between two Casts, as cvedge computes it.
//! - `metadata_props` in the model say how to preprocess, as current exports do. A current base's
//!   are copied. A 2018-2020 base had none worth trusting, so the keys describing its real input
//!   are written: `Image.BitmapPixelFormat=Bgr8`, `Image.NominalPixelRange=NominalRange_0_255`,
//!   identity normalisation, and the resize/crop keys of the recipe its input size implies (none
//!   for 227 inputs: no key names the legacy square-256 recipe, and readers, cvedge included, fall
//!   back to the input size as they did for the base). `CustomVision.Postprocess.Method` always
//!   follows the new head (softmax: multiclass, sigmoid: multilabel). Loading the exported folder
//!   therefore picks the same recipe, colour order and range as the base did.
//! - `metadata_properties.json`: the same keys as `metadata_props` (current exports ship both,
//!   and cvedge reads the recipe from the file first). Written for every base, so the folder
//!   describes itself even when the base had no such file. The base package's own file is not
//!   read ([`export_onnx`] gets the model bytes only); for real ONNX exports the two agree.
//!   The model's producer becomes cvedge.
//! - `labels.txt`: one tag per line, in head order.
//! - `cvexport.manifest`: the exporter's JSON (`Platform` ONNX, `Flavor` null or `OnnxFloat16`,
//!   `ExporterVersion` 2.2, the caller's `IterationId`, the SHA1 of the written `model.onnx`).
//!
//! Each file is written atomically, the manifest last; export into a new folder per iteration.
//! TensorFlow and TFLite bases arrive here already rewritten as ONNX by [`crate::convert`].

mod graph;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::StringStringEntryProto;

use crate::engine::onnx;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::head::{Activation, LinearHead};
use crate::package::{detect, ModelFormat};
use crate::preprocess::{ColorOrder, ValueRange};

pub use graph::{cut_backbone, cut_tail, Cut, INPUT, OUTPUT};

pub const MODEL_FILE: &str = "model.onnx";
pub const LABEL_FILE: &str = "labels.txt";
pub const METADATA_FILE: &str = "metadata_properties.json";
pub const MANIFEST_FILE: &str = "cvexport.manifest";

/// What [`export_onnx`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub dir: PathBuf,
    /// The files written into `dir`, in order (the manifest last).
    pub files: Vec<&'static str>,
    /// The tensor the new head reads: the input of the base's final fully connected layer.
    pub features: String,
    pub width: usize,
    pub tags: usize,
    /// `OnnxFloat16` base: fp16 input and output.
    pub float16: bool,
    /// The base was a 2018-2020 export (ImageScaler, ZipMap), now in the current layout.
    pub legacy_base: bool,
    /// The default-domain opset, kept from the base.
    pub opset: i64,
    /// SHA1 of `model.onnx`, as written in the manifest.
    pub model_sha1: String,
    /// The model's `metadata_props` (also in `metadata_properties.json`).
    pub metadata: BTreeMap<String, String>,
}

/// Writes `head` (trained on the features of the ONNX graph `base_model`, the export at `base_path`
/// or its [`crate::convert`] rewrite) with
/// its `labels` into `out_dir` as a standalone current-layout Custom Vision ONNX export.
pub fn export_onnx(
    base_model: &[u8],
    base_path: &Path,
    head: &LinearHead,
    labels: &[String],
    iteration_id: &str,
    out_dir: &Path,
) -> Result<ExportReport> {
    check_head(head, labels, out_dir)?;
    if detect(base_model) != Some(ModelFormat::Onnx) {
        return Err(Error::model(base_path, "the base given to the ONNX writer is not ONNX", "rewrite it with crate::convert::onnx_bytes first (this is a bug in the caller)"));
    }
    refuse_base_folder(base_path, out_dir)?;
    let layout = current_layout(base_model, base_path, head)?;
    // Written whole beside `out_dir` and renamed to it: a kill leaves no model without its labels.
    let report = crate::fsutil::write_folder(out_dir, |staging| write_current_layout(&layout, head, labels, iteration_id, staging))?;
    // Written in the staging folder; reported where it now is.
    Ok(ExportReport { dir: out_dir.to_path_buf(), ..report })
}

/// A base graph with a new head, in the current layout, before it is written.
#[derive(Clone)]
pub struct CurrentLayout {
    pub model: tract_onnx::pb::ModelProto,
    pub cut: graph::Cut,
    pub legacy_base: bool,
    pub opset: i64,
    pub metadata: BTreeMap<String, String>,
}

/// The base graph cut at its features with `head` appended (see the module doc).
pub fn current_layout(base_model: &[u8], base_path: &Path, head: &LinearHead) -> Result<CurrentLayout> {
    let (mut model, facts) = onnx::prepare(base_path, base_model)?;
    let legacy_base = facts.legacy_tail || facts.had_image_scaler;
    let cut = graph::replace_head(base_path, &mut model, base_model, head, facts.opset)?;
    let metadata = metadata_props(&facts.metadata_props, legacy_base, head.activation, cut.input_size);
    model.metadata_props = metadata.iter().map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() }).collect();
    model.producer_name = "cvedge".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    Ok(CurrentLayout { model, cut, legacy_base, opset: facts.opset, metadata })
}

/// Writes `layout` with its `labels` into `out_dir`, each file atomically, the manifest last.
pub fn write_current_layout(layout: &CurrentLayout, head: &LinearHead, labels: &[String], iteration_id: &str, out_dir: &Path) -> Result<ExportReport> {
    let bytes = layout.model.encode_to_vec();
    let model_sha1 = sha1_smol::Sha1::from(&bytes).digest().to_string();
    let metadata = &layout.metadata;

    let mut labels_txt = String::new();
    for label in labels {
        labels_txt.push_str(label);
        labels_txt.push('\n');
    }
    let manifest = manifest(layout.cut.float16, iteration_id, &model_sha1);
    let mut files = vec![];
    for (name, contents) in [
        (MODEL_FILE, bytes),
        (LABEL_FILE, labels_txt.into_bytes()),
        (METADATA_FILE, pretty_json(&serde_json::to_value(metadata).expect("string map"), b"    ")),
        (MANIFEST_FILE, pretty_json(&manifest, b"  ")),
    ] {
        write_atomic(&out_dir.join(name), &contents)?;
        files.push(name);
    }
    Ok(ExportReport {
        dir: out_dir.to_path_buf(),
        files,
        features: layout.cut.features.clone(),
        width: head.width,
        tags: head.bias.len(),
        float16: layout.cut.float16,
        legacy_base: layout.legacy_base,
        opset: layout.opset,
        model_sha1,
        metadata: metadata.clone(),
    })
}

/// The head must be a real classifier and its tags must survive a trip through labels.txt.
fn check_head(head: &LinearHead, labels: &[String], out_dir: &Path) -> Result<()> {
    let tags = head.bias.len();
    if tags == 0 || head.width == 0 || head.weights.len() != tags * head.width {
        return Err(Error::model(
            out_dir,
            format!("the trained head is malformed ({} weights for {tags} tags of {} features)", head.weights.len(), head.width),
            "train the iteration again",
        ));
    }
    if head.weights.iter().chain(&head.bias).any(|v| !v.is_finite()) {
        return Err(Error::model(out_dir, "the trained head has NaN or infinite weights (training diverged)", "train the iteration again"));
    }
    if head.activation == Activation::Identity {
        return Err(Error::model(
            out_dir,
            "the trained head has no softmax or sigmoid, so its outputs would not be probabilities",
            "train it as multiclass (softmax) or multilabel (sigmoid)",
        ));
    }
    if labels.len() != tags {
        return Err(Error::package(
            out_dir,
            format!("{} tags given for a head with {tags} outputs", labels.len()),
            "pass one tag per head output, in the head's order",
        ));
    }
    for label in labels {
        let problem = if label.is_empty() {
            Some("it is empty")
        } else if label.contains(['\n', '\r']) {
            Some("it contains a line break")
        } else if label.trim() != label || label.starts_with('\u{feff}') {
            Some("it starts or ends with white space")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Error::package(
                out_dir,
                format!("tag {label:?} cannot be written to labels.txt: {problem}"),
                "rename the tag (labels.txt holds one tag per line, read back trimmed)",
            ));
        }
    }
    Ok(())
}

/// Exporting into the base's own folder would overwrite an export that cannot be made again.
fn refuse_base_folder(base_path: &Path, out_dir: &Path) -> Result<()> {
    let base_dir = match base_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let (Ok(a), Ok(b)) = (base_dir.canonicalize(), out_dir.canonicalize()) {
        if a == b {
            return Err(Error::package(
                out_dir,
                "is the base export's own folder: exporting there would overwrite the base model",
                "export into a new folder (one per iteration)",
            ));
        }
    }
    Ok(())
}

/// The model's `metadata_props`: see the module documentation.
fn metadata_props(base: &BTreeMap<String, String>, legacy: bool, activation: Activation, (height, width): (usize, usize)) -> BTreeMap<String, String> {
    let mut props = base.clone();
    if legacy {
        props.insert("CustomVision.Metadata.AdditionalModelInfo".into(), String::new());
        // As `classifier::default_recipe` decides from the input width when no key says.
        let recipe = match width {
            0 | 227 => None,
            300 => Some(("Stretch", 300, "NoCrop")),
            _ => Some(("ByShorterSide", 256, "OneCropCenter")),
        };
        // The mean is inside the graph (ImageScaler / data_bn): nothing to subtract outside.
        preprocess_props(&mut props, ColorOrder::Bgr, ValueRange::Byte, recipe, (height, width));
    }
    let method = if activation == Activation::Sigmoid { "ClassificationMultiLabel" } else { "ClassificationMultiClass" };
    props.insert("CustomVision.Postprocess.Method".into(), method.into());
    props
}

/// The preprocessing keys of a current export's `metadata_props` for a graph that holds its own
/// mean: colour order, value range and the resize/crop `recipe` (`None`: the legacy square-256
/// recipe, which has no key; readers fall back to it for 227 inputs).
pub(crate) fn preprocess_props(props: &mut BTreeMap<String, String>, color: ColorOrder, range: ValueRange, recipe: Option<(&str, usize, &str)>, (height, width): (usize, usize)) {
    let mut set = |key: &str, value: String| {
        props.insert(key.to_owned(), value);
    };
    set("CustomVision.Metadata.Version", "1.2".into());
    set("CustomVision.Preprocess.NormalizeMean", "[0.0, 0.0, 0.0]".into());
    set("CustomVision.Preprocess.NormalizeStd", "[1.0, 1.0, 1.0]".into());
    set("Image.BitmapPixelFormat", if color == ColorOrder::Bgr { "Bgr8" } else { "Rgb8" }.into());
    set("Image.ColorSpaceGamma", "SRGB".into());
    set("Image.NominalPixelRange", if range == ValueRange::Byte { "NominalRange_0_255" } else { "Normalized_0_1" }.into());
    if let Some((resize, target, crop)) = recipe {
        set("CustomVision.Preprocess.ResizeMethod", resize.into());
        set("CustomVision.Preprocess.TargetWidth", target.to_string());
        set("CustomVision.Preprocess.TargetHeight", target.to_string());
        set("CustomVision.Preprocess.CropMethod", crop.into());
        set("CustomVision.Preprocess.CropWidth", width.to_string());
        set("CustomVision.Preprocess.CropHeight", height.to_string());
    }
}

/// `cvexport.manifest`, with the keys in the exporter's order.
fn manifest(float16: bool, iteration_id: &str, model_sha1: &str) -> serde_json::Value {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");
    let exported = time::OffsetDateTime::now_utc().format(&format).unwrap_or_default();
    serde_json::json!({
        "DomainType": "Classification",
        "Platform": "ONNX",
        "Flavor": if float16 { Some("OnnxFloat16") } else { None },
        "ExporterVersion": "2.2",
        "ExportedDate": exported,
        "IterationId": (!iteration_id.is_empty()).then_some(iteration_id),
        "ModelFileName": MODEL_FILE,
        "LabelFileName": LABEL_FILE,
        "MetadataPropsFileName": METADATA_FILE,
        "ModelFileSHA1": model_sha1,
        "SchemaVersion": "1.0",
    })
}

/// JSON indented as the exporter writes it (4 spaces in the metadata file, 2 in the manifest).
fn pretty_json(value: &serde_json::Value, indent: &[u8]) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(indent));
    value.serialize(&mut serializer).expect("JSON values serialize");
    out
}
