//! `--engine auto`: load every engine that can run the export, keep the fastest one whose output
//! agrees with tract's on a check image, and say which and why in the graph's notes.
//!
//! tract is the reference (it is what the conformance tests pin to onnxruntime's and tf.lite's
//! own outputs), so a faster engine that disagrees is dropped, never preferred. Agreement is
//! judged on what users see, the head's probabilities; an int8 graph is allowed more slack because
//! onnxruntime's integer kernels round where tract computes the same graph in float.

use std::time::Instant;

use super::{Engine, EngineOptions, LoadedModel, Precision};
use crate::error::Result;
use crate::package::ExportPackage;

/// Largest probability difference from tract that still counts as agreeing.
fn tolerance(precision: Precision) -> f32 {
    match precision {
        Precision::Fp32 | Precision::Fp16 => 1e-3,
        Precision::Int8 => 0.03,
    }
}

/// Whether `difference` (the largest probability difference from tract; NaN when an engine
/// produced NaN) is small enough for a graph of `precision`.
fn agrees(difference: f32, precision: Precision) -> bool {
    difference <= tolerance(precision)
}

/// Timed runs per engine after the check run (the fastest counts: the machine may be busy).
const TIMED_RUNS: usize = 3;

fn fastest_ms(engine: &dyn Engine, check: &[f32]) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..TIMED_RUNS {
        let started = Instant::now();
        engine.run_one(check)?;
        best = best.min(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// `reference` is tract's engine with the head and facts; returns it or a faster engine that agrees.
pub fn pick(package: &ExportPackage, reference: LoadedModel, options: &EngineOptions, check: &[f32]) -> Result<LoadedModel> {
    let LoadedModel { engine: reference, head, mut facts } = reference;
    let split = facts.split_at.is_some();
    let candidate = match super::onnxruntime_engine(package, reference.input(), reference.output_width(), split, options) {
        Ok(engine) => engine,
        Err(e) => {
            let reason = match e {
                crate::error::Error::Engine { problem, .. } => problem,
                other => other.to_string(),
            };
            facts.notes.push(format!("engine auto: tract (onnxruntime not used: {reason})"));
            return Ok(LoadedModel { engine: reference, head, facts });
        }
    };
    let probabilities = |engine: &dyn Engine| -> Result<Vec<f32>> {
        let features = engine.run_one(check)?;
        let mut out = vec![0f32; head.tags()];
        head.apply(&features, &mut out);
        Ok(out)
    };
    let expected = probabilities(reference.as_ref())?;
    let got = probabilities(candidate.as_ref())?;
    let difference = expected.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    if !agrees(difference, facts.precision) {
        let limit = tolerance(facts.precision);
        facts.notes.push(format!(
            "engine auto: tract (onnxruntime disagrees with it by {difference:.2e} in probability on the check image, more than {limit:.0e})"
        ));
        return Ok(LoadedModel { engine: reference, head, facts });
    }
    let (tract_ms, other_ms) = (fastest_ms(reference.as_ref(), check)?, fastest_ms(candidate.as_ref(), check)?);
    let (winner, loser) = if other_ms < tract_ms { (candidate, reference) } else { (reference, candidate) };
    let (win_ms, lose_ms) = (tract_ms.min(other_ms), tract_ms.max(other_ms));
    facts.notes.push(format!(
        "engine auto: {} ({win_ms:.1} ms) over {} ({lose_ms:.1} ms); they agree within {difference:.1e}",
        winner.name(),
        loser.name()
    ));
    drop(loser);
    Ok(LoadedModel { engine: winner, head, facts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_graphs_get_more_slack_and_nan_never_agrees() {
        assert!(agrees(5e-4, Precision::Fp32));
        assert!(!agrees(2e-3, Precision::Fp32));
        assert!(!agrees(2e-3, Precision::Fp16));
        assert!(agrees(2e-2, Precision::Int8));
        assert!(!agrees(0.1, Precision::Int8));
        assert!(!agrees(f32::NAN, Precision::Int8));
    }
}
