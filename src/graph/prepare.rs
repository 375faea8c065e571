//! Specialise a loaded graph for the actual input shapes:
//!
//! 1. bind the inputs (shapes checked against the declared ones, or values bound as constants);
//! 2. remove Identity and inference Dropout;
//! 3. one forward pass in topological order that infers every value's type and shape and folds
//!    every node whose inputs are all constant (the shape subgraphs of dynamic-size exports:
//!    Shape, Gather, Slice, Concat, Cast, ...), with Shape folded from the inferred shape alone;
//! 4. dead-node removal (what is left is what runs), and a conv bias computed at run time
//!    split off into an Add after the conv;
//! 5. BatchNormalization folded into the Conv / ConvTranspose before it when their weights are
//!    constant;
//! 6. activation fusion: a Relu / LeakyRelu / Sigmoid / Tanh / Clip / SiLU (Sigmoid then Mul) /
//!    ... that alone consumes a conv's output becomes the conv's epilogue.

use super::{Graph, Node, ValueId};
use crate::error::{Error, Result};
use crate::ops::elementwise::{BinaryKind, UnaryKind, fusable_activation};
use crate::ops::{InInfo, Op};
use crate::tensor::{DType, Tensor, fmt_shape};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How a graph input is fed.
#[derive(Clone, Debug)]
pub enum Binding {
    /// Fed at run time with a tensor of this shape (float32).
    Shape(Vec<usize>),
    /// Known now: treated as a constant (the conformance tests feed axes, pads, weights so).
    Const(Arc<Tensor>),
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Fold BatchNormalization into the preceding conv.
    pub fold_batchnorm: bool,
    /// Fuse activations into conv epilogues.
    pub fuse_activations: bool,
    /// Fuse a residual Add (and the activation after it) into the epilogue of the conv that
    /// produces one of its inputs.
    pub fuse_residuals: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { fold_batchnorm: true, fuse_activations: true, fuse_residuals: true }
    }
}

/// A graph specialised for fixed input shapes: every value that remains has a known type and
/// shape, and the nodes are exactly those that must run.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub graph: Graph,
    /// Type and shape of every value (indexed by `ValueId`; `None` for values that were removed).
    pub types: Vec<Option<(DType, Vec<usize>)>>,
}

impl Prepared {
    pub fn shape(&self, v: ValueId) -> &[usize] {
        self.types[v].as_ref().map(|t| t.1.as_slice()).unwrap_or(&[])
    }
    pub fn dtype(&self, v: ValueId) -> DType {
        self.types[v].as_ref().map(|t| t.0).unwrap_or(DType::F32)
    }
    /// Shapes of the runtime inputs, in order.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.graph.inputs.iter().map(|&v| self.shape(v).to_vec()).collect()
    }
}

fn node_err(n: &Node, msg: impl Into<String>) -> Error {
    Error::node(&n.name, &n.op_type, msg)
}

