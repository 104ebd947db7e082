"""The authors' models by name: download from a local HTTP server, git blob id check, conversion,
cache in torch's hub folder, offline errors, every front end (load_model, CLI, torch.hub)."""

import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

import hydranet
from hydranet.cli import main
from hydranet.errors import CheckpointError, WeightsUnavailableError
from hydranet.weights import hub, load_original, synthetic_original_state_dict

REPO = Path(__file__).resolve().parents[1]
NAME = "mtrn-kitti-joint"
FILE = "ExpKITTI_joint.ckpt"


class _Server:
    """A static file server on 127.0.0.1 (random port) that counts the files it served."""

    def __init__(self, folder: Path):
        served = self.served = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                served.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def original_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("authors")
    (root / "weights").mkdir()
    path = root / "weights" / FILE
    torch.save({"state_dict": synthetic_original_state_dict(segm_classes=6, seed=3), "epoch": 7}, path)
    return path


@pytest.fixture
def server(original_file, tmp_path, monkeypatch):
    srv = _Server(original_file.parents[1])
    monkeypatch.setenv("HYDRANET_MODEL_BASE_URL", srv.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setitem(hub.KNOWN_MODELS, NAME, {"file": FILE, "git_blob": hub.git_blob_id(original_file)})
    yield srv
    srv.close()


def cache(tmp_path):
    return tmp_path / "torch_home" / "hub" / "checkpoints" / "hydranet"


def test_git_blob_id_is_gits(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")  # `echo hello | git hash-object --stdin`
    assert hub.git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"
    path.write_bytes(b"")  # git's empty blob
    assert hub.git_blob_id(path) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_issue_blob_ids_and_default_address():
    assert hub.KNOWN_MODELS["mtrn-nyud-joint"]["git_blob"] == "56f5f5a6bc08a64f36e83547140add41baa4216d"
    assert hub.KNOWN_MODELS["mtrn-nyud-three"]["file"] == "ExpNYUD_three.ckpt"
    assert hub.DEFAULT_BASE_URL == "https://github.com/DrSleep/multi-task-refinenet/raw/master/weights/"


def test_download_verify_convert_and_cache(server, original_file, tmp_path):
    model = hydranet.load_model(NAME)
    cached = cache(tmp_path) / f"{NAME}.pt"
    assert cached.is_file()
    assert server.served == [f"/weights/{FILE}"]
    assert sorted(p.name for p in cache(tmp_path).iterdir()) == [f"{NAME}.pt"]  # no raw file, no temporaries
    assert [t.name for t in model.tasks] == ["segm", "depth"]
    x = torch.randn(1, 3, 64, 64)
    reference = load_original(original_file)
    with torch.no_grad():
        got, want = model(x), reference(x)
    for key in ("segm", "depth"):
        assert torch.equal(got[key], want[key])
    # second use: from the cache, no request
    hydranet.load_model(NAME)
    assert len(server.served) == 1


def test_hash_mismatch_caches_nothing(server, monkeypatch, tmp_path):
    monkeypatch.setitem(hub.KNOWN_MODELS, NAME, {"file": FILE, "git_blob": "0" * 40})
    with pytest.raises(CheckpointError, match="git blob id .* expected 0{40}.*nothing was cached"):
        hub.fetch_model(NAME, progress=False)
    assert list(cache(tmp_path).iterdir()) == []


def test_offline_error_says_what_to_fetch_and_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYDRANET_MODEL_BASE_URL", "http://127.0.0.1:9/weights/")  # discard port: refused
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(WeightsUnavailableError) as info:
        hub.fetch_model(NAME, progress=False)
    msg = str(info.value)
    assert f"http://127.0.0.1:9/weights/{FILE}" in msg and str(cache(tmp_path) / FILE) in msg
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), (torch.rand(32, 32, 3) * 255).byte().numpy())
    assert main(["predict", str(image), "--weights", NAME, "--out", str(tmp_path / "p")]) == 2
    assert f"fetch http://127.0.0.1:9/weights/{FILE} by hand" in capsys.readouterr().err


def test_hand_placed_original_is_verified_and_converted(original_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRANET_MODEL_BASE_URL", "http://127.0.0.1:9/weights/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setitem(hub.KNOWN_MODELS, NAME, {"file": FILE, "git_blob": hub.git_blob_id(original_file)})
    cache(tmp_path).mkdir(parents=True)
    (cache(tmp_path) / FILE).write_bytes(original_file.read_bytes())
    assert hub.fetch_model(NAME, progress=False) == cache(tmp_path) / f"{NAME}.pt"


def test_demo_command_with_a_model_name(server, tmp_path):
    out = tmp_path / "demo.mp4"
    assert (
        main(
            ["demo", "--weights", NAME, "--out", str(out), "--max-frames", "2", "--clip-size", "64x48", "--no-progress"]
        )
        == 0
    )
    assert out.stat().st_size > 0


def test_torch_hub_local(server):
    model = torch.hub.load(str(REPO), "mtrn_kitti_joint", source="local")
    assert [t.name for t in model.tasks] == ["segm", "depth"] and not model.training
    synthetic = torch.hub.load(str(REPO), "hydranet_synthetic", source="local")
    assert "segm" in [t.name for t in synthetic.tasks]
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    for entry in ("mtrn_nyud_joint", "mtrn_kitti_joint", "mtrn_nyudkitti_joint", "mtrn_nyud_three"):
        assert callable(getattr(hubconf, entry))
