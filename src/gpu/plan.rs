//! Memory plan: where each tensor of a prepared graph lives on the GPU.
//!
//! - Reshape, Flatten, Squeeze and Unsqueeze are aliases: the output is the input's storage.
//! - A Concat's inputs are written by their producers straight into their slice of the
//!   concatenated buffer (a view: offset and batch stride), so skip-merges cost no copy. An
//!   input is not placed when it is a graph output, has aliases, feeds the same concat twice, or
//!   when its producer would then read and write the same buffer; the Concat copies those.
//! - Activation storage is assigned from lifetimes: a buffer is reused once every tensor in it
//!   is dead (greedy best fit in definition order).

use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::graph::prepare::Prepared;
use crate::ops::Op;
use crate::tensor::numel;
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufRef {
    /// A planned activation buffer.
    Act(usize),
    /// The upload buffer of run-time input k.
    Input(usize),
    /// The buffer of a constant (weights...), by value id.
    Const(ValueId),
    /// Extra data a kernel needs (tap tables, index tables), by index.
    Aux(usize),
    /// The f32 scratch buffer of the split-K convs' partial sums.
    Scratch,
    /// The scratch buffer the im2col kernel writes a packed conv's operand into.
    Im2col,
    /// A small placeholder for bindings a kernel declares but this dispatch does not read.
    Dummy,
    /// A binding the entry point does not declare at all (skipped in the bind group).
    Unbound,
}

/// A tensor's place: `offset` elements into `buf`, `batch_stride` elements between the entries
/// of dimension 0 (its natural per-batch size when contiguous).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub buf: BufRef,
    pub offset: u64,
    pub batch_stride: u64,
}

#[derive(Clone, Debug)]
pub struct MemPlan {
    /// Views of run-time values (node outputs and graph inputs), by value id.
    pub views: Vec<Option<View>>,
    /// Bytes of each activation buffer.
    pub act_sizes: Vec<u64>,
    /// Concat inputs written in place by their producers.
    pub in_place: HashSet<ValueId>,
    pub peak_activation_bytes: u64,
    pub naive_activation_bytes: u64,
}

pub fn is_alias(op: &Op) -> bool {
    matches!(op, Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Identity)
}

fn per_batch(shape: &[usize]) -> u64 {
    if shape.is_empty() { 1 } else { shape[1..].iter().product::<usize>() as u64 }
}

struct Placement {
    root: Vec<ValueId>,
    offset: Vec<u64>,
    bstride: Vec<Option<u64>>,
    in_place: HashSet<ValueId>,
}

fn place(p: &Prepared, excluded: &HashSet<ValueId>) -> Placement {
    let g = &p.graph;
    let nv = g.values.len();
    let mut root: Vec<ValueId> = (0..nv).collect();
    let mut offset = vec![0u64; nv];
    let mut bstride: Vec<Option<u64>> = vec![None; nv];
    let mut members = vec![1usize; nv];
    for n in &g.nodes {
        if is_alias(&n.op)
            && let (Some(i), Some(o)) = (n.input(0), n.output(0))
            && !g.consts.contains_key(&i)
        {
            root[o] = root[i];
            offset[o] = offset[i];
            members[root[i]] += 1;
        }
    }
    let consumers = g.consumers();
    let producers = g.producers();
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut in_place = HashSet::new();
    for n in g.nodes.iter().rev() {
        let Op::Concat(c) = &n.op else { continue };
        let Some(out) = n.output(0) else { continue };
        let shape = p.shape(out);
        if shape.len() < 2 {
            continue;
        }
        let Ok(axis) = crate::ops::norm_axis(c.axis, shape.len(), "axis") else { continue };
        if axis != 1 {
            continue;
        }
        let inner: u64 = shape[2..].iter().product::<usize>() as u64;
        let out_bs = bstride[out].unwrap_or(per_batch(shape));
        let mut ch = 0u64;
        for (k, u) in n.inputs.iter().enumerate() {
            let Some(u) = *u else { continue };
            let us = p.shape(u);
            let uch = us.get(1).copied().unwrap_or(0) as u64;
            let once = n.inputs.iter().filter(|x| **x == Some(u)).count() == 1;
            let produced = producers[u].is_some_and(|pi| !is_alias(&g.nodes[pi].op));
            let eligible = produced
                && once
                && !excluded.contains(&u)
                && !outputs.contains(&u)
                && root[u] == u
                && members[u] == 1
                && !in_place.contains(&u)
                && !g.consts.contains_key(&u)
                && consumers[u].iter().all(|&ci| !is_alias(&g.nodes[ci].op));
            let _ = k;
            if eligible {
                root[u] = root[out];
                offset[u] = offset[out] + ch * inner;
                bstride[u] = Some(out_bs);
                in_place.insert(u);
            }
            ch += uch;
        }
    }
    // nested concats placed before their inputs were: re-derive roots transitively
    for v in 0..nv {
        let mut r = root[v];
        while root[r] != r {
            r = root[r];
        }
        root[v] = r;
    }
    Placement { root, offset, bstride, in_place }
}

