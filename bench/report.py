#!/usr/bin/env python3
"""Assembles bench/run.sh's raw results into one table and one JSON file.

    report.py --raw DIR --out FILE.json [--configs "f32:relu f32:gelu ..."]
              [--detail f32:relu] [--cifar-models "resnet56 mobilenet_v1"]
              [--cifar-config f32:relu]

DIR holds, per LeNet-5 config C (e.g. f32_relu) and per CIFAR model M and
--cifar-config (e.g. resnet56_f32_relu): nnopt_C.json (nnopt_bench),
torch_default_C.json and torch_tuned_C.json (torch_lenet5.py, default and
tuned glibc allocator), optionally gemm.txt (blis_gemm_shapes on the layer
shapes), teacher.json, and meta.json (run.sh's settings). Standard library
only, so any python3 can run it.
"""
import argparse
import json
import os
import platform
import re
import sys

# The CIFAR models' names in the table, and the parameter counts of the
# networks they stand for (3x32x32 inputs, 10 classes).
CIFAR_LABELS = {"resnet56": "resnet56", "mobilenet_v1": "mobilenetv1"}
CIFAR_PARAMETERS = {"resnet56": 855770, "mobilenet_v1": 3217226}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rate(report, workload):
    if not report:
        return None
    entry = report.get("results", {}).get(workload)
    return entry["images_per_second"] if entry else None


def workloads(*reports):
    """'train' then every 'infer_bN' any of the reports has, by batch."""
    keys = set()
    for report in reports:
        if report:
            keys.update(report.get("results", {}))
    infer = sorted((k for k in keys if k.startswith("infer_b")), key=lambda k: int(k[7:]))
    return ["train"] + infer


def model_ratios(rows, fast="mobilenet_v1", slow="resnet56"):
    """images/s of `fast` over `slow`, per workload and batch, for nnopt and
    for PyTorch's faster allocator."""
    by = {(r["model"], r["workload"], r["batch"]): r for r in rows}
    out = []
    for (model, workload, batch), r in by.items():
        other = by.get((slow, workload, batch))
        if model != fast or not other:
            continue
        entry = {"workload": workload, "batch": batch}
        for source, key in (("nnopt", "nnopt_images_per_second"),
                            ("torch", "torch_best_images_per_second")):
            a, b = r[key], other[key]
            entry[source] = a / b if a and b else None
        out.append(entry)
    return out


def op_kind(node):
    """A profile node's group in the CIFAR models' per-kind summary."""
    layer = node.get("layer", "")
    if node["kind"] == "conv2d" and "depthwise" in layer:
        return "conv dw3x3"
    if node["kind"] == "conv2d" and ("pointwise" in layer or "shortcut" in layer):
        return "conv 1x1"
    return node["kind"]


def kind_summary(profile):
    """{kind: [forward s, backward s]} of one profile, plus the SGD step."""
    kinds = {}
    for node in profile.get("nodes", []):
        entry = kinds.setdefault(op_kind(node), [0.0, 0.0])
        entry[0] += node["forward_seconds"]
        entry[1] += node["backward_seconds"]
    if "optimizer_seconds" in profile:
        kinds["sgd step"] = [0.0, profile["optimizer_seconds"]]
    return kinds


def fmt_rate(value):
    return f"{value:,.0f}" if value else "-"


def parse_gemm(path):
    """blis_gemm_shapes custom-shape lines: 'M N K  G GFLOP/s' -> {(m,n,k): G}."""
    table = {}
    header = None
    if not os.path.exists(path):
        return table, header
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+) GFLOP/s", line)
            if m:
                table[tuple(int(x) for x in m.group(1, 2, 3))] = float(m.group(4))
            elif line.startswith("BLIS"):
                header = line.strip()
    return table, header


def combined_gflops(shapes, gemm):
    """GFLOP/s of running every GEMM in shapes one after the other."""
    seconds = 0.0
    flops_total = 0.0
    for shape in shapes:
        g = gemm.get(tuple(shape))
        if not g:
            return None
        flops = 2.0 * shape[0] * shape[1] * shape[2]
        flops_total += flops
        seconds += flops / (g * 1e9)
    return flops_total / seconds * 1e-9 if seconds > 0 else None


