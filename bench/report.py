#!/usr/bin/env python3
"""Assembles bench/run.sh's raw results into one table and one JSON file.

    report.py --raw DIR --out FILE.json [--configs "f32:relu f32:gelu ..."]
              [--detail f32:relu]

DIR holds, per config C (e.g. f32_relu): nnopt_C.json (nnopt_bench),
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

WORKLOAD_LABELS = [("train", "training"), ("infer_b128", "inference"),
                   ("infer_b1000", "inference")]


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


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--configs", default="f32:relu f32:gelu f64:relu f64:gelu")
    p.add_argument("--detail", default="f32:relu")
    args = p.parse_args(argv)
    meta = load(os.path.join(args.raw, "meta.json")) or {}

    rows, configs = [], {}
    for config in args.configs.split():
        dtype, act = config.split(":")
        key = f"{dtype}_{act}"
        nnopt = load(os.path.join(args.raw, f"nnopt_{key}.json"))
        torch_default = load(os.path.join(args.raw, f"torch_default_{key}.json"))
        torch_tuned = load(os.path.join(args.raw, f"torch_tuned_{key}.json"))
        configs[key] = {"nnopt": nnopt, "torch_default_allocator": torch_default,
                        "torch_tuned_allocator": torch_tuned}
        for workload, kind in WORKLOAD_LABELS:
            ours = rate(nnopt, workload)
            default, tuned = rate(torch_default, workload), rate(torch_tuned, workload)
            best = max([v for v in (default, tuned) if v], default=None)
            rows.append({
                "model": meta.get("model", "lenet5"), "dtype": dtype, "activation": act,
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
    print(f"nnopt {meta.get('model', 'lenet5')} benchmark on {cpu_model()}, "
          f"{os.cpu_count()} CPUs, {meta.get('threads', '?')} threads")
    if any_nnopt:
        print(f"  nnopt backend: {backend} ({any_nnopt['backend_description']})")
    if meta.get("backend_note"):
        print(f"  NOTE: {meta['backend_note']}")
    if any_torch:
        print(f"  PyTorch {any_torch['torch_version']} ({any_torch['python']}), "
              f"{any_torch['threads']} threads; 'tuned' = GLIBC_TUNABLES={meta.get('tunables', '')}")
        blas = [lib for lib in any_torch.get("blas_libraries", []) if "lapack" not in lib]
        env = " ".join(f"{k}={v}" for k, v in any_torch.get("environment", {}).items())
        print(f"  PyTorch's BLAS (its dense layers, f64 convs): {', '.join(blas) or '?'}"
              f"{'; env ' + env if env else ''}")
    else:
        print("  PyTorch: not run (no python with torch found)")
    print(f"  best of {meta.get('repeats', '?')} windows over {meta.get('seconds', '?')} s "
          "per measurement; ratio = nnopt / max(torch default, torch tuned)")
    print()
    header = (f"{'config':<10} {'workload':<10} {'batch':>5} {'nnopt img/s':>12} "
              f"{'torch default':>14} {'torch tuned':>12} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_vs_torch_best']:.2f}x" if r["ratio_vs_torch_best"] else "-"
        print(f"{r['dtype'] + ' ' + r['activation']:<10} {r['workload']:<10} {r['batch']:>5} "
              f"{fmt_rate(r['nnopt_images_per_second']):>12} "
              f"{fmt_rate(r['torch_default_images_per_second']):>14} "
              f"{fmt_rate(r['torch_tuned_images_per_second']):>12} {ratio:>7}")

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
        "profile": {"config": args.detail, "nnopt": breakdown},
        "layers": {"config": args.detail, "sgemm": gemm_header, "rows": layers},
        "teacher": teacher,
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
