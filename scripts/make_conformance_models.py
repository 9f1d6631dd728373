"""Tiny conformance models, one per Custom Vision export format: models/conformance/<variant>/.

Every variant is the same tiny random network (fixed seed): conv 3x3 stride 2 VALID, 8
channels -> ReLU -> global average pool -> fully connected (3 tags) -> Softmax or Sigmoid,
with its input normalisation folded into the conv weights so that every variant gives
similar (spread, unsaturated) probabilities on the same photo. The FILE LAYOUT of each
variant reproduces one export generation so cvedge's loader is tested on the whole family:

  onnx-opset7-zipmap           2018-2020 "ONNX 1.2": ai.onnx 7 + ai.onnx.ml 1, input `data`
                               [None,3,227,227] BGR 0..255, ImageScaler(bias -104,-117,-123),
                               ... Softmax `loss1` -> ZipMap `loss` + ArgMax/ArrayFeatureExtractor
                               `classLabel` (tail copied from the catdog fixture). labels.txt.
  onnx-opset7-zipmap-nolabels  same model.onnx, no labels.txt (tags only in ZipMap).
  onnx-opset6-map              2018 "ONNX 1.0": the onnx-opset7-zipmap network and weights with
                               ai.onnx 6 + ai.onnx.ml 1, IR 3, opset-6 Gemm (`broadcast`=1 for
                               the [3] bias) and graph output `loss` typed map(string, float)
                               (not sequence(map)), which onnxruntime refuses to load. labels.txt.
                               Verified through its opset-7 twin (reference_outputs.opset7_twin).
  onnx-opset7-sigmoid          as zipmap but Sigmoid (multilabel style). labels.txt.
  onnx-current-multilabel      current layout: `data` [1,3,224,224] BGR 0..255 -> `model_output`
                               Sigmoid; metadata_props Bgr8/NominalRange_0_255 and
                               Postprocess.Method ClassificationMultiLabel; manifest + metadata json.
  onnx-current-rgb01           current layout, Softmax, metadata_props Rgb8 / Normalized_0_1
                               (the model really expects RGB 0..1).
  tflite-2019-fp32             TFLite fp32: `Placeholder` [1,227,227,3] BGR 0..255, NO mean
                               layer (runtime subtracts B,G,R 104,117,123), AVERAGE_POOL_2D ->
                               FULLY_CONNECTED fed a rank-4 [1,1,1,8] tensor -> LOGISTIC `loss`.
  tflite-2025-fp16             TFLite with fp16 weights behind DEQUANTIZE, fp32 I/O, `Placeholder`
                               [1,224,224,3] BGR 0..255 -> `model_outputs` Softmax; a copy of the
                               2025 fixture's metadata_properties.json; a `data_bn` SUB
                               layer inside subtracts the mean (like the real file); (Image.* deliberately
                               wrong: Rgb8 / Normalized_0_1) and a manifest.
  tf-frozen                    TF frozen GraphDef model.pb: `Placeholder` [None,224,224,3]
                               BGR 0..255, `data_bn` mean layer inside, `loss` Softmax,
                               `model_outputs` = Identity(loss);
                               manifest (TensorFlowNormal).
Tags (labels.txt, no trailing newline): "Dr. Pepper", "cola", "water".

Each model is verified in its reference runtime (onnxruntime, ai-edge-litert, TensorFlow),
including the probe that FULLY_CONNECTED's input is rank 4 in tflite-2019-fp32.

Run:  python scripts/make_conformance_models.py
Deterministic (numpy seed 20250601; fixed manifest dates / ids).
"""
import hashlib
import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "models", "conformance")
FIXTURES = os.path.abspath(os.environ.get("CVEDGE_FIXTURES",
                                          os.path.join(REPO, "..", "shared", "fixtures", "exports")))
TAGS = ["Dr. Pepper", "cola", "water"]
C = 8
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)


# ----------------------------------------------------------------------------- weights

