//! Sinks: where classified frames go. `predict` prints JSON lines or a table; the daemon will add
//! MQTT behind the same trait.

use std::io::Write;

use crate::prediction::PredictionResponse;

/// One classified frame as sinks see it.
pub struct Outcome<'a> {
    pub origin: &'a str,
    pub response: &'a PredictionResponse,
    /// Tag names at or above the threshold (one at most for multiclass).
    pub detected: &'a [String],
    pub threshold: f32,
}

/// The sink stage.
pub trait Sink {
    fn publish(&mut self, outcome: &Outcome<'_>) -> std::io::Result<()>;
}

/// One cloud-format JSON object per line.
pub struct JsonLines<W: Write>(pub W);

impl<W: Write> Sink for JsonLines<W> {
    fn publish(&mut self, outcome: &Outcome<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, outcome.response)?;
        self.0.write_all(b"\n")?;
        self.0.flush()
    }
}

/// A readable block per image: every tag with its probability, detected ones marked.
pub struct Table<W: Write>(pub W);

impl<W: Write> Sink for Table<W> {
    fn publish(&mut self, outcome: &Outcome<'_>) -> std::io::Result<()> {
        writeln!(self.0, "{}", outcome.origin)?;
        for p in &outcome.response.predictions {
            let mark = if outcome.detected.contains(&p.tag_name) { "*" } else { " " };
            writeln!(self.0, "  {mark} {:>8.4}%  {}", p.probability * 100.0, p.tag_name)?;
        }
        if outcome.detected.is_empty() {
            writeln!(self.0, "    (no tag at or above {:.0}%)", outcome.threshold * 100.0)?;
        }
        self.0.flush()
    }
}