/// Plan storage for a prepared graph with `elem` bytes per element.
pub fn plan(p: &Prepared, elem: u64) -> Result<MemPlan> {
    let g = &p.graph;
    let nv = g.values.len();
    // place, then undo placements whose producer would read and write one buffer
    let mut excluded = HashSet::new();
    let pl = loop {
        let pl = place(p, &excluded);
        let mut bad = Vec::new();
        for n in &g.nodes {
            if is_alias(&n.op) {
                continue;
            }
            for o in n.outputs.iter().flatten() {
                if !pl.in_place.contains(o) {
                    continue;
                }
                // a Concat only reads (copies) the inputs that are not already in place; a conv
                // may read its data input from the buffer it writes (disjoint regions)
                let is_concat = matches!(n.op, Op::Concat(_));
                let is_conv = matches!(n.op, Op::Conv(_) | Op::ConvTranspose(_));
                if n.inputs.iter().enumerate().any(|(j, i)| {
                    i.is_some_and(|i| {
                        pl.root[i] == pl.root[*o]
                            && !(is_concat && pl.in_place.contains(&i))
                            && !(is_conv && (j == 0 || j == 3))
                    })
                }) {
                    bad.push(*o);
                }
            }
        }
        if bad.is_empty() {
            break pl;
        }
        excluded.extend(bad);
    };

    // lifetimes of activation roots, in node indices
    let input_ids: Vec<ValueId> = g.inputs.clone();
    let mut start = vec![usize::MAX; nv];
    let mut end = vec![0usize; nv];
    let mut naive = 0u64;
    for (k, n) in g.nodes.iter().enumerate() {
        for o in n.outputs.iter().flatten() {
            let r = pl.root[*o];
            start[r] = start[r].min(k);
            end[r] = end[r].max(k);
            if !is_alias(&n.op) {
                naive += numel(p.shape(*o)) as u64 * elem;
            }
        }
        for i in n.inputs.iter().flatten() {
            let r = pl.root[*i];
            end[r] = end[r].max(k);
        }
    }
    for &o in &g.outputs {
        end[pl.root[o]] = usize::MAX;
    }
    let mut roots: Vec<ValueId> = (0..nv)
        .filter(|&v| pl.root[v] == v && start[v] != usize::MAX && !input_ids.contains(&v) && !g.consts.contains_key(&v))
        .collect();
    roots.sort_by_key(|&r| (start[r], r));
    // best-fit reuse
    let mut sizes: Vec<u64> = Vec::new();
    let mut free_after: Vec<usize> = Vec::new();
    let mut buf_of = vec![usize::MAX; nv];
    for &r in &roots {
        let need = (numel(p.shape(r)) as u64 * elem).next_multiple_of(4).max(4);
        let s = start[r];
        let mut best: Option<(usize, u64, bool)> = None; // (buffer, cost, fits)
        for b in 0..sizes.len() {
            if free_after[b] != usize::MAX && free_after[b] < s {
                let fits = sizes[b] >= need;
                let cost = if fits { sizes[b] - need } else { need - sizes[b] };
                let better = match best {
                    None => true,
                    Some((_, c, f)) => (fits && !f) || (fits == f && cost < c),
                };
                if better {
                    best = Some((b, cost, fits));
                }
            }
        }
        let b = match best {
            Some((b, _, _)) => {
                sizes[b] = sizes[b].max(need);
                b
            }
            None => {
                sizes.push(need);
                free_after.push(0);
                sizes.len() - 1
            }
        };
        free_after[b] = end[r];
        buf_of[r] = b;
    }

    let mut views = vec![None; nv];
    for v in 0..nv {
        if p.types[v].is_none() || g.consts.contains_key(&v) {
            continue;
        }
        let r = pl.root[v];
        let buf = if let Some(k) = input_ids.iter().position(|&i| i == r) {
            BufRef::Input(k)
        } else if buf_of[r] != usize::MAX {
            BufRef::Act(buf_of[r])
        } else {
            continue;
        };
        let bs = pl.bstride[v].unwrap_or_else(|| per_batch(p.shape(v)));
        views[v] = Some(View { buf, offset: pl.offset[v], batch_stride: bs });
    }
    for &o in &g.outputs {
        if views[o].is_none() && !g.consts.contains_key(&o) {
            return Err(Error::Model(format!("internal: graph output '{}' has no storage", g.name(o))));
        }
    }
    let peak = sizes.iter().sum();
    Ok(MemPlan {
        views,
        act_sizes: sizes,
        in_place: pl.in_place,
        peak_activation_bytes: peak,
        naive_activation_bytes: naive,
    })
}
