import os

import pytest
import torch

# Two cores here: keep intra-op threads bounded so parallel helpers do not thrash.
torch.set_num_threads(min(2, os.cpu_count() or 1))

ALL_KINDS_TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 5},
    {"name": "depth", "kind": "depth"},
    {"name": "normals", "kind": "normals"},
    {"name": "maker", "kind": "classification", "classes": 3},
    {"name": "diameter", "kind": "regression", "outputs": 2},
]


def tiny_config(decoder="lightweight", encoder="mobilenet_v2", tasks=None, width=16):
    """A small model config for fast CPU tests."""
    model = {"encoder": encoder, "decoder": decoder, "width": width}
    if encoder == "mobilenet_v2":
        model["encoder_options"] = {"width_mult": 0.35}
    return {"model": model, "tasks": [dict(t) for t in (tasks or ALL_KINDS_TASKS)]}


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: with other jobs on the two cores, OpenMP barriers
    in every op make a 2-thread run of a tiny model many times slower. Results do not
    depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cfg():
    return tiny_config()
