//! The `cvedge` binary as a user runs it: output formats, and one clear error sentence (with a
//! non-zero exit) for every kind of bad input, never a panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Runs a command that must fail with one `error:` line containing every fragment.
fn assert_fails(args: &[&str], fragments: &[&str]) {
    let run = cvedge(args);
    assert_ne!(run.code, 0, "{args:?} succeeded: {}", run.stdout);
    assert!(!run.stderr.contains("panicked"), "{args:?} panicked: {}", run.stderr);
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: expected one error line, got {}", run.stderr);
    for fragment in fragments {
        assert!(errors[0].contains(fragment), "{args:?}: {:?} lacks {fragment:?}", errors[0]);
    }
}

#[test]
fn predict_json_is_the_cloud_format_sorted_highest_first() {
    let run = cvedge(&["predict", "--model", "models/demo", "--json", "models/samples/cat.jpg", "models/samples/rocket.jpg"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 2);
    for (line, tag) in lines.iter().zip(["cat", "rocket"]) {
        for key in ["id", "project", "iteration", "created", "predictions", "image"] {
            assert!(line.get(key).is_some(), "missing {key}: {line}");
        }
        assert_eq!(line["iteration"], "4f5a0c1e-7d2b-4c8e-9a61-3b0d2e5f7a11", "iteration id from the manifest");
        let predictions = line["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 5);
        assert_eq!(predictions[0]["tagName"], tag);
        let probabilities: Vec<f64> = predictions.iter().map(|p| p["probability"].as_f64().unwrap()).collect();
        assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probabilities:?}");
        assert!(predictions.iter().all(|p| p["tagId"] == "" && p["boundingBox"].is_null()));
    }
    assert_eq!(lines[0]["image"], "models/samples/cat.jpg");
}

#[test]
fn predict_table_marks_tags_above_the_threshold() {
    let run = cvedge(&["predict", "--model", "models/demo", "--threshold", "0.9", "models/samples/coffee.jpg"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let marked: Vec<&str> = run.stdout.lines().filter(|l| l.trim_start().starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{}", run.stdout);
    assert!(marked[0].ends_with("coffee"));
    // Nothing reaches 100%: no tag is detected, and the table says so.
    let run = cvedge(&["predict", "--model", "models/demo", "--threshold", "1", "models/samples/coffee.jpg"]);
    assert!(run.stdout.contains("no tag at or above 100%"), "{}", run.stdout);
}

#[test]
fn inspect_reports_what_the_export_implies() {
    let run = cvedge(&["inspect", "--json", "--model", "models/conformance/tflite-2019-fp32"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["format"], "TensorFlow Lite");
    assert_eq!(report["input"], "Placeholder float32 [1,227,227,3] NHWC");
    assert_eq!(report["color"], "BGR");
    assert_eq!(report["range"], "0..255");
    assert_eq!(report["mean_bgr"], serde_json::json!([104.0, 117.0, 123.0]));
    assert_eq!(report["recipe"], "legacy-square-256");
    assert_eq!(report["kind"], "multilabel");
    assert_eq!(report["tags"], serde_json::json!(["Dr. Pepper", "cola", "water"]));
    assert!(report["ops"].as_u64().unwrap() > 0);

    let run = cvedge(&["inspect", "--model", "models/conformance/onnx-current-rgb01"]);
    assert!(run.stdout.contains("RGB") && run.stdout.contains("0..1"), "{}", run.stdout);
}

#[test]
fn bad_images_are_reported_and_the_rest_still_classified() {
    let run = cvedge(&["predict", "--model", "models/demo", "--json", "tests/data/truncated.jpg", "tests/data/not_an_image.jpg", "missing.jpg", "models/samples/dog.jpg"]);
    assert_eq!(run.code, 1);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{}", run.stderr);
    assert!(errors[0].contains("truncated.jpg") && errors[0].contains("damaged or truncated"));
    assert!(errors[1].contains("not_an_image.jpg") && errors[1].contains("not a readable image"));
    assert!(errors[2].contains("missing.jpg") && errors[2].contains("cannot read"));
    assert_eq!(run.stdout.lines().count(), 1, "only dog.jpg is classified");
    assert!(run.stdout.contains("\"tagName\":\"dog\""));
}

#[test]
fn bad_models_get_one_clear_sentence() {
    assert_fails(&["predict", "--model", "tests/data/corrupt/garbage.onnx", "x.jpg"], &["garbage.onnx", "not in that format", "copy the model file"]);
    assert_fails(&["predict", "--model", "tests/data/corrupt/truncated.zip", "x.jpg"], &["truncated.zip", "damaged or incomplete", "download or copy"]);
    assert_fails(&["predict", "--model", "tests/data/corrupt/bad_labels", "x.jpg"], &["labels.txt lists 2 tags but the model outputs 3"]);
    assert_fails(&["inspect", "--model", "no/such/export.zip"], &["cannot read no/such/export.zip", "check that the path exists"]);
    assert_fails(&["predict", "--model", "models/demo", "--threshold", "1.5", "x.jpg"], &["--threshold 1.5 is not a probability"]);
    assert_fails(&["predict", "--model", "models/demo", "--recipe", "bicubic", "x.jpg"], &["unknown recipe 'bicubic'"]);
}

#[test]
fn legacy_preview_export_is_refused_by_the_cli() {
    let Some(fixtures) = fixtures() else { return };
    let model = fixtures.join("onnx-legacy-opset1-2018");
    assert_fails(&["inspect", "--model", model.to_str().unwrap()], &["early-2018 preview", "re-export the iteration"]);
}

#[test]
fn a_folder_with_several_models_or_a_saved_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("models/conformance/onnx-opset7-sigmoid/model.onnx");
    std::fs::copy(&src, dir.path().join("a.onnx")).unwrap();
    std::fs::copy(&src, dir.path().join("b.onnx")).unwrap();
    let path = dir.path().to_str().unwrap();
    assert_fails(&["inspect", "--model", path], &["several model files found", "a.onnx", "b.onnx"]);

    let saved = tempfile::tempdir().unwrap();
    std::fs::write(saved.path().join("saved_model.pb"), b"\x0a\x02hi").unwrap();
    assert_fails(&["inspect", "--model", saved.path().to_str().unwrap()], &["SavedModel", "export the iteration as"]);
}

#[test]
fn folders_of_images_are_expanded() {
    let run = cvedge(&["predict", "--model", "models/demo", "--json", "models/samples"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 5);
    assert!(Path::new(&repo().join("models/samples/LICENSES.txt")).exists(), "non-images are skipped");
}

#[test]
fn run_refuses_a_garbage_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "model = \"models/demo\"\n[[camera]]\nname = \"door\"\nsource = \"synthetic\"\nintervall_s = 2\n").unwrap();
    assert_fails(&["run", "--config", path.to_str().unwrap()], &["config:", "line 5", "unknown field `intervall_s`"]);
    std::fs::write(&path, "\u{1}\u{2} not toml [[[").unwrap();
    assert_fails(&["run", "--config", path.to_str().unwrap()], &["config:"]);
    assert_fails(&["run", "--model", "models/demo", "--source", "door=pigeon:coo"], &["camera[0].source"]);
}

/// `cvedge run --config CONFIG` on a synthetic camera printing its predictions (`print = true`),
/// logging at info; its stdout and stderr as channels of lines.
struct RunningDaemon {
    child: KillOnDrop,
    stdout: crossbeam_channel::Receiver<String>,
    stderr: crossbeam_channel::Receiver<String>,
}

impl RunningDaemon {
    fn config(dir: &std::path::Path) -> String {
        format!(
            "model = \"models/demo\"\nstate_dir = \"{}\"\nprint = true\n[[camera]]\nname = \"door\"\nsource = \"synthetic:64x64@10\"\n",
            dir.join("state").display()
        )
    }

    fn start(config: &std::path::Path) -> RunningDaemon {
        use std::io::BufRead;
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_cvedge"))
                .args(["run", "--config", config.to_str().unwrap()])
                .current_dir(repo())
                .env("RUST_LOG", "info")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = crossbeam_channel::unbounded();
            std::thread::spawn(move || std::io::BufReader::new(stream).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        RunningDaemon { child, stdout, stderr }
    }

    fn signal(&self, name: &str) {
        assert!(Command::new("kill").args([format!("-{name}"), self.child.id().to_string()]).status().unwrap().success());
    }

    fn prediction(&self, what: &str) {
        wait_line(&self.stdout, what, &|l| l.contains("\"camera\":\"door\""));
    }

    /// SIGTERM, and it must exit 0.
    fn stop(mut self) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

fn wait_line(rx: &crossbeam_channel::Receiver<String>, what: &str, pred: &dyn Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30 * slowdown());
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// SIGHUP with a broken model: the daemon says so and keeps classifying with the old one;
/// SIGTERM then stops it cleanly (exit 0).
#[test]
fn run_survives_a_bad_reload_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cvedge.toml");
    let good = RunningDaemon::config(dir.path());
    std::fs::write(&config, &good).unwrap();
    let daemon = RunningDaemon::start(&config);
    daemon.prediction("a prediction");
    std::fs::write(&config, good.replace("models/demo", "tests/data/corrupt/garbage.onnx")).unwrap();
    daemon.signal("HUP");
    wait_line(&daemon.stderr, "the reload error", &|l| l.contains("reload failed, keeping the running model") && l.contains("garbage.onnx"));
    let _ = daemon.stdout.try_iter().count();
    daemon.prediction("predictions after the failed reload");
    daemon.stop();
}

/// A SIGHUP while the daemon starts (here as soon as its model has loaded, before the cameras
/// run) is a reload for the main loop, not the signal's default action, which ends the process.
#[test]
fn a_sighup_during_start_is_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cvedge.toml");
    std::fs::write(&config, RunningDaemon::config(dir.path())).unwrap();
    let daemon = RunningDaemon::start(&config);
    wait_line(&daemon.stderr, "the model loaded", &|l| l.contains("engine:"));
    daemon.signal("HUP");
    daemon.prediction("a prediction after the SIGHUP");
    daemon.stop();
}


/// Under systemd (`Type=notify`): READY=1 once started, WATCHDOG=1 while the pipeline makes
/// progress, STOPPING=1 on the way out. The notify socket is ours, as systemd's would be.
#[test]
fn run_talks_to_systemd() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // systemd names the watched process in WATCHDOG_PID: `exec` keeps the shell's pid.
    let mut child = KillOnDrop(Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" run --model models/demo --source door=synthetic:64x64@10 --state-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_cvedge"))
        .arg(dir.path().join("state"))
        .current_dir(repo())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap());
    let mut seen: Vec<String> = vec![];
    let deadline = Instant::now() + Duration::from_secs(30 * slowdown());
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !(seen.iter().any(|m| m.contains("READY=1")) && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3) {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    assert!(seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3, "{seen:?}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1");
}

#[test]
fn capture_from_a_source_and_by_import_then_list_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let run = cvedge(&["capture", "--tag", "pattern", "--source", "synthetic:32x24@50", "--count", "3", "--data", data]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().filter(|l| l.starts_with("stored ")).count(), 3, "{}", run.stdout);
    let run = cvedge(&["capture", "--tag", "cat", "--import", "models/samples/cat.jpg", "models/samples/cat.jpg", "--data", data]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("stored ") && run.stdout.contains("duplicate "), "{}", run.stdout);
    let run = cvedge(&["dataset", "--data", data]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("     1  cat  (needs at least 5 to train)"), "{}", run.stdout);
    assert!(run.stdout.contains("     3  pattern"), "{}", run.stdout);
    assert_fails(&["capture", "--tag", "../escape", "--import", "models/samples/cat.jpg", "--data", data], &["cannot be a tag name"]);
    assert_fails(&["capture", "--tag", "cat", "--import", "tests/data/not_an_image.jpg", "--data", data], &["not a readable image"]);
}

