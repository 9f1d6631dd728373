//! Which paths the server answers, the JSON errors it answers with, and where a posted image is
//! in a request body.
//!
//! The paths are the Custom Vision container export's (its `app/app.py`): `/image` and `/url`,
//! `/{project}/image[/nostore]`, `/{project}/classify/iterations/{name}/image[/nostore]` and the
//! same under `detect/`, the project and iteration segments ignored. The cloud's own prefix,
//! `/customvision/v3.0/Prediction/`, is accepted in front of them too, so an SDK client whose
//! endpoint is set to this server works unchanged.

use serde::Serialize;

use super::http::Response;
use crate::source::http::parameter;
use crate::source::multipart::Multipart;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the container's greeting, which health checks look for.
    Index,
    /// `GET /health`: the model and queue as JSON.
    Health,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `cvedge run` only: the live page, its first state, its event stream, a camera's latest
    /// frame, and its capture button.
    Live,
    LiveState,
    LiveEvents,
    LiveFrame,
    LiveCapture,
    Image,
    Url,
}

impl Route {
    pub fn is_live(self) -> bool {
        matches!(self, Route::Live | Route::LiveState | Route::LiveEvents | Route::LiveFrame | Route::LiveCapture)
    }

    /// The label metrics count requests under.
    pub fn name(self) -> &'static str {
        match self {
            Route::Index => "index",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Live => "live",
            Route::LiveState => "live_state",
            Route::LiveEvents => "live_events",
            Route::LiveFrame => "live_frame",
            Route::LiveCapture => "live_capture",
            Route::Image => "image",
            Route::Url => "url",
        }
    }

    fn methods(self) -> &'static str {
        match self {
            Route::Image | Route::Url | Route::LiveCapture => "POST",
            _ => "GET, HEAD",
        }
    }
}

/// An error answer: `{"code","message"}`, the cloud prediction API's shape (the container itself
/// answered a bare 'Error processing image' with 500).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra headers: `Allow` for 405, `Retry-After` for 503.
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), headers: vec![] }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn response(&self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'a str,
            message: &'a str,
        }
        let mut response = Response::json(self.status, &Body { code: self.code, message: &self.message });
        response.headers = self.headers.clone();
        response
    }
}

/// The route for `method` and `path`: 404 for an unknown path, 405 for a known one asked with the
/// wrong method.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let route = match_path(path).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("there is nothing at {path}; post images to /image (or /url with {{\"url\": ...}}), or to /PROJECT/classify/iterations/NAME/image as the cloud's clients do"),
        )
    })?;
    let allowed = route.methods();
    if allowed.split(", ").any(|m| m == method) {
        return Ok(route);
    }
    let mut error = ApiError::new(405, "MethodNotAllowed", format!("{path} answers {allowed}, not {method}"));
    error.headers.push(("Allow", allowed.to_string()));
    Err(error)
}

fn match_path(path: &str) -> Option<Route> {
    let mut segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        [""] => return Some(Route::Index),
        ["health"] => return Some(Route::Health),
        ["metrics"] => return Some(Route::Metrics),
        ["live"] => return Some(Route::Live),
        ["live", "state"] => return Some(Route::LiveState),
        ["live", "events"] => return Some(Route::LiveEvents),
        ["live", "capture"] => return Some(Route::LiveCapture),
        ["live", "frame", camera] if !camera.is_empty() => return Some(Route::LiveFrame),
        _ => {}
    }
    // The cloud's prefix: /customvision/v3.0/Prediction/{project}/classify/iterations/{name}/image
    let cloud = segments.len() > 3 && segments[0].eq_ignore_ascii_case("customvision") && segments[1].starts_with('v') && segments[2].eq_ignore_ascii_case("prediction");
    if cloud {
        segments.drain(..3);
    }
    if segments.last() == Some(&"nostore") && segments.len() > 2 {
        segments.pop();
    }
    let kind = match segments.as_slice() {
        [kind] if !cloud => *kind,
        [project, kind] if !project.is_empty() && !cloud => *kind,
        [project, "classify" | "detect", "iterations", name, kind] if !project.is_empty() && !name.is_empty() => *kind,
        _ => return None,
    };
    match kind {
        "image" => Some(Route::Image),
        "url" => Some(Route::Url),
        _ => None,
    }
}

