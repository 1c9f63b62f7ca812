"""Speed for serving: inference-only model rewrites, ONNX export and the per-device serving setup."""
