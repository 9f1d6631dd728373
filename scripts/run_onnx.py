"""Runs an ONNX classifier in onnxruntime on an already preprocessed tensor; prints the
probabilities as JSON (a list with one list per image).

    python3 scripts/run_onnx.py MODEL TENSOR SHAPE

TENSOR is a raw little-endian float32 file laid out as the model's input (what cvedge's
preprocessor writes), SHAPE its shape as comma-separated integers (e.g. 2,3,224,224). The values
are cast to float16 when the model's input is float16 (OnnxFloat16 exports). Images are run one
at a time when the model's batch size is fixed. The output read is `model_output` when the model
has one, else its first output. Used by tests/export.rs to check exported models against a
second runtime.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, tensor, shape = sys.argv[1], sys.argv[2], [int(d) for d in sys.argv[3].split(",")]
    x = np.fromfile(tensor, dtype="<f4")
    if x.size != int(np.prod(shape)):
        sys.exit(f"{tensor} holds {x.size} floats, shape {shape} needs {int(np.prod(shape))}")
    x = x.reshape(shape)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    if feed.type == "tensor(float16)":
        x = x.astype(np.float16)
    outputs = [o.name for o in session.get_outputs()]
    output = "model_output" if "model_output" in outputs else outputs[0]
    batch = feed.shape[0] if feed.shape else None
    chunks = [x[i:i + 1] for i in range(len(x))] if isinstance(batch, int) else [x]
    probabilities = []
    for chunk in chunks:
        (result,) = session.run([output], {feed.name: chunk})
        probabilities.extend(np.asarray(result, dtype=np.float32).reshape(len(chunk), -1).tolist())
    print(json.dumps(probabilities))


if __name__ == "__main__":
    main()
