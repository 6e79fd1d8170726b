#!/usr/bin/env python3
"""Checks an nnopt LeNet-5 checkpoint against PyTorch: loads the safetensors
file into the equivalent torch model, runs the input batch nnopt ran and
compares the logits.

    torch_check_checkpoint.py --case DIR
        DIR holds what tests/checkpoint_logits writes: lenet5.safetensors,
        input.bin, logits.bin (f64, little-endian) and case.json.
    torch_check_checkpoint.py --driver PATH/checkpoint_logits --workdir DIR
        runs the driver for several cases (f64 and f32, gelu/avg, relu/max)
        into DIR/<case> and checks each.

The safetensors header is parsed here with json (no dependency on the
`safetensors` package). Tolerances on the largest absolute logit difference:
1e-5 for f64, 1e-3 for f32. Exits 0 when all match, 1 on a mismatch, 77
(ctest's skip code) when torch or numpy cannot be imported.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

SKIP = 77
TOLERANCE = {"f64": 1e-5, "f32": 1e-3}
DRIVER_CASES = [("f64", "gelu", "avg"), ("f32", "gelu", "avg"), ("f64", "relu", "max")]
SAFETENSORS_DTYPES = {"F32": "<f4", "F64": "<f8"}

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError as e:  # the check needs both; say so and skip
    print(f"checkpoint_torch: SKIPPED: cannot import torch/numpy ({e}) "
          f"under {sys.executable}; install python3-torch", flush=True)
    sys.exit(SKIP)


def read_safetensors(path):
    """name -> numpy array, and the metadata, from a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = memoryview(blob)[8 + header_len:]
    metadata = header.pop("__metadata__", {})
    tensors, covered = {}, 0
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = np.dtype(SAFETENSORS_DTYPES[entry["dtype"]])
        count = int(np.prod(entry["shape"], dtype=np.int64))
        if end - begin != count * dtype.itemsize or end > len(data):
            raise ValueError(f"{path}: bad data_offsets for {name}")
        covered += end - begin
        tensors[name] = np.frombuffer(data, dtype, count, begin).reshape(entry["shape"]).copy()
    if covered != len(data):
        raise ValueError(f"{path}: data section not fully indexed")
    return tensors, metadata


def activation_layer(name):
    layers = {
        "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu6": nn.ReLU6,
        "identity": nn.Identity,
        "gelu": lambda: nn.GELU(approximate="tanh"),  # nnopt's "gelu" is the tanh form
        "gelu_erf": nn.GELU,
    }
    return layers[name]()


class LeNet5(nn.Module):
    """nnopt's lenet5 plugin: conv (first 'same', later 'valid') -> act -> pool 2
    per conv layer, flatten, dense -> act per hidden layer, dense logits.
    Parameter names equal nnopt's graph node names (conv1.weight, fc1.bias, ...)."""

    def __init__(self, tensors, activation, pool):
        super().__init__()
        n_conv = sum(1 for k in tensors if k.startswith("conv") and k.endswith(".weight"))
        n_fc = sum(1 for k in tensors if k.startswith("fc") and k.endswith(".weight"))
        self.activation, self.pool = activation, pool
        for i in range(1, n_conv + 1):
            out_c, in_c, k, _ = tensors[f"conv{i}.weight"].shape
            setattr(self, f"conv{i}", nn.Conv2d(in_c, out_c, k, padding=k // 2 if i == 1 else 0))
        for i in range(1, n_fc + 1):
            out_f, in_f = tensors[f"fc{i}.weight"].shape
            setattr(self, f"fc{i}", nn.Linear(in_f, out_f))
        self.n_conv, self.n_fc = n_conv, n_fc

    def forward(self, x):
        for i in range(1, self.n_conv + 1):
            x = activation_layer(self.activation)(getattr(self, f"conv{i}")(x))
            x = nn.AvgPool2d(2)(x) if self.pool == "avg" else nn.MaxPool2d(2)(x)
        x = torch.flatten(x, 1)
        for i in range(1, self.n_fc + 1):
            x = getattr(self, f"fc{i}")(x)
            if i < self.n_fc:
                x = activation_layer(self.activation)(x)
        return x


def check_case(case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    checkpoint = os.path.join(case_dir, case["checkpoint"])
    tensors, metadata = read_safetensors(checkpoint)
    if metadata.get("format") != "nnopt" or metadata.get("model") != "lenet5":
        raise ValueError(f"{checkpoint}: unexpected metadata {metadata}")
    torch_dtype = torch.float64 if case["dtype"] == "f64" else torch.float32
    model = LeNet5(tensors, case["activation"], case["pool"]).to(torch_dtype)
    # strict: every torch parameter is in the file and every file tensor is used.
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    model.eval()

    shape = case["input_shape"]
    x = np.fromfile(os.path.join(case_dir, "input.bin"), dtype="<f8").reshape(shape)
    expected = np.fromfile(os.path.join(case_dir, "logits.bin"), dtype="<f8")
    expected = expected.reshape(shape[0], case["classes"])
    with torch.no_grad():
        got = model(torch.from_numpy(x).to(torch_dtype)).double().numpy()
    worst = float(np.max(np.abs(got - expected)))
    tolerance = TOLERANCE[case["dtype"]]
    ok = worst <= tolerance and np.isfinite(got).all()
    print(f"{case_dir}: {case['dtype']} {case['activation']}/{case['pool']}: "
          f"{len(tensors)} tensors, max |logit difference| {worst:.3g} "
          f"(tolerance {tolerance:g}, logits up to {float(np.max(np.abs(expected))):.3g}): "
          f"{'OK' if ok else 'MISMATCH'}", flush=True)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", help="a directory written by checkpoint_logits")
    parser.add_argument("--driver", help="the checkpoint_logits executable")
    parser.add_argument("--workdir", help="where the driver writes its cases")
    args = parser.parse_args()
    if bool(args.driver) != bool(args.workdir) or bool(args.case) == bool(args.driver):
        parser.error("give --case DIR, or --driver and --workdir")
    torch.set_num_threads(1)
    if args.case:
        return 0 if check_case(args.case) else 1
    all_ok = True
    for dtype, activation, pool in DRIVER_CASES:
        case_dir = os.path.join(args.workdir, f"{dtype}_{activation}_{pool}")
        os.makedirs(case_dir, exist_ok=True)
        subprocess.run([args.driver, case_dir, dtype, activation, pool], check=True)
        all_ok &= check_case(case_dir)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
