"""Golden reference outputs for cvedge: writes tests/golden/reference_outputs.json.

For every Custom Vision fixture export under $CVEDGE_FIXTURES (default
``../shared/fixtures/exports`` relative to the repo root) and every model this repo
generates under models/ (demo, demo-fp16, every conformance variant), runs the
REFERENCE runtime (onnxruntime for .onnx, ai-edge-litert for .tflite, TensorFlow for
a frozen .pb) on every sample image and records the probabilities in labels.txt order
(full float precision).  The opset-1 legacy fixture, which no runtime loads, is
recorded as ``"loads": false``.  An opset-6 ("ONNX 1.0") model, whose map(string, float)
``loss`` output onnxruntime refuses, is recorded as ``"loads": false`` with onnxruntime's
``error`` AND ``outputs`` computed by onnxruntime on its opset-7 twin (``opset7_twin()``),
marked by a ``reference`` field.

Fixture outputs are checked against each fixture's expected.json (top tag); the script
aborts with a non-zero exit if any disagrees.  A top-1 table is printed to stdout.

Preprocessing lives in ``preprocess()`` below; the Rust side implements the same
algorithm.  Run from anywhere (the script finds the repo root from its own path):

    python scripts/reference_outputs.py

Needs models/ and tests/data/ to exist (run make_demo_model.py,
make_conformance_models.py and make_test_images.py first).  Deterministic: single
threaded runtimes, no randomness.
"""
import glob
import hashlib
import json
import os
import platform
import sys

import cv2
import numpy as np
from PIL import Image, ImageOps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.abspath(os.environ.get("CVEDGE_FIXTURES",
                                          os.path.join(REPO, "..", "shared", "fixtures", "exports")))
OUT = os.path.join(REPO, "tests", "golden", "reference_outputs.json")

# Extra repo images run through every repo model (besides models/samples/*).
EXTRA_IMAGES = ["tests/data/exif_rotated.jpg", "tests/data/gray.jpg", "tests/data/alpha.png",
                "tests/data/one_pixel.png", "tests/data/large_4000x3000.jpg"]

LEGACY_MAX = 1600


