//! `cvedge quantize`: int8 on the device, with the accuracy gate's figures printed at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cvedge::classifier::LoadOptions;
use cvedge::quantize::{quantize as run_quantize, QuantizeOptions};

pub fn quantize(model: &Path, load: LoadOptions, calibrate: PathBuf, holdout: Option<PathBuf>, out: PathBuf, min_agreement: f64, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!((0.0..=100.0).contains(&min_agreement), "--min-agreement {min_agreement}: give a percentage from 0 to 100, e.g. 99");
    let options = QuantizeOptions { calibrate, holdout, out, min_agreement: min_agreement / 100.0, engine: load.engine };
    let progress: &dyn cvedge::train::Progress = if json { &cvedge::train::Quiet } else { &cvedge::train::Bars };
    let report = run_quantize(model, &options, progress)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "calibrated {} tensors ({} int8 convolutions) on {} images; checked on {} held-out images with {}",
        report.quantized_tensors, report.int8_convolutions, report.calibration_images, report.holdout_images, report.engine
    );
    for c in &report.candidates {
        eprintln!(
            "  {:<10} top-1 agreement {:6.2}%  max probability difference {:.4}  mean {:.5}{}",
            c.method,
            100.0 * c.agreement,
            c.max_difference,
            c.mean_difference,
            if c.method == report.chosen.method { "  <- chosen" } else { "" }
        );
    }
    eprintln!("gate: {:.1}% agreement required, {:.2}% reached", 100.0 * report.min_agreement, 100.0 * report.chosen.agreement);
    println!("{}", report.out.display());
    Ok(ExitCode::SUCCESS)
}
