//! On-device training end to end: `cvedge train` on tagged images (variations generated here
//! from the bundled sample photos, and from the shared fixture exports' samples), iterations kept
//! on disk and loaded by fresh processes, publish under kill -9, deletion, the feature cache.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{argmax, cvedge, file_names, fixtures, repo, KillOnDrop};
use image::RgbImage;

/// `cvedge train --model MODEL --data DATA --iterations ROOT` followed by `extra`.
fn train_args<'a>(model: &'a str, data: &'a Path, root: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--model", model, "--data", data.to_str().unwrap(), "--iterations", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    args
}

fn ok(args: &[&str]) -> String {
    let run = cvedge(args);
    assert!(run.ok(), "cvedge {args:?} failed: {}", run.stderr);
    run.stdout
}

/// A deterministic little generator for the variations (the tests must not depend on `rand`).
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Crops (70-95% of each side), mirror images and brightness changes of a photo: what a
/// technician's captures of one object look like.
fn variations(photo: &RgbImage, count: usize, seed: u64) -> Vec<RgbImage> {
    let mut rng = Lcg(seed);
    (0..count)
        .map(|i| {
            let (w, h) = (photo.width(), photo.height());
            let scale = 0.7 + 0.25 * rng.unit();
            let (cw, ch) = ((w as f32 * scale) as u32, (h as f32 * scale) as u32);
            let (x, y) = ((rng.unit() * (w - cw) as f32) as u32, (rng.unit() * (h - ch) as f32) as u32);
            let mut v = image::imageops::crop_imm(photo, x, y, cw, ch).to_image();
            if i % 2 == 1 {
                image::imageops::flip_horizontal_in_place(&mut v);
            }
            let gain = 0.75 + 0.5 * rng.unit();
            v.pixels_mut().for_each(|p| p.0.iter_mut().for_each(|c| *c = (*c as f32 * gain).min(255.0) as u8));
            v
        })
        .collect()
}

fn photo(path: &Path) -> RgbImage {
    cvedge::source::decode(&std::fs::read(path).unwrap(), &path.display().to_string()).unwrap()
}

/// Writes `count` variations of each `(tag, photo)` under `data/<tag>/`.
fn make_data(data: &Path, photos: &[(&str, PathBuf)], count: usize, seed: u64) {
    for (n, (tag, path)) in photos.iter().enumerate() {
        let dir = data.join(tag);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, v) in variations(&photo(path), count, seed + n as u64 * 1000).iter().enumerate() {
            v.save(dir.join(format!("{seed}-{n}-{i}.jpg"))).unwrap();
        }
    }
}

