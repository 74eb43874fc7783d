#!/usr/bin/env python3
"""bench/perf.py -- crema's performance against its reference path and OpenCV, in one command.

    python3 bench/perf.py [--build build] [--nets caffenet,googlenet,resnet50] [--threads 1,2]
                          [--repeat 2] [--iterations 3] [--no-conv]

For each net (batch 10) and thread count it runs, `repeat` times,
  - crema on its default engines (Winograd for 3x3 stride-1 convolutions, oneDNN for the
    others), on its previous engine (oneDNN for every convolution) and on the reference path
    (crema's im2col+OpenBLAS, `engine: CAFFE` everywhere): forward and forward + full
    backward (force_backward) times, and the forward of the net as a deployment runs it
    (TEST phase, forward only, BatchNorm and Scale folded into the convolutions), from one
    process holding the four nets and alternating their iterations (bench_perf_net --engine
    all), then set-up time and peak memory from one process per engine;
  - OpenCV dnn's forward on the same prototxt and the same random weights (cv_time.py);
and prints the fastest of each, with ratios measured in this run. Then bench_conv prints, per
conv shape, both engines' GFLOP/s beside raw sgemm on the GEMM of the same shape.
The last column rescales crema's old-vs-Caffe ratios from issue 12 (measured on another
machine) by the new-vs-old ratio measured here: an estimate, labelled as such."""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETS = {
    "caffenet": ("CaffeNet", "tests/data/zoo/bvlc_reference_caffenet/deploy.prototxt"),
    "googlenet": ("GoogLeNet", "tests/data/zoo/bvlc_googlenet/deploy.prototxt"),
    "resnet50": ("ResNet-50", "models/resnet50/deploy.prototxt"),
}
# Issue 12: crema (old) / Caffe, forward + full backward, batch 10, by net and threads.
CAFFE_RATIO = {("CaffeNet", 2): 1.03, ("CaffeNet", 1): 1.07, ("GoogLeNet", 2): 0.84, ("GoogLeNet", 1): 0.97}


def find_python():
    """Debian's python3 has cv2; a pyenv python3 earlier on PATH often does not."""
    for cand in [os.environ.get("CREMA_PYTHON"), "/usr/bin/python3", sys.executable, "python3"]:
        if cand and subprocess.run([cand, "-c", "import cv2, numpy"], capture_output=True).returncode == 0:
            return cand
    return None


def parse(out):
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        return {}
    return {k: (v.strip('"') if not re.match(r"^[\d.]+$", v) else float(v))
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(1))}


