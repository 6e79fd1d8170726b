#!/usr/bin/env python3
"""The PyTorch side of bench/run.sh: the same workloads as nnopt_bench.

    torch_lenet5.py [--model lenet5|resnet56|mobilenet_v1_cifar]
                    [--activation relu|gelu] [--dtype f32|f64]
                    [--threads N] [--batch 128] [--infer-batch 128,1000]
                    [--seconds 2] [--warmup-seconds 0.5] [--warmup-steps 2]
                    [--min-steps 2] [--repeats 3]
                    [--channels 1] [--height 28] [--width 28] [--classes 10]
                    [--device cpu|cuda] [--cudnn-benchmark] [--tf32 on|off|default]

Synthetic inputs (uniform [0, 1), fixed seed) and labels, a few distinct
batches used in turn, as nnopt_bench does. Measures
  - training: forward + cross-entropy + backward + SGD step (and reading the
    loss, as a training loop does), images/s at --batch;
  - inference: forward in eval mode under torch.inference_mode(), images/s at
    each --infer-batch.
Each throughput is measured, after a warm-up of --warmup-seconds (at least
--warmup-steps steps), over --repeats windows of --seconds / --repeats (at
least --min-steps steps each); "images_per_second" is the best window,
"images_per_second_mean" the whole run. Prints JSON on stdout.

Models live in MODELS (name -> builder), each the exact equivalent of an
nnopt model plugin with the parameters bench/run.sh gives it: lenet5
(defaults), resnet56 (resnet, defaults: ResNet-56 with projection shortcuts)
and mobilenet_v1_cifar (mobilenet_v1 with cifar = true); the last two take
--channels 3 --height 32 --width 32. The parameter count goes to stderr and
the JSON, and is checked against EXPECTED_PARAMETERS on 3x32x32 inputs with
10 classes.

--device cuda runs the model on the GPU (eager mode) with the batches kept in
host memory and uploaded each step, and the logits brought back to the host
each inference step, as nnopt_bench does with a GPU backend; every window ends
with torch.cuda.synchronize(). --cudnn-benchmark lets cuDNN time its
algorithms per shape (torch.backends.cudnn.benchmark), PyTorch's faster
setting for fixed shapes. --tf32 on|off sets whether cuDNN convolutions and
cuBLAS matrix products in f32 may use TF32 tensor cores
(torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32);
'default' leaves PyTorch's own defaults (convolutions on, matrix products off).
The JSON records what was in effect. Run it under the interpreter that has Debian's python3-torch
(/usr/bin/python3 here).
"""
import argparse
import json
import os
import sys
import time

import torch
from torch import nn

INPUT_POOL = 4  # distinct synthetic batches, used in turn


def activation_layer(name):
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":  # nnopt's "gelu" is the tanh approximation
        return nn.GELU(approximate="tanh")
    if name == "gelu_erf":
        return nn.GELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "relu6":
        return nn.ReLU6()
    raise ValueError(f"unknown activation {name}")


def build_lenet5(activation, channels, height, width, classes):
    """nnopt's lenet5 plugin with its defaults: conv 5x5 pad 2 -> act -> avgpool 2
    -> conv 5x5 -> act -> avgpool 2 -> flatten -> dense 120 -> act -> 84 -> act -> 10."""
    def act():
        return activation_layer(activation)

    features = nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2), act(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), act(), nn.AvgPool2d(2), nn.Flatten())
    with torch.no_grad():
        flat = features(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(
        features,
        nn.Linear(flat, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, classes))


def conv_bn(in_channels, out_channels, kernel, stride, groups=1):
    """nnopt's conv (no bias, padding kernel // 2) + batch norm (momentum 0.1, eps 1e-5)."""
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.1)]


