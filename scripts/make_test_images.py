"""Edge-case test images and corrupt inputs: tests/data/ and tests/data/corrupt/.

Derived only from the shipped sample photos in models/samples/ (run make_demo_model.py
first) and the conformance models (run make_conformance_models.py first):

  tests/data/alpha.png            RGBA PNG: the decoded pixels of models/samples/cat.jpg plus an
                                  alpha channel with a fully transparent rectangle and a
                                  transparency gradient. Dropping alpha (no compositing) gives
                                  exactly cat.jpg's pixels, so its reference output equals cat.jpg's.
  tests/data/gray.jpg             single-channel (mode L) grayscale JPEG of coffee.jpg, quality 90.
  tests/data/one_pixel.png        1x1 RGB PNG.
  tests/data/exif_rotated.jpg     dog.jpg losslessly rotated 90 deg counter-clockwise
                                  (jpegtran -rotate 270 -perfect) with EXIF Orientation = 6
                                  ("rotate 90 CW to display"): a viewer honouring EXIF shows the
                                  upright dog.jpg. The rotation is lossless in the DCT domain,
                                  but libjpeg's IDCT rounding is not transpose-symmetric, so the
                                  decoded upright pixels differ from dog.jpg's by <= 3 levels
                                  in a few % of values (checked here); outputs agree to ~1e-3.
  tests/data/large_4000x3000.jpg  dog.jpg upscaled to 4000x3000 (above the legacy 1600 cap), < 1.5 MB.
  tests/data/not_an_image.jpg     text bytes with a .jpg name.
  tests/data/truncated.jpg        the first half of rocket.jpg's bytes.
  tests/data/corrupt/garbage.onnx random bytes (seeded).
  tests/data/corrupt/good.zip     models/conformance/onnx-opset7-sigmoid zipped (files at the zip
                                  root, like a Custom Vision export zip; fixed timestamps).
  tests/data/corrupt/truncated.zip the first half of good.zip.
  tests/data/corrupt/bad_labels/  copy of models/conformance/onnx-current-multilabel whose
                                  labels.txt has 2 lines for a 3-output model.
  tests/data/corrupt/crashes_tract/ a current-layout ONNX export (`data` [1,3,224,224] ->
                                  Softmax `model_output`, 3 tags) that loads but makes tract
                                  PANIC at run time on a bright image: the brightest input value,
                                  cast to an index, picks from a 3-row table (Gather), so a black
                                  image runs and a white one indexes out of bounds. The check
                                  that a kernel's panic costs one image, not the thread.

Needs the `jpegtran` tool (Debian package libjpeg-turbo-progs) for the lossless rotation.
Run:  python scripts/make_test_images.py      Deterministic (fixed seeds, fixed zip dates).
"""
import io
import os
import shutil
import subprocess
import zipfile

import numpy as np
import onnx
from PIL import Image, ImageOps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO, "models", "samples")
DATA = os.path.join(REPO, "tests", "data")
CORRUPT = os.path.join(DATA, "corrupt")


def sample(name):
    p = os.path.join(SAMPLES, name)
    if not os.path.exists(p):
        raise SystemExit("FATAL: %s missing; run scripts/make_demo_model.py first" % p)
    return p


def decoded(path):
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB")).copy()


