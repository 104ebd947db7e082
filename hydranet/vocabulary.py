"""Plain names and numbers that the command line and the library share, stated once.

No imports (no numpy): the command line reads them for its flags' choices and defaults
without loading the library.

* Depth PNG units per metre: NYUDv2-style files hold uint16 ``metres x 5000``, KITTI's
  ``metres x 256`` (0 = no measurement).
* The palette names of ``--palette`` and a task's ``options.palette`` (the colours are in
  :mod:`hydranet.labelsets`), and the depth colour maps of ``--cmap``.
"""

NYUD_DEPTH_SCALE = 5000.0
KITTI_DEPTH_SCALE = 256.0

PALETTE_NAMES = ("nyud", "kitti", "cityscapes", "synthetic")
DEPTH_CMAPS = ("magma", "turbo", "plasma", "inferno", "viridis")

__all__ = ["NYUD_DEPTH_SCALE", "KITTI_DEPTH_SCALE", "PALETTE_NAMES", "DEPTH_CMAPS"]
