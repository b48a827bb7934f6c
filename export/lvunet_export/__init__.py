"""lvunet-export: fuse an LV-UNet checkpoint, export ONNX, simplify, embed the contract, prove parity."""

__version__ = "0.1.0"
