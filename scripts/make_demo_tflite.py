"""The bundled demo model as TensorFlow Lite, fp32 and full-integer int8, for peer benchmarks.

scripts/bench_peers.py times cvedge against TFLite (ai-edge-litert, XNNPACK) on the SAME model, so
this script rebuilds models/demo/model.onnx (EfficientNet-Lite0 + Gemm + Softmax, see
make_demo_model.py) op for op in TensorFlow from the ONNX weights and converts it:
  fp32.tflite  the graph as is (BGR->RGB Gather, (x - 127) / 128, 49 Conv + ReLU6, 9 Add, mean,
               FullyConnected, Softmax); input `data` float32 [1,224,224,3] NHWC BGR 0..255 (the
               ONNX input's values, channels last as TFLite exports have them), output [1,5].
  int8.tflite  full-integer quantization (TFLITE_BUILTINS_INT8 only: every op int8, weights per
               channel), calibrated on a folder of images preprocessed by the Custom Vision recipe
               (scripts/reference_outputs.py: shorter side 256, centre crop 224, BGR 0..255); float
               input and output, quantized inside, like cvedge's int8 QDQ ONNX.
The rebuild is checked against onnxruntime on models/samples/*.jpg (fp32: max |dp| < 1e-4 and
the same top-1; int8: top-1 and max |dp| printed).

No ONNX-to-TF converter package is needed: the demo graph uses nine op types, mapped directly
(Conv with group = channels -> depthwise, ONNX pads -> SAME where they equal TF's SAME padding,
explicit pad otherwise). It refuses any other op.

Calibration images: --calibrate DIR, or by default a folder made by make_calibration(): 60
deterministic variations of models/samples/*.jpg (crops, flips, brightness/contrast), the same
folder bench_peers.py gives `cvedge quantize --calibrate`.

    python3 scripts/make_demo_tflite.py [--model models/demo] [--calibrate DIR] [--out DIR]

Default --out: target/peers/tflite (generated, not committed: 13 MB + 4 MB). Deterministic:
re-running with the same inputs writes byte-identical .tflite files (the script checks by
converting twice with --check-determinism).
"""
import argparse
import hashlib
import json
import os
import random
import sys

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_outputs as ref  # noqa: E402  (preprocess(), the Custom Vision recipe)

REPO = ref.REPO
RECIPE, SIZE = "shorter-side-256", 224
DEFAULT_OUT = os.path.join(REPO, "target", "peers", "tflite")


# --------------------------------------------------------------------------------------
# calibration images