def core_weights():
    """Core net in normalised space z = (bgr - 128) / 128 (BGR channel order)."""
    rs = np.random.RandomState(20250601)
    w = (rs.randn(C, 3, 3, 3) * 0.35).astype(np.float32)            # OIHW
    # give each filter a colour preference so photos of different colours differ
    w += (rs.randn(C, 3, 1, 1) * 0.6).astype(np.float32)
    b = (rs.randn(C) * 0.2).astype(np.float32)
    fw = (rs.randn(len(TAGS), C) * 0.6).astype(np.float32)           # [tags, C]
    # centre the logits around a fixed typical feature level (1.4) so outputs are not saturated
    fb = (rs.randn(len(TAGS)) * 0.3 - fw.astype(np.float64) @ np.full(C, 1.4)).astype(np.float32)
    return w, b, fw, fb


def fold(kind):
    """Conv weights for the given model input convention (exact: VALID conv, no padding).

    kind: "ms"     input is BGR 0..255 minus the BGR mean (after ImageScaler / runtime mean)
          "bgr255" raw BGR 0..255
          "rgb01"  RGB 0..1
    """
    w, b, fw, fb = core_weights()
    if kind == "ms":      # z = (x + mean - 128) / 128
        a = np.full(3, 1 / 128.0, np.float32)
        c = (MEAN_BGR - 128.0) / 128.0
    elif kind == "bgr255":
        a = np.full(3, 1 / 128.0, np.float32)
        c = np.full(3, -1.0, np.float32)
    elif kind == "rgb01":  # z_bgr[k] = (255 * rgb[2-k] - 128) / 128
        a = np.full(3, 255 / 128.0, np.float32)
        c = np.full(3, -1.0, np.float32)
    else:
        raise ValueError(kind)
    w2 = w * a[None, :, None, None]
    b2 = b + (w * c[None, :, None, None]).sum(axis=(1, 2, 3))
    if kind == "rgb01":
        w2 = w2[:, ::-1]
    return np.ascontiguousarray(w2, np.float32), b2.astype(np.float32), fw, fb


# ----------------------------------------------------------------------------- files

def write_labels(folder, tags=TAGS):
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tags))


def metadata_props(method="ClassificationMultiClass", size=224, fmt="Bgr8", rng="NominalRange_0_255"):
    return {
        "CustomVision.Metadata.AdditionalModelInfo": "",
        "CustomVision.Metadata.Version": "1.2",
        "CustomVision.Postprocess.Method": method,
        "CustomVision.Postprocess.Yolo.Biases": "[]",
        "CustomVision.Postprocess.Yolo.NmsThreshold": "0.0",
        "CustomVision.Preprocess.CropHeight": str(size),
        "CustomVision.Preprocess.CropMethod": "OneCropCenter",
        "CustomVision.Preprocess.CropWidth": str(size),
        "CustomVision.Preprocess.MaxDimension": "0",
        "CustomVision.Preprocess.MaxScale": "0.0",
        "CustomVision.Preprocess.MinDimension": "0",
        "CustomVision.Preprocess.MinScale": "0.0",
        "CustomVision.Preprocess.NormalizeMean": "[0.0, 0.0, 0.0]",
        "CustomVision.Preprocess.NormalizeStd": "[1.0, 1.0, 1.0]",
        "CustomVision.Preprocess.ResizeMethod": "ByShorterSide",
        "CustomVision.Preprocess.TargetHeight": "256",
        "CustomVision.Preprocess.TargetWidth": "256",
        "Image.BitmapPixelFormat": fmt,
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": rng,
    }


def write_manifest(folder, model_file, platform, flavor, exporter, iteration, date, metadata=True):
    with open(os.path.join(folder, model_file), "rb") as f:
        sha1 = hashlib.sha1(f.read()).hexdigest()
    m = {"DomainType": "Classification", "Platform": platform, "Flavor": flavor,
         "ExporterVersion": exporter, "ExportedDate": date, "IterationId": iteration,
         "ModelFileName": model_file, "LabelFileName": "labels.txt",
         "MetadataPropsFileName": "metadata_properties.json" if metadata else None,
         "ModelFileSHA1": sha1, "SchemaVersion": "1.0"}
    with open(os.path.join(folder, "cvexport.manifest"), "w", encoding="utf-8") as f:
        json.dump(m, f, indent=2)


