#!/usr/bin/env python3
"""Checks an ONNX model crema exported, with tools crema did not write: onnx.checker (with
shape inference) and OpenCV's ONNX importer (cv2.dnn.readNetFromONNX), then one forward pass.
tests/test_export.c compares the output with crema's forward pass of the unexported net.

usage: onnx_check.py MODEL.onnx IN.npy OUT.npy

Feeds IN.npy (float32) to the graph's only input and writes its first output as OUT.npy.
Prints the opset, the node count and the op types used. Exits 3 with a message when onnx,
numpy or cv2 cannot be imported, so the caller fails with a clear reason instead of skipping."""
import sys

try:
    import numpy as np
    import cv2
    import onnx
except ImportError as e:
    print("onnx_check.py: cannot import %s (apt-get install python3-onnx python3-opencv python3-numpy)"
          % e.name, file=sys.stderr)
    sys.exit(3)


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model = onnx.load(argv[1])
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        print("onnx_check.py: expected one graph input, found %s" % inputs, file=sys.stderr)
        return 1
    out_name = graph.output[0].name
    ops = sorted({n.op_type for n in graph.node})
    print("opset %d, %d nodes, %d inferred value shapes, ops: %s" % (
        model.opset_import[0].version, len(graph.node), len(inferred.graph.value_info), " ".join(ops)))
    net = cv2.dnn.readNetFromONNX(argv[1])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(np.load(argv[2]).astype(np.float32), inputs[0])
    out = net.forward(out_name)
    np.save(argv[3], np.ascontiguousarray(out, dtype=np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
