"""Units of label files, stated once (no imports: the command line reads them for its defaults).

Depth PNGs hold uint16 ``metres x depth_scale``: NYUDv2-style files 5000 units per metre,
KITTI's 256 (0 = no measurement).
"""

NYUD_DEPTH_SCALE = 5000.0
KITTI_DEPTH_SCALE = 256.0

__all__ = ["NYUD_DEPTH_SCALE", "KITTI_DEPTH_SCALE"]
