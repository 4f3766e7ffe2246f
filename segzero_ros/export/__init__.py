"""SAM2 as two ONNX graphs: export, checks, and the contract the onnxruntime and TensorRT backends run.

- `manifest`: the JSON written beside the graphs (model, image size, opset, tensors, hashes).
- `processing`: numpy pre/post-processing shared by every graph runtime (resize, prompts, mask choice,
  upsampling), matching SAM2ImagePredictor.
- `runtime`: the Segmenter base class both graph backends build on.
- `tensorrt_ops`: the allow-list of ONNX operators TensorRT's ONNX parser takes, and the graph check.
- `wrappers` / `onnx_export`: the exportable torch modules and the export itself (need torch + sam2).

Importing this package (or manifest/processing/runtime/tensorrt_ops) never imports torch.
"""

from segzero_ros.export.manifest import MANIFEST_FILENAME, GraphSpec, Sam2OnnxManifest, TensorSpec, load_manifest

__all__ = ["MANIFEST_FILENAME", "GraphSpec", "Sam2OnnxManifest", "TensorSpec", "load_manifest"]