fn samples(tags: &[&'static str]) -> Vec<(&'static str, PathBuf)> {
    tags.iter().map(|t| (*t, repo().join(format!("models/samples/{t}.jpg")))).collect()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Top tag of each image in a folder, by `cvedge predict --json` in a fresh process.
fn predicted_tags(model: &Path, images: &Path) -> Vec<(String, String)> {
    let out = ok(&["predict", "--model", model.to_str().unwrap(), "--json", images.to_str().unwrap()]);
    out.lines()
        .map(|line| {
            let v = json(line);
            let image = v["image"].as_str().unwrap().to_owned();
            (image, v["predictions"][0]["tagName"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn new_tags_are_learnt_and_held_out_images_classified_by_a_fresh_process() {
    let dir = tempfile::tempdir().unwrap();
    let (data, iterations, held_out) = (dir.path().join("data"), dir.path().join("iterations"), dir.path().join("held-out"));
    // New tags, not the export's: "pets" is two of its tags together, "mug" one renamed.
    make_data(&data, &[("pets", repo().join("models/samples/cat.jpg")), ("pets", repo().join("models/samples/dog.jpg")), ("mug", repo().join("models/samples/coffee.jpg"))], 6, 1);
    let out = ok(&train_args("models/demo", &data, &iterations, &["--json"]));
    let report = json(&out);
    let iteration = PathBuf::from(report["iteration"].as_str().unwrap());
    assert_eq!(iteration, iterations.join("1"));
    assert_eq!(report["tags"], serde_json::json!(["mug", "pets"]));
    assert_eq!(report["images"], 18);
    for key in ["precision", "precisionStdDeviation", "recall", "recallStdDeviation", "averagePrecision"] {
        assert!(report[key].is_number(), "{key} missing: {report}");
    }
    assert_eq!(report["perTagPerformance"].as_array().unwrap().len(), 2);
    // Held-out images: other crops of the same photos, never trained on.
    for (tag, photo_name) in [("pets", "cat"), ("pets", "dog"), ("mug", "coffee")] {
        let folder = held_out.join(tag);
        std::fs::create_dir_all(&folder).unwrap();
        for (i, v) in variations(&photo(&repo().join(format!("models/samples/{photo_name}.jpg"))), 3, 99).iter().enumerate() {
            v.save(folder.join(format!("{photo_name}-{i}.png"))).unwrap();
        }
    }
    for tag in ["pets", "mug"] {
        for (image, predicted) in predicted_tags(&iteration, &held_out.join(tag)) {
            assert_eq!(predicted, tag, "{image}");
        }
    }
    // Predictions name the iteration's id, not the export's.
    let line = ok(&["predict", "--model", iteration.to_str().unwrap(), "--json", "models/samples/cat.jpg"]);
    assert_eq!(json(&line)["iteration"], report["id"]);
}

#[test]
fn the_published_iteration_is_what_the_iterations_folder_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["cat", "rocket"]), 5, 2);
    let root_arg = root.to_str().unwrap();
    let first = json(&ok(&train_args("models/demo", &data, &root, &["--folds", "0", "--json"])));
    assert!(first["precision"].is_null(), "no evaluation with --folds 0");
    // Nothing published yet: the folder is refused with the fix.
    let run = cvedge(&["predict", "--model", root_arg, "models/samples/cat.jpg"]);
    assert!(!run.ok() && run.stderr.contains("iterations publish"), "{}", run.stderr);
    ok(&["iterations", "--iterations", root_arg, "publish", "1"]);
    let line = ok(&["predict", "--model", root_arg, "--json", "models/samples/rocket.jpg"]);
    assert_eq!(json(&line)["iteration"], first["id"]);
    assert_eq!(json(&line)["predictions"][0]["tagName"], "rocket");
    let list = ok(&["iterations", "--iterations", root_arg, "list"]);
    assert!(list.lines().any(|l| l.starts_with('*') && l.contains(first["id"].as_str().unwrap())), "{list}");
    // `train --publish` publishes what it trained; `show --json` says which one is published.
    let second = json(&ok(&train_args("models/demo", &data, &root, &["--seed", "3", "--publish", "--json"])));
    assert_eq!(second["published"], true);
    let line = ok(&["predict", "--model", root_arg, "--json", "models/samples/cat.jpg"]);
    assert_eq!(json(&line)["iteration"], second["id"]);
    let show = |n: &str| json(&ok(&["iterations", "--iterations", root_arg, "show", n, "--json"]));
    let (one, two) = (show("1"), show("2"));
    assert_eq!((one["published"].clone(), two["published"].clone()), (serde_json::json!(false), serde_json::json!(true)));
    assert_eq!(two["iteration"], second["iteration"]);
    assert_eq!(two["perTagPerformance"].as_array().map(Vec::len), Some(2), "{two}");
    assert!(one["precision"].is_null(), "iteration 1 was not evaluated: {one}");
}

#[test]
fn a_kill_during_publish_leaves_one_complete_iteration_published() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["cat", "rocket"]), 5, 3);
    let root_arg = root.to_str().unwrap();
    let train = |extra: &[&str]| json(&ok(&train_args("models/demo", &data, &root, &[&["--folds", "0", "--json"], extra].concat())))["id"].clone();
    let ids = [train(&[]), train(&["--seed", "1"])];
    ok(&["iterations", "--iterations", root_arg, "publish", "1"]);
    let mut rng = Lcg(7);
    for round in 0..30 {
        let number = if round % 2 == 0 { "2" } else { "1" };
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_cvedge"))
                .args(["iterations", "--iterations", root_arg, "publish", number])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(std::time::Duration::from_micros((rng.unit() * 3000.0) as u64));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let published = cvedge::iteration::published_id(&root).expect("published.json is always readable");
        assert!(ids.iter().any(|id| id == &published), "round {round}: {published}");
        let classifier = cvedge::Classifier::load(&root, &Default::default()).expect("the published iteration loads");
        assert_eq!(classifier.iteration_id, published);
    }
    // No temporary file is left to be mistaken for the pointer.
    let leftovers: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.len() <= 1, "{leftovers:?}");
}

