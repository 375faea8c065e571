#!/usr/bin/env python3
"""How much f16 storage costs an ONNX model, and where: onnxruntime runs the model in f32 with
f16 round trips (Cast to f16 and back) inserted after every float activation and/or applied to
the conv weights and/or the conv biases, and prints each output's rel-L2 against the plain f32
run. Then, per conv, how much its weighted sum and its bias cancel: |W*x|, |b| and |W*x + b|
(L2 norms over the output), largest cancellation first.

    python3 scripts/f16_sensitivity.py tests/data/u2netp/model.onnx tests/data/u2netp/input.npy

Needs numpy, onnx, onnxruntime and torch (for the per-conv sums). This is how the tenth session
found that u2netp's f16 error came mostly from its conv biases (README, Measured).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ACT_OPS = {"Conv", "ConvTranspose", "Relu", "MaxPool", "Resize", "Add", "Sigmoid", "Concat", "Mul",
           "AveragePool", "Upsample", "BatchNormalization", "LeakyRelu", "Tanh", "Sub", "Div"}


def float_values(m):
    mi = onnx.shape_inference.infer_shapes(m)
    vis = list(mi.graph.value_info) + list(mi.graph.output) + list(mi.graph.input)
    return {v.name for v in vis if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def emulate(path, round_w, round_b, round_a):
    m = onnx.load(path)
    g = m.graph
    weights, biases = set(), set()
    for n in g.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            weights.add(n.input[1])
            if len(n.input) > 2 and n.input[2]:
                biases.add(n.input[2])
    for i in g.initializer:
        if i.data_type == TensorProto.FLOAT and ((round_w and i.name in weights) or (round_b and i.name in biases)):
            a = numpy_helper.to_array(i).astype(np.float16).astype(np.float32)
            i.CopyFrom(numpy_helper.from_array(a, i.name))
    if round_a:
        floats = float_values(m)
        outputs = {o.name for o in g.output}
        nodes, rename = [], {}
        for n in g.node:
            n2 = onnx.NodeProto()
            n2.CopyFrom(n)
            for k, v in enumerate(n2.input):
                if v in rename:
                    n2.input[k] = rename[v]
            nodes.append(n2)
            if n.op_type in ACT_OPS:
                for o in n.output:
                    if o in floats and o not in outputs:
                        nodes.append(helper.make_node("Cast", [o], [o + "_f16"], to=TensorProto.FLOAT16))
                        nodes.append(helper.make_node("Cast", [o + "_f16"], [o + "_r"], to=TensorProto.FLOAT))
                        rename[o] = o + "_r"
        del g.node[:]
        g.node.extend(nodes)
    return m


def run(m, x):
    s = ort.InferenceSession(m.SerializeToString() if not isinstance(m, str) else m,
                             providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def main():
    path, xpath = sys.argv[1], sys.argv[2]
    x = np.load(xpath).astype(np.float32)
    want = run(path, x)
    rel = lambda got: " ".join("%.2e" % (np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(got, want))
    print("rel-L2 of each output against f32, f16 round trips applied to:")
    for w, b, a, what in [(1, 1, 1, "weights, biases, activations (the old f16 mode)"),
                          (1, 0, 1, "weights, activations (biases in f32: the f16 mode now)"),
                          (1, 0, 0, "weights only"), (0, 1, 0, "biases only"), (0, 0, 1, "activations only")]:
        print(f"  {what:55s} {rel(run(emulate(path, w, b, a), x))}")

    import torch
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    for n in convs:
        for v in (n.input[0], n.output[0]):
            m.graph.output.append(helper.make_tensor_value_info(v, TensorProto.FLOAT, None))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    vals = dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x})))
    rows = []
    for n in convs:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or len(inits[n.input[1]].shape) != 4:
            continue
        p = at.get("pads", [0, 0, 0, 0])
        xp = torch.nn.functional.pad(torch.tensor(vals[n.input[0]]), (p[1], p[3], p[0], p[2]))
        wx = torch.nn.functional.conv2d(xp, torch.tensor(inits[n.input[1]]), None, stride=at.get("strides", [1, 1]),
                                        dilation=at.get("dilations", [1, 1]), groups=at.get("group", 1)).numpy()
        y = vals[n.output[0]]
        b = inits.get(n.input[2]) if len(n.input) > 2 else None
        bn = np.linalg.norm(np.broadcast_to(b[None, :, None, None], y.shape)) if b is not None else 0.0
        rows.append((np.linalg.norm(wx) / max(np.linalg.norm(y), 1e-30), n.name, np.linalg.norm(wx), bn,
                     np.linalg.norm(y), np.abs(b).max() if b is not None else 0.0))
    rows.sort(reverse=True)
    print("\nconvs by cancellation (|W*x| / |W*x + b|), largest first:")
    print("  %-12s %10s %10s %10s %10s %10s" % ("conv", "ratio", "|W*x|", "|b|", "|W*x+b|", "max |b|"))
    for r in rows[:10]:
        print("  %-12s %10.1f %10.3g %10.3g %10.3g %10.3g" % (r[1], r[0], r[2], r[3], r[4], r[5]))


if __name__ == "__main__":
    main()