/// The posted image: the `imageData` field of a `multipart/form-data` body (a file or a plain
/// field, as the container accepts), or else the raw body.
pub fn image_bytes(content_type: Option<&str>, body: Vec<u8>, max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let no_image = "the request has no image; post the image's bytes as the body (Content-Type: application/octet-stream) or as the multipart field imageData (curl -F imageData=@photo.jpg)";
    let content_type = content_type.unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return if body.is_empty() { Err(ApiError::new(400, "BadRequestImageFormat", no_image)) } else { Ok(body) };
    }
    let boundary = parameter(content_type, "boundary")
        .ok_or_else(|| ApiError::bad_request("the multipart Content-Type has no boundary; let the HTTP client build the multipart body"))?;
    let mut parts = Multipart::form(body.as_slice(), &boundary, max_bytes);
    loop {
        let part = parts.next_part_with_headers().map_err(|e| ApiError::bad_request(format!("the multipart body is malformed ({e}); let the HTTP client build it")))?;
        let Some((headers, data)) = part else {
            return Err(ApiError::new(400, "BadRequestImageFormat", no_image));
        };
        let disposition = headers.iter().find(|(n, _)| n == "content-disposition").map(|(_, v)| v.as_str()).unwrap_or("");
        if parameter(disposition, "name").as_deref() == Some("imageData") {
            return if data.is_empty() { Err(ApiError::new(400, "BadRequestImageFormat", no_image)) } else { Ok(data) };
        }
    }
}

/// The image URL in a `/url` body: `{"url": ...}` as the container reads it, or `{"Url": ...}` as
/// the cloud's clients send it.
pub fn image_url(body: &[u8]) -> Result<String, ApiError> {
    let expected = "send a JSON body {\"url\": \"https://...\"}";
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not JSON ({e}); {expected}")))?;
    let url = value.get("url").or_else(|| value.get("Url")).and_then(|u| u.as_str());
    url.map(str::to_string).ok_or_else(|| ApiError::new(400, "BadRequestImageUrl", format!("the JSON has no \"url\" string; {expected}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_and_cloud_paths() {
        let ok = |path: &str, route| assert_eq!(super::route("POST", path), Ok(route), "{path}");
        ok("/image", Route::Image);
        ok("/url", Route::Url);
        ok("/p/image", Route::Image);
        ok("/p/image/nostore", Route::Image);
        ok("/p/url/nostore", Route::Url);
        ok("/p/classify/iterations/Iteration1/image", Route::Image);
        ok("/p/classify/iterations/Iteration1/url/nostore", Route::Url);
        ok("/p/detect/iterations/x/image", Route::Image);
        ok("/customvision/v3.0/Prediction/p/classify/iterations/x/image/nostore", Route::Image);
        ok("/customvision/v3.1/prediction/p/classify/iterations/x/url", Route::Url);
        for path in ["/images", "/image/nostore", "//image", "/p/classify/iterations//image", "/a/b/c", "/customvision/v3.0/Prediction/p/image", "image"] {
            assert_eq!(super::route("POST", path).unwrap_err().status, 404, "{path}");
        }
        let wrong = super::route("GET", "/image").unwrap_err();
        assert_eq!((wrong.status, wrong.headers.clone()), (405, vec![("Allow", "POST".to_string())]));
        assert_eq!(super::route("HEAD", "/"), Ok(Route::Index));
        assert_eq!(super::route("GET", "/health"), Ok(Route::Health));
        assert_eq!(super::route("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(super::route("POST", "/").unwrap_err().status, 405);
    }

    #[test]
    fn multipart_field_and_raw_bodies() {
        let form = |field: &str| {
            let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nnope\r\n--XyZ\r\n".to_vec();
            body.extend(format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").bytes());
            body.extend(b"\xff\xd8\r\n\x00JPEG\r\n--XyZ--\r\n");
            body
        };
        let got = image_bytes(Some("multipart/form-data; boundary=\"XyZ\""), form("imageData"), 1000).unwrap();
        assert_eq!(got, b"\xff\xd8\r\n\x00JPEG");
        let missing = image_bytes(Some("multipart/form-data; boundary=XyZ"), form("image"), 1000).unwrap_err();
        assert!(missing.message.contains("imageData"), "{missing:?}");
        assert_eq!(image_bytes(Some("application/octet-stream"), b"raw".to_vec(), 10).unwrap(), b"raw");
        assert_eq!(image_bytes(None, vec![], 10).unwrap_err().code, "BadRequestImageFormat");
        assert_eq!(image_url(br#"{"Url": "http://x/y.jpg"}"#).unwrap(), "http://x/y.jpg");
        assert_eq!(image_url(b"{}").unwrap_err().code, "BadRequestImageUrl");
        assert_eq!(image_url(b"url=x").unwrap_err().code, "BadRequest");
    }
}
