//! Which kind of model a file holds, decided from its bytes (the extension is only a hint: users
//! rename files, and Docker exports call everything `model.*`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Onnx,
    TfLite,
    TfFrozenGraph,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Onnx => "ONNX",
            ModelFormat::TfLite => "TensorFlow Lite",
            ModelFormat::TfFrozenGraph => "TensorFlow frozen graph",
        })
    }
}

pub(crate) fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Sniffs the format. TFLite flatbuffers carry the identifier `TFL3` at offset 4. ONNX and
/// TensorFlow are both protobuf, told apart by their first field: a ModelProto starts with
/// `ir_version` (field 1, varint, tag 0x08) while a GraphDef starts with a `node` (field 1,
/// length-delimited, tag 0x0a).
pub fn detect(bytes: &[u8]) -> Option<ModelFormat> {
    if bytes.len() >= 8 && &bytes[4..8] == b"TFL3" {
        return Some(ModelFormat::TfLite);
    }
    match bytes.first()? {
        0x08 => Some(ModelFormat::Onnx),
        0x0a if bytes.len() > 16 => Some(ModelFormat::TfFrozenGraph),
        _ => None,
    }
}

/// The format an extension suggests, used to name the problem when the bytes say otherwise.
pub fn from_extension(name: &str) -> Option<ModelFormat> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".onnx") {
        Some(ModelFormat::Onnx)
    } else if lower.ends_with(".tflite") {
        Some(ModelFormat::TfLite)
    } else if lower.ends_with(".pb") {
        Some(ModelFormat::TfFrozenGraph)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_format() {
        assert_eq!(detect(b"\x1c\0\0\0TFL3\0\0\0\0"), Some(ModelFormat::TfLite));
        assert_eq!(detect(b"\x08\x03\x12\x0bOnnxMLTools"), Some(ModelFormat::Onnx));
        assert_eq!(detect(b"\x0a\x20\x0a\x0bPlaceholder\x12\x0bPlaceholder"), Some(ModelFormat::TfFrozenGraph));
        assert_eq!(detect(b"hello world, not a model"), None);
        assert_eq!(detect(b""), None);
    }
}
