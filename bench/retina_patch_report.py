#!/usr/bin/env python3
"""Report of bench/retina_patch.sh: one DeepForest patch, canopy before issue
19 against canopy now and PyTorch (one or more TF32 settings), medians from
one run of the script, and each conv's GFLOP/s in the profiled predict
against a bare tuned SGEMM of the same shape. Writes a JSON and a Markdown
file."""

import argparse
import json
import os
import platform
import statistics


def load(p):
    with open(p) as f:
        return json.load(f)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg": list(os.getloadavg())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", action="append", required=True, help="one per round")
    ap.add_argument("--now", action="append", required=True, help="one per round")
    ap.add_argument("--layers", required=True)
    ap.add_argument("--torch", action="append", default=[], help="TF32=FILE")
    ap.add_argument("--tuning", required=True)
    ap.add_argument("--tune-seconds", type=float, default=0)
    ap.add_argument("--total-seconds", type=float, default=0)
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    a = ap.parse_args()
    befores, nows, layers = [load(p) for p in a.before], [load(p) for p in a.now], load(a.layers)
    before, now = befores[0], nows[0]
    torchs = {}
    for spec in a.torch:
        k, p = spec.split("=", 1)
        torchs.setdefault(k, []).append(load(p))
    torch = {k: v[0] for k, v in torchs.items()}

    def med(runs):
        return statistics.median(r["tiled"]["seconds"] for r in runs)

    def rounds(runs):
        return [r["tiled"]["seconds"] for r in runs]
    with open(a.tuning) as f:
        tuning = f.read()
    b, n = med(befores), med(nows)
    res = {
        "model": now["model"], "min_size": now["min_size"], "max_size": now["max_size"],
        "device": now["device"], "compute_units": now.get("compute_units"),
        "repeats": now["repeats"], "rounds": len(nows), "image": now["tiled"]["name"],
        "before_rounds_s": rounds(befores), "now_rounds_s": rounds(nows),
        "patches": now["tiled"]["patches"], "machine": machine(),
        "before_s": b, "now_s": n, "speedup": b / n, "target_speedup": 5.0,
        "boxes": {"before": before["tiled"]["boxes"], "now": now["tiled"]["boxes"]},
        "torch": {}, "tune_seconds": a.tune_seconds, "script_seconds": a.total_seconds,
        "tuning_file": tuning, "layers": layers.get("layers", []),
        "stages": layers.get("stages", {}),
    }
    for k, t in torch.items():
        ts = med(torchs[k])
        res["torch"][k] = {"device": t["device"], "threads": t["threads"], "seconds": ts,
                           "tf32_matmul": t.get("tf32_matmul"),
                           "tf32_cudnn": t.get("tf32_cudnn"), "boxes": t["tiled"]["boxes"],
                           "rounds_s": rounds(torchs[k]),
                           "now_vs_torch": ts / n, "before_vs_torch": ts / b}
    with open(a.json, "w") as f:
        json.dump(res, f, indent=2)
    m = res["machine"]
    lines = [
        "# One DeepForest patch: canopy before issue 19, now, and PyTorch "
        "(bench/retina_patch.sh)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, load average at the end "
        f"{m['load_avg'][0]:.2f} / {m['load_avg'][1]:.2f} / {m['load_avg'][2]:.2f} "
        "(1/5/15 min; other jobs share the machine when it is above the core count).",
        f"canopy on {res['device']}. Model {res['model']} (random weights, "
        f"make_fixture.py --seed 7: DeepForest's architecture and FLOPs), min_size "
        f"{res['min_size']}: {res['image']} 400 x 400 as one patch, upscaled to "
        f"{res['min_size']} x {res['min_size']} by the model's transform. "
        f"Medians over {res['rounds']} round(s) (before, now and PyTorch in turn, so that "
        f"they share the machine's load) of each round's median of {res['repeats']} runs, "
        "all in one run of the script "
        f"({res['script_seconds']:.0f} s, " + (f"of which canopy tune {res['tune_seconds']:.0f} s)."
                                               if res["tune_seconds"] >= 0 else
                                               "with the tuning file of an earlier run)."), "",
        "| run | s/patch | vs before | vs PyTorch (>1: faster) | boxes |",
        "|---|---:|---:|---:|---:|",
    ]
    first = next(iter(res["torch"].values()), None)
    vs = (lambda s: f"{first['seconds'] / s:.3f}x") if first else (lambda s: "")
    lines.append(f"| canopy before (CLBlast defaults, im2col + SGEMM everywhere) | {b:.3f} | "
                 f"1.00x | {vs(b)} | {res['boxes']['before']} |")
    lines.append(f"| canopy now (tuned CLBlast, conv paths by measurement incl. Winograd) | "
                 f"{n:.3f} | {res['speedup']:.2f}x | {vs(n)} | {res['boxes']['now']} |")
    for k, t in res["torch"].items():
        lines.append(f"| PyTorch {t['device']}, {t['threads']} threads, TF32 {k} | "
                     f"{t['seconds']:.3f} | {b / t['seconds']:.2f}x | "
                     f"{first['seconds'] / t['seconds']:.3f}x | {t['boxes']} |")
    lines.append("")
    lines.append("Per round (s/patch): before " +
                 ", ".join(f"{x:.2f}" for x in res["before_rounds_s"]) + "; now " +
                 ", ".join(f"{x:.2f}" for x in res["now_rounds_s"]) + "".join(
                     f"; PyTorch TF32 {k} " + ", ".join(f"{x:.2f}" for x in t["rounds_s"])
                     for k, t in res["torch"].items()) + ".")
    verdict = ("met" if res["speedup"] >= 5 else
               f"missed: {res['speedup']:.2f}x of 5x, "
               f"{n / (b / 5):.2f} times too slow for it")
    lines += ["", f"Target (issue 19): now at least 5x faster than before: **{verdict}**.", ""]
    st = res["stages"]
    if res["layers"]:
        lines += [
            f"Per conv in one profiled predict of \"now\" (clFinish after every stage, "
            f"{st.get('timed_run_s', 0):.3f} s in all; convs "
            f"{st.get('conv_gflop_per_s', 0):.2f} GFLOP/s against "
            f"{st.get('sgemm_gflop_per_s', 0):.2f} GFLOP/s for bare tuned SGEMMs of the same "
            "shapes). Time shares: the node's im2col + GEMM (or the direct / Winograd "
            "kernel, counted as gemm) + epilogue; ratio = node GFLOP/s / bare SGEMM GFLOP/s.",
            "", "| node | path | k | M | N | K | GFLOP | ms | share | GFLOP/s | SGEMM GFLOP/s | "
            "ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        tot = sum(x["im2col_ms"] + x["gemm_ms"] + x["epilogue_ms"] for x in res["layers"])
        for x in sorted(res["layers"], key=lambda x: -(x["im2col_ms"] + x["gemm_ms"] +
                                                        x["epilogue_ms"])):
            ms = x["im2col_ms"] + x["gemm_ms"] + x["epilogue_ms"]
            ratio = x["gflop_per_s"] / x["sgemm_gflop_per_s"] if x["sgemm_gflop_per_s"] else 0
            lines.append(f"| {x['node']} | {x.get('path', '-')} | {x['k']} | {x['M']} | "
                         f"{x['N']} | {x['K']} | "
                         f"{x['gflop']:.2f} | {ms:.1f} | {100 * ms / tot:.1f} % | "
                         f"{x['gflop_per_s']:.2f} | {x['sgemm_gflop_per_s']:.2f} | "
                         f"{ratio:.2f} |")
    lines += ["", "The CLBlast tuning file `canopy tune` wrote for this run:", "", "```",
              tuning.strip(), "```", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[:16]))


if __name__ == "__main__":
    main()
