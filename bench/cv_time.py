#!/usr/bin/env python3
"""Forward time of a Caffe net in OpenCV's dnn module (cv2.dnn.readNetFromCaffe, its own CPU
backend), for bench/perf.py.

usage: cv_time.py NET.prototxt WEIGHTS.caffemodel BATCH THREADS ITERATIONS

Prints one line "RESULT fwd_ms=X" (the fastest of ITERATIONS forwards after a warm-up)."""
import sys
import time

try:
    import numpy as np
    import cv2
except ImportError as e:
    print("cv_time.py: cannot import %s (apt-get install python3-opencv python3-numpy)" % e.name,
          file=sys.stderr)
    sys.exit(3)


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    batch, threads, iters = int(argv[3]), int(argv[4]), int(argv[5])
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromCaffe(argv[1], argv[2])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    # The Input layer's own shape, with the batch swapped in.
    text = open(argv[1]).read()
    dims = [int(t) for t in text.split("input_param")[1].split("}")[0].replace("dim:", " ").split()
            if t.strip().isdigit()]
    dims[0] = batch
    rng = np.random.default_rng(7)
    x = rng.standard_normal(dims).astype(np.float32)
    net.setInput(x)
    net.forward()
    best = 1e30
    for _ in range(iters):
        t = time.perf_counter()
        net.setInput(x)
        net.forward()
        best = min(best, time.perf_counter() - t)
    print("RESULT fwd_ms=%.2f" % (best * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
