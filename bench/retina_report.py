#!/usr/bin/env python3
"""Merges bench_retina's JSON (canopy) and retina_torch.py's (PyTorch) of one
bench/retina.sh run into one JSON with the machine and the ratios, and a
Markdown summary.

  retina_report.py --canopy FILE --torch FILE [--cpu FILE] --json OUT --md OUT
                   [--note TEXT]

--cpu: bench_retina_cpu's JSON (the CPU backend, oneDNN), set next to
PyTorch and the OpenCL path in a table of its own.
"""

import argparse
import json
import os
import platform


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ratio(c, t):
    """canopy speed / PyTorch speed (> 1: canopy faster)."""
    return t["seconds"] / c["seconds"] if c and t and c.get("seconds") else None


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def cpu_table(cpu, c, t):
    """The CPU backend's rows: each case next to PyTorch and the OpenCL path."""
    md = [f"CPU backend (oneDNN, {cpu['threads']} threads, the same as PyTorch's) against "
          f"PyTorch and the OpenCL path:", "",
          "| case | CPU backend s | PyTorch s | OpenCL s | CPU backend / PyTorch speed | "
          "CPU backend / OpenCL speed | boxes CPU / PyTorch |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    tw = {r["name"]: r for r in t["whole"]["images"]}
    cw = {r["name"]: r for r in c["whole"]["images"]}
    rows = [(f"{r['name']} {r['width']}x{r['height']} whole (input {r['input_width']}x"
             f"{r['input_height']})", r, tw.get(r["name"]), cw.get(r["name"]))
            for r in cpu["whole"]["images"]]
    if "tiled" in cpu:
        ct = cpu["tiled"]
        rows.append((f"{ct['name']} {ct['width']}x{ct['height']} in {ct['patches']} patches "
                     f"(batch {ct['batch']})", ct, t.get("tiled"), c.get("tiled")))
    if "large" in cpu:
        cl = cpu["large"]
        rows.append((f"{cl['name']} at min_size {cl['min_size']} (one run)", cl, t.get("large"),
                     c.get("large")))
    for name, r, tr, cr in rows:
        md.append(f"| {name} | {fmt(r['seconds'])} | {fmt(tr and tr['seconds'])} | "
                  f"{fmt(cr and cr['seconds'])} | {fmt(ratio(r, tr), '.2f')} | "
                  f"{fmt(ratio(r, cr), '.2f')} | {r['boxes']} / {tr['boxes'] if tr else '-'} |")
    md.append(f"| whole images, images/s | {cpu['whole']['images_per_s']:.3f} | "
              f"{t['whole']['images_per_s']:.3f} | {c['whole']['images_per_s']:.3f} | "
              f"{cpu['whole']['images_per_s'] / t['whole']['images_per_s']:.2f} | "
              f"{cpu['whole']['images_per_s'] / c['whole']['images_per_s']:.2f} | |")
    st = cpu.get("cpu_stages")
    if st:
        md += ["", f"Where the CPU backend's time goes (one predict of "
               f"{cpu['whole']['images'][0]['name']}): Winograd convolutions "
               f"{st['conv_winograd_s']:.3f} s, direct convolutions {st['conv_direct_s']:.3f} s, "
               f"max pool / upsample-add / ReLU {st['other_nodes_s']:.3f} s, input transform "
               f"{st['transform_s']:.3f} s, decode + NMS {st['post_s']:.3f} s."]
    md.append("")
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--canopy", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--cpu")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    with open(a.canopy) as f:
        c = json.load(f)
    with open(a.torch) as f:
        t = json.load(f)
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "opencl_device": c["device"],
               "compute_units": c["compute_units"], "torch_threads": t["threads"],
               "torch": t["torch"], "torchvision": t["torchvision"],
               "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}
    rows = []  # (case, canopy dict, torch dict, gflop)
    tw = {r["name"]: r for r in t["whole"]["images"]}
    for r in c["whole"]["images"]:
        rows.append((f"{r['name']} {r['width']}x{r['height']} whole (input "
                     f"{r['input_width']}x{r['input_height']})", r, tw.get(r["name"]),
                     r["gflop"]))
    if "tiled" in c and "tiled" in t:
        ct = c["tiled"]
        rows.append((f"{ct['name']} {ct['width']}x{ct['height']} in {ct['patches']} patches "
                     f"of {ct['patch_size']}", ct, t["tiled"], None))
    if "large" in c and "large" in t:
        cl = c["large"]
        rows.append((f"{cl['name']} whole at min_size {cl['min_size']} (input "
                     f"{cl['input_width']}x{cl['input_height']}, one run)", cl, t["large"],
                     cl["gflop"]))
    speed = {"whole_images_per_s": {"canopy": c["whole"]["images_per_s"],
                                    "torch": t["whole"]["images_per_s"]},
             "whole_mpix_per_s": {"canopy": c["whole"]["mpix_per_s"],
                                  "torch": t["whole"]["mpix_per_s"]}}
    speed["whole_ratio"] = c["whole"]["images_per_s"] / t["whole"]["images_per_s"]
    for key in ("tiled", "large"):
        if key in c and key in t:
            speed[f"{key}_ratio"] = ratio(c[key], t[key])
    cpu = None
    if a.cpu:
        with open(a.cpu) as f:
            cpu = json.load(f)
        speed["cpu_whole_ratio"] = cpu["whole"]["images_per_s"] / t["whole"]["images_per_s"]
        for key in ("tiled", "large"):
            if key in cpu and key in t:
                speed[f"cpu_{key}_ratio"] = ratio(cpu[key], t[key])
    merged = {"machine": machine, "note": a.note, "speed": speed, "canopy": c, "torch": t}
    if cpu:
        merged["cpu_backend"] = cpu
    with open(a.json, "w") as f:
        json.dump(merged, f, indent=2)

    md = ["# RetinaNet bench (bench/retina.sh)", ""]
    md.append(f"Machine: {machine['cpu']}, {machine['cores']} cores; OpenCL device "
              f"{c['device']}, {c['compute_units']} compute units; PyTorch {t['torch']} "
              f"(torchvision {t['torchvision']}) on {t['device']} with {t['threads']} threads. "
              f"Load average at the end (1/5/15 min): "
              f"{', '.join(str(x) for x in machine['load_average_1_5_15'])}.")
    md.append("")
    md.append(f"Model: {c['model']} (min_size {c['min_size']}, max_size {c['max_size']}); "
              f"medians of {c['repeats']} runs. {a.note}".rstrip())
    md.append("")
    md.append("| case | GFLOP | canopy s | canopy MPix/s | PyTorch s | PyTorch MPix/s | "
              "canopy / PyTorch speed | boxes canopy / PyTorch |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, cr, tr, gf in rows:
        md.append(f"| {name} | {fmt(gf, '.1f')} | {fmt(cr['seconds'])} | "
                  f"{fmt(cr['mpix_per_s'])} | {fmt(tr and tr['seconds'])} | "
                  f"{fmt(tr and tr['mpix_per_s'])} | {fmt(ratio(cr, tr), '.2f')} | "
                  f"{cr['boxes']} / {tr['boxes'] if tr else '-'} |")
    md.append(f"| whole images, all | | {fmt(1 / c['whole']['images_per_s'])} | "
              f"{fmt(c['whole']['mpix_per_s'])} | {fmt(1 / t['whole']['images_per_s'])} | "
              f"{fmt(t['whole']['mpix_per_s'])} | {fmt(speed['whole_ratio'], '.2f')} | |")
    md.append("")
    md.append(f"images/s, whole: canopy {c['whole']['images_per_s']:.3f}, PyTorch "
              f"{t['whole']['images_per_s']:.3f}.")
    md.append("")
    if cpu:
        md += cpu_table(cpu, c, t)
    st = c["stages"]
    total = st["im2col_s"] + st["gemm_s"] + st["epilogue_s"] + st["other_s"] + st["post_s"]
    md.append(f"Stages of one predict on {c['whole']['images'][0]['name']} (input "
              f"{st['input_width']}x{st['input_height']}, {st['gflop']:.1f} GFLOP, clFinish "
              f"after every stage: {st['timed_run_s']:.3f} s):")
    md.append("")
    md.append("| stage | s | share |")
    md.append("|---|---:|---:|")
    for k, label in (("im2col_s", "im2col"), ("gemm_s", "CLBlast SGEMM"),
                     ("epilogue_s", "epilogue (bias, residual, ReLU)"),
                     ("other_s", "input transform, maxpool, upsample-add, ReLU"),
                     ("post_s", "scores, top-k, decode, NMS, read-back")):
        md.append(f"| {label} | {st[k]:.3f} | {100 * st[k] / total:.1f} % |")
    md.append("")
    md.append(f"Convs: {st['conv_gflop_per_s']:.2f} GFLOP/s in the engine (im2col + SGEMM + "
              f"epilogue); the same GEMM shapes as bare CLBlast SGEMM calls: "
              f"{st['sgemm_gflop_per_s']:.2f} GFLOP/s; CLBlast SGEMM 1024^3: "
              f"{c.get('sgemm_1024_gflop_per_s', 0):.2f} GFLOP/s. PyTorch whole-image: "
              f"{sum(r['gflop'] for r in c['whole']['images']) / sum(r['seconds'] for r in t['whole']['images']):.2f} "
              f"GFLOP/s (the same FLOP count).")
    md.append("")
    layers = sorted(c["layers"], key=lambda r: -(r["im2col_ms"] + r["gemm_ms"] +
                                                 r["epilogue_ms"]))
    md.append("Slowest convs (all of them in retina.json):")
    md.append("")
    md.append("| node | M | N | K | GFLOP | im2col ms | SGEMM ms | epilogue ms | GFLOP/s | "
              "bare SGEMM GFLOP/s |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in layers[:12]:
        md.append(f"| {r['node']} | {r['M']} | {r['N']} | {r['K']} | {r['gflop']:.3f} | "
                  f"{r['im2col_ms']:.1f} | {r['gemm_ms']:.1f} | {r['epilogue_ms']:.1f} | "
                  f"{r['gflop_per_s']:.2f} | {r['sgemm_gflop_per_s']:.2f} |")
    md.append("")
    dm = c["device_memory"]
    mem = (f"Device memory: the engine allocates {dm['bytes'] / 2**20:.1f} MiB "
           f"({dm['weight_bytes'] / 2**20:.1f} MiB weights) at min_size {dm['min_size']} / "
           f"max_size {dm['max_size']}")
    if "large" in c:
        mem += f", {c['large']['device_bytes'] / 2**20:.1f} MiB at min_size {c['large']['min_size']}"
    mem += ". "
    if "peak_device_bytes" in t:
        mem += f"PyTorch CUDA peak allocated: {t['peak_device_bytes'] / 2**20:.1f} MiB."
    else:
        mem += (f"PyTorch on the CPU has no device memory; its process peaked at "
                f"{t['peak_rss_bytes'] / 2**20:.0f} MiB resident.")
    md.append(mem)
    md.append("")
    with open(a.md, "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
