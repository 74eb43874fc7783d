#!/usr/bin/env python3
"""bench/vs_issue_crema.py -- today's crema against the crema issue 12 measured, in one run.

    python3 bench/vs_issue_crema.py [--build build] [--rev f745c95] [--old-build DIR]
                                    [--nets caffenet,googlenet,resnet50] [--threads 2,1]
                                    [--rounds 3] [--iterations 4]

Issue 12 timed crema against BVLC Caffe on one machine (forward + full backward, batch 10):
crema was 1.03x / 1.07x Caffe's time on CaffeNet (2 / 1 threads) and 0.84x / 0.97x on
GoogLeNet. Caffe itself cannot be built here, but that crema can: it is commit f745c95 (the
last one before the first faster engine). This script builds its `crema` in a temporary
worktree (or takes --old-build), then runs `crema time` of both builds on the same prototxts,
old and new alternating, `rounds` times, with the same OpenBLAS kernel (the one today's tools
pick), and prints per net and thread count the medians, the median of the per-round ratios
new / old, and the estimate against Caffe: issue 12's old / Caffe ratio times new / old.

This estimate leans on the same measurement as bench/perf.py's last column, but its stand-in
is the crema the issue timed, not today's reference path: the reference path has shared every
improvement made since to the layers that are not convolutions (pooling, LRN, ReLU, the
solver's zeroing, thread wake-ups), so it runs faster than that crema and than Caffe."""
import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perf import CAFFE_RATIO, NETS  # noqa: E402 (the nets and issue 12's ratios, shared)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            return m.group(1) if m else platform.processor()
    except OSError:
        return platform.processor()


def build_old(rev, where):
    src, bld = os.path.join(where, "src"), os.path.join(where, "build")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", src, rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["cmake", "-S", src, "-B", bld, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", bld, "-j", str(os.cpu_count() or 2), "--target", "crema_cli"],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(bld, "bin", "crema"), src


def time_net(binary, model, threads, iterations, coretype):
    """Average forward + backward ms of `crema time`, and the BLAS line it logged."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    p = subprocess.run([binary, "time", "--model", model, "--iterations", str(iterations)], capture_output=True,
                       text=True, env=env)
    out = p.stdout + p.stderr
    m = re.search(r"Average Forward-Backward: ([\d.]+) ms", out)
    blas = re.search(r"BLAS: (.*)$", out, re.M)
    if p.returncode != 0 or not m:
        sys.stderr.write("failed: %s time --model %s\n%s" % (binary, model, out[-2000:]))
        return None, None
    return float(m.group(1)), blas.group(1) if blas else "?"


def batch10(model, tmp):
    """The prototxt with a batch of 10 (ResNet-50's deploy file declares 1)."""
    with open(model) as f:
        text = f.read()
    fixed = re.sub(r"(shape:?\s*\{\s*dim:\s*)1(\s)", r"\g<1>10\2", text, count=1)
    if fixed == text:
        return model
    out = os.path.join(tmp, os.path.basename(os.path.dirname(model)) + "_b10.prototxt")
    with open(out, "w") as f:
        f.write(fixed)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rev", default="f745c95")
    ap.add_argument("--old-build", help="a build directory of --rev already made (skips the build)")
    ap.add_argument("--nets", default="caffenet,googlenet,resnet50")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=4)
    a = ap.parse_args()
    new = os.path.join(a.build, "bin", "crema")
    if not os.path.exists(new):
        sys.exit("error: %s not found: build crema first" % new)
    tmp = tempfile.mkdtemp(prefix="crema_vs_issue_")
    worktree = None
    try:
        if a.old_build:
            old = os.path.join(a.old_build, "bin", "crema")
        else:
            print("building crema %s in %s ..." % (a.rev, tmp), file=sys.stderr)
            old, worktree = build_old(a.rev, tmp)
        # the kernel today's tools pick (they set OPENBLAS_CORETYPE when the user has not)
        _, blas = time_net(new, os.path.join(ROOT, NETS["caffenet"][1]), 1, 1, None)
        m = re.search(r"OPENBLAS_CORETYPE=(\S+)", blas or "")
        coretype = os.environ.get("OPENBLAS_CORETYPE") or (m.group(1) if m else None)
        times = {}
        for r in range(a.rounds):
            for key in a.nets.split(","):
                name, rel = NETS[key]
                model = batch10(os.path.join(ROOT, rel), tmp)
                for t in [int(x) for x in a.threads.split(",")]:
                    for which, binary in (("old", old), ("new", new)):
                        ms, _ = time_net(binary, model, t, a.iterations, coretype)
                        times.setdefault((name, t), {}).setdefault(which, []).append(ms)
                        print("  round %d %s %d thread(s) %s: %s ms" % (r + 1, name, t, which, ms), file=sys.stderr)
        print("CPU: %s, %d cores; BLAS: %s; both builds on OPENBLAS_CORETYPE=%s; %d rounds x %d iterations, "
              "old and new alternating" % (cpu_name(), os.cpu_count(), blas, coretype, a.rounds, a.iterations))
        print()
        print("| net | threads | issue-12 crema (%s) fwd+bwd ms, median | crema now, median | now / then, "
              "median of rounds (range) | issue 12: then / Caffe | est. now / Caffe |" % a.rev)
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (name, t), d in times.items():
            pairs = [(n, o) for o, n in zip(d["old"], d["new"]) if o and n]
            if not pairs:
                continue
            ratios = [n / o for n, o in pairs]
            med = statistics.median(ratios)
            caffe = CAFFE_RATIO.get((name, t))
            est = "%.2f (%.2f-%.2f)" % (caffe * med, caffe * min(ratios), caffe * max(ratios)) if caffe else "-"
            print("| %s | %d | %.0f | %.0f | %.2f (%.2f-%.2f) | %s | %s |" % (
                name, t, statistics.median(o for _, o in pairs), statistics.median(n for n, _ in pairs), med,
                min(ratios), max(ratios), "%.2f" % caffe if caffe else "-", est))
    finally:
        if worktree:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", worktree],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
