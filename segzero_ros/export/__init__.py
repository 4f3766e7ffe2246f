"""SAM2 to ONNX: the exportable torch modules, the export itself and the checks of what it wrote.

- `wrappers`: the torch modules that become the two graphs (image encoder; prompt encoder + mask decoder).
- `onnx_export`: the export (fp32, optional fp16), the cached export a graph backend uses when
  `segmenter.onnx_dir` is unset (`with_exported_graphs`, the registry's preparation step), fp16 conversion.
- `graph_check`: onnx.checker, strict shape inference and the allow-list of operators TensorRT's ONNX parser
  takes.

Only exports: what runs the graphs (manifest reading, pre/post-processing, the onnxruntime and TensorRT
backends) lives in `segzero_ros.segmentation`, which never imports this package.
"""
