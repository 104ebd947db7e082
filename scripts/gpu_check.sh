#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: every CUDA path Hydranet has, measured, into one JSON.
#
#   scripts/gpu_check.sh [OUT.json]            # default gpu_check.json, run from the repository root
#
# Parts (each time-limited; one failing or timing out does not stop the others, and the JSON
# records its status, exit code, seconds and the tail of its log):
#   info        nvidia-smi and torch.cuda (device, capability, memory, CUDA/cuDNN versions)
#   tests       the tests that skip on CPU (tests/test_fast.py, test_inference.py, test_bench_export.py)
#   bench_b1    hydranet bench --device cuda, every GPU setting, batch 1, model-only and end to end
#   bench_batch the same settings, model only, batches 8,32,64,128,256 (until the GPU saturates)
#   bench_train hydranet bench --train --device cuda: trainer step (fp32, channels_last, compile,
#               AMP bf16/fp16) against a plain loop, nyud at 400x400 on synthetic-shaped data,
#               and the data loader's images/s per worker
#   train_amp   200 AMP (fp16, grad scaler) steps of the nyud config on synthetic scenes with nyud's
#               tasks at 400x400 crops, then validation on 640x480 scenes
#   torchrun    the same for 50 steps (bf16) launched by torchrun, 1 node, 1 GPU
#   onnx_cuda   an exported ONNX file through Predictor on onnxruntime's CUDA provider (and TensorRT's,
#               when onnxruntime-gpu has it): outputs against the PyTorch checkpoint, model FPS
#   demo_e2e    hydranet bench --e2e --device cuda: the video demo (read + predict + draw + encode),
#               serial loop against the pipeline, fast path and the CUDA ONNX file, 320x240 and 640x480
#
# Environment: PYTHON (default python3), CONFIG (default nyud), DEVICE (default cuda),
# QUICK=1 (fewer repetitions and steps, to fit a 10-minute slot), LIMIT_<PART> seconds per part
# (e.g. LIMIT_TESTS=300), AMP_STEPS and TORCHRUN_STEPS (training steps of those parts).
set -euo pipefail

OUT="${1:-gpu_check.json}"
PYTHON="${PYTHON:-python3}"
CONFIG="${CONFIG:-nyud}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
WORK="${OUT%.json}.d"  # every part's log and JSON (kept: the partial results survive anything)
rm -rf "$WORK"
mkdir -p "$WORK"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"

if [[ "$QUICK" == 1 ]]; then
    REPS=20; WARMUP=5; BATCHES=8,32,128; TRAIN_REPS=6; AMP=60; TORCHRUN=20
else
    REPS=50; WARMUP=10; BATCHES=8,32,64,128,256; TRAIN_REPS=20; AMP=200; TORCHRUN=50
fi
AMP_STEPS="${AMP_STEPS:-$AMP}"; TORCHRUN_STEPS="${TORCHRUN_STEPS:-$TORCHRUN}"
SETTINGS=baseline,default,channels_last,compile,onnxruntime,fp16,bf16,cuda_graphs,cuda_graphs_fp16
WORKERS="$(nproc 2>/dev/null || echo 4)"; (( WORKERS > 8 )) && WORKERS=8
# nyud's tasks on synthetic scenes (the NYUD images are not needed to measure speed)
TRAIN_DATA="{type: synthetic, split: train, num_samples: 4000, size: [400, 400], seed: 0, transforms: {size: [400, 400], scale: [0.5, 2.0], hflip: 0.5, color_jitter: 0.2}}"
VAL_DATA="{type: synthetic, split: val, num_samples: 32, size: [480, 640], seed: 0}"