def write_metadata_json(folder, props):
    with open(os.path.join(folder, "metadata_properties.json"), "w", encoding="utf-8") as f:
        json.dump(props, f, indent=4)


def fresh(name):
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


# ----------------------------------------------------------------------------- ONNX

def onnx_opset7(final, opset=7):
    """2018-2020 'ONNX 1.2' layout (tail structure copied from onnx-catdog-2018).

    opset=6: the 2018 'ONNX 1.0' layout: same network, ai.onnx 6, Gemm with the opset-6
    `broadcast` attribute (opset 6 has no numpy broadcasting; C is [tags], output [N, tags])
    and `loss` declared as a bare map(string, float) instead of sequence(map)."""
    if opset not in (6, 7):
        raise ValueError(opset)
    w, b, fw, fb = fold("ms")
    size = 227
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, size, size])
    inp.doc_string = ("Image(s) in BGR format. It is a [N, C, H, W]-tensor. The 1st/2nd/3rd slices "
                      "along the C-axis are blue, green, and red channels, respectively.")
    inp.type.denotation = "IMAGE"
    for d, den in zip(inp.type.tensor_type.shape.dim,
                      ["DATA_BATCH", "DATA_CHANNEL", "DATA_FEATURE", "DATA_FEATURE"]):
        d.denotation = den
    out_label = helper.make_tensor_value_info("classLabel", TensorProto.STRING, ["None", 1])
    loss_map = helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    out_loss = helper.make_value_info("loss", loss_map if opset == 6 else helper.make_sequence_type_proto(loss_map))
    # opset 6 Gemm broadcasts C only with broadcast=1 (legacy suffix broadcasting); opset 7 dropped it
    gemm_legacy = {"broadcast": 1} if opset == 6 else {}
    inits = [numpy_helper.from_array(w, "convolution_W"), numpy_helper.from_array(b, "convolution_B"),
             numpy_helper.from_array(fw, "innerProduct_B"), numpy_helper.from_array(fb, "innerProduct_C")]
    nodes = [
        helper.make_node("ImageScaler", ["data"], ["data2"], name="scalerPreprocessor",
                         bias=[-104.0, -117.0, -123.0], scale=1.0),
        helper.make_node("Conv", ["data2", "convolution_W", "convolution_B"], ["conv1_2relu_conv1"],
                         name="convolution", auto_pad="VALID", dilations=[1, 1], group=1,
                         kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Relu", ["conv1_2relu_conv1"], ["conv1"], name="activation"),
        helper.make_node("GlobalAveragePool", ["conv1"], ["pool10"], name="pooling3"),
        helper.make_node("Flatten", ["pool10"], ["pool10_flattened"], name="flatten", axis=1),
        helper.make_node("Gemm", ["pool10_flattened", "innerProduct_B", "innerProduct_C"], ["fc"],
                         name="innerProduct", alpha=1.0, beta=1.0, transA=0, transB=1, **gemm_legacy),
        helper.make_node(final, ["fc"], ["loss1"], name=final.lower()),
        helper.make_node("Constant", [], ["ClassLabels"], name="LabelLoader",
                         value=helper.make_tensor("ClassLabels", TensorProto.STRING, [len(TAGS)],
                                                  [t.encode() for t in TAGS])),
        helper.make_node("ArgMax", ["loss1"], ["LabelId"], name="LabelIndexExtractor", axis=1, keepdims=1),
        helper.make_node("ArrayFeatureExtractor", ["ClassLabels", "LabelId"], ["classLabel"],
                         name="LabelSelector", domain="ai.onnx.ml"),
        helper.make_node("ZipMap", ["loss1"], ["loss"], name="ZipMap", domain="ai.onnx.ml",
                         classlabels_strings=TAGS),
    ]
    # IR version 3: every initializer is also listed as a graph input (as in the real exports)
    init_inputs = [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "conformance_opset%d" % opset, [inp] + init_inputs, [out_label, out_loss], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 1)],
                          producer_name="OnnxMLTools", producer_version="1.2.2.0129", domain="onnxml",
                          model_version=0)
    m.ir_version = 3
    m.metadata_props.add(key="Image.BitmapPixelFormat", value="Bgr8")
    onnx.checker.check_model(m)
    return m


