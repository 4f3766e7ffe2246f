"""segzero_ros: Seg-Zero reasoning segmentation as a ROS 2 perception node, plus its training/eval toolkit.

pip installs the Python library and CLI; colcon (ament_cmake, see CMakeLists.txt) also generates the ROS
messages. Heavy dependencies live in extras so a robot installs only what it runs.
"""

from pathlib import Path

from setuptools import find_packages, setup

TORCH = ["torch>=2.5.1", "torchvision>=0.20.1"]

setup(
    name="segzero_ros",
    version="0.1.0",
    description="Seg-Zero reasoning segmentation (Qwen2.5-VL + SAM2) as a ROS 2 perception node",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["segzero_ros", "segzero_ros.*"]),
    package_data={"segzero_ros": ["py.typed"]},
    install_requires=[
        "numpy>=1.23",
        "pillow>=9",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
    ],
    extras_require={
        # Reasoner + SAM2 in PyTorch: what `segzero infer` and the node need.
        # timm: EdgeTAM's RepViT image encoder (transformers builds it through timm).
        "infer": [*TORCH, "transformers>=5.0", "tokenizers>=0.21", "accelerate>=1.0", "sam2>=1.0",
                  "huggingface_hub>=0.26", "timm>=1.0", "tqdm>=4.66"],
        "export": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        # reasoner.quantization int8/int4: torchao weight-only quantization (x86 CUDA and Jetson).
        "quantization": ["torchao>=0.14"],
        # scipy: the Hungarian matching of VisionReasoner's accuracy reward.
        "train": ["trl>=0.19", "datasets>=3.0", "peft>=0.14", "accelerate>=1.0", "scipy>=1.10"],
        # Optional parts of a training run, each named by the error a run without it stops with.
        "train-deepspeed": ["deepspeed>=0.15"],          # the ZeRO-2/3 recipes (recipes/accelerate_*zero*.yaml)
        "train-tensorboard": ["tensorboard>=2.14"],      # report_to: [tensorboard]
        "train-vllm": ["vllm>=0.10"],                     # use_vllm: true (colocate or `trl vllm-serve`)
        "eval": ["datasets>=3.0", "matplotlib>=3.7", "tqdm>=4.66"],
        # The openai reasoner backend (openai), and `transformers serve` for a local server (fastapi, uvicorn).
        "serve": ["openai>=1.40", "fastapi>=0.110", "uvicorn>=0.29"],
        "dev": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.5", "mypy>=1.10"],
        # segzero_image_source reading ros2 bags without ROS.
        "demo": ["rosbags>=0.10"],
    },
    entry_points={
        "console_scripts": [
            "segzero = segzero_ros.cli:main",
            "segzero_node = segzero_ros.ros.main:main",
            "segzero_image_source = segzero_ros.ros.image_source:main",
        ],
    },
    zip_safe=False,
)