PARTS=()
part() {  # part NAME LIMIT_SECONDS COMMAND...: run it, log it, record status/rc/seconds
    local name="$1" limit="$2" rc=0 start end
    shift 2
    local var="LIMIT_${name^^}"
    limit="${!var:-$limit}"
    local cmd="$*"
    echo "== $name (limit ${limit}s): ${cmd:0:300}" >&2
    start=$(date +%s)
    timeout --kill-after=30 "$limit" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
    end=$(date +%s)
    local status=ok
    if (( rc == 124 || rc == 137 )); then status=timeout; elif (( rc != 0 )); then status=failed; fi
    cmd="${cmd//$'\n'/ }"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((end - start))" "${cmd//$'\t'/ }" >>"$WORK/parts.tsv"
    echo "   $status (exit $rc, $((end - start)) s)" >&2
    PARTS+=("$name")
}

: >"$WORK/parts.tsv"
TORCH_INFO=$(cat <<'EOF'
import json, torch
ok = torch.cuda.is_available()
p = torch.cuda.get_device_properties(0) if ok else None
print(json.dumps({"torch": torch.__version__, "cuda_available": ok, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "device_count": torch.cuda.device_count(),
                  "name": p.name if p else None, "capability": list(torch.cuda.get_device_capability(0)) if ok else None,
                  "memory_gb": round(p.total_memory / 2**30, 1) if p else None,
                  "bf16": torch.cuda.is_bf16_supported() if ok else None}))
EOF
)
nvidia-smi >"$WORK/nvidia-smi.txt" 2>&1 || true
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv \
    >"$WORK/nvidia-smi.csv" 2>&1 || true
part info 120 "$PYTHON" -c "$TORCH_INFO"
part tests 600 "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_fast.py tests/test_inference.py \
    tests/test_bench_export.py tests/test_onnx_frontends.py --junitxml "$WORK/tests.xml"
part bench_b1 600 "$PYTHON" -m hydranet bench --config "$CONFIG" --device "$DEVICE" --size 640x480 --batch 1 \
    --settings "$SETTINGS" --reps "$REPS" --warmup "$WARMUP" --json "$WORK/bench_b1.json"
part bench_batch 900 "$PYTHON" -m hydranet bench --config "$CONFIG" --device "$DEVICE" --size 640x480 \
    --batch "$BATCHES" --settings "$SETTINGS" --reps "$REPS" --warmup "$WARMUP" --no-e2e \
    --json "$WORK/bench_batch.json"
part bench_train 900 "$PYTHON" -m hydranet bench --train --config "$CONFIG" --device "$DEVICE" --size 400x400 \
    --synthetic-data --settings all --reps "$TRAIN_REPS" --warmup 3 --loader-workers "0,$WORKERS" \
    --json "$WORK/bench_train.json"
part train_amp 900 "$PYTHON" -m hydranet train --config "$CONFIG" --device "$DEVICE" --out "$WORK/train_amp" \
    --steps "$AMP_STEPS" --no-progress --json "$WORK/train_amp.json" \
    --set "model.encoder_weights=null" --set "data.train=$TRAIN_DATA" --set "data.val=$VAL_DATA" \
    --set train.amp=fp16 --set "train.workers=$WORKERS" --set "train.val_every=$AMP_STEPS" \
    --set "train.ckpt_every=$AMP_STEPS" --set train.warmup_steps=20 --set train.plots=false \
    --set train.tensorboard=false --set train.log_every=10
part torchrun 600 "$PYTHON" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=1 -m hydranet train \
    --config "$CONFIG" --device "$DEVICE" --out "$WORK/torchrun" --steps "$TORCHRUN_STEPS" --no-progress \
    --json "$WORK/torchrun.json" --set "model.encoder_weights=null" --set "data.train=$TRAIN_DATA" \
    --set "data.val=$VAL_DATA" --set train.amp=bf16 --set "train.workers=$WORKERS" \
    --set "train.val_every=$TORCHRUN_STEPS" --set "train.ckpt_every=$TORCHRUN_STEPS" --set train.plots=false \
    --set train.tensorboard=false

ONNX_CHECK=$(cat <<'EOF'
import json, sys, numpy as np, onnxruntime as ort, os, torch, hydranet
from hydranet.inference import Predictor
from hydranet.inference.export import export_onnx
work, config = sys.argv[1], sys.argv[2]
cfg = hydranet.load_config(config); cfg["model"]["encoder_weights"] = None
torch.manual_seed(0); model = hydranet.build_model(cfg).eval()
hydranet.save_model(model, f"{work}/onnx_model.pt"); export_onnx(model, f"{work}/onnx_model.onnx", check=False)
frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
ref = Predictor(f"{work}/onnx_model.pt", device="cuda", fast=False).predict(frame)
report = {"available_providers": ort.get_available_providers()}
for name, env in (("cuda", "0"), ("tensorrt", "1")):
    os.environ["HYDRANET_ORT_TENSORRT"] = env
    try:
        p = Predictor(f"{work}/onnx_model.onnx", device="cuda")
        p.warmup(frame, 5); p.reset_timing()
        for _ in range(50): got = p.predict(frame)
        diff = {t: float(np.abs(np.asarray(got[t], np.float64) - ref[t]).max()) for t in ref.keys()
                if getattr(ref[t], "dtype", None) == np.float32}
        report[name] = {"providers": p.net.session.get_providers(), "fps": p.fps(), "max_abs_diff": diff,
                        "segm_agreement": float((got["segm"] == ref["segm"]).mean()) if "segm" in ref else None}
    except Exception as exc:
        report[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(report))
EOF
)
part onnx_cuda 600 "$PYTHON" -c "$ONNX_CHECK" "$WORK" "$CONFIG"
part demo_e2e 600 "$PYTHON" -m hydranet bench --e2e --config "$CONFIG" --device "$DEVICE" --size 320x240,640x480 \
    --settings default,onnxruntime --reps 2 --json "$WORK/demo_e2e.json"

# Everything into one JSON (whatever parts produced; a missing or broken file is recorded as such).
"$PYTHON" - "$WORK" "$OUT" "$CONFIG" "$DEVICE" "$QUICK" <<'EOF'
import csv, datetime, json, os, platform, sys
import xml.etree.ElementTree as ET

work, out, config, device, quick = sys.argv[1:6]

def load(name):
    path = os.path.join(work, name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f) if name.endswith(".json") else f.read()
    except (OSError, ValueError) as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc}"}