pub fn prepare(g: &Graph, bindings: &[Binding], opts: &Options) -> Result<Prepared> {
    let mut g = g.clone();
    let mut types: Vec<Option<(DType, Vec<usize>)>> = vec![None; g.values.len()];

    // 1. inputs
    if bindings.len() != g.inputs.len() {
        let names: Vec<String> = g.inputs.iter().map(|&v| format!("'{}'", g.name(v))).collect();
        return Err(Error::Model(format!(
            "the model has {} input(s) ({}) but {} were given",
            g.inputs.len(),
            names.join(", "),
            bindings.len()
        )));
    }
    let mut symbols: HashMap<String, usize> = HashMap::new();
    let mut runtime_inputs = Vec::new();
    for (&v, b) in g.inputs.clone().iter().zip(bindings) {
        let info = g.values[v].clone();
        let shape: Vec<usize> = match b {
            Binding::Const(t) => t.shape.clone(),
            Binding::Shape(s) => s.clone(),
        };
        if let Some(dims) = &info.dims {
            if dims.len() != shape.len() {
                return Err(Error::Input {
                    name: info.name.clone(),
                    msg: format!(
                        "the model expects rank {} {} but got shape {}",
                        dims.len(),
                        super::fmt_dims(dims),
                        fmt_shape(&shape)
                    ),
                });
            }
            for (i, (d, &s)) in dims.iter().zip(&shape).enumerate() {
                match d {
                    super::Dim::Fixed(n) if *n != s => {
                        return Err(Error::Input {
                            name: info.name.clone(),
                            msg: format!(
                                "dimension {i} must be {n} (the model expects {}), got shape {}",
                                super::fmt_dims(dims),
                                fmt_shape(&shape)
                            ),
                        });
                    }
                    super::Dim::Sym(sym) => {
                        if let Some(&prev) = symbols.get(sym) {
                            if prev != s {
                                return Err(Error::Input {
                                    name: info.name.clone(),
                                    msg: format!("dimension '{sym}' is {prev} in another input but {s} here"),
                                });
                            }
                        } else {
                            symbols.insert(sym.clone(), s);
                        }
                    }
                    _ => {}
                }
            }
        }
        crate::tensor::checked_numel(&shape).map_err(|m| Error::Input { name: info.name.clone(), msg: m })?;
        match b {
            Binding::Const(t) => {
                types[v] = Some((t.dtype, t.shape.clone()));
                g.consts.insert(v, t.clone());
            }
            Binding::Shape(s) => {
                let dt = info.dtype.unwrap_or(DType::F32);
                if !dt.is_float() {
                    return Err(Error::Input {
                        name: info.name.clone(),
                        msg: format!("has type {}; only float inputs can be fed at run time", dt.name()),
                    });
                }
                types[v] = Some((DType::F32, s.clone()));
                runtime_inputs.push(v);
            }
        }
    }
    g.inputs = runtime_inputs;
    for (&v, t) in &g.consts {
        types[v] = Some((t.dtype, t.shape.clone()));
    }

    // 2. Identity / Dropout removal
    remove_identities(&mut g)?;

    // 3. forward pass: infer and fold
    let mut folded_nodes = vec![false; g.nodes.len()];
    for (k, n) in g.nodes.iter().enumerate() {
        let mut infos: Vec<Option<InInfo>> = Vec::with_capacity(n.inputs.len());
        let mut all_const = true;
        for (i, inp) in n.inputs.iter().enumerate() {
            match inp {
                None => infos.push(None),
                Some(v) => {
                    let Some((dt, shape)) = &types[*v] else {
                        return Err(node_err(n, format!("internal: input {i} '{}' has no type", g.name(*v))));
                    };
                    let value = g.consts.get(v).map(|t| t.as_ref());
                    all_const &= value.is_some();
                    infos.push(Some(InInfo { dtype: *dt, shape, value }));
                }
            }
        }
        let outputs: Option<Vec<Tensor>> = if all_const && !n.inputs.is_empty() {
            let ins: Vec<Option<&Tensor>> = infos.iter().map(|i| i.and_then(|i| i.value)).collect();
            Some(n.op.eval(&ins).map_err(|m| node_err(n, m))?)
        } else if let (Op::Shape(s), Some(Some(x))) = (&n.op, infos.first()) {
            let v: Vec<i64> = x.shape[s.range(x.shape.len())].iter().map(|&d| d as i64).collect();
            Some(vec![Tensor::i64(vec![v.len()], v)])
        } else if let (Op::Size, Some(Some(x))) = (&n.op, infos.first()) {
            Some(vec![Tensor::i64(vec![], vec![x.shape.iter().product::<usize>() as i64])])
        } else {
            None
        };
        let out_types: Vec<(DType, Vec<usize>)> = match &outputs {
            Some(ts) => ts.iter().map(|t| (t.dtype, t.shape.clone())).collect(),
            None => {
                for &si in n.op.static_inputs() {
                    if let Some(Some(i)) = infos.get(si)
                        && i.value.is_none()
                    {
                        return Err(node_err(
                            n,
                            format!(
                                "input {si} '{}' must be a constant, or computable from shapes when the graph is prepared, but it depends on run-time data",
                                g.name(n.inputs[si].unwrap())
                            ),
                        ));
                    }
                }
                n.op.infer(&infos).map_err(|m| node_err(n, m))?
            }
        };
        for (j, out) in n.outputs.iter().enumerate() {
            let Some(v) = out else { continue };
            match out_types.get(j) {
                Some(t) => types[*v] = Some(t.clone()),
                None => {
                    // an extra output (MaxPool indices, BatchNorm training stats, Dropout mask)
                    types[*v] = None;
                }
            }
        }
        if let Some(ts) = outputs {
            for (out, t) in n.outputs.iter().zip(ts) {
                if let Some(v) = out {
                    g.consts.insert(*v, Arc::new(t));
                }
            }
            folded_nodes[k] = true;
        }
    }
    let mut kept = Vec::with_capacity(g.nodes.len());
    for (n, f) in std::mem::take(&mut g.nodes).into_iter().zip(folded_nodes) {
        if !f {
            kept.push(n);
        }
    }
    g.nodes = kept;

    // 4. dead nodes
    prune(&mut g);
    // extra outputs that are really used are not supported
    let consumers = g.consumers();
    for n in &g.nodes {
        for (j, out) in n.outputs.iter().enumerate() {
            if let Some(v) = out
                && types[*v].is_none()
                && (!consumers[*v].is_empty() || g.outputs.contains(v))
            {
                return Err(node_err(n, format!("output {j} '{}' is not supported (inference only)", g.name(*v))));
            }
        }
    }

    // 4b. conv biases computed at run time become Adds (the GPU reads biases as f32 built at load)
    split_runtime_biases(&mut g, &mut types);
    // 5. BatchNorm folding
    if opts.fold_batchnorm {
        fold_batchnorm(&mut g, &mut types);
    }
    // 6. activation fusion
    if opts.fuse_activations {
        fuse_activations(&mut g);
    }
    // 7. residual Add fusion (then the activations that follow those Adds)
    if opts.fuse_residuals && fuse_residuals(&mut g, &types) && opts.fuse_activations {
        fuse_activations(&mut g);
    }
    prune(&mut g);
    // only values still in use keep a type (constants referenced by nodes included)
    let mut live = vec![false; g.values.len()];
    for &v in g.inputs.iter().chain(&g.outputs) {
        live[v] = true;
    }
    for n in &g.nodes {
        for v in n.inputs.iter().chain(&n.outputs).flatten() {
            live[*v] = true;
        }
    }
    g.consts.retain(|v, _| live[*v]);
    for (v, t) in types.iter_mut().enumerate() {
        if !live[v] {
            *t = None;
        }
    }
    Ok(Prepared { graph: g, types })
}

