//! The daemon's pipeline without a broker: latest frame wins, sequence numbers survive restarts,
//! bad configurations are refused with the key and the fix.

mod common;

use std::time::Duration;

use common::*;
use cvedge::config::Config;
use cvedge::daemon::Daemon;

fn config(state_dir: &std::path::Path, camera: &str) -> Config {
    let text = format!(
        "model = \"{}\"\nstate_dir = \"{}\"\nconsecutive = 1\n{camera}",
        repo().join("models/demo").display(),
        state_dir.display()
    );
    Config::parse(&text, "test").unwrap()
}

#[test]
fn a_camera_faster_than_the_engine_skips_frames_instead_of_queueing() {
    let dir = tempfile::tempdir().unwrap();
    // 100 frames a second, classified at most 4 times a second.
    let c = config(dir.path(), "[[camera]]\nname = \"fast\"\nsource = \"synthetic:320x240@100\"\ninterval_s = 0.25\n");
    let daemon = Daemon::start(c, None).unwrap();
    wait_for("skipped frames", Duration::from_secs(20), || daemon.stats().skipped > 50 && daemon.stats().classified >= 2);
    let stats = daemon.stats();
    assert!(stats.classified < stats.skipped, "{stats:?}");
    assert!(daemon.healthy());
    daemon.stop().unwrap();
}

#[test]
fn sequence_numbers_continue_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let camera = "[[camera]]\nname = \"door\"\nsource = \"synthetic:64x64@20\"\n";
    let first = Daemon::start(config(dir.path(), camera), None).unwrap();
    wait_for("a classification", Duration::from_secs(20), || first.stats().classified >= 3);
    first.stop().unwrap();
    let stored: u64 = std::fs::read_to_string(dir.path().join("seq/door")).unwrap().trim().parse().unwrap();
    assert!(stored > 3, "the counter reserves ahead: {stored}");
    let second = Daemon::start(config(dir.path(), camera), None).unwrap();
    wait_for("a classification", Duration::from_secs(20), || second.stats().classified >= 1);
    second.stop().unwrap();
    let after: u64 = std::fs::read_to_string(dir.path().join("seq/door")).unwrap().trim().parse().unwrap();
    assert!(after > stored, "the second run reserved numbers above the first's ({after} <= {stored})");
}

#[test]
fn a_model_that_fails_to_load_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "model = \"{}\"\nstate_dir = \"{}\"\n[[camera]]\nname = \"a\"\nsource = \"synthetic\"\n",
        repo().join("tests/data/corrupt/garbage.onnx").display(),
        dir.path().display()
    );
    let err = Daemon::start(Config::parse(&text, "t").unwrap(), None).err().expect("must fail");
    assert!(err.to_string().contains("garbage.onnx"), "{err}");
}

#[test]
fn reload_keeps_the_running_model_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cvedge.toml");
    let camera = "[[camera]]\nname = \"door\"\nsource = \"synthetic:64x64@20\"\n";
    let good = format!("model = \"{}\"\nstate_dir = \"{}\"\n{camera}", repo().join("models/demo").display(), dir.path().display());
    std::fs::write(&path, &good).unwrap();
    let mut daemon = Daemon::start(Config::load(&path).unwrap(), Some(path.clone())).unwrap();
    wait_for("a classification", Duration::from_secs(20), || daemon.stats().classified >= 1);
    std::fs::write(&path, good.replace("models/demo", "tests/data/corrupt/bad_labels")).unwrap();
    let err = daemon.reload().unwrap_err();
    assert!(err.to_string().contains("labels.txt lists 2 tags"), "{err}");
    let before = daemon.stats().classified;
    wait_for("classification to go on", Duration::from_secs(20), || daemon.stats().classified > before + 2);
    std::fs::write(&path, good.replace("models/demo", "models/demo-fp16")).unwrap();
    daemon.reload().unwrap();
    daemon.stop().unwrap();
}

#[test]
fn reload_adds_and_removes_cameras_and_leaves_unchanged_ones_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cvedge.toml");
    let head = format!("model = \"{}\"\nstate_dir = \"{}\"\n", repo().join("models/demo").display(), dir.path().display());
    let camera = |name: &str| format!("[[camera]]\nname = \"{name}\"\nsource = \"synthetic:64x64@20\"\n");
    std::fs::write(&path, format!("{head}{}", camera("a"))).unwrap();
    let mut daemon = Daemon::start(Config::load(&path).unwrap(), Some(path.clone())).unwrap();
    assert_eq!(daemon.camera_names(), ["a"]);
    std::fs::write(&path, format!("{head}{}{}", camera("a"), camera("b"))).unwrap();
    daemon.reload().unwrap();
    assert_eq!(daemon.camera_names(), ["a", "b"]);
    wait_for("camera b to classify", Duration::from_secs(20), || dir.path().join("seq/b").exists() && daemon.stats().classified > 4);
    std::fs::write(&path, format!("{head}{}", camera("b").replace("@20", "@10"))).unwrap();
    daemon.reload().unwrap();
    assert_eq!(daemon.camera_names(), ["b"], "a removed, b restarted with its new settings");
    let before = daemon.stats().classified;
    wait_for("b to go on", Duration::from_secs(20), || daemon.stats().classified > before + 2);
    assert!(daemon.healthy());
    daemon.stop().unwrap();
}