def layer_rows(profile, gemm):
    rows = []
    training = profile.get("training")
    for node in profile.get("nodes", []):
        if "gemm_mnk" not in node:
            continue
        mnk = node["gemm_mnk"]
        rows.append({
            "layer": node.get("layer", node["name"]), "pass": "forward",
            "batch": profile["batch"], "gemm_mnk": [mnk["forward"]],
            "nnopt_gflops": node.get("forward_gflops"),
            "sgemm_gflops": combined_gflops([mnk["forward"]], gemm)})
        if training:
            shapes = [mnk[k] for k in ("backward_data", "backward_weight") if k in mnk]
            rows.append({
                "layer": node.get("layer", node["name"]), "pass": "backward",
                "batch": profile["batch"], "gemm_mnk": shapes,
                "nnopt_gflops": node.get("backward_gflops"),
                "sgemm_gflops": combined_gflops(shapes, gemm)})
    return rows


def kernel_rows(raw):
    """Compiled vs precompiled kernels: one row per workload of each
    kernels_<model>_<dtype>_<act>.json (nnopt_bench --kernels both)."""
    rows = []
    for name in sorted(os.listdir(raw)):
        if not (name.startswith("kernels_") and name.endswith(".json")):
            continue
        report = load(os.path.join(raw, name)) or {}
        section = report.get("kernels") or {}
        for workload, entry in section.items():
            if not isinstance(entry, dict):
                continue
            rows.append({"model": report.get("model"), "dtype": report.get("dtype"),
                         "activation": (report.get("model_params") or {}).get("activation"),
                         "workload": workload, "batch": entry["batch"],
                         "precompiled_images_per_second": entry["precompiled_images_per_second"],
                         "compiled_images_per_second": entry["compiled_images_per_second"],
                         "ratio": entry["ratio"], "mean_ratio": entry["mean_ratio"],
                         "kernel_mode": section.get("mode"),
                         "compile_seconds": section.get("compile_seconds"),
                         "cache_hits": section.get("cache_hits"),
                         "cache_misses": section.get("cache_misses")})
    return rows


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--configs", default="f32:relu f32:gelu f64:relu f64:gelu")
    p.add_argument("--detail", default="f32:relu")
    p.add_argument("--cifar-models", default="")
    p.add_argument("--cifar-config", default="f32:relu")
    args = p.parse_args(argv)
    meta = load(os.path.join(args.raw, "meta.json")) or {}

    # (model, config, raw file key): LeNet-5's keys are the bare config.
    runs = [("lenet5", config, config.replace(":", "_")) for config in args.configs.split()]
    runs += [(model, args.cifar_config, f"{model}_{args.cifar_config.replace(':', '_')}")
             for model in args.cifar_models.split()]
    rows, configs, parameters = [], {}, {}
    for model, config, key in runs:
        dtype, act = config.split(":")
        nnopt = load(os.path.join(args.raw, f"nnopt_{key}.json"))
        torch_default = load(os.path.join(args.raw, f"torch_default_{key}.json"))
        torch_tuned = load(os.path.join(args.raw, f"torch_tuned_{key}.json"))
        configs[key] = {"nnopt": nnopt, "torch_default_allocator": torch_default,
                        "torch_tuned_allocator": torch_tuned}
        if model in CIFAR_PARAMETERS:
            torch_report = torch_default or torch_tuned
            parameters[model] = {
                "expected": CIFAR_PARAMETERS[model],
                "nnopt": nnopt.get("parameters") if nnopt else None,
                "torch": torch_report.get("parameters") if torch_report else None}
        for workload in workloads(nnopt, torch_default, torch_tuned):
            kind = "training" if workload == "train" else "inference"
            ours = rate(nnopt, workload)
            default, tuned = rate(torch_default, workload), rate(torch_tuned, workload)
            best = max([v for v in (default, tuned) if v], default=None)
            rows.append({
                "model": model, "dtype": dtype, "activation": act,
                "workload": kind, "batch": int(workload.split("b")[-1]) if kind == "inference"
                else meta.get("batch", 128),
                "nnopt_images_per_second": ours,
                "torch_default_images_per_second": default,
                "torch_tuned_images_per_second": tuned,
                "torch_best_images_per_second": best,
                "ratio_vs_torch_best": ours / best if ours and best else None})

    any_nnopt = next((c["nnopt"] for c in configs.values() if c["nnopt"]), None)
    any_torch = next((c[k] for c in configs.values()
                      for k in ("torch_default_allocator", "torch_tuned_allocator") if c[k]), None)
    backend = any_nnopt["backend"] if any_nnopt else meta.get("backend", "?")
    print()
    models = meta.get("models") or sorted({r["model"] for r in rows})
    print(f"nnopt benchmark ({', '.join(models)}) on {cpu_model()}, "
          f"{os.cpu_count()} CPUs, {meta.get('threads', '?')} threads")
    if any_nnopt:
        print(f"  nnopt backend: {backend} ({any_nnopt['backend_description']})")
    if meta.get("backend_params"):
        print(f"  nnopt backend settings: {' '.join(meta['backend_params'])}")
    if meta.get("backend_note"):
        print(f"  NOTE: {meta['backend_note']}")
    if any_torch:
        if meta.get("torch_device", "cpu") == "cpu":
            tuned_note = f"GLIBC_TUNABLES={meta.get('tunables', '')}"
        else:
            tuned_note = "torch.backends.cudnn.benchmark = True"
        print(f"  PyTorch {any_torch['torch_version']} ({any_torch['python']}) on "
              f"{any_torch.get('device', 'cpu')}, {any_torch['threads']} threads; "
              f"'tuned' = {tuned_note}")
        if any_torch.get("tf32") is not None:
            tf32 = any_torch["tf32"]
            print(f"  PyTorch TF32: convolutions {'on' if tf32['cudnn'] else 'off'}, matrix "
                  f"products {'on' if tf32['matmul'] else 'off'}")
        blas = [lib for lib in any_torch.get("blas_libraries", []) if "lapack" not in lib]
        env = " ".join(f"{k}={v}" for k, v in any_torch.get("environment", {}).items())
        print(f"  PyTorch's BLAS (its dense layers, f64 convs): {', '.join(blas) or '?'}"
              f"{'; env ' + env if env else ''}")
    else:
        print("  PyTorch: not run (no python with torch found)")
    if args.configs.split():
        print(f"  lenet5: best of {meta.get('repeats', '?')} windows over "
              f"{meta.get('seconds', '?')} s per measurement")
    if args.cifar_models.split():
        print(f"  {', '.join(args.cifar_models.split())} (3x32x32, 10 classes): one warm-up "
              f"step, best of {meta.get('cifar_repeats', '?')} windows over "
              f"{meta.get('cifar_seconds', '?')} s (at least one step each) per measurement")
        for model, count in parameters.items():
            ok = count["nnopt"] == count["expected"] and count["torch"] in (None, count["expected"])
            print(f"  {model} parameters: nnopt {fmt_rate(count['nnopt'])}, PyTorch "
                  f"{fmt_rate(count['torch'])} (expected {count['expected']:,})"
                  f"{'' if ok else '  <-- MISMATCH'}")
    print("  ratio = nnopt / max(torch default, torch tuned)")
    print()
    header = (f"{'model':<12} {'config':<10} {'workload':<10} {'batch':>5} {'nnopt img/s':>12} "
              f"{'torch default':>14} {'torch tuned':>12} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_vs_torch_best']:.2f}x" if r["ratio_vs_torch_best"] else "-"
        print(f"{CIFAR_LABELS.get(r['model'], r['model']):<12} "
              f"{r['dtype'] + ' ' + r['activation']:<10} {r['workload']:<10} {r['batch']:>5} "
              f"{fmt_rate(r['nnopt_images_per_second']):>12} "
              f"{fmt_rate(r['torch_default_images_per_second']):>14} "
              f"{fmt_rate(r['torch_tuned_images_per_second']):>12} {ratio:>7}")

    ratios = model_ratios(rows)
    if ratios:
        print()
        print("MobileNetV1 / ResNet-56 images/s (the study: ~4x at inference; the goal: nnopt's "
              "inference >= 2x)")
        for entry in ratios:
            mark = ""
            if entry["workload"] == "inference" and entry["nnopt"]:
                mark = "  (>= 2x: yes)" if entry["nnopt"] >= 2 else "  (>= 2x: NO)"
            cells = "  ".join(f"{source} {entry[source]:.2f}x" if entry[source] else f"{source} -"
                              for source in ("nnopt", "torch"))
            print(f"  {entry['workload']:<10} b{entry['batch']:<5} {cells}{mark}")

    for model in args.cifar_models.split():
        key = f"{model}_{args.cifar_config.replace(':', '_')}"
        profiles = (configs.get(key, {}).get("nnopt") or {}).get("profile") or {}
        for name, profile in profiles.items():
            kinds = kind_summary(profile)
            total = profile["op_seconds_per_step"] or 1.0
            what = "training step" if profile["training"] else "inference forward"
            print()
            print(f"nnopt per-op time by kind, {model} {args.cifar_config.replace(':', ' ')}, "
                  f"{what}, batch {profile['batch']} ({profile['steps']} profiled steps, each op "
                  f"synchronized; {total * 1e3:.1f} ms of ops per step)")
            print(f"  {'kind':<12} {'forward ms':>10} {'backward ms':>11} {'share':>6}")
            for kind, (fwd, bwd) in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
                print(f"  {kind:<12} {fwd * 1e3:>10.1f} {bwd * 1e3:>11.1f} "
                      f"{(fwd + bwd) / total * 100:>5.1f}%")

    detail_key = args.detail.replace(":", "_")
    detail = configs.get(detail_key, {}).get("nnopt")
    gemm, gemm_header = parse_gemm(os.path.join(args.raw, "gemm.txt"))
    breakdown, layers = {}, []
    if detail:
        for name, profile in detail.get("profile", {}).items():
            breakdown[name] = profile
            print()
            what = "training step" if profile["training"] else "inference forward"
            print(f"per-op time, {args.detail.replace(':', ' ')}, {what}, batch "
                  f"{profile['batch']} (each op synchronized; "
                  f"{profile['op_seconds_per_step'] * 1e3:.2f} ms of ops per step)")
            print(f"  {'node':<14} {'op':<9} {'forward ms':>10} {'backward ms':>11} {'share':>6}")
            for node in profile["nodes"]:
                label = node.get("layer", node["name"])
                print(f"  {label:<14} {node['kind']:<9} {node['forward_seconds'] * 1e3:>10.3f} "
                      f"{node['backward_seconds'] * 1e3:>11.3f} {node['share'] * 100:>5.1f}%")
            if "optimizer_seconds" in profile:
                print(f"  {'sgd step':<14} {'sgd':<9} {'':>10} "
                      f"{profile['optimizer_seconds'] * 1e3:>11.3f} "
                      f"{profile['optimizer_share'] * 100:>5.1f}%")
            layers += layer_rows(profile, gemm)
        if any("backward_seconds" in n for n in breakdown.get("train", {}).get("nodes", [])):
            print("  (the last dense layer's backward includes softmax cross-entropy)")
    if layers:
        print()
        print(f"conv/dense layers, {args.detail.replace(':', ' ')}: nnopt GFLOP/s (from "
              "2 x MACs x batch / op seconds) next to bare BLIS sgemm on the same GEMM shapes")
        if gemm_header:
            print(f"  bare sgemm: {gemm_header}")
        else:
            print("  bare sgemm: not measured (blis_gemm_shapes not built)")
        print(f"  {'layer':<6} {'pass':<8} {'batch':>5} {'GEMM m x n x k':<34} "
              f"{'nnopt':>7} {'sgemm':>7}")
        for r in layers:
            shapes = " + ".join("x".join(str(v) for v in s) for s in r["gemm_mnk"])
            ours = f"{r['nnopt_gflops']:.1f}" if r["nnopt_gflops"] else "-"
            bare = f"{r['sgemm_gflops']:.1f}" if r["sgemm_gflops"] else "-"
            print(f"  {r['layer']:<6} {r['pass']:<8} {r['batch']:>5} {shapes:<34} "
                  f"{ours:>7} {bare:>7}")
        print("  (nnopt's backward time includes the bias gradient; sgemm 'backward' is the "
              "data and weight GEMMs back to back)")

    kernels = kernel_rows(args.raw)
    if kernels:
        print()
        print("compiled vs precompiled kernels (same invocation, alternating windows; "
              "ratio = compiled / precompiled, best window; compile time not in any rate)")
        print(f"  {'model':<8} {'dtype':<5} {'act':<5} {'workload':<11} {'batch':>5} "
              f"{'precompiled':>12} {'compiled':>12} {'ratio':>6} {'mean':>6} {'compile s':>9}")
        for r in kernels:
            print(f"  {r['model']:<8} {r['dtype']:<5} {r['activation'] or '':<5} "
                  f"{r['workload']:<11} {r['batch']:>5} "
                  f"{fmt_rate(r['precompiled_images_per_second']):>12} "
                  f"{fmt_rate(r['compiled_images_per_second']):>12} {r['ratio']:>5.2f}x "
                  f"{r['mean_ratio']:>5.2f}x {r['compile_seconds'] or 0:>9.2f}"
                  f"{'' if r['kernel_mode'] == 'compiled' else '  (' + str(r['kernel_mode']) + ')'}")

    teacher = load(os.path.join(args.raw, "teacher.json"))
    if teacher:
        print()
        status = "ok" if teacher.get("exit_code") == 0 else f"FAILED ({teacher.get('exit_code')})"
        print(f"teacher run ({teacher['conf']}, backend {teacher['backend']}): "
              f"{teacher['wall_seconds']:.1f} s wall, {status}")

    out = {
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": meta,
        "table": rows,
        "parameters": parameters,
        "model_ratios": {"numerator": "mobilenet_v1", "denominator": "resnet56",
                         "rows": ratios},
        "profile": {"config": args.detail, "nnopt": breakdown},
        "layers": {"config": args.detail, "sgemm": gemm_header, "rows": layers},
        "teacher": teacher,
        "kernels": kernels,
        "raw": configs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print()
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
