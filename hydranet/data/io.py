"""Readers for the files a dataset points at: images, class-id maps, depth and normals.

Every reader returns plain numpy arrays in the project's raw-sample units and raises
:class:`~hydranet.errors.DataError` naming the file and the problem (missing, unreadable or
corrupt, wrong channel count, a colour not in the palette).

Raw units (what :mod:`hydranet.data.sample` turns into tensors):

- image: uint8 H x W x 3, RGB;
- segmentation: integer H x W class ids;
- depth: float32 H x W metres, 0 = no measurement;
- normals: float32 H x W x 3 unit vectors (camera frame: x right, y up, z towards the
  viewer), zero vector = invalid.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DataError
from ..files import (  # noqa: F401  (re-exported: data.io was their home)
    output_error,
    protect_inputs,
    protected_inputs,
    refuse_overwrite,
    writable_dir,
    writable_file,
    write_bytes_atomic,
)
from ..limits import max_pixels
from ..vocabulary import NYUD_DEPTH_SCALE

PathLike = Union[str, Path]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _cv2():
    import cv2  # lazy: keeps `import hydranet` light

    return cv2


def _check_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} file not found")
    if not path.is_file():
        raise DataError(f"{path}: {what} path is not a file")
    return path


_PIL_LIMIT_LOCK = threading.Lock()


def image_header(path: PathLike, what: str = "image") -> tuple[str, int, int]:
    """``(format, width, height)`` read from an image file's header, without decoding its pixels.

    Pillow's format plug-ins read only the header here (a PNG's IHDR chunk, a JPEG's SOF
    marker, a TIFF's first IFD, ...), the same formats OpenCV then decodes.

    Raises:
        DataError: naming the file, when it is not an image file Pillow recognises, or when
            ``width x height`` exceeds :func:`hydranet.limits.max_pixels` (``HYDRANET_MAX_PIXELS``).
    """
    from PIL import Image, UnidentifiedImageError

    path = _check_file(path, what)
    try:
        # Pillow's own decompression-bomb check would refuse some sizes our limit allows (and
        # warn below it): the limit applied here is ours, so it is switched off while reading.
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    fmt, (width, height) = str(im.format), im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(
            f"{path}: cannot decode {what}: its header cannot be read as an image (corrupt or not an image file)"
        ) from exc
    limit = max_pixels()
    if width * height > limit:
        raise DataError(
            f"{path}: {what} of {width} x {height} pixels ({width * height / 1e6:.0f} megapixels, read "
            f"from its {fmt} header) exceeds the limit of {limit / 1e6:g} megapixels; set "
            "HYDRANET_MAX_PIXELS to allow larger images"
        )
    return fmt, width, height


def _imread(path: PathLike, what: str, flags: int) -> np.ndarray:
    path = _check_file(path, what)
    image_header(path, what)  # the size is checked before anything is decoded
    cv2 = _cv2()
    # np.fromfile + imdecode also copes with non-ASCII paths, which cv2.imread does not
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} file: {exc}") from exc
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise DataError(f"{path}: cannot decode {what}: it cannot be read as an image (corrupt or not an image file)")
    return img


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB H x W x 3 (grey images are expanded to 3 channels)."""
    cv2 = _cv2()
    img = _imread(path, "image", cv2.IMREAD_UNCHANGED)
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: image has unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise DataError(f"{path}: image has {img.shape[2]} channels, expected 1, 3 or 4")
    return np.ascontiguousarray(img)