#[test]
fn bench_reports_each_configuration_as_a_json_line() {
    let run = cvedge(&["bench", "--model", "models/demo", "--engine", "tract", "--threads", "1,2", "--runs", "3", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reports: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 2, "one line per configuration: {}", run.stdout);
    for (report, threads) in reports.iter().zip([1, 2]) {
        for key in ["load_ms", "first_ms", "median_ms", "p90_ms", "fps", "rss_mb"] {
            assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
        }
        assert!(report["median_ms"].as_f64() <= report["p90_ms"].as_f64(), "{report}");
        assert_eq!(report["engine"], "tract");
        assert_eq!(report["precision"], "fp32");
        assert_eq!(report["threads"], threads);
    }
    assert_fails(&["bench", "--model", "models/demo", "--image", "nope.jpg"], &["nope.jpg", "--image"]);
    assert_fails(&["bench", "--model", "models/demo", "--threads", "two"], &["--threads", "`two`"]);
}

/// `cvedge sources` with no camera (as on CI and this machine) is an answer, not an error: it says
/// so, how to check, and what else cvedge reads. With cameras it lists each /dev/video* node.
#[test]
fn sources_lists_cameras_or_says_how_to_check() {
    let run = cvedge(&["sources"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let devices: Vec<_> = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("video"))
        .collect();
    if devices.is_empty() {
        for fragment in ["no V4L2 cameras", "ls -l /dev/video*", "video group", "mjpeg:http://", "ffmpeg:rtsp://"] {
            assert!(run.stdout.contains(fragment), "lacks {fragment:?}: {}", run.stdout);
        }
    } else {
        for name in devices {
            assert!(run.stdout.contains(&format!("/dev/{name}")), "{name} not listed: {}", run.stdout);
        }
    }
}

#[test]
fn sources_refuses_what_is_not_a_camera() {
    assert_fails(&["sources", "/dev/null"], &["/dev/null", "is not a V4L2 device", "ls /dev/video*"]);
    assert_fails(&["sources", "/dev/video99"], &["/dev/video99", "no such device", "ls /dev/video*"]);
}
