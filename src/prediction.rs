//! The cloud's prediction JSON: `{"id","project","iteration","created","predictions":[...]}`,
//! and the Custom Vision container export's variant of it ([`ContainerResponse`]).

use std::time::SystemTime;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagPrediction {
    pub probability: f32,
    /// Tag GUIDs are not in exports; like the container export, we send an empty string.
    pub tag_id: String,
    pub tag_name: String,
    /// Always null for classification.
    pub bounding_box: Option<()>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PredictionResponse {
    pub id: String,
    pub project: String,
    pub iteration: String,
    pub created: String,
    pub predictions: Vec<TagPrediction>,
    /// The classified file (`predict` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The daemon's fields: which camera, its never-reused sequence number, when the frame was
    /// captured, and capture-to-publish latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Frames the camera delivered since the previous prediction that were skipped because the
    /// engine was busy (latest frame wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
}

impl PredictionResponse {
    /// Builds the response with predictions sorted by probability, highest first (the cloud's
    /// order); ties keep labels.txt order.
    pub fn new(labels: &[String], probabilities: &[f32], iteration: &str) -> PredictionResponse {
        let mut predictions: Vec<TagPrediction> = labels
            .iter()
            .zip(probabilities)
            .map(|(tag, p)| TagPrediction { probability: *p, tag_id: String::new(), tag_name: tag.clone(), bounding_box: None })
            .collect();
        predictions.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        PredictionResponse {
            id: uuid::Uuid::new_v4().to_string(),
            project: String::new(),
            iteration: iteration.to_owned(),
            created: utc(SystemTime::now()),
            predictions,
            image: None,
            camera: None,
            seq: None,
            frame_time: None,
            latency_ms: None,
            skipped: None,
        }
    }
}

/// What the Custom Vision container export (its `app/predict.py`) answers: every tag in labels.txt
/// order, probabilities rounded to 8 decimals, `id`, `project`, `iteration` and every `tagId`
/// empty, `created` as Python's `datetime.utcnow().isoformat()` (microseconds, no `Z`). Fields are
/// in the order `predict.py` builds them. (The 2019-2023 container left out tags whose rounded
/// probability was 0; the current one lists every tag, and so does cvedge.)
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerResponse {
    pub id: String,
    pub project: String,
    pub iteration: String,
    pub created: String,
    pub predictions: Vec<ContainerPrediction>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPrediction {
    pub tag_name: String,
    pub probability: f64,
    pub tag_id: String,
    pub bounding_box: Option<()>,
}

impl ContainerResponse {
    pub fn new(labels: &[String], probabilities: &[f32], at: SystemTime) -> ContainerResponse {
        let predictions = labels
            .iter()
            .zip(probabilities)
            .map(|(tag, p)| ContainerPrediction { tag_name: tag.clone(), probability: round8(*p), tag_id: String::new(), bounding_box: None })
            .collect();
        ContainerResponse { id: String::new(), project: String::new(), iteration: String::new(), created: python_utc(at), predictions }
    }
}

/// Python's `round(p, 8)` of the float32 widened to a double: the decimal nearest the exact value,
/// ties to even, then the double nearest that decimal (Rust's formatting rounds the same way).
pub fn round8(p: f32) -> f64 {
    format!("{:.8}", f64::from(p)).parse().unwrap_or(f64::from(p))
}

/// Python's `datetime.utcnow().isoformat()`: microseconds, left out when they are zero, no zone.
pub fn python_utc(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let seconds = at.format(&format).unwrap_or_default();
    match at.microsecond() {
        0 => seconds,
        micros => format!("{seconds}.{micros:06}"),
    }
}

/// ISO 8601 UTC with a `Z`, as the cloud writes it.
pub fn utc(at: SystemTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from(at).format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_highest_first_with_cloud_field_names() {
        let labels = vec!["a".to_owned(), "b".to_owned()];
        let r = PredictionResponse::new(&labels, &[0.25, 0.75], "it1");
        assert_eq!(r.predictions[0].tag_name, "b");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["predictions"][0]["tagName"], "b");
        assert_eq!(json["predictions"][0]["tagId"], "");
        assert!(json["predictions"][0]["boundingBox"].is_null());
        assert!(json["created"].as_str().unwrap().ends_with('Z'));
        assert!(json.get("image").is_none());
    }

    #[test]
    fn container_shape_order_rounding_and_time() {
        let labels = vec!["a".to_owned(), "b".to_owned()];
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let json = serde_json::to_string(&ContainerResponse::new(&labels, &[0.12345679, 0.8765432], at)).unwrap();
        assert_eq!(
            json,
            r#"{"id":"","project":"","iteration":"","created":"2023-11-14T22:13:20.123456","predictions":[{"tagName":"a","probability":0.12345679,"tagId":"","boundingBox":null},{"tagName":"b","probability":0.87654322,"tagId":"","boundingBox":null}]}"#
        );
        assert_eq!(python_utc(std::time::UNIX_EPOCH), "1970-01-01T00:00:00");
        // A tie at the ninth decimal goes to even, as Python's round does.
        assert_eq!(round8(0.001953125), 0.00195312);
        assert_eq!(round8(1.0), 1.0);
        assert_eq!(round8(4e-9), 0.0);
    }
}
