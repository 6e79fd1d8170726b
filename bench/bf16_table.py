"""The bf16-vs-f32 inference table of bench/run.sh: reads nnopt_bench
--compare-bf16 outputs (RAW/bf16_MODEL.json), prints a markdown table and adds
them to the run's JSON under "bf16_vs_f32".

    bf16_table.py RAW_DIR OUT_JSON MODEL...
"""
import json
import os
import sys


def main():
    raw, out, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    rows = {}
    for model in models:
        path = os.path.join(raw, "bf16_%s.json" % model)
        if os.path.exists(path):
            with open(path) as f:
                rows[model] = json.load(f)
    if not rows:
        return
    print("\n### bf16 vs f32 inference (batch 128, same process, alternating windows)\n")
    print("| model | backend | f32 images/s | bf16 images/s | speed-up (best windows) "
          "| speed-up over window pairs | max abs logit diff / max abs logit | same argmax |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for model, d in rows.items():
        r, c = d["results"], d["bf16_vs_f32"]["infer_b128"]
        print("| %s | %s | %.0f | %.0f | %.2fx | %.2fx - %.2fx | %.2g / %.3g | %.3f |" % (
            model, d["backend"], r["f32_infer_b128"]["images_per_second"],
            r["bf16_infer_b128"]["images_per_second"], c["speedup"], c["speedup_window_low"],
            c["speedup_window_high"], c["max_abs_logit_diff"], c["max_abs_logit_f32"],
            c["argmax_agreement"]))
    if os.path.exists(out):
        with open(out) as f:
            merged = json.load(f)
        merged["bf16_vs_f32"] = rows
        with open(out, "w") as f:
            json.dump(merged, f, indent=2)


if __name__ == "__main__":
    main()
