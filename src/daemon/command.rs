//! Commands that arrive over MQTT, parsed once into a [`Command`] so the daemon's loop only
//! dispatches. Payloads come from anyone who can publish to the broker: a bad one is refused
//! with a message that names the problem and the expected form ([`Refused`]), never a panic, and
//! tags are checked before they can name a folder.
//!
//! | topic (under `{prefix}/{device}`) | payload |
//! |---|---|
//! | `command` | `reload` |
//! | `{camera}/capture` | `{"tag": "TAG", "count": N, "interval_s": S}` (`count` 1 to [`MAX_CAPTURE_COUNT`], default 1; `interval_s` default 0) |

use std::time::Duration;

use serde::Deserialize;

use crate::dataset::check_tag;

/// The most frames one capture command saves; larger counts are capped (a typo of 100000 must
/// not fill the disk).
pub const MAX_CAPTURE_COUNT: u32 = 1000;

/// What a capture payload looks like, for messages.
pub const CAPTURE_FORM: &str = r#"{"tag": "TAG", "count": N} (count 1..1000, default 1; optional "interval_s": seconds between frames)"#;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Re-read the configuration, as SIGHUP does.
    Reload,
    /// Save the camera's next frames under a tag.
    Capture { camera: String, request: CaptureRequest },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaptureRequest {
    /// Checked with [`check_tag`]: one safe folder name.
    pub tag: String,
    /// 1 to [`MAX_CAPTURE_COUNT`].
    pub count: u32,
    /// At least this long between saved frames.
    pub interval: Duration,
}

/// A command that cannot be carried out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub topic: String,
    /// The camera a capture command named (to report on its result topic).
    pub camera: Option<String>,
    /// The tag, when the payload got as far as naming one.
    pub tag: Option<String>,
    pub problem: String,
    pub expected: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; send {}", self.topic, self.problem, self.expected)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapturePayload {
    tag: String,
    #[serde(default = "one")]
    count: u64,
    #[serde(default)]
    interval_s: f64,
}

fn one() -> u64 {
    1
}

/// Parses a message from [`crate::sink::mqtt::Publisher::commands`] (which passes only
/// `{prefix}/{device}/command` and `{prefix}/{device}/{camera}/capture`).
pub fn parse(topic: &str, payload: &[u8]) -> Result<Command, Refused> {
    if let Some(camera) = topic.strip_suffix("/capture").and_then(|t| t.rsplit('/').next()).filter(|c| !c.is_empty()) {
        let p: CapturePayload = serde_json::from_slice(payload).map_err(|e| cannot_read(topic, camera, payload, e))?;
        let request = capture_request(topic, camera, p)?;
        return Ok(Command::Capture { camera: camera.to_string(), request });
    }
    match payload.trim_ascii() {
        b"reload" => Ok(Command::Reload),
        other => Err(refuse(topic, None, None, format!("unknown command {:?}", String::from_utf8_lossy(&other[..other.len().min(80)])), "`reload`")),
    }
}

/// A capture request for `camera` that arrived as JSON parsed already (the live page's
/// `POST /live/capture`, its `camera` taken out); `origin` names where it came from in messages.
pub fn parse_capture(origin: &str, camera: &str, request: serde_json::Value) -> Result<CaptureRequest, Refused> {
    let p = CapturePayload::deserialize(&request).map_err(|e| cannot_read(origin, camera, request.to_string().as_bytes(), e))?;
    capture_request(origin, camera, p)
}

pub(super) fn refuse(topic: &str, camera: Option<&str>, tag: Option<&str>, problem: String, expected: &'static str) -> Refused {
    Refused { topic: topic.to_string(), camera: camera.map(str::to_string), tag: tag.map(str::to_string), problem, expected }
}

fn cannot_read(topic: &str, camera: &str, payload: &[u8], e: serde_json::Error) -> Refused {
    let shown = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
    refuse(topic, Some(camera), None, format!("cannot read {shown:?} ({e})"), CAPTURE_FORM)
}

