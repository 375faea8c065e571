//! f16 storage for convs whose bias cancels their weighted sum: the weights in two f16 parts.
//!
//! In f16 mode the weights are stored in f16, a relative error of up to 2^-11 each. That is
//! harmless where a conv's output is of the size of its weighted sum, but some exports fold a
//! BatchNorm into biases of hundreds or thousands that the weighted sum nearly cancels (u2netp's
//! `Conv_787`: biases up to 1361, |W*x| and |b| both 4.3e5 in L2 norm, their sum 1.2e3). There
//! the weights' rounding, relative to |W*x|, becomes an error of the size of the output: it was
//! 8.0e-3 of u2netp's 9.3e-3 rel-L2 in f16 (`scripts/f16_sensitivity.py --attribute`).
//!
//! Such a conv `y = conv(x, W) + b` is run as two: `t = conv(x, W - f16(W))` and
//! `y = conv(x, f16(W)) + b + t`, the second adding `t` in its epilogue as a fused residual.
//! A fused activation moves after that sum; a fused residual Add `r` goes into the first conv
//! (`t = conv(x, W_lo) + r`), or, where an activation comes before it (`act(conv + b) + r`,
//! u2netp's RSU blocks), becomes an Add node after the pair.
//! Both weight sets are exact in f16 up to 2^-22 of W, so the pair computes W*x as f32 weights
//! would (the activations stay f16). The cost is one more conv of the same shape, only for the
//! convs picked.
//!
//! Which convs: those whose constant bias reaches [`BIAS_LIMIT`] in magnitude. The graph's
//! activations are not known at load, so the bias is the signal: a network's activations are of
//! order 1 to 10 (BatchNorm), and a bias far above that can only meet a weighted sum of the same
//! size with the opposite sign (or a channel that is always saturated, where the extra conv is
//! wasted but harmless). u2netp has three such convs of 119 (`Conv_765`, `Conv_787`,
//! `Conv_920`); the built-in models and the benchmark networks none.

use crate::gpu::Precision;
use crate::graph::Node;
use crate::graph::prepare::{Prepared, drop_unused_consts, new_const, new_value};
use crate::ops::Op;
use crate::ops::elementwise::{Binary, BinaryKind};
use crate::tensor::{Data, Tensor};

/// A conv whose bias reaches this magnitude gets its weights in two f16 parts.
pub const BIAS_LIMIT: f32 = 64.0;

/// Whether node `n` of `p` is a conv to split: a Conv with constant f32 weights and a constant
/// bias reaching [`BIAS_LIMIT`] (and no activation after a fused residual Add, which the pair
/// could not express).
fn wants_split(p: &Prepared, n: &Node) -> bool {
    let Op::Conv(c) = &n.op else { return false };
    if c.residual && c.post_act.is_some() {
        return false;
    }
    let (Some(w), Some(b)) = (n.input(1), n.input(2)) else { return false };
    let (Some(w), Some(b)) = (p.graph.consts.get(&w), p.graph.consts.get(&b)) else { return false };
    let (Ok(_), Ok(b)) = (w.as_f32(), b.as_f32()) else { return false };
    b.iter().any(|v| v.abs() >= BIAS_LIMIT)
}

/// Whether a node is the added conv of a split pair (its weights `W - f16(W)`), which adds
/// precision but no useful work (`bench` leaves it out of the GFLOP count).
pub fn is_low_part(n: &Node) -> bool {
    matches!(n.op, Op::Conv(_)) && n.name.ends_with(LOW_SUFFIX)
}

/// The name suffix of that conv's node.
const LOW_SUFFIX: &str = ".f16_lo";

/// The graph with every conv that [`wants_split`] run as the pair described in the module
/// docs, and how many were split. Only meaningful for f16 storage; other precisions get the
/// graph unchanged.
pub fn split_cancelling_convs(p: &Prepared, precision: Precision) -> (Prepared, usize) {
    if precision != Precision::F16 || !p.graph.nodes.iter().any(|n| wants_split(p, n)) {
        return (p.clone(), 0);
    }
    let mut out = p.clone();
    let mut nodes = Vec::with_capacity(p.graph.nodes.len() + 4);
    let mut count = 0;
    for n in &p.graph.nodes {
        if !wants_split(p, n) {
            nodes.push(n.clone());
            continue;
        }
        let Op::Conv(c) = &n.op else { unreachable!("wants_split takes convs only") };
        let (w_id, y) = (n.input(1).unwrap(), n.output(0).unwrap());
        let w = &p.graph.consts[&w_id];
        let full = w.as_f32().expect("checked by wants_split");
        let hi: Vec<f32> = full.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let lo: Vec<f32> = full.iter().zip(&hi).map(|(&v, &h)| v - h).collect();
        let name = &n.name;
        let wname = p.graph.name(w_id);
        let (g, types) = (&mut out.graph, &mut out.types);
        let hi_id =
            new_const(g, types, format!("{wname}.f16_hi"), Tensor::with_dtype(w.dtype, w.shape.clone(), Data::F32(hi)));
        let lo_id =
            new_const(g, types, format!("{wname}.f16_lo"), Tensor::with_dtype(w.dtype, w.shape.clone(), Data::F32(lo)));
        // t = conv(x, W_lo), plus the residual where the conv adds one with no activation
        // before it
        let residual_in_lo = c.residual && c.act.is_none();
        let y_type = p.types[y].clone().expect("a conv's output has a type");
        let t = new_value(g, types, format!("{}.f16_lo", g.name(y)), y_type.clone());
        let mut lo_conv = c.clone();
        (lo_conv.act, lo_conv.post_act, lo_conv.residual) = (None, None, residual_in_lo);
        let mut lo_inputs = vec![n.input(0), Some(lo_id), None];
        if residual_in_lo {
            lo_inputs.push(n.input(3));
        }
        nodes.push(Node {
            name: format!("{name}{LOW_SUFFIX}"),
            op_type: n.op_type.clone(),
            op: Op::Conv(lo_conv),
            inputs: lo_inputs,
            outputs: vec![Some(t)],
        });
        // act(conv(x, W_hi) + b + t): the activation moves after the residual, where the
        // epilogue applies `post_act` (with a residual and no activation, `post_act` stays)
        let mut hi_conv = c.clone();
        (hi_conv.residual, hi_conv.post_act, hi_conv.act) = (true, c.act.or(c.post_act), None);
        let mut hi_node = n.clone();
        hi_node.op = Op::Conv(hi_conv);
        hi_node.inputs = vec![n.input(0), Some(hi_id), n.input(2), Some(t)];
        if c.residual && c.act.is_some() {
            // act(conv + b) + r: the residual that has no room left becomes an Add after it
            let u = new_value(g, types, format!("{}.f16_hi", g.name(y)), y_type);
            hi_node.outputs = vec![Some(u)];
            nodes.push(hi_node);
            nodes.push(Node {
                name: format!("{name}.residual"),
                op_type: "Add".into(),
                op: Op::Binary(Binary { kind: BinaryKind::Add }),
                inputs: vec![Some(u), n.input(3)],
                outputs: vec![Some(y)],
            });
        } else {
            nodes.push(hi_node);
        }
        count += 1;
    }
    out.graph.nodes = nodes;
    // the original weights are read by no node any more
    drop_unused_consts(&mut out.graph);
    (out, count)
}