#[test]
fn deleting_keeps_images_other_iterations_use_and_never_the_published_one() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["cat", "rocket"]), 5, 4);
    let root_arg = root.to_str().unwrap();
    let train = || ok(&train_args("models/demo", &data, &root, &["--folds", "0"]));
    train();
    // Iteration 2 sees the same images plus five of a new tag.
    make_data(&data, &samples(&["dog"]), 5, 5);
    train();
    let images = |root: &Path| std::fs::read_dir(root.join("images")).unwrap().count();
    assert_eq!(images(&root), 15);
    ok(&["iterations", "--iterations", root_arg, "publish", "1"]);
    let run = cvedge(&["iterations", "--iterations", root_arg, "delete", "1"]);
    assert!(!run.ok() && run.stderr.contains("published"), "{}", run.stderr);
    ok(&["iterations", "--iterations", root_arg, "publish", "2"]);
    ok(&["iterations", "--iterations", root_arg, "delete", "1"]);
    assert_eq!(images(&root), 15, "iteration 2 uses every image iteration 1 had");
    // Images only a deleted iteration used do go.
    make_data(&data, &samples(&["eagle"]), 5, 15);
    train();
    assert_eq!(images(&root), 20);
    ok(&["iterations", "--iterations", root_arg, "delete", "3"]);
    assert_eq!(images(&root), 15);
    // The data folder's own files are never touched; iteration 2 still loads from its snapshot
    // even after the technician empties the data folder.
    std::fs::remove_dir_all(&data).unwrap();
    let line = ok(&["predict", "--model", root_arg, "--json", "models/samples/dog.jpg"]);
    assert_eq!(json(&line)["predictions"][0]["tagName"], "dog");
    // Deleting the last one (after publishing nothing else is impossible) is refused too.
    assert!(!cvedge(&["iterations", "--iterations", root_arg, "delete", "2"]).ok());
    assert!(!cvedge(&["iterations", "--iterations", root_arg, "show", "1"]).ok(), "iteration 1 is gone");
}

#[test]
fn retraining_after_adding_images_only_computes_the_new_ones_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["cat", "eagle"]), 6, 6);
    let train = || PathBuf::from(ok(&train_args("models/demo", &data, &root, &["--augment", "1"])).trim());
    let first = train();
    let record = |dir: &Path| json(&std::fs::read_to_string(dir.join("iteration.json")).unwrap());
    // 12 images, each itself and its mirror image.
    assert_eq!(record(&first)["training"]["computed_features"], 24);
    let again = train();
    assert_eq!(record(&again)["training"]["computed_features"], 0);
    assert_eq!(std::fs::read(first.join("head.json")).unwrap(), std::fs::read(again.join("head.json")).unwrap(), "same data, same seed: same head");
    make_data(&data, &samples(&["eagle"]), 2, 7);
    assert_eq!(record(&train())["training"]["computed_features"], 4);
}

#[test]
fn multilabel_images_in_several_tag_folders_get_every_tag() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    // Cat photos are "animal" and "furry" (tagged both at once, as a technician would), dog
    // photos only "animal", rocket photos "thing".
    make_data(&dir.path().join("raw"), &samples(&["cat"]), 6, 8);
    let raw: Vec<String> = std::fs::read_dir(dir.path().join("raw/cat")).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    let mut capture = vec!["capture", "--tag", "animal", "--tag", "furry", "--data", data.to_str().unwrap(), "--import"];
    capture.extend(raw.iter().map(String::as_str));
    ok(&capture);
    let counts = ok(&["dataset", "--data", data.to_str().unwrap()]);
    assert!(counts.contains("6  animal") && counts.contains("6  furry"), "{counts}");
    make_data(&data, &[("animal", repo().join("models/samples/dog.jpg")), ("thing", repo().join("models/samples/rocket.jpg"))], 6, 9);
    let run = cvedge(&train_args("models/demo", &data, &root, &[]));
    assert!(!run.ok() && run.stderr.contains("--multilabel"), "multiclass refuses two tags on one image: {}", run.stderr);
    let report = json(&ok(&train_args("models/demo", &data, &root, &["--multilabel", "--json"])));
    assert_eq!(report["classificationType"], "multilabel");
    assert!(report["confusion"].is_null());
    let cat = json(&ok(&["predict", "--model", report["iteration"].as_str().unwrap(), "--json", "models/samples/cat.jpg"]));
    let detected: Vec<&str> = cat["predictions"].as_array().unwrap().iter().filter(|p| p["probability"].as_f64().unwrap() >= 0.5).map(|p| p["tagName"].as_str().unwrap()).collect();
    assert!(detected.contains(&"animal") && detected.contains(&"furry"), "{cat}");
}