/// Checks a capture payload: a tag that can be a folder, a count, an interval.
fn capture_request(topic: &str, camera: &str, p: CapturePayload) -> Result<CaptureRequest, Refused> {
    let tag = Some(p.tag.as_str());
    if let Err(e) = check_tag(&p.tag) {
        return Err(refuse(topic, Some(camera), tag, format!("{:?} cannot be a tag: it must be one folder name ({e})", p.tag), CAPTURE_FORM));
    }
    if p.count == 0 {
        return Err(refuse(topic, Some(camera), tag, "count 0 captures nothing".into(), CAPTURE_FORM));
    }
    if !(p.interval_s >= 0.0 && p.interval_s <= 3600.0) {
        return Err(refuse(topic, Some(camera), tag, format!("interval_s {} is not 0 to 3600 seconds", p.interval_s), CAPTURE_FORM));
    }
    let count = if p.count > u64::from(MAX_CAPTURE_COUNT) {
        log::warn!("{topic}: count {} capped at {MAX_CAPTURE_COUNT}; send another command for more", p.count);
        MAX_CAPTURE_COUNT
    } else {
        p.count as u32
    };
    Ok(CaptureRequest { tag: p.tag, count, interval: Duration::from_secs_f64(p.interval_s) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "cvedge/pi/door/capture";

    fn capture(payload: &str) -> Result<Command, Refused> {
        parse(TOPIC, payload.as_bytes())
    }

    fn request(tag: &str, count: u32, interval_ms: u64) -> Command {
        Command::Capture {
            camera: "door".into(),
            request: CaptureRequest { tag: tag.into(), count, interval: Duration::from_millis(interval_ms) },
        }
    }

    #[test]
    fn reload_and_captures_parse() {
        assert_eq!(parse("cvedge/pi/command", b" reload\n"), Ok(Command::Reload));
        assert_eq!(capture(r#"{"tag": "cat"}"#), Ok(request("cat", 1, 0)));
        assert_eq!(capture(r#"{"tag": "Dr. Pepper", "count": 3, "interval_s": 0.5}"#), Ok(request("Dr. Pepper", 3, 500)));
        assert_eq!(capture(r#"{"tag": "cat", "count": 1000000}"#), Ok(request("cat", MAX_CAPTURE_COUNT, 0)));
    }

    #[test]
    fn the_live_pages_parsed_json_is_checked_as_a_payload_is() {
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let Ok(Command::Capture { request: want, .. }) = capture(r#"{"tag": "cat", "count": 2}"#) else { panic!() };
        assert_eq!(parse_capture("POST /live/capture", "door", json(r#"{"tag": "cat", "count": 2}"#)), Ok(want));
        let refused = parse_capture("POST /live/capture", "door", json(r#"{"tag": "../x"}"#)).unwrap_err();
        assert!(refused.to_string().starts_with("POST /live/capture: \"../x\" cannot be a tag"), "{refused}");
        assert_eq!((refused.camera.as_deref(), refused.tag.as_deref()), (Some("door"), Some("../x")));
        let refused = parse_capture("POST /live/capture", "door", json(r#"{"tag": "cat", "colour": 1}"#)).unwrap_err();
        assert!(refused.problem.contains("unknown field `colour`"), "{refused}");
    }

    #[test]
    fn bad_payloads_name_the_problem_and_the_form() {
        let cases = [
            ("cat", "cannot read"),
            (r#"{"count": 2}"#, "missing field `tag`"),
            (r#"{"tag": "cat", "count": -1}"#, "cannot read"),
            (r#"{"tag": "cat", "count": 0}"#, "count 0"),
            (r#"{"tag": "cat", "colour": 1}"#, "unknown field `colour`"),
            (r#"{"tag": "cat", "interval_s": -2}"#, "interval_s -2"),
            (r#"{"tag": "../x"}"#, "cannot be a tag"),
            (r#"{"tag": ".review"}"#, "cannot be a tag"),
            (r#"{"tag": "a/b"}"#, "cannot be a tag"),
        ];
        for (payload, problem) in cases {
            let refused = capture(payload).expect_err(payload);
            let message = refused.to_string();
            assert_eq!(refused.camera.as_deref(), Some("door"));
            assert!(message.contains(problem) && message.contains(CAPTURE_FORM) && message.starts_with(TOPIC), "{payload}: {message}");
        }
        let refused = parse("cvedge/pi/command", b"reboot").unwrap_err();
        assert!(refused.to_string().contains("unknown command \"reboot\"; send `reload`"), "{refused}");
        assert_eq!(refused.camera, None);
        assert!(parse(TOPIC, &[0xff, 0xfe]).is_err(), "binary garbage is refused, not a panic");
    }
}
