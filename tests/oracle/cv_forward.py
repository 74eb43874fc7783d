#!/usr/bin/env python3
"""One forward pass with OpenCV's Caffe importer (cv2.dnn.readNetFromCaffe): the independent
reference that tests/test_oracle.c compares crema's forward pass against.

usage: cv_forward.py NET.prototxt WEIGHTS.caffemodel --in NAME=IN.npy ... --out BLOB=OUT.npy ...

Feeds each input array (float32 .npy) and writes each requested blob as float32 .npy.
Exits 3 with a message when numpy or cv2 cannot be imported, so the caller can fail with a
clear reason instead of skipping."""
import sys

try:
    import numpy as np
    import cv2
except ImportError as e:
    print("cv_forward.py: cannot import %s (apt-get install python3-opencv python3-numpy)" % e.name,
          file=sys.stderr)
    sys.exit(3)


def pairs(args, flag):
    out = []
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            name, path = args[i + 1].split("=", 1)
            out.append((name, path))
    return out


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    net = cv2.dnn.readNetFromCaffe(argv[1], argv[2])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, path in pairs(argv[3:], "--in"):
        net.setInput(np.load(path).astype(np.float32), name)
    outs = pairs(argv[3:], "--out")
    blobs = net.forward([name for name, _ in outs])
    for (name, path), blob in zip(outs, blobs):
        np.save(path, np.ascontiguousarray(blob, dtype=np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
