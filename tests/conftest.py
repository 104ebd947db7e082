import os

import pytest
import torch
from support import ALL_KINDS_TASKS, tiny_config

# Two cores here: keep intra-op threads bounded so parallel jobs do not thrash.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than about 20 s on two cores")


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
    """A tiny config with one task of every kind (see support.tiny_config)."""
    return tiny_config()


@pytest.fixture
def all_kinds_tasks():
    return [dict(t) for t in ALL_KINDS_TASKS]


@pytest.fixture(scope="session")
def fork_server():
    """A process that has imported Hydranet once and forks one child per command line, with a
    memory and time bound (tests/forkserver.py): the fuzzer and the hostile corpus share it."""
    from forkserver import ForkServer

    server = ForkServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def fuzz_world(tmp_path_factory):
    """A valid world of tiny files that the fuzzer and the hostile corpus damage (tests/fuzz_world.py)."""
    from fuzz_world import build_world

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_world(tmp_path_factory.mktemp("world"))
    finally:
        torch.set_num_threads(threads)
