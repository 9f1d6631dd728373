//! `cvedge serve`: loads the model once and answers predictions over HTTP until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use cvedge::classifier::Classifier;
use cvedge::daemon::worker::CurrentModel;
use cvedge::serve::{ResponseFormat, ServeOptions, Server};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT (0.0.0.0:80 answers the network on the container's port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Inference threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Images that may wait for a worker; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = ServeOptions::default().queue)]
    queue: usize,
    /// Connections served at once; more are answered 503.
    #[arg(long, default_value_t = ServeOptions::default().max_connections)]
    max_connections: usize,
    /// Require this key in each prediction request's Prediction-Key header, as the cloud did
    /// (default: $CVEDGE_API_KEY; advisable when --addr is not loopback).
    #[arg(long)]
    api_key: Option<String>,
    /// Let POST /url fetch from loopback, private and link-local addresses (refused by default).
    #[arg(long)]
    allow_private_urls: bool,
    /// Prediction JSON: the container's (labels.txt order, 8 decimals) or the cloud's (sorted by
    /// probability, as `predict --json`).
    #[arg(long, default_value = "container", value_parser = PossibleValuesParser::new(ResponseFormat::NAMES).try_map(|s| s.parse::<ResponseFormat>()))]
    format: ResponseFormat,
}

pub fn serve(classifier: Classifier, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let api_key = args.api_key.or_else(|| std::env::var("CVEDGE_API_KEY").ok()).filter(|k| !k.is_empty());
    let options = ServeOptions {
        addr: args.addr,
        workers: args.workers,
        queue: args.queue,
        max_connections: args.max_connections,
        api_key,
        allow_private_urls: args.allow_private_urls,
        format: args.format,
        ..ServeOptions::default()
    };
    let model = format!("{} ({}, {} tags)", classifier.package.origin.display(), classifier.engine.name(), classifier.labels.len());
    let server = Server::start(CurrentModel::new(classifier), options)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    eprintln!("cvedge serve: {model} on http://{}/image; Ctrl-C stops", server.local_addr());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("cvedge serve: stopping (requests being answered finish)");
    server.stop();
    Ok(ExitCode::SUCCESS)
}
