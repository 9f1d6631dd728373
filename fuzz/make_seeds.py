#!/usr/bin/env python3
"""Writes the fuzz targets' starting seeds into fuzz/seeds/<target>/ (not committed: the minimised
corpora in fuzz/corpus/ are). Every seed is small (a few KB): libFuzzer mutates small inputs
faster, and the conformance models are already complete graphs at that size.

Usage: python3 fuzz/make_seeds.py   (from the repository; needs Pillow)
"""
import io
import pathlib
import zipfile

from PIL import Image

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "fuzz" / "seeds"
CONFORMANCE = REPO / "models" / "conformance"


def write(target, name, data):
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def zipped(folder, deflate):
    # Stored entries let mutations reach the model bytes; deflated ones exercise the inflater.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    return out.getvalue()


def images():
    """Tiny images in every format the decoder takes, with and without EXIF rotation."""
    img = Image.new("RGB", (16, 12))
    for x in range(16):
        for y in range(12):
            img.putpixel((x, y), (x * 16, y * 20, (x + y) * 8))
    out = {}
    for fmt, ext, kw in [("JPEG", "jpg", {}), ("JPEG", "progressive.jpg", {"progressive": True}), ("PNG", "png", {}),
                         ("BMP", "bmp", {}), ("GIF", "gif", {}), ("WEBP", "webp", {}), ("TIFF", "tiff", {})]:
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        out[ext] = b.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90
    b = io.BytesIO()
    img.save(b, "JPEG", exif=exif.tobytes())
    out["exif.jpg"] = b.getvalue()
    b = io.BytesIO()
    img.convert("CMYK").save(b, "JPEG")
    out["cmyk.jpg"] = b.getvalue()
    b = io.BytesIO()
    img.convert("RGBA").save(b, "PNG")
    out["rgba.png"] = b.getvalue()
    b = io.BytesIO()
    img.convert("L").save(b, "JPEG")
    out["grey.jpg"] = b.getvalue()
    return out


def main():
    for folder in sorted(CONFORMANCE.iterdir()):
        write("export_zip", folder.name + ".zip", zipped(folder, deflate=False))
        write("export_zip", folder.name + ".deflated.zip", zipped(folder, deflate=True))
        for f in folder.iterdir():
            if f.suffix in (".onnx", ".tflite", ".pb"):
                write("model_bytes", folder.name + f.suffix, f.read_bytes())
            elif f.name in ("cvexport.manifest", "metadata_properties.json"):
                write("export_zip", folder.name + "." + f.name, f.read_bytes())
    for name in ["good.zip", "truncated.zip"]:
        write("export_zip", name, (REPO / "tests/data/corrupt" / name).read_bytes())
    write("export_zip", "labels.txt", b"\xef\xbb\xbfDr. Pepper\r\nhot dog\r\n\r\n")

    imgs = images()
    for name, data in imgs.items():
        write("image_decode", name, data)
    write("image_decode", "one_pixel.png", (REPO / "tests/data/one_pixel.png").read_bytes())

    jpeg = imgs["jpg"]
    thumb = b"\xff\xd8\xff\xd9"
    app1 = b"Exif\0\0" + thumb
    with_thumbnail = jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]
    write("mjpeg_stream", "ffmpeg", b"\x00noise\xff" + jpeg + b"\r\n" + with_thumbnail + jpeg[:40])
    parts = b"preamble\r\n--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg
    parts += b"\r\n--frame\r\n\r\n" + jpeg + b"\r\n--frame--\r\n"
    write("mjpeg_stream", "multipart", b"\x01frame\n" + parts)
    write("mjpeg_stream", "multipart-learnt", b"\x01\n" + parts)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n"
    write("mjpeg_stream", "camera", b"\x02" + head + b"\r\n" + parts)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(parts[i:i + 100]), parts[i:i + 100]) for i in range(0, len(parts), 100)) + b"0\r\n\r\n"
    write("mjpeg_stream", "camera-chunked", b"\x02" + head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    write("mjpeg_stream", "camera-401", b"\x02HTTP/1.0 401 Unauthorized\r\n\r\n")

    write("config", "default.toml", (REPO / "src/default.toml").read_bytes())
    write("config", "full.toml", b'''device = "pi"
model = "models/demo"
threshold = 0.6
consecutive = 3
data_dir = "/var/lib/cvedge"

[[camera]]
name = "door"
source = "mjpeg:http://user:pw@192.168.1.20:81/stream"
interval_s = 0.5
threshold = 0.7
roi = [10, 20, 300, 200]

[[camera]]
name = "yard"
source = "file:/tmp/images?fps=2&loop=true"

[review]
below = 0.5
max_images = 200
interval_s = 10

[http]
addr = "0.0.0.0:8080"
api_key = "${CVEDGE_KEY}"
format = "cloud"

[mqtt]
url = "mqtts://broker:8883"
prefix = "cvedge"
username = "${USER}"
qos_predictions = 1
''')

    form = (b"------abc\r\nContent-Disposition: form-data; name=\"imageData\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg[:64] + b"\r\n------abc--\r\n")
    requests = (b"POST /image?iterationId=x HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=----abc\r\n"
                b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(form) + form)
    requests += b"POST /customvision/v3.0/Prediction/p/classify/iterations/i/url HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    url = b'{"Url": "https://example.com/a%20b.jpg?x=1"}'
    requests += b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(url), url)
    requests += b"GET /live/frame/door%2F?key=k#frag HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    write("http_request", "requests", b"\x00" + requests)
    write("http_request", "raw-image", b"\x00POST /image HTTP/1.1\r\nContent-Length: 8\r\n\r\n" + jpeg[:8])
    write("http_request", "fetch-redirect", b"\x01HTTP/1.1 302 Found\r\nLocation: ../c.jpg\r\n\r\n")
    write("http_request", "fetch-body", b"\x01HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + jpeg[:8])
    write("http_request", "mqtt-capture", b'\x02cvedge/pi/door/capture\n{"tag": "cat", "count": 5, "interval_s": 0.5}')
    write("http_request", "mqtt-reload", b"\x02cvedge/pi/command\n reload\n")
    write("http_request", "url", b"\x03https://user:pw@[::1]:8443/a/b.jpg?q=1")


if __name__ == "__main__":
    main()