def onnx_current(final, kind, props):
    w, b, fw, fb = fold(kind)
    size = 224
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, len(TAGS)])
    inits = [numpy_helper.from_array(w, "conv.weight"), numpy_helper.from_array(b, "conv.bias"),
             numpy_helper.from_array(fw, "fc.weight"), numpy_helper.from_array(fb, "fc.bias")]
    nodes = [
        helper.make_node("Conv", ["data", "conv.weight", "conv.bias"], ["conv_out"], name="conv",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu_out"], ["pool_out"], name="pool"),
        helper.make_node("Flatten", ["pool_out"], ["features"], name="flatten", axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
        helper.make_node(final, ["logits"], ["model_output"], name=final.lower()),
    ]
    g = helper.make_graph(nodes, "conformance_current", [inp], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="pytorch",
                          producer_version="2.1.0")
    m.ir_version = 7
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m)
    return m


def save_onnx(m, folder):
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())


# ----------------------------------------------------------------------------- TensorFlow

def tf_graph(size, batch, kind, final, out_name, identity_name=None, mean_layer=False):
    """Build a TF1 graph; returns (graph, input tensor, output tensor).

    mean_layer=True puts the BGR mean subtraction inside the graph under the name `data_bn`
    (as in the real 2018 .pb and 2025 .tflite exports, whose `data_bn` layer is how a runtime
    knows not to subtract the mean itself); the conv then uses the mean-subtracted folding."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    w, b, fw, fb = fold("ms" if mean_layer else kind)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [batch, size, size, 3], name="Placeholder")
        inp = x
        if mean_layer:
            x = tf.subtract(x, tf.constant(MEAN_BGR, name="data_bn/mean"), name="data_bn/sub")
        wk = tf.constant(np.ascontiguousarray(w.transpose(2, 3, 1, 0)), name="conv1/weights")  # HWIO
        y = tf.nn.conv2d(x, wk, strides=[1, 2, 2, 1], padding="VALID", name="conv1/Conv2D")
        y = tf.nn.bias_add(y, tf.constant(b, name="conv1/biases"), name="conv1/BiasAdd")
        y = tf.nn.relu(y, name="conv1/Relu")
        osz = (size - 3) // 2 + 1
        p = tf.nn.avg_pool2d(y, ksize=[1, osz, osz, 1], strides=[1, 1, 1, 1], padding="VALID", name="pool10")
        r = tf.reshape(p, [-1, C], name="fc/Reshape")
        z = tf.matmul(r, tf.constant(np.ascontiguousarray(fw.T), name="fc/weights"), name="fc/MatMul")
        z = tf.nn.bias_add(z, tf.constant(fb, name="fc/biases"), name="fc/fc")
        o = (tf.nn.softmax if final == "Softmax" else tf.nn.sigmoid)(z, name=out_name)
        if identity_name:
            o = tf.identity(o, name=identity_name)
    return g, inp, o


def to_tflite(g, x, o, fp16):
    import tensorflow as tf
    with tf.compat.v1.Session(graph=g) as s:
        conv = tf.compat.v1.lite.TFLiteConverter.from_session(s, [x], [o])
        if fp16:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        return conv.convert()


def probe_tflite(path):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1,
                     experimental_op_resolver_type=__import__("ai_edge_litert.interpreter", fromlist=["x"])
                     .OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    td = {t["index"]: t for t in it.get_tensor_details()}
    ops = []
    for op in it._get_ops_details():
        ops.append((op["op_name"], [list(td[i]["shape"]) if i >= 0 else None for i in op["inputs"]],
                    [td[i]["dtype"].__name__ for i in op["inputs"] if i >= 0]))
    return it, ops


# ----------------------------------------------------------------------------- verify

def photo_inputs(size, color, rng, mean, layout):
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference_outputs import preprocess
    import glob
    out = []
    for p in sorted(glob.glob(os.path.join(REPO, "models", "samples", "*.jpg"))):
        recipe = "legacy-square-256" if size == 227 else "shorter-side-256"
        out.append((os.path.basename(p), preprocess(p, recipe, size, color, rng, mean, layout)))
    if not out:  # samples not made yet: synthetic fallback
        rs = np.random.RandomState(1)
        shape = (1, 3, size, size) if layout == "NCHW" else (1, size, size, 3)
        out = [("synthetic", (rs.rand(*shape) * 255).astype(np.float32))]
    return out


def numpy_reference(x_bgr_ms_nchw_core, final):
    """Core net on z (NCHW, BGR, normalised) for cross-checking all variants."""
    w, b, fw, fb = core_weights()
    z = x_bgr_ms_nchw_core
    n, c, h, ww = z.shape
    oh, ow = (h - 3) // 2 + 1, (ww - 3) // 2 + 1
    acc = np.zeros((C, oh, ow), np.float64)
    for ky in range(3):
        for kx in range(3):
            patch = z[0, :, ky:ky + 2 * oh - 1:2, kx:kx + 2 * ow - 1:2].astype(np.float64)
            acc += np.einsum("oc,chw->ohw", w[:, :, ky, kx], patch)
    acc += b[:, None, None]
    f = np.maximum(acc, 0).mean(axis=(1, 2))
    logits = fw.astype(np.float64) @ f + fb
    if final == "Softmax":
        e = np.exp(logits - logits.max())
        return e / e.sum()
    return 1 / (1 + np.exp(-logits))


def main():
    import onnxruntime as ort
    os.makedirs(OUT, exist_ok=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    report = []

    def check(name, probs_by_img, final, zs):
        for (img, p), z in zip(probs_by_img, zs):
            ref = numpy_reference(z, final)
            d = float(np.abs(np.asarray(p, np.float64) - ref).max())
            report.append((name, img, [round(float(v), 4) for v in p], d))
            tol = 2e-3 if "fp16" in name else 1e-4
            assert d < tol, (name, img, p, ref)
            if final == "Softmax":
                assert abs(sum(p) - 1) < 1e-3
        spread = np.array([pp for _, pp in probs_by_img])
        print("%-28s probabilities min %.3f max %.3f" % (name, spread.min(), spread.max()))

    def z_inputs(size):  # core-space inputs for the numpy reference
        return [(x - 128.0) / 128.0 for _, x in photo_inputs(size, "bgr", "0-255", None, "NCHW")]

    # --- ONNX opset 7
    for name, final in (("onnx-opset7-zipmap", "Softmax"), ("onnx-opset7-sigmoid", "Sigmoid")):
        d = fresh(name)
        save_onnx(onnx_opset7(final), d)
        write_labels(d)
        s = ort.InferenceSession(os.path.join(d, "model.onnx"), so, providers=["CPUExecutionProvider"])
        res = []
        for img, x in photo_inputs(227, "bgr", "0-255", None, "NCHW"):
            label, loss = s.run(["classLabel", "loss"], {"data": x})
            p = [loss[0][t] for t in TAGS]
            assert label.reshape(-1)[0] == TAGS[int(np.argmax(p))]
            res.append((img, p))
        check(name, res, final, z_inputs(227))
        if final == "Softmax":
            d2 = fresh(name + "-nolabels")
            shutil.copy(os.path.join(d, "model.onnx"), d2)

    # --- ONNX opset 6 ("ONNX 1.0", loss typed map(string, float)): onnxruntime refuses the file,
    # so it is verified through its opset-7 twin, which must be the onnx-opset7-zipmap graph.
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference_outputs import opset7_twin, onnx_refusal
    d = fresh("onnx-opset6-map")
    save_onnx(onnx_opset7("Softmax", opset=6), d)
    write_labels(d)
    path6 = os.path.join(d, "model.onnx")
    err = onnx_refusal(path6)
    assert err is not None, "onnxruntime loaded onnx-opset6-map; the variant no longer tests anything"
    print("onnx-opset6-map: onnxruntime refuses it:", err)
    twin = opset7_twin(onnx.load(path6))
    zipmap7 = onnx.load(os.path.join(OUT, "onnx-opset7-zipmap", "model.onnx"))
    twin.graph.name = zipmap7.graph.name  # the only other difference
    assert twin.SerializeToString() == zipmap7.SerializeToString(), "opset-7 twin differs from onnx-opset7-zipmap"
    s = ort.InferenceSession(twin.SerializeToString(), so, providers=["CPUExecutionProvider"])
    res = []
    for img, x in photo_inputs(227, "bgr", "0-255", None, "NCHW"):
        label, loss = s.run(["classLabel", "loss"], {"data": x})
        p = [loss[0][t] for t in TAGS]
        assert label.reshape(-1)[0] == TAGS[int(np.argmax(p))]
        res.append((img, p))
    check("onnx-opset6-map (twin)", res, "Softmax", z_inputs(227))
    # opset-6 semantics (Gemm_6 needs broadcast=1 for the [tags] bias) with onnx's reference
    # evaluator, which has opset-6 kernels (onnxruntime has none for Gemm 6): must equal the
    # evaluator on the opset-7 file. (Compared evaluator to evaluator only: its Conv with
    # auto_pad VALID gives 114x114 here where onnxruntime, correctly, gives 113x113.)
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class ImageScaler(OpRun):  # experimental op, no reference kernel
        def _run(self, x, bias=None, scale=None):
            return ((x * scale + np.asarray(bias, np.float32).reshape(1, -1, 1, 1)).astype(x.dtype),)

    class ZipMap(OpRun):
        op_domain = "ai.onnx.ml"

        def _run(self, x, classlabels_strings=None, classlabels_int64s=None):
            return ([dict(zip(classlabels_strings, row)) for row in x],)

    x = photo_inputs(227, "bgr", "0-255", None, "NCHW")[0][1]
    ev = {}
    for v in ("onnx-opset6-map", "onnx-opset7-zipmap"):
        r = ReferenceEvaluator(os.path.join(OUT, v, "model.onnx"), new_ops=[ImageScaler, ZipMap])
        assert ("Gemm_6" if "opset6" in v else "Gemm_7") in [type(n).__name__ for n in r.rt_nodes_]
        ev[v] = r.run(["loss1"], {"data": x})[0]
    assert np.array_equal(ev["onnx-opset6-map"], ev["onnx-opset7-zipmap"]), ev

    # --- ONNX current
    for name, final, kind, props, color, rng in (
            ("onnx-current-multilabel", "Sigmoid", "bgr255",
             metadata_props("ClassificationMultiLabel"), "bgr", "0-255"),
            ("onnx-current-rgb01", "Softmax", "rgb01",
             metadata_props("ClassificationMultiClass", fmt="Rgb8", rng="Normalized_0_1"), "rgb", "0-1")):
        d = fresh(name)
        save_onnx(onnx_current(final, kind, props), d)
        write_labels(d)
        write_metadata_json(d, props)
        write_manifest(d, "model.onnx", "ONNX", None, "2.2", "a3c1e2f0-0b5d-4e57-8a0e-%012d" % len(name),
                       "2024-03-12T09:30:00.0000000Z")
        s = ort.InferenceSession(os.path.join(d, "model.onnx"), so, providers=["CPUExecutionProvider"])
        res = [(img, s.run(["model_output"], {"data": x})[0][0].tolist())
               for img, x in photo_inputs(224, color, rng, None, "NCHW")]
        check(name, res, final, z_inputs(224))

    # --- TFLite 2019 fp32 (no mean layer, rank-4 input to FULLY_CONNECTED)
    d = fresh("tflite-2019-fp32")
    g, x, o = tf_graph(227, 1, "ms", "Sigmoid", "loss")
    with open(os.path.join(d, "model.tflite"), "wb") as f:
        f.write(to_tflite(g, x, o, fp16=False))
    write_labels(d)
    it, ops = probe_tflite(os.path.join(d, "model.tflite"))
    fc = [op for op in ops if op[0] == "FULLY_CONNECTED"]
    print("tflite-2019-fp32 ops:", [op[0] for op in ops], "FULLY_CONNECTED inputs:", fc[0][1])
    assert len(fc[0][1][0]) == 4, "FULLY_CONNECTED input is not rank 4: %s" % fc
    assert it.get_input_details()[0]["name"] == "Placeholder", it.get_input_details()
    assert it.get_output_details()[0]["name"] == "loss", it.get_output_details()
    res = []
    for img, xx in photo_inputs(227, "bgr", "0-255", [104, 117, 123], "NHWC"):
        it.set_tensor(it.get_input_details()[0]["index"], xx)
        it.invoke()
        res.append((img, it.get_tensor(it.get_output_details()[0]["index"])[0].tolist()))
    check("tflite-2019-fp32", res, "Sigmoid", z_inputs(227))

    # --- TFLite 2025 fp16 weights (DEQUANTIZE), fp32 I/O, Softmax `model_outputs`
    d = fresh("tflite-2025-fp16")
    g, x, o = tf_graph(224, 1, "bgr255", "Softmax", "model_outputs", mean_layer=True)
    with open(os.path.join(d, "model.tflite"), "wb") as f:
        f.write(to_tflite(g, x, o, fp16=True))
    write_labels(d)
    shutil.copy(os.path.join(FIXTURES, "tflite-fp16-appleorange-2025", "metadata_properties.json"), d)
    write_manifest(d, "model.tflite", "TensorFlow", "TensorFlowLiteFloat16", "2.2",
                   "7e9d1b44-52a6-4f0c-b3d8-9c2a61f0e825", "2025-06-20T10:15:00.0000000Z")
    it, ops = probe_tflite(os.path.join(d, "model.tflite"))
    print("tflite-2025-fp16 ops:", [op[0] for op in ops])
    assert any("data_bn" in t["name"] for t in it.get_tensor_details()), "data_bn tensor lost"
    assert any(op[0] == "DEQUANTIZE" and op[2] == ["float16"] for op in ops), ops
    assert it.get_input_details()[0]["dtype"] == np.float32 and it.get_output_details()[0]["dtype"] == np.float32
    assert it.get_input_details()[0]["name"] == "Placeholder", it.get_input_details()
    assert it.get_output_details()[0]["name"] == "model_outputs", it.get_output_details()
    res = []
    for img, xx in photo_inputs(224, "bgr", "0-255", None, "NHWC"):
        it.set_tensor(it.get_input_details()[0]["index"], xx)
        it.invoke()
        res.append((img, it.get_tensor(it.get_output_details()[0]["index"])[0].tolist()))
    check("tflite-2025-fp16", res, "Softmax", z_inputs(224))

    # --- TF frozen graph
    import tensorflow as tf
    d = fresh("tf-frozen")
    g, x, o = tf_graph(224, None, "bgr255", "Softmax", "loss", identity_name="model_outputs",
                      mean_layer=True)
    gd = g.as_graph_def()
    with open(os.path.join(d, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString(deterministic=True))
    write_labels(d)
    write_manifest(d, "model.pb", "TensorFlow", "TensorFlowNormal", "2.0",
                   "0d6f3a2b-91c4-4e8a-a7b5-2f4e6c8d0a13", "2020-05-14T16:45:00.0000000Z", metadata=False)
    gd2 = tf.compat.v1.GraphDef()
    with open(os.path.join(d, "model.pb"), "rb") as f:
        gd2.ParseFromString(f.read())
    g2 = tf.Graph()
    with g2.as_default():
        tf.compat.v1.import_graph_def(gd2, name="")
    res = []
    with tf.compat.v1.Session(graph=g2) as s:
        for img, xx in photo_inputs(224, "bgr", "0-255", None, "NHWC"):
            a, b_ = s.run(["loss:0", "model_outputs:0"], {"Placeholder:0": xx})
            assert np.array_equal(a, b_)
            res.append((img, a[0].tolist()))
    check("tf-frozen", res, "Softmax", z_inputs(224))

    print()
    for r in report:
        print("%-28s %-12s %s  |d| vs numpy %.1e" % r)
    for dd in sorted(os.listdir(OUT)):
        files = sorted(os.listdir(os.path.join(OUT, dd)))
        print("%-30s %s" % (dd, ", ".join("%s (%d B)" % (f, os.path.getsize(os.path.join(OUT, dd, f))) for f in files)))


if __name__ == "__main__":
    main()
