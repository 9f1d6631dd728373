//! The cloud's prediction JSON: `{"id","project","iteration","created","predictions":[...]}`.

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
}