/// Rewire readers of Identity / Dropout outputs to their inputs and drop those nodes.
fn remove_identities(g: &mut Graph) -> Result<()> {
    let mut subst: HashMap<ValueId, ValueId> = HashMap::new();
    let mut keep = Vec::with_capacity(g.nodes.len());
    let consumers = g.consumers();
    for n in std::mem::take(&mut g.nodes) {
        if matches!(n.op, Op::Identity) {
            let src = n.input(0).ok_or_else(|| node_err(&n, "missing input 0"))?;
            let src = *subst.get(&src).unwrap_or(&src);
            if let Some(out) = n.output(0) {
                subst.insert(out, src);
            }
            // Dropout's mask output
            if let Some(mask) = n.output(1)
                && (!consumers[mask].is_empty() || g.outputs.contains(&mask))
            {
                return Err(node_err(&n, "the Dropout mask output is not supported"));
            }
            continue;
        }
        keep.push(n);
    }
    for n in &mut keep {
        for v in n.inputs.iter_mut().flatten() {
            if let Some(&s) = subst.get(v) {
                *v = s;
            }
        }
    }
    for v in &mut g.outputs {
        if let Some(&s) = subst.get(v) {
            *v = s;
        }
    }
    g.nodes = keep;
    Ok(())
}

/// Keep only nodes that contribute to a graph output (constants need no node).
pub fn prune(g: &mut Graph) {
    let mut needed: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut keep = vec![false; g.nodes.len()];
    for (k, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().flatten().any(|v| needed.contains(v) && !g.consts.contains_key(v)) {
            keep[k] = true;
            needed.extend(n.inputs.iter().flatten().copied());
        }
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

/// Add a constant value to the graph (and its type to `types`); returns its id.
pub fn new_const(g: &mut Graph, types: &mut Vec<Option<(DType, Vec<usize>)>>, name: String, t: Tensor) -> ValueId {
    let id = g.values.len();
    g.values.push(super::ValueInfo { name, dtype: Some(t.dtype), dims: None });
    types.push(Some((t.dtype, t.shape.clone())));
    g.consts.insert(id, Arc::new(t));
    id
}

/// Add a value computed at run time, of this type, to the graph (and to `types`); returns its id.
pub fn new_value(
    g: &mut Graph,
    types: &mut Vec<Option<(DType, Vec<usize>)>>,
    name: String,
    t: (DType, Vec<usize>),
) -> ValueId {
    g.values.push(super::ValueInfo { name, dtype: Some(t.0), dims: None });
    types.push(Some(t));
    g.values.len() - 1
}

/// Drop the constants that no node reads and that are not graph outputs (after a rewrite that
/// replaced some node inputs).
pub fn drop_unused_consts(g: &mut Graph) {
    let used: HashSet<ValueId> =
        g.nodes.iter().flat_map(|n| n.inputs.iter().flatten().copied()).chain(g.outputs.iter().copied()).collect();
    g.consts.retain(|v, _| used.contains(v));
}

/// A Conv or ConvTranspose whose bias is computed at run time (not a constant once the graph is
/// prepared) gives it up to an Add after it of the bias reshaped to [C, 1, ...]. The GPU's conv
/// kernels read their bias in f32 from a buffer written at load, whatever the storage
/// precision (see `gpu::lower`); the same sum, with the bias added last as the kernels do.
fn split_runtime_biases(g: &mut Graph, types: &mut Vec<Option<(DType, Vec<usize>)>>) {
    let mut nodes = Vec::with_capacity(g.nodes.len());
    for mut n in std::mem::take(&mut g.nodes) {
        let (Some(b), Some(y)) = (n.input(2), n.output(0)) else {
            nodes.push(n);
            continue;
        };
        let (Some((bt, bshape)), Some((yt, yshape))) = (types[b].clone(), types[y].clone()) else {
            nodes.push(n);
            continue;
        };
        if !matches!(n.op, Op::Conv(_) | Op::ConvTranspose(_))
            || g.consts.contains_key(&b)
            || yshape.len() < 2
            || bshape != [yshape[1]]
        {
            nodes.push(n);
            continue;
        }
        let mut dims = vec![yshape[1] as i64];
        dims.resize(yshape.len() - 1, 1);
        let shape = new_const(g, types, format!("{}.bias_shape", n.name), Tensor::i64(vec![dims.len()], dims.clone()));
        let bias =
            new_value(g, types, format!("{}.bias_reshaped", n.name), (bt, dims.iter().map(|&d| d as usize).collect()));
        let sum = new_value(g, types, format!("{}.without_bias", n.name), (yt, yshape));
        let name = n.name.clone();
        n.inputs.truncate(2);
        n.outputs[0] = Some(sum);
        nodes.push(n);
        nodes.push(Node {
            name: format!("{name}.bias_reshape"),
            op_type: "Reshape".into(),
            op: Op::Reshape(crate::ops::shape_ops::Reshape { allowzero: false }),
            inputs: vec![Some(b), Some(shape)],
            outputs: vec![Some(bias)],
        });
        nodes.push(Node {
            name: format!("{name}.bias_add"),
            op_type: "Add".into(),
            op: Op::Binary(crate::ops::elementwise::Binary { kind: BinaryKind::Add }),
            inputs: vec![Some(sum), Some(bias)],
            outputs: vec![Some(y)],
        });
    }
    g.nodes = nodes;
}

fn fold_batchnorm(g: &mut Graph, types: &mut Vec<Option<(DType, Vec<usize>)>>) {
    let producers = g.producers();
    let consumers = g.consumers();
    let mut remove = vec![false; g.nodes.len()];
    for bi in 0..g.nodes.len() {
        let Op::BatchNorm(bn) = &g.nodes[bi].op else {
            continue;
        };
        let bn = *bn;
        let Some(x) = g.nodes[bi].input(0) else {
            continue;
        };
        let Some(ci) = producers[x] else { continue };
        if consumers[x].len() != 1 || g.outputs.contains(&x) {
            continue;
        }
        let conv = &g.nodes[ci];
        let is_t = match &conv.op {
            Op::Conv(c) if c.act.is_none() => false,
            Op::ConvTranspose(c) if c.act.is_none() => true,
            _ => continue,
        };
        let (Some(wv), bv) = (conv.input(1), conv.input(2)) else {
            continue;
        };
        let Some(w) = g.consts.get(&wv).cloned() else {
            continue;
        };
        let b = match bv {
            Some(bv) => match g.consts.get(&bv) {
                Some(t) => Some(t.clone()),
                None => continue,
            },
            None => None,
        };
        let params: Vec<Option<&Tensor>> =
            g.nodes[bi].inputs.iter().map(|v| v.and_then(|v| g.consts.get(&v)).map(|t| t.as_ref())).collect();
        if params.iter().skip(1).any(|p| p.is_none()) {
            continue;
        }
        let Ok((scale, shift)) = bn.affine(&params) else {
            continue;
        };
        let (Ok(wd), group) = (
            w.as_f32(),
            match &conv.op {
                Op::Conv(c) => c.group,
                Op::ConvTranspose(c) => c.group,
                _ => 1,
            },
        ) else {
            continue;
        };
        let m = scale.len();
        let mut nw = wd.to_vec();
        if !is_t {
            if w.shape[0] != m {
                continue;
            }
            let per = wd.len() / m;
            for oc in 0..m {
                for v in &mut nw[oc * per..(oc + 1) * per] {
                    *v = (*v as f64 * scale[oc]) as f32;
                }
            }
        } else {
            // [C, M/group, k...]: output channel = group index * M/group + second index
            let (c, mg) = (w.shape[0], w.shape[1]);
            if mg * group != m || c % group != 0 {
                continue;
            }
            let per: usize = w.shape[2..].iter().product();
            let cg = c / group;
            for ic in 0..c {
                for ocl in 0..mg {
                    let oc = (ic / cg) * mg + ocl;
                    for v in &mut nw[(ic * mg + ocl) * per..][..per] {
                        *v = (*v as f64 * scale[oc]) as f32;
                    }
                }
            }
        }
        let old_b: Vec<f32> = match &b {
            Some(b) => match b.as_f32() {
                Ok(v) => v.to_vec(),
                Err(_) => continue,
            },
            None => vec![0.0; m],
        };
        let nb: Vec<f32> = (0..m).map(|i| (old_b[i] as f64 * scale[i] + shift[i]) as f32).collect();
        let base = g.nodes[ci].name.clone();
        let w_id = new_const(g, types, format!("{base}.weight_bnfolded"), Tensor::f32(w.shape.clone(), nw));
        let b_id = new_const(g, types, format!("{base}.bias_bnfolded"), Tensor::f32(vec![m], nb));
        let y = g.nodes[bi].output(0);
        let conv = &mut g.nodes[ci];
        conv.inputs.resize(3, None);
        conv.inputs[1] = Some(w_id);
        conv.inputs[2] = Some(b_id);
        conv.outputs = vec![y];
        remove[bi] = true;
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        !remove[i - 1]
    });
}

fn set_act(op: &mut Op, k: UnaryKind) {
    match op {
        Op::Conv(c) if c.residual => c.post_act = Some(k),
        Op::Conv(c) => c.act = Some(k),
        Op::ConvTranspose(c) => c.act = Some(k),
        _ => {}
    }
}

/// `Add(conv_out, r)` where the conv's output is read only by that Add and `r` has the output's
/// shape (no broadcasting) becomes one Conv with `r` as its input 3; the fused node takes the
/// Add's place in the order, where both the conv's inputs and `r` are available. Returns
/// whether anything was fused.
fn fuse_residuals(g: &mut Graph, types: &[Option<(DType, Vec<usize>)>]) -> bool {
    let mut any = false;
    loop {
        let producers = g.producers();
        let consumers = g.consumers();
        let shape = |v: ValueId| types[v].as_ref().map(|t| (t.0, t.1.as_slice()));
        let mut found = None;
        'add: for (ai, n) in g.nodes.iter().enumerate() {
            let Op::Binary(b) = &n.op else { continue };
            if b.kind != BinaryKind::Add || n.inputs.len() != 2 {
                continue;
            }
            let (Some(a0), Some(a1), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
                continue;
            };
            let Some((DType::F32, oshape)) = shape(out) else { continue };
            for (y, r) in [(a0, a1), (a1, a0)] {
                if y == r || shape(r) != Some((DType::F32, oshape)) || shape(y) != Some((DType::F32, oshape)) {
                    continue;
                }
                let Some(ci) = producers[y] else { continue };
                if consumers[y] != [ai] || g.outputs.contains(&y) || g.nodes[ci].outputs.len() != 1 {
                    continue;
                }
                if let Op::Conv(c) = &g.nodes[ci].op
                    && !c.residual
                {
                    found = Some((ai, ci, r, out));
                    break 'add;
                }
            }
        }
        let Some((ai, ci, r, out)) = found else { break };
        let mut conv = g.nodes.remove(ci);
        if let Op::Conv(c) = &mut conv.op {
            c.residual = true;
        }
        conv.inputs.resize(3, None);
        conv.inputs.push(Some(r));
        conv.outputs = vec![Some(out)];
        // the Add moved up by one when the conv before it was removed
        g.nodes[ai - 1] = conv;
        any = true;
    }
    any
}

