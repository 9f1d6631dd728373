//! Sinks: where classified frames go. `predict` prints JSON lines or a table; the daemon adds
//! MQTT ([`mqtt`]) behind the same trait. Sinks are shared by every camera's worker, so they
//! take `&self` and lock what they must.

pub mod mqtt;

use std::io::Write;
use std::sync::Mutex;

use crate::prediction::PredictionResponse;

/// One classified frame as sinks see it.
pub struct Outcome<'a> {
    /// The daemon's camera name (`None` for `predict`).
    pub camera: Option<&'a str>,
    pub origin: &'a str,
    pub response: &'a PredictionResponse,
    /// Tag names at or above the threshold (one at most for multiclass).
    pub detected: &'a [String],
    pub threshold: f32,
}

/// The sink stage.
pub trait Sink: Send + Sync {
    fn publish(&self, outcome: &Outcome<'_>) -> std::io::Result<()>;

    /// A camera's smoothed state changed (JSON document, see `daemon::state_message`).
    fn state(&self, _camera: &str, _state: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    /// A camera started or stopped delivering frames.
    fn camera_status(&self, _camera: &str, _online: bool) -> std::io::Result<()> {
        Ok(())
    }

    /// Progress or outcome of a capture command (JSON document, see `daemon::capture`).
    fn capture_result(&self, _camera: &str, _report: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    /// The whole frame a camera's prediction was made on, after it was published (the live page
    /// shows it). Must not block: the camera's classification thread calls it.
    fn frame(&self, _camera: &str, _frame: &crate::source::Frame) {}
}

/// One cloud-format JSON object per line.
pub struct JsonLines<W: Write + Send>(pub Mutex<W>);

impl<W: Write + Send> JsonLines<W> {
    pub fn new(writer: W) -> Self {
        JsonLines(Mutex::new(writer))
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn publish(&self, outcome: &Outcome<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(outcome.response)?;
        line.push(b'\n');
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(&line)?;
        out.flush()
    }
}

/// A readable block per image: every tag with its probability, detected ones marked.
pub struct Table<W: Write + Send>(pub Mutex<W>);

impl<W: Write + Send> Table<W> {
    pub fn new(writer: W) -> Self {
        Table(Mutex::new(writer))
    }
}

impl<W: Write + Send> Sink for Table<W> {
    fn publish(&self, outcome: &Outcome<'_>) -> std::io::Result<()> {
        let mut text = format!("{}\n", outcome.origin);
        for p in &outcome.response.predictions {
            let mark = if outcome.detected.contains(&p.tag_name) { "*" } else { " " };
            text += &format!("  {mark} {:>8.4}%  {}\n", p.probability * 100.0, p.tag_name);
        }
        if outcome.detected.is_empty() {
            text += &format!("    (no tag at or above {:.0}%)\n", outcome.threshold * 100.0);
        }
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}
