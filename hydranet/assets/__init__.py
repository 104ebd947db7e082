"""Files shipped inside the package: the bundled synthetic checkpoint (see weights/README.md)."""

from pathlib import Path

#: Folder of the shipped files (inside the installed package, wheel or editable).
ASSETS_DIR = Path(__file__).resolve().parent
#: The bundled checkpoint, trained by Hydranet on the built-in synthetic scene set.
SYNTHETIC_CHECKPOINT = ASSETS_DIR / "hydranet_synthetic.pt"
