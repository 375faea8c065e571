#!/usr/bin/env python3
"""How much f16 storage costs an ONNX model, and where: onnxruntime runs the model in f32 with
f16 round trips (Cast to f16 and back) inserted after every float activation and/or applied to
the conv weights and/or the conv biases, and prints each output's rel-L2 against the plain f32
run. Then, per conv, how much its weighted sum and its bias cancel: |W*x|, |b| and |W*x + b|
(L2 norms over the output; W*x is the conv's output minus its bias), largest cancellation first.
With --attribute, which single conv's weights and which single activation tensor cost the most
when only they are rounded to f16 (one onnxruntime run per conv and per tensor: about 2 minutes
for u2netp on 2 cores).

    python3 scripts/f16_sensitivity.py tests/data/u2netp/model.onnx tests/data/u2netp/input.npy [--attribute]

Needs numpy, onnx and onnxruntime. This is how the tenth session found that u2netp's f16 error
came mostly from its conv biases, and the fourteenth that what remains is one conv's (README,
Measured).
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


def conv_params(m):
    """The initializer names of the conv weights and of the conv biases."""
    weights, biases = set(), set()
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            weights.add(n.input[1])
            if len(n.input) > 2 and n.input[2]:
                biases.add(n.input[2])
    return weights, biases


def activations(m):
    """The float tensors an f16 engine would store: outputs of the ops in ACT_OPS that are not
    graph outputs, in graph order."""
    floats, outputs = float_values(m), {o.name for o in m.graph.output}
    return [o for n in m.graph.node if n.op_type in ACT_OPS for o in n.output if o in floats and o not in outputs]


def emulate(path, round_w, round_b, round_a):
    """The model with f16 round trips: round_w, round_b and round_a are each True (every conv
    weight, conv bias or activation), False, or a set of the names to round."""
    m = onnx.load(path)
    g = m.graph
    weights, biases = conv_params(m)
    pick = lambda sel, every: every if sel is True else (set(sel) & every if sel else set())
    rounded = pick(round_w, weights) | pick(round_b, biases)
    for i in g.initializer:
        if i.data_type == TensorProto.FLOAT and i.name in rounded:
            a = numpy_helper.to_array(i).astype(np.float16).astype(np.float32)
            i.CopyFrom(numpy_helper.from_array(a, i.name))
    acts = pick(round_a, set(activations(m))) if round_a else set()
    if acts:
        nodes, rename = [], {}
        for n in g.node:
            n2 = onnx.NodeProto()
            n2.CopyFrom(n)
            for k, v in enumerate(n2.input):
                if v in rename:
                    n2.input[k] = rename[v]
            nodes.append(n2)
            for o in n.output:
                if o in acts:
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


def rel_l2(got, want):
    return [float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(got, want)]


def cancellation(path, x):
    """Per conv with a constant bias: (|W*x| / |W*x + b|, name, |W*x|, |b|, |W*x + b|, max |b|)."""
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] in inits]
    for n in convs:
        m.graph.output.append(helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    vals = dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x})))
    rows = []
    for n in convs:
        y, b = vals[n.output[0]], inits[n.input[2]]
        if y.ndim < 2 or b.shape != (y.shape[1],):
            continue
        bb = np.broadcast_to(b.reshape((1, -1) + (1,) * (y.ndim - 2)), y.shape)
        wx = np.linalg.norm(y - bb)
        rows.append((wx / max(np.linalg.norm(y), 1e-30), n.name, wx, np.linalg.norm(bb), np.linalg.norm(y),
                     np.abs(b).max()))
    rows.sort(reverse=True)
    return rows


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2 or any(a not in ("--attribute",) for a in sys.argv[1:] if a.startswith("--")):
        sys.exit(__doc__)
    path, xpath = args
    x = np.load(xpath).astype(np.float32)
    want = run(path, x)
    fmt = lambda errs: " ".join("%.2e" % e for e in errs)
    print("rel-L2 of each output against f32, f16 round trips applied to:")
    for w, b, a, what in [(1, 1, 1, "weights, biases, activations (the old f16 mode)"),
                          (1, 0, 1, "weights, activations (biases in f32: the f16 mode now)"),
                          (1, 0, 0, "weights only"), (0, 1, 0, "biases only"), (0, 0, 1, "activations only")]:
        print(f"  {what:55s} {fmt(rel_l2(run(emulate(path, bool(w), bool(b), bool(a)), x), want))}")

    print("\nconvs by cancellation (|W*x| / |W*x + b|), largest first:")
    print("  %-12s %10s %10s %10s %10s %10s" % ("conv", "ratio", "|W*x|", "|b|", "|W*x+b|", "max |b|"))
    for r in cancellation(path, x)[:10]:
        print("  %-12s %10.1f %10.3g %10.3g %10.3g %10.3g" % (r[1], r[0], r[2], r[3], r[4], r[5]))

    if "--attribute" not in sys.argv:
        return
    m = onnx.load(path)
    by_weight = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            by_weight.setdefault(n.input[1], n.name)
    rows = [(rel_l2(run(emulate(path, {w}, False, False), x), want), by_weight[w]) for w in by_weight]
    rows.sort(key=lambda r: -max(r[0]))
    print("\nthe convs whose weights alone, rounded to f16, cost the most (rel-L2 of each output):")
    for errs, name in rows[:5]:
        print(f"  {name:24s} {fmt(errs)}")
    producer = {o: (n.op_type, n.name) for n in m.graph.node for o in n.output}
    rows = [(rel_l2(run(emulate(path, False, False, {t}), x), want), t) for t in activations(m)]
    rows.sort(key=lambda r: -max(r[0]))
    print("\nthe activation tensors that alone, rounded to f16, cost the most (producer, rel-L2 of each output):")
    for errs, t in rows[:5]:
        op, name = producer[t]
        print(f"  {t:16s} {op + ' ' + name:24s} {fmt(errs)}")


if __name__ == "__main__":
    main()
