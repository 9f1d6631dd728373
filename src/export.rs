//! Writing a trained iteration back out as a standalone Custom Vision export (ONNX bases).
