"""User-facing tools built on the library: predict (files), demo (video), pseudolabel,
summary, point clouds."""