def make_alpha():
    rgb = decoded(sample("cat.jpg"))
    h, w = rgb.shape[:2]
    a = np.full((h, w), 255, np.uint8)
    a[h // 4: h // 2, w // 4: w // 2] = 0                                   # fully transparent
    a[:, (3 * w) // 4:] = np.linspace(255, 0, w - (3 * w) // 4).astype(np.uint8)[None, :]  # gradient
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(os.path.join(DATA, "alpha.png"), optimize=False)
    back = decoded(os.path.join(DATA, "alpha.png"))
    assert np.array_equal(back, rgb)


def make_gray():
    with Image.open(sample("coffee.jpg")) as im:
        g = im.convert("L")
    g.save(os.path.join(DATA, "gray.jpg"), "JPEG", quality=90)
    with Image.open(os.path.join(DATA, "gray.jpg")) as im:
        assert im.mode == "L" and len(im.getbands()) == 1


def make_one_pixel():
    Image.new("RGB", (1, 1), (200, 120, 40)).save(os.path.join(DATA, "one_pixel.png"))


def exif_app1(orientation):
    ex = Image.Exif()
    ex[0x0112] = orientation
    payload = ex.tobytes()
    if not payload.startswith(b"Exif\x00\x00"):
        payload = b"Exif\x00\x00" + payload
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def make_exif_rotated():
    src = sample("dog.jpg")
    w, h = Image.open(src).size
    assert w % 16 == 0 and h % 16 == 0, "lossless rotation needs MCU-aligned size"
    rot = subprocess.run(["jpegtran", "-rotate", "270", "-perfect", "-copy", "none", src],
                         check=True, capture_output=True).stdout
    assert rot[:2] == b"\xff\xd8"
    out = rot[:2] + exif_app1(6) + rot[2:]
    path = os.path.join(DATA, "exif_rotated.jpg")
    with open(path, "wb") as f:
        f.write(out)
    with Image.open(path) as im:
        assert im.size == (h, w) and im.getexif().get(0x0112) == 6
    upright = decoded(src)
    shown = decoded(path)
    same = np.array_equal(upright, shown)
    diff = int(np.abs(upright.astype(int) - shown.astype(int)).max())
    print("exif_rotated.jpg: stored %dx%d, Orientation 6; upright pixels identical to dog.jpg: %s "
          "(max |d| %d, %.1f%% of values differ)" % (h, w, same, diff, 100 * np.mean(upright != shown)))
    # jpegtran's rotation is lossless in the DCT domain, but libjpeg's IDCT is not exactly
    # transpose-symmetric (intermediate rounding), so a few values differ by <= 3 levels.
    assert diff <= 4, "rotation is not (nearly) lossless"


def make_large():
    with Image.open(sample("dog.jpg")) as im:
        big = im.convert("RGB").resize((4000, 3000), Image.BICUBIC)
    path = os.path.join(DATA, "large_4000x3000.jpg")
    for q in (85, 75, 65, 55):
        big.save(path, "JPEG", quality=q)
        if os.path.getsize(path) < 1_500_000:
            break
    assert os.path.getsize(path) < 1_500_000
    print("large_4000x3000.jpg: quality %d, %d bytes" % (q, os.path.getsize(path)))


def make_bad_files():
    with open(os.path.join(DATA, "not_an_image.jpg"), "wb") as f:
        f.write(b"This is not an image. It is plain text with a .jpg extension.\n" * 4)
    with open(sample("rocket.jpg"), "rb") as f:
        b = f.read()
    with open(os.path.join(DATA, "truncated.jpg"), "wb") as f:
        f.write(b[: len(b) // 2])


def make_corrupt():
    os.makedirs(CORRUPT, exist_ok=True)
    rs = np.random.RandomState(7)
    with open(os.path.join(CORRUPT, "garbage.onnx"), "wb") as f:
        f.write(rs.randint(0, 256, 4096, dtype=np.uint8).tobytes())
    src = os.path.join(REPO, "models", "conformance", "onnx-opset7-sigmoid")
    if not os.path.isdir(src):
        raise SystemExit("FATAL: run scripts/make_conformance_models.py first")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(os.listdir(src)):
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            with open(os.path.join(src, name), "rb") as f:
                z.writestr(zi, f.read())
    data = buf.getvalue()
    with open(os.path.join(CORRUPT, "good.zip"), "wb") as f:
        f.write(data)
    with open(os.path.join(CORRUPT, "truncated.zip"), "wb") as f:
        f.write(data[: len(data) // 2])
    bad = os.path.join(CORRUPT, "bad_labels")
    if os.path.isdir(bad):
        shutil.rmtree(bad)
    shutil.copytree(os.path.join(REPO, "models", "conformance", "onnx-current-multilabel"), bad)
    with open(os.path.join(bad, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("Dr. Pepper\ncola")  # model has 3 outputs


def make_crashes_tract():
    from onnx import TensorProto, helper, numpy_helper
    out = os.path.join(CORRUPT, "crashes_tract")
    os.makedirs(out, exist_ok=True)
    table = numpy_helper.from_array(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 3.0, 1.0]], np.float32), "table")
    offsets = numpy_helper.from_array(np.array([0], np.int64), "offsets")
    nodes = [
        helper.make_node("ReduceMax", ["data"], ["brightest"], keepdims=0),
        helper.make_node("Cast", ["brightest"], ["index"], to=TensorProto.INT64),
        helper.make_node("Add", ["index", "offsets"], ["row"]),
        helper.make_node("Gather", ["table", "row"], ["logits"], axis=0),
        helper.make_node("Softmax", ["logits"], ["model_output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "crashes_tract",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, 3])],
        initializer=[table, offsets])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="cvedge-tests")
    model.ir_version = 6
    onnx.checker.check_model(model)
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    with open(os.path.join(out, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("one\ntwo\nthree")


def main():
    os.makedirs(DATA, exist_ok=True)
    make_alpha()
    make_gray()
    make_one_pixel()
    make_exif_rotated()
    make_large()
    make_bad_files()
    make_corrupt()
    make_crashes_tract()
    for root, _, files in sorted(os.walk(DATA)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print("%-48s %9d bytes" % (os.path.relpath(p, REPO), os.path.getsize(p)))


if __name__ == "__main__":
    main()
