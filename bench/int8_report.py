#!/usr/bin/env python3
"""int8 against f32 inference from nnopt_bench --int8 runs: a markdown table
on stdout and the runs' figures as one JSON file.

    bench/int8_report.py --out OUT.json RUN.json...
"""
import argparse
import json


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    rows, entries = [], []
    for path in args.runs:
        run = json.load(open(path))
        int8 = run["int8"]
        entries.append({"model": run["model"], "model_params": run["model_params"],
                        "backend": run["backend"], "threads": run["threads"], "int8": int8})
        for key, value in int8.items():
            if not key.startswith("speedup_b"):
                continue
            batch = key[len("speedup_b"):]
            f32 = int8["f32_infer_b" + batch]["images_per_second"]
            quantised = int8["int8_infer_b" + batch]["images_per_second"]
            rows.append(f"| {run['model']} | {run['backend']} | {run['threads']} | {batch} | "
                        f"{f32:.0f} | {quantised:.0f} | {value:.2f}x | "
                        f"{int8['model_bytes_f32']} -> {int8['model_bytes_int8']} |")
    print("\nint8 vs f32 inference (best window each, alternating windows, same process):")
    print("| model | backend | threads | batch | f32 images/s | int8 images/s | int8 speed-up |"
          " model bytes |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    json.dump(entries, open(args.out, "w"), indent=2)
    print(f"int8 results: {args.out}")


if __name__ == "__main__":
    main()