class BasicBlock(nn.Module):
    """nnopt resnet's basic block: conv3x3 + BN + act, conv3x3 + BN, plus the
    shortcut (identity, or 1x1 conv + BN where the shape changes), then act."""

    def __init__(self, in_channels, out_channels, stride, activation):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(in_channels, out_channels, 3, stride), activation_layer(activation),
            *conv_bn(out_channels, out_channels, 3, 1))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels \
            else nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
        self.act = activation_layer(activation)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


def build_resnet(activation, channels, classes, blocks=(9, 9, 9), width=16):
    """nnopt's resnet plugin with its defaults (ResNet-56): stem conv3x3 + BN +
    act, stages of basic blocks at width, 2 width, 4 width channels (stride 2 at
    the first block of stages 2 and 3, projection shortcuts), global average
    pooling, dense -> classes."""
    layers = [*conv_bn(channels, width, 3, 1), activation_layer(activation)]
    in_channels = width
    for stage, count in enumerate(blocks):
        for i in range(count):
            out_channels = width << stage
            layers.append(BasicBlock(in_channels, out_channels, 2 if stage > 0 and i == 0 else 1,
                                     activation))
            in_channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, classes)]
    return nn.Sequential(*layers)


def build_resnet56(activation, channels, height, width, classes):
    return build_resnet(activation, channels, classes)


# (output channels, stride) of MobileNetV1's 13 depthwise-separable blocks.
MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                    (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def build_mobilenet_v1(activation, channels, classes, stem_stride, dropout=0.001):
    """nnopt's mobilenet_v1 plugin (width 1.0): stem conv3x3 -> 32 + BN + act,
    13 x (depthwise 3x3 + BN + act, pointwise 1x1 + BN + act), global average
    pooling, dropout, dense -> classes."""
    layers = [*conv_bn(channels, 32, 3, stem_stride), activation_layer(activation)]
    in_channels = 32
    for out_channels, stride in MOBILENET_BLOCKS:
        layers += [*conv_bn(in_channels, in_channels, 3, stride, groups=in_channels),
                   activation_layer(activation),
                   *conv_bn(in_channels, out_channels, 1, 1), activation_layer(activation)]
        in_channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
               nn.Linear(in_channels, classes)]
    return nn.Sequential(*layers)


def build_mobilenet_v1_cifar(activation, channels, height, width, classes):
    """mobilenet_v1 with cifar = true (stem stride 1)."""
    return build_mobilenet_v1(activation, channels, classes, stem_stride=1)


# name -> builder(activation, channels, height, width, classes) -> nn.Module
MODELS = {
    "lenet5": build_lenet5,
    "resnet56": build_resnet56,
    "mobilenet_v1_cifar": build_mobilenet_v1_cifar,
}

# Parameter counts (3x32x32 inputs, 10 classes) that the builders must give:
# nnopt's plugins report the same (nnopt_bench's "parameters").
EXPECTED_PARAMETERS = {
    "resnet56": 855770,
    "mobilenet_v1_cifar": 3217226,
}