#[test]
fn bad_training_data_gets_one_clear_sentence_and_unreadable_images_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["cat"]), 6, 10);
    make_data(&data, &samples(&["dog"]), 3, 11);
    let base = train_args("models/demo", &data, &root, &[]);
    let run = cvedge(&base);
    assert!(!run.ok() && run.stderr.contains("dog (3)") && run.stderr.contains("at least 5"), "{}", run.stderr);
    make_data(&data, &samples(&["dog"]), 3, 12);
    std::fs::write(data.join("dog/broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    let run = cvedge(&base);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stderr.contains("left out") && run.stderr.contains("broken.jpg"), "{}", run.stderr);
    let missing = cvedge(&train_args("models/demo", &dir.path().join("nope"), &root, &[]));
    assert!(!missing.ok() && missing.stderr.contains("capture"), "{}", missing.stderr);
}

/// Fine-tuning on the real exports' own backbones: every fixture with at least two sample photos
/// gets a head trained on variations of them, then classifies other variations correctly.
#[test]
fn real_exports_train_on_their_own_backbone() {
    let Some(fixtures) = fixtures() else { return };
    let mut trained = 0;
    for export in ["onnx-officefruit-2018", "tflite-fp16-appleorange-2025", "tf-bananas-2018", "onnx-catdog-2018"] {
        let folder = fixtures.join(export);
        let photos: Vec<PathBuf> = std::fs::read_dir(folder.join("samples")).into_iter().flatten().flatten().map(|e| e.path()).collect();
        if photos.len() < 2 {
            eprintln!("{export}: fewer than two sample photos, nothing to tell apart");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = photos.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
        let tagged: Vec<(&str, PathBuf)> = names.iter().map(String::as_str).zip(photos.iter().cloned()).collect();
        make_data(&dir.path().join("data"), &tagged, 6, 13);
        let report = json(&ok(&train_args(folder.to_str().unwrap(), &dir.path().join("data"), &dir.path().join("it"), &["--json"])));
        let iteration = PathBuf::from(report["iteration"].as_str().unwrap());
        let held_out = dir.path().join("held-out");
        std::fs::create_dir_all(&held_out).unwrap();
        for (name, path) in &tagged {
            for (i, v) in variations(&photo(path), 2, 77).iter().enumerate() {
                v.save(held_out.join(format!("{name}@{i}.png"))).unwrap();
            }
        }
        for (image, predicted) in predicted_tags(&iteration, &held_out) {
            let expected = Path::new(&image).file_stem().unwrap().to_string_lossy().split('@').next().unwrap().to_owned();
            assert_eq!(predicted, expected, "{export}: {image}");
        }
        trained += 1;
    }
    assert!(trained >= 3, "only {trained} fixture exports had samples to train on");
}

#[test]
fn the_library_loads_an_iteration_with_the_trained_head() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["coffee", "eagle"]), 5, 14);
    let out = ok(&train_args("models/demo", &data, &root, &["--folds", "0"]));
    let classifier = cvedge::Classifier::load(out.trim(), &Default::default()).unwrap();
    assert_eq!(classifier.labels, ["coffee", "eagle"]);
    let eagle = classifier.classify(&photo(&repo().join("models/samples/eagle.jpg"))).unwrap();
    assert_eq!(classifier.labels[argmax(&eagle.probabilities)], "eagle");
    assert!((eagle.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn an_iteration_exports_as_a_standalone_onnx_export_with_the_same_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root, out) = (dir.path().join("data"), dir.path().join("iterations"), dir.path().join("export"));
    make_data(&data, &samples(&["dog", "eagle", "rocket"]), 5, 16);
    let iteration = ok(&train_args("models/demo", &data, &root, &["--folds", "0"]));
    let written = ok(&["export", iteration.trim(), "--out", out.to_str().unwrap()]);
    for file in ["model.onnx", "labels.txt", "cvexport.manifest"] {
        assert!(written.contains(file) && out.join(file).is_file(), "{file}: {written}");
    }
    let probabilities = |model: &Path| -> Vec<(String, f64)> {
        let line = ok(&["predict", "--model", model.to_str().unwrap(), "--json", "models/samples/eagle.jpg"]);
        json(&line)["predictions"].as_array().unwrap().iter().map(|p| (p["tagName"].as_str().unwrap().to_owned(), p["probability"].as_f64().unwrap())).collect()
    };
    let (trained, exported) = (probabilities(Path::new(iteration.trim())), probabilities(&out));
    assert_eq!(trained.iter().map(|p| &p.0).collect::<Vec<_>>(), exported.iter().map(|p| &p.0).collect::<Vec<_>>());
    for ((tag, a), (_, b)) in trained.iter().zip(&exported) {
        assert!((a - b).abs() < 1e-4, "{tag}: iteration {a}, export {b}");
    }
    assert_eq!(trained[0].0, "eagle");
    // The export names the iteration it came from.
    let line = ok(&["predict", "--model", out.to_str().unwrap(), "--json", "models/samples/eagle.jpg"]);
    let record = json(&std::fs::read_to_string(Path::new(iteration.trim()).join("iteration.json")).unwrap());
    assert_eq!(json(&line)["iteration"], record["id"]);
}