fn fuse_activations(g: &mut Graph) {
    loop {
        let producers = g.producers();
        let consumers = g.consumers();
        let mut changed = false;
        for ci in 0..g.nodes.len() {
            let free = match &g.nodes[ci].op {
                Op::Conv(c) if c.residual => c.post_act.is_none(),
                Op::Conv(c) => c.act.is_none(),
                Op::ConvTranspose(c) => c.act.is_none(),
                _ => false,
            };
            if !free {
                continue;
            }
            let Some(y) = g.nodes[ci].output(0) else {
                continue;
            };
            if g.outputs.contains(&y) {
                continue;
            }
            let users = &consumers[y];
            // conv -> unary
            if users.len() == 1 {
                let ui = users[0];
                if let Op::Unary(u) = &g.nodes[ui].op {
                    let ins: Vec<Option<&Tensor>> = g.nodes[ui]
                        .inputs
                        .iter()
                        .map(|v| v.and_then(|v| g.consts.get(&v)).map(|t| t.as_ref()))
                        .collect();
                    let non_const_bounds =
                        g.nodes[ui].inputs.iter().skip(1).flatten().any(|v| !g.consts.contains_key(v));
                    if non_const_bounds {
                        continue;
                    }
                    let Ok(kind) = u.resolved(&ins) else { continue };
                    if !fusable_activation(kind) || g.nodes[ui].input(0) != Some(y) {
                        continue;
                    }
                    let out = g.nodes[ui].output(0);
                    set_act(&mut g.nodes[ci].op, kind);
                    g.nodes[ci].outputs = vec![out];
                    g.nodes.remove(ui);
                    changed = true;
                    break;
                }
            }
            // conv -> Sigmoid -> Mul(conv, sigmoid): SiLU
            if users.len() == 2 {
                let (a, b) = (users[0], users[1]);
                let (si, mi) = match (&g.nodes[a].op, &g.nodes[b].op) {
                    (Op::Unary(u), Op::Binary(m)) if u.kind == UnaryKind::Sigmoid && m.kind == BinaryKind::Mul => {
                        (a, b)
                    }
                    (Op::Binary(m), Op::Unary(u)) if u.kind == UnaryKind::Sigmoid && m.kind == BinaryKind::Mul => {
                        (b, a)
                    }
                    _ => continue,
                };
                let Some(s) = g.nodes[si].output(0) else {
                    continue;
                };
                if consumers[s] != [mi] || g.outputs.contains(&s) {
                    continue;
                }
                let mins: Vec<Option<ValueId>> = g.nodes[mi].inputs.clone();
                if !(mins == [Some(y), Some(s)] || mins == [Some(s), Some(y)]) {
                    continue;
                }
                let _ = &producers;
                let out = g.nodes[mi].output(0);
                set_act(&mut g.nodes[ci].op, UnaryKind::Swish { alpha: 1.0 });
                g.nodes[ci].outputs = vec![out];
                let (first, second) = if si > mi { (si, mi) } else { (mi, si) };
                g.nodes.remove(first);
                g.nodes.remove(second);
                changed = true;
                break;
            }
        }
        if !changed {
            break;
        }
    }
}
