//! Counters and histograms for `GET /metrics`, written in Prometheus' text format (version 0.0.4:
//! `# HELP`, `# TYPE`, one sample per line), with nothing to install: atomics updated by the
//! request and camera threads, read when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds: a Pi's inference (tens of ms) to a stuck queue.
const BOUNDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is above every bound.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let bucket = BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// `name_bucket{labels,le=...}` lines (cumulative), then `_sum` and `_count`.
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BOUNDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// `# HELP` and `# TYPE` of a family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
pub fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What the HTTP server counts.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// From an image's arrival (body read or URL fetched) to its probabilities: queue, decode,
    /// inference.
    pub prediction: Histogram,
}

impl HttpMetrics {
    pub fn request(&self, route: &'static str, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
    }

    pub fn write(&self, out: &mut String) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        family(out, "cvedge_http_requests_total", "counter", "HTTP requests answered, by route and status code.");
        for ((route, code), n) in requests.iter() {
            let _ = writeln!(out, "cvedge_http_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}");
        }
        // The requests answered 503, counted from the requests above.
        let rejected: u64 = requests.iter().filter(|((_, code), _)| *code == 503).map(|(_, n)| n).sum();
        family(out, "cvedge_http_rejected_total", "counter", "Requests answered 503 because every worker and queue place (or connection) was taken.");
        let _ = writeln!(out, "cvedge_http_rejected_total {rejected}");
        family(out, "cvedge_http_prediction_seconds", "histogram", "Time from a posted image's arrival to its probabilities (queue, decode, inference).");
        self.prediction.write(out, "cvedge_http_prediction_seconds", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        for s in [0.001, 0.02, 0.02, 30.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "camera=\"door\"");
        assert!(out.contains("x_seconds_bucket{camera=\"door\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{camera=\"door\",le=\"0.025\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{camera=\"door\",le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{camera=\"door\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_count{camera=\"door\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_sum{camera=\"door\"} 30.041\n"), "{out}");
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn rejected_counts_every_503() {
        let metrics = HttpMetrics::default();
        for (route, status) in [("image", 503), ("image", 200), ("none", 503), ("image", 503), ("url", 400)] {
            metrics.request(route, status);
        }
        let mut out = String::new();
        metrics.write(&mut out);
        assert!(out.contains("\ncvedge_http_rejected_total 3\n"), "{out}");
        assert!(out.contains("cvedge_http_requests_total{route=\"image\",code=\"503\"} 2\n"), "{out}");
    }
}