def load_rgb(path):
    """Decode with Pillow, apply EXIF orientation, drop alpha / replicate grey -> uint8 HxWx3 RGB."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
        return np.asarray(im, dtype=np.uint8).copy()


def resize_crop(rgb, recipe, size):
    """Step 2 of preprocess(): uint8 HxWx3 -> uint8 size x size x 3 (see preprocess)."""
    lin = cv2.INTER_LINEAR
    a = rgb
    S = size
    if recipe == "legacy-square-256":
        h, w = a.shape[:2]
        if h >= LEGACY_MAX or w >= LEGACY_MAX:
            new = (LEGACY_MAX * w // h, LEGACY_MAX) if h > w else (LEGACY_MAX, LEGACY_MAX * h // w)
            a = cv2.resize(a, new, interpolation=lin)
        h, w = a.shape[:2]
        m = min(h, w)
        x0 = w // 2 - m // 2
        y0 = h // 2 - m // 2
        a = a[y0:y0 + m, x0:x0 + m]
        a = cv2.resize(a, (256, 256), interpolation=lin)
        o = 256 // 2 - S // 2
        a = a[o:o + S, o:o + S]
    elif recipe.startswith("shorter-side-"):
        t = int(recipe[len("shorter-side-"):])
        h, w = a.shape[:2]
        if w < h:
            new = (t, (h * t + w // 2) // w)
        else:
            new = ((w * t + h // 2) // h, t)
        a = cv2.resize(a, new, interpolation=lin)
        H, W = a.shape[:2]
        x0 = W // 2 - S // 2
        y0 = H // 2 - S // 2
        a = a[y0:y0 + S, x0:x0 + S]
    elif recipe == "stretch":
        a = cv2.resize(a, (S, S), interpolation=lin)
    else:
        raise ValueError("unknown recipe %r" % recipe)
    assert a.shape == (S, S, 3), a.shape
    return np.ascontiguousarray(a)


def preprocess(path, recipe, size, color="bgr", value_range="0-255", mean_bgr=None,
               layout="NCHW", dtype=np.float32):
    """Turn an image file into the model input tensor, exactly as the Rust runtime does.

    1. Decode with Pillow; apply EXIF orientation (PIL.ImageOps.exif_transpose); convert to
       RGB with .convert("RGB") (RGBA: alpha is dropped, no compositing; grayscale: replicated
       to 3 channels). Then numpy uint8 HxWx3 RGB.
    2. Resize/crop by recipe; every resize is cv2.resize(..., interpolation=cv2.INTER_LINEAR)
       on uint8; cv2 sizes are (width, height):
       - "legacy-square-256" (227-input models without metadata): if h >= 1600 or w >= 1600,
         resize to (1600*w//h, 1600) if h > w else (1600, 1600*h//w); centre-crop the largest
         square (m = min(h,w), x0 = w//2 - m//2, y0 = h//2 - m//2); resize to 256x256;
         centre-crop S x S at x0 = y0 = 256//2 - S//2.
       - "shorter-side-256" (224-input models; metadata ResizeMethod ByShorterSide +
         CropMethod OneCropCenter): if w < h resize to (256, (h*256 + w//2)//w) else to
         ((w*256 + h//2)//h, 256); centre-crop S x S at x0 = W//2 - S//2, y0 = H//2 - S//2.
       - "stretch" (S1 / 300-input, metadata ResizeMethod Stretch): resize straight to S x S.
    3. Channel order and range: color "bgr" reverses the channels (RGB -> BGR), "rgb" keeps
       them; value_range "0-255" keeps float values 0..255, "0-1" divides by 255.0.
       mean_bgr (only TFLite 2019 fp32 exports, which have no mean layer): subtract the
       per-channel mean given in B,G,R order (applied in BGR order, before any layout change).
       Layout "NCHW" (ONNX) -> [1,3,S,S]; "NHWC" (TF / TFLite) -> [1,S,S,3].
       dtype float32, or float16 for OnnxFloat16 models (cast last).
    """
    a = resize_crop(load_rgb(path), recipe, size).astype(np.float32)
    if color == "bgr":
        a = a[:, :, ::-1]
    elif color != "rgb":
        raise ValueError(color)
    if value_range == "0-1":
        a = a / np.float32(255.0)
    elif value_range != "0-255":
        raise ValueError(value_range)
    if mean_bgr is not None:
        if color != "bgr":
            raise ValueError("mean_bgr needs bgr input")
        a = a - np.asarray(mean_bgr, dtype=np.float32)[None, None, :]
    if layout == "NCHW":
        a = a.transpose(2, 0, 1)
    elif layout != "NHWC":
        raise ValueError(layout)
    return np.ascontiguousarray(a[None].astype(dtype))


# --------------------------------------------------------------------------------------
# model inspection


def read_labels(folder):
    p = os.path.join(folder, "labels.txt")
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    while lines and lines[-1].strip() == "":
        lines.pop()
    return lines


def read_metadata_json(folder):
    p = os.path.join(folder, "metadata_properties.json")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    return {}


def recipe_from(meta, size):
    rm = meta.get("CustomVision.Preprocess.ResizeMethod")
    cm = meta.get("CustomVision.Preprocess.CropMethod")
    if rm == "Stretch":
        return "stretch"
    if rm == "ByShorterSide" and cm in (None, "OneCropCenter"):
        return "shorter-side-256"
    if rm is not None:
        raise ValueError("recipe %s/%s not implemented" % (rm, cm))
    if size == 227:
        return "legacy-square-256"
    if size == 300:
        return "stretch"
    return "shorter-side-256"


def inspect_onnx(path):
    import onnx
    m = onnx.load(path)
    props = {p.key: p.value for p in m.metadata_props}
    inp = m.graph.input[0]
    tt = inp.type.tensor_type
    dims = [d.dim_value for d in tt.shape.dim]
    size = dims[2]
    fp16 = tt.elem_type == onnx.TensorProto.FLOAT16
    zipmap = [n for n in m.graph.node if n.op_type == "ZipMap"]
    zip_labels = None
    if zipmap:
        for a in zipmap[0].attribute:
            if a.name == "classlabels_strings":
                zip_labels = [s.decode("utf-8") for s in a.strings]
    opset = {o.domain: o.version for o in m.opset_import}
    return dict(props=props, size=size, fp16=fp16, zip_labels=zip_labels, opset=opset,
                input=inp.name, outputs=[o.name for o in m.graph.output])


def onnx_config(path, folder):
    info = inspect_onnx(path)
    meta = dict(read_metadata_json(folder))
    # ONNX: the model's own metadata_props decide channel order and range (they are right for
    # ONNX); recipe keys may come from either place.
    meta.update(info["props"])
    size = info["size"]
    legacy = info["opset"].get("", 99) < 9  # opset 7 "ONNX 1.2" exports (ImageScaler inside)
    if legacy:
        color, rng = "bgr", "0-255"
    else:
        color = "bgr" if meta.get("Image.BitmapPixelFormat", "Bgr8") == "Bgr8" else "rgb"
        rng = "0-255" if meta.get("Image.NominalPixelRange", "NominalRange_0_255") == "NominalRange_0_255" else "0-1"
    labels = read_labels(folder) or info["zip_labels"]
    return dict(runtime="onnxruntime", recipe=recipe_from(meta, size), input_size=size,
                color=color, range=rng, mean_bgr=None, layout="NCHW",
                dtype="float16" if info["fp16"] else "float32", labels=labels,
                labels_from="labels.txt" if read_labels(folder) else "ZipMap",
                input=info["input"], outputs_all=info["outputs"])


def tflite_config(path, folder):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    d = it.get_input_details()[0]
    size = int(d["shape"][1])
    names = [t["name"] for t in it.get_tensor_details()]
    has_mean_layer = any(("data_bn" in n) or ("BatchNorm1" in n) for n in names)
    # TF/TFLite: metadata_properties.json Image.* keys are wrong; always BGR 0..255.
    # Only exports without a mean layer (no tensor named like data_bn / BatchNorm1: TFLite
    # 2019) need the mean subtracted here (rule from Microsoft's Android sample).
    mean = [104, 117, 123] if not has_mean_layer else None
    meta = read_metadata_json(folder)
    return dict(runtime="ai-edge-litert", recipe=recipe_from(meta, size), input_size=size,
                color="bgr", range="0-255", mean_bgr=mean, layout="NHWC", dtype="float32",
                labels=read_labels(folder), labels_from="labels.txt",
                input=d["name"], outputs_all=[o["name"] for o in it.get_output_details()])


def pb_config(path, folder):
    import tensorflow as tf
    gd = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        gd.ParseFromString(f.read())
    ph = [n for n in gd.node if n.name == "Placeholder"][0]
    size = ph.attr["shape"].shape.dim[1].size
    names = [n.name for n in gd.node]
    has_mean_layer = any(("data_bn" in n) or ("BatchNorm1" in n) for n in names)
    meta = read_metadata_json(folder)
    out = "loss"
    return dict(runtime="tensorflow", recipe=recipe_from(meta, size), input_size=size,
                color="bgr", range="0-255", mean_bgr=None, layout="NHWC", dtype="float32",
                labels=read_labels(folder), labels_from="labels.txt", input="Placeholder",
                outputs_all=[n for n in ("loss", "model_outputs") if n in names],
                has_mean_layer=has_mean_layer, output=out)


# --------------------------------------------------------------------------------------
# 2018 "ONNX 1.0" (opset 6) exports: onnxruntime refuses their map(string, float) output


# opset-6 ops with the legacy `broadcast` (+ `axis`) attributes that opset 7 replaced by numpy
# broadcasting; with broadcast=1 and no `axis`, B is a suffix of A's shape, which numpy
# broadcasting treats the same way. (Gemm: only C broadcasts, in both opsets.)
LEGACY_BROADCAST_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Gemm", "PRelu", "Equal", "Greater",
                        "Less", "And", "Or", "Xor"}
# other ops whose schema changed between opset 6 and 7 (not converted: refuse)
CHANGED_IN_OPSET7 = {"AveragePool", "GRU", "LSTM", "RNN", "Upsample"}


def opset7_twin(m):
    """The ai.onnx 7 twin of an opset-6 ModelProto (a converted copy; `m` is unchanged):
    opset 6 -> 7, legacy `broadcast` attributes dropped (numpy broadcasting), `is_test` dropped
    (BatchNormalization, Dropout), map-typed graph outputs declared as sequence(map), which is
    what ZipMap really produces and what onnxruntime accepts. Raises on anything it cannot
    convert exactly."""
    import onnx
    from onnx import helper
    t = onnx.ModelProto()
    t.CopyFrom(m)
    ops = [o for o in t.opset_import if o.domain in ("", "ai.onnx")]
    if len(ops) != 1 or ops[0].version != 6:
        raise ValueError("not an ai.onnx opset 6 model: %s" % [(o.domain, o.version) for o in t.opset_import])
    ops[0].version = 7
    for n in t.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        if n.op_type in CHANGED_IN_OPSET7:
            raise ValueError("%s (%s) changed in opset 7; not converted" % (n.name, n.op_type))
        attrs = {a.name: a for a in n.attribute}
        drop = []
        if n.op_type in LEGACY_BROADCAST_OPS and "broadcast" in attrs:
            if "axis" in attrs:
                raise ValueError("%s (%s): broadcast with axis is not numpy broadcasting" % (n.name, n.op_type))
            drop.append("broadcast")
        if n.op_type in ("BatchNormalization", "Dropout") and "is_test" in attrs:
            drop.append("is_test")
        if drop:
            keep = [a for a in n.attribute if a.name not in drop]
            del n.attribute[:]
            n.attribute.extend(keep)
    for o in t.graph.output:
        if o.type.HasField("map_type"):
            seq = helper.make_sequence_type_proto(o.type)
            o.type.CopyFrom(seq)
    return t


def onnx_refusal(path):
    """onnxruntime's error (first line, path-free) when it refuses to load `path`; None if it loads."""
    import onnxruntime as ort
    try:
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:
        return str(e).replace(REPO + os.sep, "").splitlines()[0][:300]
    return None


def is_opset6(path):
    if not path.endswith(".onnx"):
        return False
    import onnx
    m = onnx.load(path)
    return {o.domain: o.version for o in m.opset_import}.get("", 0) == 6


def run_model_opset6(path, images):
    """Golden entry for an opset-6 model: onnxruntime (which refuses the file) run on its
    opset-7 twin (opset7_twin), saved with the model's labels.txt in a temporary folder."""
    import tempfile
    import onnx
    err = onnx_refusal(path)
    if err is None:
        raise SystemExit("FATAL: %s (opset 6) loads in onnxruntime; expected a refusal" % path)
    twin = opset7_twin(onnx.load(path))
    with tempfile.TemporaryDirectory() as td:
        tp = os.path.join(td, "model.onnx")
        onnx.save(twin, tp)
        if os.path.exists(os.path.join(os.path.dirname(path), "labels.txt")):
            with open(os.path.join(os.path.dirname(path), "labels.txt"), "rb") as f, \
                    open(os.path.join(td, "labels.txt"), "wb") as g:
                g.write(f.read())
        entry = run_model(tp, images)
    # "loads"/"error" as for the refused legacy fixture: the reference runtime refuses the file
    entry["loads"] = False
    entry["error"] = err
    entry["reference"] = "onnxruntime on the opset-7 twin (onnxruntime refuses map-typed outputs)"
    return entry


# --------------------------------------------------------------------------------------
# runners


class OnnxRunner:
    def __init__(self, path, cfg):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.cfg = cfg
        outs = [o.name for o in self.s.get_outputs()]
        self.out = "loss" if "loss" in outs else ("model_output" if "model_output" in outs else outs[0])

    def __call__(self, x):
        r = self.s.run([self.out], {self.cfg["input"]: x})[0]
        if isinstance(r, list):  # ZipMap: list of {tag: prob}
            d = r[0]
            return [float(d[t]) for t in self.cfg["labels"]]
        return [float(v) for v in np.asarray(r, dtype=np.float64).reshape(-1)]


class TfliteRunner:
    def __init__(self, path, cfg):
        from ai_edge_litert.interpreter import Interpreter
        self.it = Interpreter(model_path=path, num_threads=1)
        self.it.allocate_tensors()
        self.i = self.it.get_input_details()[0]["index"]
        self.o = self.it.get_output_details()[0]["index"]

    def __call__(self, x):
        self.it.set_tensor(self.i, x)
        self.it.invoke()
        return [float(v) for v in self.it.get_tensor(self.o).reshape(-1)]


class PbRunner:
    def __init__(self, path, cfg):
        import tensorflow as tf
        gd = tf.compat.v1.GraphDef()
        with open(path, "rb") as f:
            gd.ParseFromString(f.read())
        self.g = tf.Graph()
        with self.g.as_default():
            tf.compat.v1.import_graph_def(gd, name="")
        conf = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        self.sess = tf.compat.v1.Session(graph=self.g, config=conf)
        self.out = self.g.get_tensor_by_name(cfg["output"] + ":0")
        self.inp = self.g.get_tensor_by_name("Placeholder:0")

    def __call__(self, x):
        return [float(v) for v in self.sess.run(self.out, {self.inp: x}).reshape(-1)]


def model_config(path):
    folder = os.path.dirname(path)
    if path.endswith(".onnx"):
        return onnx_config(path, folder), OnnxRunner
    if path.endswith(".tflite"):
        return tflite_config(path, folder), TfliteRunner
    if path.endswith(".pb"):
        return pb_config(path, folder), PbRunner
    raise ValueError(path)


def run_model(path, images):
    """images: list of (key, abs path). Returns the JSON entry for the model."""
    cfg, R = model_config(path)
    runner = R(path, cfg)
    labels = cfg["labels"]
    outputs = {}
    for key, ip in images:
        x = preprocess(ip, cfg["recipe"], cfg["input_size"], cfg["color"], cfg["range"],
                       cfg["mean_bgr"], cfg["layout"], np.float16 if cfg["dtype"] == "float16" else np.float32)
        p = runner(x)
        if len(p) != len(labels):
            raise SystemExit("FATAL: %s gives %d outputs but has %d labels" % (path, len(p), len(labels)))
        outputs[key] = p
    entry = {k: cfg[k] for k in ("runtime", "recipe", "input_size", "color", "range", "mean_bgr",
                                 "layout", "dtype", "labels", "labels_from")}
    entry["input_name"] = cfg["input"]
    entry["output_names"] = cfg["outputs_all"]
    entry["loads"] = True
    entry["outputs"] = outputs
    return entry


# (recipe, input size) pairs whose exact pixels the Rust side must reproduce.
PIXEL_RECIPES = [("legacy-square-256", 227), ("shorter-side-256", 224), ("shorter-side-224", 224),
                 ("stretch", 300)]


def pixel_digests(imgs):
    """SHA1 of the uint8 RGB crop (HxWx3, row-major) of every repo image under every recipe:
    Pillow decode + EXIF + cv2 INTER_LINEAR, which the Rust preprocessing must equal bit for bit."""
    out = {}
    for key, path in imgs:
        rgb = load_rgb(path)
        for recipe, size in PIXEL_RECIPES:
            crop = resize_crop(rgb, recipe, size)
            out.setdefault(key, {})["%s@%d" % (recipe, size)] = hashlib.sha1(crop.tobytes()).hexdigest()
    return out


def versions():
    from importlib.metadata import version
    v = {"python": platform.python_version()}
    for pkg in ("onnxruntime", "ai-edge-litert", "tensorflow-cpu", "onnx", "numpy",
                "opencv-python-headless", "pillow"):
        try:
            v[pkg] = version(pkg)
        except Exception:
            v[pkg] = None
    return v


def main():
    if not os.path.isdir(FIXTURES):
        raise SystemExit("FATAL: fixtures not found at %s (set CVEDGE_FIXTURES)" % FIXTURES)
    models = {}
    table = []
    failures = []

    # fixtures
    for folder in sorted(glob.glob(os.path.join(FIXTURES, "*"))):
        if not os.path.isdir(folder):
            continue
        name = os.path.basename(folder)
        with open(os.path.join(folder, "expected.json")) as f:
            expected = json.load(f)
        for mfile, exp in sorted(expected.items()):
            mpath = os.path.join(folder, mfile)
            key = "fixture:%s/%s" % (name, mfile)
            if exp.get("loads_in_reference") is False:
                err = None
                try:
                    import onnxruntime as ort
                    ort.InferenceSession(mpath, providers=["CPUExecutionProvider"])
                except Exception as e:  # expected
                    err = str(e).replace(FIXTURES, "$CVEDGE_FIXTURES").splitlines()[0][:300]
                if err is None:
                    failures.append("%s was expected NOT to load but did" % key)
                models[key] = {"loads": False, "runtime": "onnxruntime", "error": err,
                               "labels": read_labels(folder)}
                table.append((key, "-", "(does not load)", None))
                continue
            samples = sorted(glob.glob(os.path.join(folder, "samples", "*")))
            imgs = [(os.path.relpath(s, folder), s) for s in samples]
            entry = run_model(mpath, imgs)
            models[key] = entry
            for ik, probs in entry["outputs"].items():
                top = entry["labels"][int(np.argmax(probs))]
                want = exp.get(os.path.basename(ik), {}).get("top")
                ok = None
                if want:
                    ok = want[0][0] == top
                    if not ok:
                        failures.append("%s %s: top %s, expected %s" % (key, ik, top, want[0][0]))
                table.append((key, ik, top, max(probs), ok))

    # repo models
    samples = sorted(glob.glob(os.path.join(REPO, "models", "samples", "*.jpg")))
    imgs = [(os.path.relpath(s, REPO), s) for s in samples]
    for e in EXTRA_IMAGES:
        p = os.path.join(REPO, e)
        if not os.path.exists(p):
            raise SystemExit("FATAL: missing %s (run scripts/make_test_images.py)" % e)
        imgs.append((e, p))
    mpaths = []
    for pat in ("models/demo/model.onnx", "models/demo-fp16/model.onnx",
                "models/conformance/*/model.*"):
        mpaths += sorted(glob.glob(os.path.join(REPO, pat)))
    if not mpaths:
        raise SystemExit("FATAL: no repo models found (run the make_* scripts)")
    for mp in mpaths:
        key = "repo:" + os.path.relpath(mp, REPO)
        entry = run_model_opset6(mp, imgs) if is_opset6(mp) else run_model(mp, imgs)
        models[key] = entry
        for ik, probs in entry["outputs"].items():
            table.append((key, ik, entry["labels"][int(np.argmax(probs))], max(probs), None))

    # EXIF: the rotated JPEG must give the upright photo's output
    for key, e in models.items():
        if key.startswith("repo:") and "tests/data/exif_rotated.jpg" in e.get("outputs", {}):
            a = np.array(e["outputs"]["tests/data/exif_rotated.jpg"])
            b = np.array(e["outputs"]["models/samples/dog.jpg"])
            # jpegtran rotation is DCT-lossless but libjpeg's IDCT rounding is not
            # transpose-symmetric: pixels differ by <= 3 levels, so compare with a tolerance.
            d = float(np.abs(a - b).max())
            e["exif_rotated_vs_upright_max_abs_diff"] = d
            if d > 0.02 or int(np.argmax(a)) != int(np.argmax(b)):
                failures.append("%s: exif_rotated.jpg != dog.jpg (%s vs %s)" % (key, a, b))

    # alpha.png holds cat.jpg's decoded pixels plus alpha: dropping alpha must give cat.jpg's output
    for key, e in models.items():
        if key.startswith("repo:") and "tests/data/alpha.png" in e.get("outputs", {}):
            if e["outputs"]["tests/data/alpha.png"] != e["outputs"]["models/samples/cat.jpg"]:
                failures.append("%s: alpha.png != cat.jpg" % key)

    # The conformance variants share one core network: within each group (softmax / sigmoid)
    # every variant must agree, which checks each variant's channel order / range / mean rule.
    groups = {"softmax": ["onnx-opset7-zipmap", "onnx-opset7-zipmap-nolabels", "onnx-current-rgb01",
                          "tflite-2025-fp16", "tf-frozen"],
              "sigmoid": ["onnx-opset7-sigmoid", "onnx-current-multilabel", "tflite-2019-fp32"]}
    for gname, variants in groups.items():
        outs = [models.get("repo:models/conformance/%s/%s" % (v, f))
                for v in variants for f in ("model.onnx", "model.tflite", "model.pb")]
        outs = [o for o in outs if o]
        for o in outs[1:]:
            for ik, p in o["outputs"].items():
                d = float(np.abs(np.array(p) - np.array(outs[0]["outputs"][ik])).max())
                if d > 0.02:
                    failures.append("conformance %s group disagrees on %s (%.3g)" % (gname, ik, d))

    doc = {"generator": "scripts/reference_outputs.py", "versions": versions(),
           "preprocess": "see preprocess() docstring in scripts/reference_outputs.py",
           "pixels": pixel_digests(imgs),
           "models": models}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")

    w = max(len(t[0]) for t in table)
    print("%-*s  %-36s  %-14s  %-10s  %s" % (w, "model", "image", "top-1", "prob", "expected"))
    for t in table:
        key, ik, top = t[0], t[1], t[2]
        prob = "" if len(t) < 4 or t[3] is None else "%.6f" % t[3]
        ok = "" if len(t) < 5 or t[4] is None else ("OK" if t[4] else "MISMATCH")
        print("%-*s  %-36s  %-14s  %-10s  %s" % (w, key, ik, top, prob, ok))
    print("wrote %s" % os.path.relpath(OUT, REPO))
    if failures:
        print("\nFAILURES:", file=sys.stderr)
        for fl in failures:
            print("  " + fl, file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