def blas_libraries():
    """The BLAS/LAPACK shared objects this process has mapped: PyTorch's dense
    layers (and its f64 convolutions) go through whichever libblas.so.3 the
    system's alternatives (or LD_LIBRARY_PATH) resolve, and that changes its
    speed severalfold."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = os.path.basename(path)
                if any(word in name for word in ("blas", "blis", "lapack", "mkl")) \
                        and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5", choices=sorted(MODELS))
    p.add_argument("--activation", default="relu")
    p.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--infer-batch", default="128,1000")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--warmup-seconds", type=float, default=0.5)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--min-steps", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--height", type=int, default=28)
    p.add_argument("--width", type=int, default=28)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument("--tf32", default="default", choices=["on", "off", "default"])
    args = p.parse_args(argv)
    args.infer_batches = [int(b) for b in args.infer_batch.split(",") if b]
    return args


def synthetic(batch, args, dtype, generator):
    images = [torch.rand(batch, args.channels, args.height, args.width, generator=generator,
                         dtype=dtype) for _ in range(INPUT_POOL)]
    labels = [torch.randint(0, args.classes, (batch,), generator=generator)
              for _ in range(INPUT_POOL)]
    return images, labels


def synchronize():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def run_for(step, seconds, min_steps):
    """Calls step() until `seconds` have passed (at least min_steps times)."""
    synchronize()
    start = now = time.perf_counter()
    done = 0
    while done < min_steps or now - start < seconds:
        step(done)
        done += 1
        now = time.perf_counter()
    synchronize()
    return done, time.perf_counter() - start


def measure(step, batch, args):
    run_for(step, args.warmup_seconds, args.warmup_steps)
    best, steps, seconds = 0.0, 0, 0.0
    for _ in range(args.repeats):
        n, dt = run_for(step, args.seconds / args.repeats, max(1, args.min_steps))
        best = max(best, n * batch / dt)
        steps += n
        seconds += dt
    return {"batch": batch, "images_per_second": best,
            "images_per_second_mean": steps * batch / seconds if seconds > 0 else 0.0,
            "steps": steps, "seconds": seconds}


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("torch_lenet5: --device cuda: torch sees no CUDA device", file=sys.stderr)
            return 1
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
        if args.tf32 != "default":
            torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
            torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    dtype = torch.float64 if args.dtype == "f64" else torch.float32
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = MODELS[args.model](args.activation, args.channels, args.height, args.width,
                               args.classes).to(dtype).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    expected = EXPECTED_PARAMETERS.get(args.model)
    shape = (args.channels, args.height, args.width, args.classes)
    print(f"torch_lenet5: {args.model}: {parameters:,} parameters", file=sys.stderr)
    if expected and shape == (3, 32, 32, 10) and parameters != expected:
        print(f"torch_lenet5: {args.model} has {parameters} parameters, expected {expected}: "
              "it no longer matches nnopt's model", file=sys.stderr)
        return 1
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    results = {}
    images, labels = synthetic(args.batch, args, dtype, generator)

    def train_step(i):
        optimizer.zero_grad(set_to_none=True)
        x = images[i % INPUT_POOL].to(device)
        loss = loss_fn(model(x), labels[i % INPUT_POOL].to(device))
        loss.backward()
        optimizer.step()
        loss.item()

    print(f"torch_lenet5: {args.model} {args.dtype} {args.activation}: training, batch "
          f"{args.batch}", file=sys.stderr)
    model.train()
    results["train"] = measure(train_step, args.batch, args)

    model.eval()
    for batch in args.infer_batches:
        images, _ = synthetic(batch, args, dtype, generator)

        def infer_step(i, images=images):
            with torch.inference_mode():
                logits = model(images[i % INPUT_POOL].to(device))
                if args.device != "cpu":
                    logits.cpu()

        print(f"torch_lenet5: inference, batch {batch}", file=sys.stderr)
        results[f"infer_b{batch}"] = measure(infer_step, batch, args)

    report = {
        "tool": "torch_lenet5",
        "model": args.model,
        "activation": args.activation,
        "dtype": args.dtype,
        "torch_version": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "cudnn_benchmark": bool(args.cudnn_benchmark) if args.device == "cuda" else None,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                 "matmul": torch.backends.cuda.matmul.allow_tf32} if args.device == "cuda" else None,
        "python": sys.executable,
        "threads": torch.get_num_threads(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "blas_libraries": blas_libraries(),
        "environment": {k: os.environ[k] for k in ("BLIS_ARCH_TYPE", "BLIS_NUM_THREADS",
                                                   "OMP_NUM_THREADS", "LD_LIBRARY_PATH",
                                                   "LD_PRELOAD") if k in os.environ},
        "input": [args.channels, args.height, args.width],
        "classes": args.classes,
        "parameters": parameters,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "warmup_steps": args.warmup_steps,
        "min_steps": args.min_steps,
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
