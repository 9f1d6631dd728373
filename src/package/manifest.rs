//! `cvexport.manifest` and `metadata_properties.json`: what the exporter wrote about the model.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `cvexport.manifest` (JSON). Every field is optional: old exports wrote fewer of them and users
/// edit these files by hand.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Manifest {
    pub domain_type: Option<String>,
    pub platform: Option<String>,
    pub flavor: Option<String>,
    pub exporter_version: Option<String>,
    pub exported_date: Option<String>,
    pub iteration_id: Option<String>,
    pub model_file_name: Option<String>,
    pub label_file_name: Option<String>,
    pub metadata_props_file_name: Option<String>,
    #[serde(rename = "ModelFileSHA1")]
    pub model_file_sha1: Option<String>,
    pub schema_version: Option<String>,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let text = String::from_utf8_lossy(bytes);
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| e.to_string())
    }
}

/// `metadata_properties.json`: a flat string-to-string map (`CustomVision.Preprocess.*`,
/// `CustomVision.Postprocess.Method`, `Image.*`). Non-string values are kept as their JSON text.
pub fn parse_metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let text = String::from_utf8_lossy(bytes);
    let value: serde_json::Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("the top level is not a JSON object")?;
    Ok(object
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect())
}

/// `labels.txt`: one tag per line, line i is output i. Tags keep their inner spaces and
/// punctuation; trailing blank lines and Windows line ends are not tags.
pub fn parse_labels(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut labels: Vec<String> = text
        .trim_start_matches('\u{feff}')
        .lines()
        .map(|l| l.trim_end_matches('\r').trim().to_owned())
        .collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_spaces_and_drop_trailing_blank_lines() {
        let labels = parse_labels(b"\xef\xbb\xbfDr. Pepper\r\nhot dog\r\n\r\n");
        assert_eq!(labels, vec!["Dr. Pepper", "hot dog"]);
    }

    #[test]
    fn manifest_reads_pascal_case_and_sha1() {
        let m = Manifest::parse(
            br#"{"Platform":"ONNX","Flavor":null,"ModelFileName":"model.onnx","ModelFileSHA1":"AB"}"#,
        )
        .unwrap();
        assert_eq!(m.platform.as_deref(), Some("ONNX"));
        assert_eq!(m.flavor, None);
        assert_eq!(m.model_file_sha1.as_deref(), Some("AB"));
    }

    #[test]
    fn metadata_keeps_non_string_values_as_text() {
        let m = parse_metadata(br#"{"a":"x","b":3}"#).unwrap();
        assert_eq!(m["a"], "x");
        assert_eq!(m["b"], "3");
        assert!(parse_metadata(b"[1]").is_err());
    }
}
