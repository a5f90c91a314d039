"""The ONNX graph's tensor names: what the export writes and every backend binds by name."""

INPUT_NAME = "pixel_values"  # [B, 3, R, R] float32, ImageNet-normalised pixels
OUTPUT_NAME = "features"  # [B, N, C] float32, L2-normalised patch features