def tail(name, n=4000):
    text = load(f"{name}.log") or ""
    return text[-n:]

def tests_summary():
    path = os.path.join(work, "tests.xml")
    if not os.path.isfile(path):
        return None
    try:
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        cases = [{"name": f"{c.get('classname')}::{c.get('name')}", "seconds": float(c.get("time") or 0),
                  "outcome": ("failed" if c.find("failure") is not None or c.find("error") is not None
                              else "skipped" if c.find("skipped") is not None else "passed")}
                 for c in suite.iter("testcase")]
        return {key: int(suite.get(key) or 0) for key in ("tests", "failures", "errors", "skipped")} | {
            "cuda_cases": [c for c in cases if "cuda" in c["name"].lower() or "gpu" in c["name"].lower()],
            "not_passed": [c for c in cases if c["outcome"] != "passed"]}
    except ET.ParseError as exc:
        return {"unreadable": str(exc)}

results = {"bench_b1": "bench_b1.json", "bench_batch": "bench_batch.json", "bench_train": "bench_train.json",
           "train_amp": "train_amp.json", "torchrun": "torchrun.json", "demo_e2e": "demo_e2e.json"}
parts = {}
with open(os.path.join(work, "parts.tsv"), encoding="utf-8") as f:
    for name, status, rc, seconds, command in csv.reader(f, delimiter="\t"):
        entry = {"status": status, "exit_code": int(rc), "seconds": int(seconds), "command": command}
        if name in results:
            entry["result"] = load(results[name])
        if name == "tests":
            entry["result"] = tests_summary()
        if name == "onnx_cuda":
            try:
                entry["result"] = json.loads((load("onnx_cuda.log") or "").strip().splitlines()[-1])
            except (ValueError, IndexError):
                entry["result"] = None
        if status != "ok" or name in ("tests", "torchrun", "train_amp"):
            entry["log_tail"] = tail(name)
        parts[name] = entry
for name in ("train_amp", "torchrun"):  # training throughput of the real loop, from its own summary
    summary = (parts.get(name) or {}).get("result")
    if isinstance(summary, dict) and summary.get("seconds") and summary.get("step"):
        cfg_path = os.path.join(work, name, "config.yaml")
        try:
            import yaml
            batch = int(yaml.safe_load(open(cfg_path, encoding="utf-8"))["train"]["batch_size"])
            parts[name]["images_per_s_incl_validation"] = batch * summary["step"] / summary["seconds"]
        except Exception:
            pass
report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "config": config,
          "device": device, "quick": quick == "1", "host": platform.node(), "platform": platform.platform(),
          "nvidia_smi": load("nvidia-smi.txt"), "nvidia_smi_csv": load("nvidia-smi.csv"),
          "torch_cuda": json.loads(load("info.log") or "null"), "logs": work, "parts": parts}
with open(out, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
bad = [n for n, p in parts.items() if p["status"] != "ok"]
print(f"wrote {out}: {len(parts)} parts, " + (f"not ok: {', '.join(bad)}" if bad else "all ok"))
EOF
