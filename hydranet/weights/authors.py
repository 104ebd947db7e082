"""The authors' published Multi-Task RefineNet models (Nekrasov et al., ICRA 2019): one table.

The hub (:mod:`.hub`) fetches and verifies them by name; the converter (:mod:`.mtrn`) recognises
their layouts. Plain data only: nothing here imports the rest of the package.
"""

from __future__ import annotations

__all__ = ["AUTHORS_MODELS", "BY_LAYOUT", "DATASETS_BY_CLASSES"]

#: Model name -> the authors' file, its git blob id (what ``git ls-tree`` lists for it), the
#: layout name of its state dict, the output channels of its ``segm`` conv, its heads in output
#: order and the datasets its classes come from.
AUTHORS_MODELS = {
    "mtrn-nyud-joint": {
        "file": "ExpNYUD_joint.ckpt",
        "git_blob": "56f5f5a6bc08a64f36e83547140add41baa4216d",
        "layout": "nyud_joint",
        "segm_classes": 40,
        "heads": ("segm", "depth"),
        "datasets": ("nyud",),
    },
    "mtrn-kitti-joint": {
        "file": "ExpKITTI_joint.ckpt",
        "git_blob": "d9386a96f748001406c622100ce944333d1967ff",
        "layout": "kitti_joint",
        "segm_classes": 6,
        "heads": ("segm", "depth"),
        "datasets": ("kitti",),
    },
    "mtrn-nyudkitti-joint": {
        "file": "ExpNYUDKITTI_joint.ckpt",
        "git_blob": "54f57cc2bd15e5cdfa9f3f1eaba9760951218bfa",
        "layout": "nyudkitti_joint",
        "segm_classes": 46,
        "heads": ("segm", "depth"),
        "datasets": ("nyud", "kitti"),
    },
    "mtrn-nyud-three": {
        "file": "ExpNYUD_three.ckpt",
        "git_blob": "6f412c152600827cabff5e1b66efad50090c16a7",
        "layout": "nyud_three",
        "segm_classes": 40,
        "heads": ("segm", "depth", "normal"),
        "datasets": ("nyud",),
    },
}

#: The same entries by layout name (``nyud_joint`` ...).
BY_LAYOUT = {entry["layout"]: entry for entry in AUTHORS_MODELS.values()}

#: Segmentation classes -> the datasets they come from (40: NYUD, 6: KITTI, 46: both).
DATASETS_BY_CLASSES = {entry["segm_classes"]: entry["datasets"] for entry in AUTHORS_MODELS.values()}
