"""Hydranet: real-time multi-task dense prediction (MobileNetV2 + RefineNet)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="hydranet",
    version="0.1.0",
    description="Real-time multi-task dense prediction: MobileNetV2 encoder, RefineNet decoder, many heads",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["hydranet", "hydranet.*"]),
    package_data={"hydranet": ["configs/*.yaml", "data/nyud/*.txt", "weights/*.tsv", "assets/*.pt"]},
    license="BSD-3-Clause",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "opencv-python-headless>=4.8",
        "albumentations>=1.4",
        "matplotlib>=3.6",
        "h5py>=3.8",
        "scipy>=1.10",
        "tqdm>=4.60",
        "PyYAML>=6.0",
        "pydantic>=2",
        "Pillow>=9",  # image headers read before decoding (data/io.py)
        "onnx>=1.15",
        "onnxscript>=0.1",
        "onnxruntime>=1.17",
        # H.264 MP4 that browsers play. PyAV is BSD-3-Clause; its wheels bundle FFmpeg with
        # libx264 (GPL): see README "Licences". Hydranet depends on it and does not ship it.
        "av>=12",
    ],
    extras_require={
        # kept so that `pip install hydranet[video]` still works: PyAV is now a plain dependency
        "video": [],
        # `hydranet serve`
        "web": ["gradio>=5"],
        # `encoder: timm:NAME` (any timm backbone) and vit_s_16's ImageNet weights
        "timm": ["timm>=1.0"],
        # gradient-level multi-task methods (loss.weighting: pcgrad, mgda, cagrad, nash_mtl, imtl_g,
        # aligned_mtl, upgrad, dualproj): torchjd with the solvers CAGrad, Nash-MTL and UPGrad use
        "mtl": ["torchjd[cagrad,nash-mtl,quadprog-projector]>=0.18,<1"],
        # `make docs`: the documentation site
        "docs": ["mkdocs>=1.5", "mkdocs-material>=9", "mkdocstrings[python]>=0.24"],
        "dev": [
            "pytest>=7",
            "ruff>=0.5",
            # `make lint`: the layer contracts of .importlinter (and grimp, for the import-cycle test)
            "import-linter>=2.1",
            "gradio>=5",
            "playwright>=1.40",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6",
            "hypothesis>=6.100",
            "timm>=1.0",
            "torchjd[cagrad,nash-mtl,quadprog-projector]>=0.18,<1",
            "mkdocs>=1.5",
            "mkdocs-material>=9",
            "mkdocstrings[python]>=0.24",
        ],
    },
    entry_points={"console_scripts": ["hydranet=hydranet.cli:main"]},
)