def run_all(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.stderr.write("failed: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
        return []
    return [parse(line) for line in p.stdout.splitlines() if line.startswith("RESULT ")]


def run(cmd, env=None):
    out = run_all(cmd, env)
    return out[0] if out else None


def best(results, key):
    vals = [r[key] for r in results if r and key in r]
    return min(vals) if vals else None


def fmt(v, spec="%.1f"):
    return spec % v if v is not None else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--nets", default="caffenet,googlenet,resnet50")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--no-conv", action="store_true", help="skip the per-conv-shape table")
    a = ap.parse_args()
    binp = os.path.join(a.build, "bin", "bench_perf_net")
    if not os.path.exists(binp):
        sys.exit("error: %s not found: build first (cmake -B build && cmake --build build)" % binp)
    py = find_python()
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    print("# crema performance, %s UTC" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"))
    print("CPU: %s (%s), %d cores; OpenCV: %s" % (cpu, isa, os.cpu_count(), "python " + py if py else "not found"))
    tmp = tempfile.mkdtemp(prefix="crema_perf_")
    rows = []
    blas = engine_name = None
    try:
        for key in a.nets.split(","):
            name, rel = NETS[key]
            model = os.path.join(ROOT, rel)
            weights = os.path.join(tmp, key + ".caffemodel")
            for t in [int(x) for x in a.threads.split(",")]:
                env = dict(os.environ, OMP_NUM_THREADS=str(t))
                fast, prev, ref, cv, inf = [], [], [], [], []
                base = [binp, "--model", model, "--batch", str(a.batch), "--threads", str(t)]
                if not os.path.exists(weights):
                    subprocess.run(base + ["--save-weights", weights], capture_output=True, env=env)
                for r in range(a.repeat):
                    # times: the three engines in one process, iterations alternating
                    out = run_all(base + ["--iterations", str(a.iterations), "--engine", "all"], env)
                    fast += [x for x in out if x.get("engine") == "default"]
                    prev += [x for x in out if x.get("engine") == "onednn"]
                    ref += [x for x in out if x.get("engine") == "caffe"]
                    inf += [x for x in out if x.get("engine") == "inference"]
                    if py and os.path.exists(weights):
                        cv.append(run([py, os.path.join(ROOT, "bench", "cv_time.py"), model, weights, str(a.batch),
                                       str(t), str(a.iterations)], env))
                # peak memory (and set-up time): one process per engine
                for eng, dst in (("default", fast), ("caffe", ref)):
                    one = run(base + ["--iterations", "1", "--engine", eng], env)
                    if one:
                        dst.append({"peak_mb": one["peak_mb"], "setup_ms": one["setup_ms"]})
                if fast and "blas" in fast[0]:
                    blas, engine_name = fast[0]["blas"], fast[0]["conv_engine"]
                rows.append((name, t, fast, prev, ref, cv, inf))
                f_fb, r_fb = best(fast, "fwdbwd_ms"), best(ref, "fwdbwd_ms")
                print("  measured %s, %d thread(s): %s / %s ms" % (name, t, fmt(f_fb), fmt(r_fb)), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print("BLAS kernel: %s; default engine of conv1: %s; batch %d; fastest of %d runs x %d iterations; "
          "load average at the end: %s" % (blas, engine_name, a.batch, a.repeat, a.iterations, load))
    print()
    print("| net | threads | crema fwd ms | crema fwd+bwd ms | crema peak MB | previous engine fwd+bwd ms "
          "| reference fwd ms | reference fwd+bwd ms | reference peak MB | speed-up vs previous "
          "| speed-up vs reference | OpenCV fwd ms | crema fwd / OpenCV | crema inference fwd ms "
          "| inference / OpenCV | set-up ms | est. fwd+bwd vs Caffe |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: |")
    for name, t, fast, prev, ref, cv, inf in rows:
        ff, ffb, fpk = best(fast, "fwd_ms"), best(fast, "fwdbwd_ms"), best(fast, "peak_mb")
        rf, rfb, rpk = best(ref, "fwd_ms"), best(ref, "fwdbwd_ms"), best(ref, "peak_mb")
        cvf = best(cv, "fwd_ms")
        speed = rfb / ffb if rfb and ffb else None
        pfb = best(prev, "fwdbwd_ms")
        speed_prev = pfb / ffb if pfb and ffb else None
        vs_cv = ff / cvf if ff and cvf else None
        inff = best(inf, "fwd_ms")
        inf_cv = inff / cvf if inff and cvf else None
        caffe = CAFFE_RATIO.get((name, t))
        est = caffe * ffb / rfb if caffe and ffb and rfb else None
        print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, t, fmt(ff), fmt(ffb), fmt(fpk, "%.0f"), fmt(pfb), fmt(rf), fmt(rfb), fmt(rpk, "%.0f"),
            fmt(speed_prev, "%.2fx"), fmt(speed, "%.2fx"), fmt(cvf), fmt(vs_cv, "%.2f"), fmt(inff), fmt(inf_cv, "%.2f"),
            fmt(best(fast, "setup_ms"), "%.0f"), fmt(est, "%.2f")))
    sys.stdout.flush()
    if not a.no_conv:
        for t in [int(x) for x in a.threads.split(",")]:
            print("\n## Convolutions, %d thread(s): both engines and raw sgemm on the same shapes\n" % t)
            sys.stdout.flush()
            env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
            subprocess.run([os.path.join(a.build, "bin", "bench_conv"), "-quick"], env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