def write_png(path: PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (RGB ``H x W x 3`` or one channel, uint8 or uint16) as a PNG file.

    The file is encoded in memory and written under a temporary name, then renamed, so a
    full disk or an unwritable folder leaves no partial file. Parent folders are created.

    Raises:
        DataError: naming the path, when it cannot be encoded; OutputError (a DataError)
            when it cannot be written.
    """
    cv2 = _cv2()
    path = Path(path)
    arr = np.ascontiguousarray(array)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = np.ascontiguousarray(arr[..., ::-1])  # RGB -> OpenCV's BGR
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise DataError(f"{path}: cannot encode a {arr.dtype} array of shape {arr.shape} as PNG")
    return write_bytes_atomic(path, buf.tobytes())


def _palette_lookup(rgb: np.ndarray, palette: np.ndarray, path: PathLike) -> np.ndarray:
    """Map an H x W x 3 colour image to the ids of ``palette`` (C x 3, row i = colour of id i)."""
    pal = np.asarray(palette).reshape(-1, 3).astype(np.int64)
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    # first occurrence wins where a palette repeats a colour
    uniq_codes, first = np.unique(pal_code, return_index=True)
    pos = np.searchsorted(uniq_codes, code)
    pos = np.clip(pos, 0, len(uniq_codes) - 1)
    known = uniq_codes[pos] == code
    if not known.all():
        bad = np.unique(rgb[~known].reshape(-1, 3), axis=0)[:5]
        shown = ", ".join(f"({r},{g},{b})" for r, g, b in bad)
        raise DataError(f"{path}: {int((~known).sum())} pixels have colours not in the palette, e.g. {shown}")
    return first[pos].astype(np.int64)


def load_palette(palette) -> Optional[np.ndarray]:
    """A palette as a C x 3 uint8 array from an array-like or a ``.npy``/text file path."""
    if palette is None:
        return None
    if isinstance(palette, (str, Path)):
        path = _check_file(palette, "palette")
        try:
            arr = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
        except Exception as exc:  # numpy raises several types for bad files
            raise DataError(f"{path}: cannot read palette: {exc}") from exc
    else:
        arr = np.asarray(palette)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f"palette must be a C x 3 array of RGB colours, got shape {arr.shape}")
    return arr.astype(np.uint8)


def read_segmentation(path: PathLike, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """Read a class-id map as int64 H x W.

    - single-channel PNG (8 or 16 bit): the values are the class ids;
    - palette-mode ("P") PNG: the palette indices are the class ids (as in VOC-style masks);
    - colour PNG: each colour is looked up in ``palette`` (C x 3 RGB, row i = id i); a colour
      that is not in the palette, or a colour PNG without a palette, raises DataError.
    """
    path = _check_file(path, "segmentation")
    if path.suffix.lower() == ".npy":
        arr = _load_npy(path, "segmentation")
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{path}: segmentation .npy must be an integer H x W array, got {arr.dtype} {arr.shape}")
        return arr.astype(np.int64)
    if path.suffix.lower() == ".png":
        image_header(path, "segmentation")
        mode = _png_mode(path)
        if mode == "P":
            from PIL import Image

            try:
                with Image.open(path) as im:
                    return np.asarray(im, dtype=np.int64)
            except Exception as exc:
                raise DataError(f"{path}: cannot decode segmentation PNG: {exc}") from exc
    cv2 = _cv2()
    arr = _imread(path, "segmentation", cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        rgb = arr[:, :, ::-1]
        if palette is None:
            if (rgb == rgb[:, :, :1]).all():  # a grey image saved as RGB
                return rgb[:, :, 0].astype(np.int64)
            raise DataError(
                f"{path}: segmentation is a colour image; give a palette to map "
                "colours to class ids (or store class ids in a single-channel PNG)"
            )
        return _palette_lookup(rgb, palette, path)
    return arr.astype(np.int64)


def _png_mode(path: Path) -> Optional[str]:
    """The PIL mode of a PNG, or None when PIL cannot tell (cv2 gets to report the error)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.mode
    except Exception:
        return None


def _npy_header(path: Path, what: str) -> tuple:
    """The shape a ``.npy`` file declares, checked against its size and the pixel limit
    before :func:`numpy.load` allocates the array."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as f:
            major, _ = npy.read_magic(f)
            read = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
            shape, _, dtype = read(f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except Exception as exc:  # numpy raises ValueError and others for a bad header
        raise DataError(f"{path}: cannot read {what} .npy file: {exc}") from exc
    count = int(np.prod(shape, dtype=object))
    if count * dtype.itemsize > data_bytes:
        raise DataError(f"{path}: {what} .npy header declares shape {shape} but the file holds {data_bytes} bytes")
    pixels = int(np.prod(shape[:2], dtype=object)) if len(shape) >= 2 else count
    if pixels > max_pixels():
        raise DataError(
            f"{path}: {what} of shape {shape} exceeds the limit of {max_pixels() / 1e6:g} megapixels; "
            "set HYDRANET_MAX_PIXELS to allow larger images"
        )
    return shape


def _load_npy(path: Path, what: str) -> np.ndarray:
    _npy_header(path, what)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read {what} .npy file: {exc}") from exc


def read_depth(path: PathLike, depth_scale: float = NYUD_DEPTH_SCALE) -> np.ndarray:
    """Read a depth map in metres (float32 H x W, 0 = no measurement).

    A PNG holds uint16 values of ``metres * depth_scale`` (NYUD: 5000, KITTI: 256); a ``.npy``
    holds float metres already. Non-finite or negative values become 0 (no measurement).
    """
    path = _check_file(path, "depth")
    if path.suffix.lower() == ".npy":
        depth = _load_npy(path, "depth").astype(np.float32)
    else:
        cv2 = _cv2()
        raw = _imread(path, "depth", cv2.IMREAD_UNCHANGED)
        if raw.ndim != 2:
            raise DataError(f"{path}: depth must be a single-channel image, got {raw.shape[2]} channels")
        if raw.dtype != np.uint16:
            raise DataError(f"{path}: depth PNG must be 16-bit (metres x {depth_scale:g}), got {raw.dtype}")
        depth = raw.astype(np.float32) / np.float32(depth_scale)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise DataError(f"{path}: depth must be H x W, got shape {depth.shape}")
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def read_normals(path: PathLike) -> np.ndarray:
    """Read surface normals as float32 H x W x 3 unit vectors (zero vector = invalid).

    A PNG (8 or 16 bit, RGB = xyz) stores ``(n + 1) / 2 * max``; pixels whose decoded vector is
    shorter than 0.5 (e.g. stored as 0,0,0 or mid-grey) are invalid. A ``.npy`` holds the
    vectors as floats. Valid vectors are renormalised to unit length.
    """
    path = _check_file(path, "normals")
    if path.suffix.lower() == ".npy":
        n = _load_npy(path, "normals").astype(np.float32)
        raw_zero = None
    else:
        cv2 = _cv2()
        raw = _imread(path, "normals", cv2.IMREAD_UNCHANGED)
        if raw.ndim != 3 or raw.shape[2] < 3:
            raise DataError(f"{path}: normals must be a 3-channel image, got shape {raw.shape}")
        raw = raw[:, :, 2::-1]  # BGR(A) -> RGB
        top = 65535.0 if raw.dtype == np.uint16 else 255.0
        n = raw.astype(np.float32) / np.float32(top) * 2.0 - 1.0
        raw_zero = (raw == 0).all(axis=2)
    if n.ndim != 3 or n.shape[2] != 3:
        raise DataError(f"{path}: normals must be H x W x 3, got shape {n.shape}")
    return unit_normals(n, invalid=raw_zero)


def unit_normals(n: np.ndarray, invalid: Optional[np.ndarray] = None, min_norm: float = 0.5) -> np.ndarray:
    """Renormalise H x W x 3 vectors; short, non-finite or ``invalid`` ones become zero."""
    n = np.nan_to_num(n.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    bad = norm[..., 0] < min_norm
    if invalid is not None:
        bad |= invalid
    out = n / np.maximum(norm, 1e-12)
    out[bad] = 0.0
    return out.astype(np.float32)


def encode_normals_png(n: np.ndarray) -> np.ndarray:
    """The uint8 RGB encoding ``(n + 1) / 2 * 255`` of unit normals; invalid pixels -> 0,0,0."""
    enc = np.clip(np.round((n + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    enc[(n == 0).all(axis=2)] = 0
    return enc