def make_calibration(folder, per_sample=12, seed=0, source=None):
    """Writes per_sample variations of each `source`/*.jpg (default models/samples: 60 images)
    into `folder`: a random crop of 60-100% of each side, a horizontal flip half the time,
    brightness and contrast from 0.7 to 1.3, JPEG quality 90. Seeded: the same bytes every run."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    source = source or os.path.join(REPO, "models", "samples")
    samples = sorted(f for f in os.listdir(source) if f.endswith(".jpg"))
    for name in samples:
        with Image.open(os.path.join(source, name)) as im:
            src = im.convert("RGB")
        w, h = src.size
        for i in range(per_sample):
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = src.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                im = ImageOps.mirror(im)
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
            im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
            im.save(os.path.join(folder, "%s_%02d.jpg" % (name[:-4], i)), "JPEG", quality=90)
    return folder


def calibration_files(folder):
    exts = (".jpg", ".jpeg", ".png", ".bmp")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(exts) and not f.startswith("."))
    if not files:
        raise SystemExit("FATAL: no images in %s" % folder)
    return files


def digest(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# ONNX -> TensorFlow, op for op


def build_tf_function(onnx_path):
    """A tf.function NHWC [1,224,224,3] -> [1,tags] computing the ONNX graph."""
    import onnx
    import tensorflow as tf
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    known = {"Constant", "Gather", "Sub", "Mul", "Add", "Conv", "Clip", "GlobalAveragePool",
             "Flatten", "Gemm", "Softmax"}
    unknown = {n.op_type for n in g.node} - known
    if unknown:
        raise SystemExit("FATAL: %s uses ops this rebuild does not map: %s" % (onnx_path, sorted(unknown)))

    def attrs(n):
        return {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}

    def const_nhwc(a):
        a = np.asarray(a, dtype=np.float32)
        return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a

    def same_pads(size, k, s):
        total = max((k - s) if size % s == 0 else (k - size % s), 0)
        return total // 2, total - total // 2

    def conv(x, n):
        a = attrs(n)
        w = consts[n.input[1]]
        b = consts[n.input[2]] if len(n.input) > 2 else None
        kh, kw = a["kernel_shape"]
        sh, sw = a.get("strides", [1, 1])
        assert a.get("dilations", [1, 1]) == [1, 1] and a.get("auto_pad", b"NOTSET") == b"NOTSET", a
        top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
        h, wd = int(x.shape[1]), int(x.shape[2])
        if (top, bottom) == same_pads(h, kh, sh) and (left, right) == same_pads(wd, kw, sw):
            padding = "SAME"
        else:
            x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
            padding = "VALID"
        group = a.get("group", 1)
        cin = int(x.shape[3])
        if group == 1:
            y = tf.nn.conv2d(x, tf.constant(w.transpose(2, 3, 1, 0)), [1, sh, sw, 1], padding)
        elif group == cin and w.shape[1] == 1 and w.shape[0] == cin:
            y = tf.nn.depthwise_conv2d(x, tf.constant(w[:, 0].transpose(1, 2, 0)[..., None]),
                                       [1, sh, sw, 1], padding)
        else:
            raise SystemExit("FATAL: grouped Conv (group %d) is not mapped" % group)
        return y if b is None else tf.nn.bias_add(y, tf.constant(b))

    def forward(x):
        env = {g.input[0].name: x}

        def val(name):
            return env[name] if name in env else tf.constant(const_nhwc(consts[name]))

        for n in g.node:
            op = n.op_type
            if op == "Constant":
                continue
            if op == "Gather":
                assert attrs(n)["axis"] == 1  # channels: NCHW axis 1 is NHWC axis 3
                y = tf.gather(val(n.input[0]), consts[n.input[1]].astype(np.int32), axis=3)
            elif op == "Sub":
                y = val(n.input[0]) - val(n.input[1])
            elif op == "Mul":
                y = val(n.input[0]) * val(n.input[1])
            elif op == "Add":
                y = val(n.input[0]) + val(n.input[1])
            elif op == "Conv":
                y = conv(env[n.input[0]], n)
            elif op == "Clip":
                lo, hi = float(consts[n.input[1]]), float(consts[n.input[2]])
                y = tf.nn.relu6(env[n.input[0]]) if (lo, hi) == (0.0, 6.0) else \
                    tf.clip_by_value(env[n.input[0]], lo, hi)
            elif op == "GlobalAveragePool":
                y = tf.reduce_mean(env[n.input[0]], axis=[1, 2], keepdims=True)
            elif op == "Flatten":
                x4 = env[n.input[0]]
                assert attrs(n).get("axis", 1) == 1 and x4.shape[1] == 1 and x4.shape[2] == 1, x4.shape
                y = tf.reshape(x4, [1, int(x4.shape[3])])  # 1x1 spatial: same order as NCHW
            elif op == "Gemm":
                a = attrs(n)
                assert a.get("transA", 0) == 0 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0, a
                w = consts[n.input[1]]
                w = w.T if a.get("transB", 0) else w
                y = tf.matmul(env[n.input[0]], tf.constant(w)) + tf.constant(consts[n.input[2]])
            elif op == "Softmax":
                assert attrs(n).get("axis", -1) in (1, -1)
                y = tf.nn.softmax(env[n.input[0]], axis=-1)
            env[n.output[0]] = y
        return env[g.output[0].name]

    class Demo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, name="data")])
        def __call__(self, data):
            return {"model_output": forward(data)}

    module = Demo()
    return module, module.__call__.get_concrete_function()


def convert(onnx_path, calib_files, int8):
    import tensorflow as tf
    module, fn = build_tf_function(onnx_path)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    if int8:
        tensors = [ref.preprocess(p, RECIPE, SIZE, "bgr", "0-255", layout="NHWC") for p in calib_files]

        def representative():
            for t in tensors:
                yield {"data": t}

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def check(onnx_path, fp32_path, int8_path):
    """Compares both TFLite models with onnxruntime on models/samples/*.jpg; returns text lines."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    interps = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        it = Interpreter(model_path=path, num_threads=1)
        it.allocate_tensors()
        interps[name] = it
    lines, worst = [], {"fp32": 0.0, "int8": 0.0}
    samples = sorted(f for f in os.listdir(os.path.join(REPO, "models", "samples")) if f.endswith(".jpg"))
    for f in samples:
        p = os.path.join(REPO, "models", "samples", f)
        x = ref.preprocess(p, RECIPE, SIZE, "bgr", "0-255", layout="NCHW")
        po = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]
        row = "%-11s onnxruntime top-1 %d" % (f, int(np.argmax(po)))
        for name, it in interps.items():
            it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
            it.invoke()
            pt = it.get_tensor(it.get_output_details()[0]["index"])[0]
            d = float(np.abs(pt - po).max())
            worst[name] = max(worst[name], d)
            row += "  %s top-1 %d |dp| %.1e" % (name, int(np.argmax(pt)), d)
            if name == "fp32" and (d > 1e-4 or np.argmax(pt) != np.argmax(po)):
                raise SystemExit("FATAL: the fp32 TFLite rebuild disagrees with onnxruntime on %s (%s)" % (f, row))
        lines.append(row)
    return lines, worst


def make(model_dir, calib_dir, out_dir, verbose=True):
    """Writes out_dir/fp32.tflite and out_dir/int8.tflite unless out_dir/source.json says they
    were made from the same ONNX file, calibration images and this script; returns the paths."""
    onnx_path = os.path.join(model_dir, "model.onnx")
    files = calibration_files(calib_dir)
    source = {"onnx_sha256": digest([onnx_path]), "calibration_sha256": digest(files),
              "calibration_images": len(files), "script_sha256": digest([os.path.abspath(__file__)])}
    fp32, int8 = os.path.join(out_dir, "fp32.tflite"), os.path.join(out_dir, "int8.tflite")
    meta = os.path.join(out_dir, "source.json")
    if os.path.exists(meta) and os.path.exists(fp32) and os.path.exists(int8):
        with open(meta) as f:
            if json.load(f) == source:
                return fp32, int8
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.makedirs(out_dir, exist_ok=True)
    if verbose:
        print("converting %s to TFLite fp32 and int8 (%d calibration images from %s) ..." % (
            os.path.relpath(onnx_path, REPO), len(files), calib_dir), file=sys.stderr)
    for path, int8_flag in ((fp32, False), (int8, True)):
        data = convert(onnx_path, files, int8_flag)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    lines, _ = check(onnx_path, fp32, int8)
    if verbose:
        print("\n".join(lines), file=sys.stderr)
    with open(meta, "w") as f:
        json.dump(source, f, indent=1)
    return fp32, int8


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/demo", help="export folder with model.onnx (default models/demo)")
    ap.add_argument("--calibrate", help="calibration image folder (default: make_calibration() into OUT/calibration)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default target/peers/tflite)")
    ap.add_argument("--check-determinism", action="store_true", help="convert twice and compare the bytes")
    args = ap.parse_args()
    model_dir = os.path.join(REPO, args.model) if not os.path.isabs(args.model) else args.model
    calib = args.calibrate or make_calibration(os.path.join(args.out, "calibration"))
    fp32, int8 = make(model_dir, calib, args.out)
    for p in (fp32, int8):
        print("%s: %d bytes, sha256 %s" % (p, os.path.getsize(p), digest([p])[:16]))
    if args.check_determinism:
        files = calibration_files(calib)
        onnx_path = os.path.join(model_dir, "model.onnx")
        for p, flag in ((fp32, False), (int8, True)):
            with open(p, "rb") as f:
                same = f.read() == convert(onnx_path, files, flag)
            print("%s: %s" % (os.path.basename(p), "byte-identical on a second conversion" if same else "DIFFERS"))
            if not same:
                raise SystemExit(1)


if __name__ == "__main__":
    main()