#[test]
fn iterations_on_a_tflite_base_export_through_its_onnx_twin() {
    let base = repo().join("models/conformance/tflite-2025-fp16");
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), dir.path().join("iterations"));
    make_data(&data, &samples(&["cat", "rocket"]), 5, 17);
    let iteration = ok(&train_args(base.to_str().unwrap(), &data, &root, &["--folds", "0"]));
    let out = dir.path().join("out");
    ok(&["export", iteration.trim(), "--out", out.to_str().unwrap()]);
    let record = json(&std::fs::read_to_string(Path::new(iteration.trim()).join("iteration.json")).unwrap());
    for image in ["models/samples/cat.jpg", "models/samples/rocket.jpg"] {
        let trained = json(&ok(&["predict", "--model", iteration.trim(), "--json", image]));
        let exported = json(&ok(&["predict", "--model", out.to_str().unwrap(), "--json", image]));
        assert_eq!(exported["iteration"], record["id"]);
        let by_tag = |v: &serde_json::Value| -> std::collections::BTreeMap<String, f64> {
            v["predictions"].as_array().unwrap().iter().map(|p| (p["tagName"].as_str().unwrap().to_owned(), p["probability"].as_f64().unwrap())).collect()
        };
        let (a, b) = (by_tag(&trained), by_tag(&exported));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{image}");
        for (tag, pa) in &a {
            assert!((pa - b[tag]).abs() < 1e-4, "{image} {tag}: trained {pa} vs exported {}", b[tag]);
        }
    }
    // An export that is not an iteration is written with its own head.
    let demo = dir.path().join("demo");
    ok(&["export", "models/demo", "--out", demo.to_str().unwrap()]);
    assert!(demo.join("model.onnx").is_file());
}

/// Training into a full disk fails with one sentence that says so, lists no partial iteration and
/// leaves nothing behind to hold space; the published iteration still predicts; temporary folders
/// a killed training left are removed by the next training once they are stale.
#[test]
fn a_full_disk_fails_training_clearly_and_leaves_nothing_behind() {
    let Some(disk) = common::Tmpfs::mount("24m") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("data"), disk.path().join("iterations"));
    make_data(&data, &samples(&["cat", "rocket"]), 5, 20);
    let root_arg = root.to_str().unwrap();
    ok(&train_args("models/demo", &data, &root, &["--folds", "0", "--publish"]));
    let before = ok(&["predict", "--model", root_arg, "--json", "models/samples/cat.jpg"]);
    make_data(&data, &samples(&["dog"]), 5, 21);
    let fill = disk.fill();
    let run = cvedge(&train_args("models/demo", &data, &root, &["--folds", "0", "--publish"]));
    assert!(!run.ok(), "{}", run.stdout);
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert!(errors.len() == 1 && errors[0].contains("the disk is full") && !errors[0].contains("cannot read"), "{}", run.stderr);
    let hidden = |dir: &Path| -> Vec<String> { file_names(dir).into_iter().filter(|n| n.starts_with(".tmp") || n.ends_with(".tmp")).collect() };
    for folder in [root.clone(), root.join("bases"), root.join("images")] {
        assert!(hidden(&folder).is_empty(), "{}: {:?}", folder.display(), hidden(&folder));
    }
    assert!(!root.join("2").exists());
    assert_eq!(json(&ok(&["predict", "--model", root_arg, "--json", "models/samples/cat.jpg"]))["predictions"], json(&before)["predictions"]);
    let list = ok(&["iterations", "--iterations", root_arg, "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");

    // A killed training's leftovers (here made by hand, an hour and more old) go at the next one.
    std::fs::remove_file(fill).unwrap();
    let stale = [root.join(".tmp-killed"), root.join("bases").join(".tmp-killed")];
    for folder in &stale {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::write(folder.join("head.json"), "{").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
        std::fs::File::open(folder).unwrap().set_modified(old).unwrap();
    }
    let fresh = root.join(".tmp-running");
    std::fs::create_dir_all(&fresh).unwrap();
    ok(&train_args("models/demo", &data, &root, &["--folds", "0", "--publish"]));
    assert!(stale.iter().all(|f| !f.exists()), "stale temporary folders were kept");
    assert!(fresh.exists(), "a training running beside this one lost its folder");
    let line = ok(&["predict", "--model", root_arg, "--json", "models/samples/dog.jpg"]);
    assert_eq!(json(&line)["predictions"][0]["tagName"], "dog");
}
