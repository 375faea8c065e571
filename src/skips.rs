//! U-Net structure found in a prepared graph: the skip connections, the bottleneck, and the
//! encoder and decoder tensors of each resolution level. Works on any graph (nothing here knows
//! the shipped models); used by `unet-gpu info`, `--ablate-skips` and `--dump-activations`.
//!
//! How the skips are found:
//!
//! 1. Every 4-D activation gets a spatial size H*W; its *level* is `round(log2(input_H / H))`
//!    (0 = full resolution). Tensors reduced to 1x1 by a global pooling (squeeze-excitation,
//!    channel attention) are ignored.
//! 2. A *bypass candidate* is an input `t` of a Concat or Add node whose other input `u`
//!    depends on `t` through a path that goes down to a lower resolution than `t`'s (a
//!    U-shaped detour); its *region* is every tensor between `t` and `u`.
//! 3. The outer U-Net is the chain of nested regions that starts with the largest one and
//!    repeatedly takes the largest candidate strictly inside the current region at a coarser
//!    level. (In a nested U-Net such as u2netp, each RSU block is a small U-Net of its own
//!    with its own detours; the chain picks the outer one, whose regions hold everything
//!    deeper.) The *bottleneck* is the last tensor of the lowest resolution inside the
//!    innermost region (without any candidate: the last tensor of the lowest resolution).
//! 4. The skip connections are the inputs `t` of Concat / Add nodes that do not depend on the
//!    bottleneck while another input of the same node does, at the node's resolution. (This
//!    also finds gated skips such as `concat(s * gate(s), up)`.)

use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::graph::prepare::{Prepared, drop_unused_consts, new_const, prune};
use crate::ops::Op;
use crate::ops::elementwise::{BinaryKind, VariadicKind};
use crate::tensor::{DType, Tensor};
use std::collections::HashSet;

/// One skip connection: an encoder tensor that bypasses the bottleneck into a decoder node.
#[derive(Clone, Debug, PartialEq)]
pub struct Skip {
    /// Resolution level of the skip tensor: 0 = the input's resolution, 1 = half, ...
    pub level: usize,
    /// The skip tensor.
    pub value: ValueId,
    pub name: String,
    pub shape: Vec<usize>,
    /// Index (into the prepared graph's nodes) of the Concat / Add that merges it.
    pub node: usize,
    pub node_name: String,
    /// "Concat", "Add" or "Sum".
    pub op: String,
    /// Which input of that node the skip tensor is.
    pub input_index: usize,
}

/// What to look at: per level the last encoder tensor (other than a skip), the bottleneck, the
/// skips and per level the last decoder tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpItem {
    pub value: ValueId,
    /// File stem such as `enc0_<tensor>`, `bottleneck_<tensor>`, `skip1_<tensor>`, `dec0_<tensor>`.
    pub stem: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnetStructure {
    /// Height and width of the graph input the levels refer to.
    pub input_hw: (usize, usize),
    pub skips: Vec<Skip>,
    pub bottleneck: Option<ValueId>,
    /// (level, value): the last encoder tensor of each level above the bottleneck's that is not a
    /// skip tensor.
    pub encoder: Vec<(usize, ValueId)>,
    /// (level, value): the last decoder tensor of each level above the bottleneck's that is not a
    /// graph output.
    pub decoder: Vec<(usize, ValueId)>,
}

/// A fixed-size bit set over dense activation indices.
#[derive(Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn or(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// self is a subset of o
    fn subset_of(&self, o: &Bits) -> bool {
        self.0.iter().zip(&o.0).all(|(a, b)| a & !b == 0)
    }
}

struct Candidate {
    t: usize,
    level: usize,
    node: usize,
    region: Bits,
    size: usize,
}

/// Find the U-Net structure of a prepared graph. A graph whose first run-time input is not 4-D
/// has none (empty result).
pub fn analyze(p: &Prepared) -> UnetStructure {
    let g = &p.graph;
    let Some(&input) = g.inputs.first() else {
        return UnetStructure::default();
    };
    let ishape = p.shape(input);
    if ishape.len() != 4 || ishape[2] == 0 || ishape[3] == 0 {
        return UnetStructure::default();
    }
    let (in_h, in_w) = (ishape[2], ishape[3]);
    let global_in = in_h == 1 && in_w == 1;

    // dense indices over activations: run-time inputs, then node outputs in topological order
    let mut order: Vec<ValueId> = g.inputs.clone();
    for n in &g.nodes {
        for &v in n.outputs.iter().flatten() {
            if p.types[v].is_some() && !g.consts.contains_key(&v) {
                order.push(v);
            }
        }
    }
    let mut dense = vec![usize::MAX; g.values.len()];
    for (i, &v) in order.iter().enumerate() {
        dense[v] = i;
    }
    let na = order.len();
    // spatial size of each activation, if 4-D and not a global (1x1) reduction
    let spatial: Vec<Option<(usize, usize)>> = order
        .iter()
        .map(|&v| {
            let s = p.shape(v);
            let ok = s.len() == 4 && p.dtype(v) == DType::F32 && (global_in || s[2] * s[3] > 1);
            ok.then(|| (s[2], s[3]))
        })
        .collect();
    let level_of = |h: usize| -> usize { ((in_h as f64 / h.max(1) as f64).log2().round().max(0.0)) as usize };

    // ancestors (strict) of each activation
    let mut anc: Vec<Bits> = vec![Bits::new(na); na];
    for n in &g.nodes {
        let mut a = Bits::new(na);
        for &i in n.inputs.iter().flatten() {
            let di = dense[i];
            if di == usize::MAX {
                continue;
            }
            a.or(&anc[di]);
            a.set(di);
        }
        for &o in n.outputs.iter().flatten() {
            let d = dense[o];
            if d != usize::MAX {
                anc[d] = a.clone();
            }
        }
    }
    let area = |d: usize| spatial[d].map(|(h, w)| h * w);
    let merge_node = |op: &Op| match op {
        Op::Concat(c) if c.axis == 1 || c.axis == -3 => Some("Concat"),
        Op::Binary(b) if b.kind == BinaryKind::Add => Some("Add"),
        Op::Variadic(v) if v.kind == VariadicKind::Sum => Some("Sum"),
        // a conv with a fused residual Add merges its input 3 into the conv of its input 0
        Op::Conv(c) if c.residual => Some("Add"),
        _ => None,
    };
    // (input index, dense index) of a node's inputs that are activations
    let activation_inputs = |n: &crate::graph::Node| -> Vec<(usize, usize)> {
        n.inputs
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, dense[v])))
            .filter(|&(_, d)| d != usize::MAX)
            .collect()
    };
    // which inputs of a merge node can be a bypassing tensor (the fused Add's residual only:
    // zeroing a conv's data input would not remove a path)
    let may_bypass = |op: &Op, i: usize| match op {
        Op::Conv(_) => i == 3,
        _ => true,
    };

    // 2. bypass candidates
    let mut cands: Vec<Candidate> = Vec::new();
    for (k, n) in g.nodes.iter().enumerate() {
        if merge_node(&n.op).is_none() {
            continue;
        }
        let Some(out) = n.output(0) else { continue };
        let out_hw = spatial.get(dense[out]).copied().flatten();
        let ins = activation_inputs(n);
        for &(ti, t) in &ins {
            if !may_bypass(&n.op, ti) {
                continue;
            }
            let Some(t_area) = area(t) else { continue };
            if spatial[t] != out_hw {
                continue;
            }
            for &(_, u) in &ins {
                if u == t || !anc[u].get(t) {
                    continue;
                }
                // region: strict descendants of t that are u or ancestors of u
                let mut region = Bits::new(na);
                let mut lower = false;
                for w in (t + 1)..=u {
                    if (w == u || anc[u].get(w)) && anc[w].get(t) {
                        region.set(w);
                        lower |= area(w).is_some_and(|a| a < t_area);
                    }
                }
                if lower {
                    let size = region.count();
                    cands.push(Candidate { t, level: level_of(spatial[t].unwrap().0), node: k, region, size });
                }
            }
        }
    }

    // 3. the outer chain and the bottleneck
    let mut chain: Vec<usize> = Vec::new();
    loop {
        let cur = chain.last().map(|&c| &cands[c]);
        let best = cands
            .iter()
            .enumerate()
            .filter(|(_, c)| match cur {
                None => true,
                Some(cur) => {
                    c.level > cur.level
                        && cur.region.get(c.t)
                        && c.region.subset_of(&cur.region)
                        && c.region != cur.region
                }
            })
            .max_by(|(_, a), (_, b)| a.size.cmp(&b.size).then(b.level.cmp(&a.level)).then(b.node.cmp(&a.node)));
        match best {
            Some((i, _)) => chain.push(i),
            None => break,
        }
    }
    let pool: Vec<usize> = match chain.last() {
        Some(&c) => (0..na).filter(|&w| cands[c].region.get(w)).collect(),
        None => (g.inputs.len()..na).collect(),
    };
    let min_area = pool.iter().filter_map(|&w| area(w)).min();
    let bottleneck = min_area.and_then(|m| pool.iter().rev().copied().find(|&w| area(w) == Some(m)));

    let mut s = UnetStructure { input_hw: (in_h, in_w), ..Default::default() };
    let Some(b) = bottleneck else { return s };
    s.bottleneck = Some(order[b]);
    let depends = |d: usize| d == b || anc[d].get(b);

    // 4. skips
    for (k, n) in g.nodes.iter().enumerate() {
        let Some(op) = merge_node(&n.op) else { continue };
        let Some(out) = n.output(0) else { continue };
        let out_hw = spatial.get(dense[out]).copied().flatten();
        let ins = activation_inputs(n);
        if !ins.iter().any(|&(_, d)| depends(d)) {
            continue;
        }
        for &(i, t) in &ins {
            if !may_bypass(&n.op, i) || depends(t) || spatial[t].is_none() || spatial[t] != out_hw {
                continue;
            }
            let v = order[t];
            s.skips.push(Skip {
                level: level_of(spatial[t].unwrap().0),
                value: v,
                name: g.name(v).to_string(),
                shape: p.shape(v).to_vec(),
                node: k,
                node_name: n.name.clone(),
                op: op.to_string(),
                input_index: i,
            });
        }
    }
    s.skips.sort_by_key(|k| (k.level, k.node, k.input_index));

    // encoder / decoder tensors per level
    let skip_vals: HashSet<ValueId> = s.skips.iter().map(|k| k.value).collect();
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut enc: std::collections::BTreeMap<usize, ValueId> = Default::default();
    let mut dec: std::collections::BTreeMap<usize, ValueId> = Default::default();
    let b_level = level_of(spatial[b].map(|s| s.0).unwrap_or(1));
    for w in g.inputs.len()..na {
        let Some((h, _)) = spatial[w] else { continue };
        let v = order[w];
        // tensors at the bottleneck's resolution belong to the bottleneck block
        if w == b || outputs.contains(&v) || level_of(h) >= b_level {
            continue;
        }
        if anc[b].get(w) {
            if !skip_vals.contains(&v) {
                enc.insert(level_of(h), v);
            }
        } else if anc[w].get(b) {
            dec.insert(level_of(h), v);
        }
    }
    s.encoder = enc.into_iter().collect();
    s.decoder = dec.into_iter().collect();
    s
}

impl UnetStructure {
    /// Levels that have at least one skip, ascending.
    pub fn levels(&self) -> Vec<usize> {
        let mut l: Vec<usize> = self.skips.iter().map(|s| s.level).collect();
        l.dedup();
        l
    }

    /// The tensors `--dump-activations` writes, in a stable order.
    pub fn dump_items(&self, p: &Prepared) -> Vec<DumpItem> {
        let name = |v: ValueId| sanitize(p.graph.name(v));
        let mut items = Vec::new();
        for &(l, v) in &self.encoder {
            items.push(DumpItem { value: v, stem: format!("enc{l}_{}", name(v)) });
        }
        if let Some(b) = self.bottleneck {
            items.push(DumpItem { value: b, stem: format!("bottleneck_{}", name(b)) });
        }
        let mut seen = HashSet::new();
        for s in &self.skips {
            if seen.insert(s.value) {
                items.push(DumpItem { value: s.value, stem: format!("skip{}_{}", s.level, name(s.value)) });
            }
        }
        for &(l, v) in &self.decoder {
            items.push(DumpItem { value: v, stem: format!("dec{l}_{}", name(v)) });
        }
        items
    }

    /// A human-readable listing (for `unet-gpu info`).
    pub fn describe(&self, p: &Prepared) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if self.skips.is_empty() {
            let _ = writeln!(out, "skip connections: none found");
        } else {
            let _ = writeln!(out, "skip connections ({}):", self.skips.len());
            let _ = writeln!(out, "  {:<5} {:<36} {:<20} into", "level", "tensor", "shape");
            for s in &self.skips {
                let _ = writeln!(
                    out,
                    "  {:<5} {:<36} {:<20} {} '{}' (input {})",
                    s.level,
                    s.name,
                    crate::tensor::fmt_shape(&s.shape),
                    s.op,
                    s.node_name,
                    s.input_index
                );
            }
        }
        if let Some(b) = self.bottleneck {
            let _ = writeln!(out, "bottleneck: {} {}", p.graph.name(b), crate::tensor::fmt_shape(p.shape(b)));
        }
        out
    }
}

/// Which skips to ablate: every one, or those of some levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipSelection {
    All,
    Levels(Vec<usize>),
}

impl std::str::FromStr for SkipSelection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(SkipSelection::All);
        }
        let mut v = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            v.push(
                part.parse::<usize>().map_err(|_| {
                    format!("'{part}' is not a level: --ablate-skips takes 'all' or levels such as 0,2")
                })?,
            );
        }
        v.sort_unstable();
        v.dedup();
        Ok(SkipSelection::Levels(v))
    }
}

impl std::fmt::Display for SkipSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipSelection::All => write!(f, "all"),
            SkipSelection::Levels(l) => {
                let s: Vec<String> = l.iter().map(|x| x.to_string()).collect();
                write!(f, "{}", s.join(","))
            }
        }
    }
}

impl SkipSelection {
    /// The skips selected; an error when the graph has no skips or a requested level has none.
    pub fn select<'a>(&self, st: &'a UnetStructure) -> Result<Vec<&'a Skip>> {
        if st.skips.is_empty() {
            return Err(Error::Model("--ablate-skips: no skip connections were found in this model".into()));
        }
        match self {
            SkipSelection::All => Ok(st.skips.iter().collect()),
            SkipSelection::Levels(ls) => {
                let have = st.levels();
                for l in ls {
                    if !have.contains(l) {
                        let hv: Vec<String> = have.iter().map(|x| x.to_string()).collect();
                        return Err(Error::Model(format!(
                            "--ablate-skips: the model has no skip connection at level {l} (levels with skips: {})",
                            hv.join(", ")
                        )));
                    }
                }
                Ok(st.skips.iter().filter(|s| ls.contains(&s.level)).collect())
            }
        }
    }
}

/// Feed zeros in place of the given skips: each skip input of its Concat / Add is replaced by a
/// constant zero tensor of the same shape; nodes that no longer contribute to an output are
/// removed.
pub fn ablate(p: &mut Prepared, skips: &[&Skip]) {
    for s in skips {
        let shape = p.shape(s.value).to_vec();
        let n = crate::tensor::numel(&shape);
        let zeros = Tensor::f32(shape, vec![0.0; n]);
        let id = new_const(&mut p.graph, &mut p.types, format!("{}.ablated_zeros", s.name), zeros);
        p.graph.nodes[s.node].inputs[s.input_index] = Some(id);
    }
    prune(&mut p.graph);
    drop_unused_consts(&mut p.graph);
}

/// Make these values extra graph outputs (after the existing ones), so that both executors
/// return them; returns their positions in the output list.
pub fn add_outputs(p: &mut Prepared, values: &[ValueId]) -> Vec<usize> {
    values
        .iter()
        .map(|&v| match p.graph.outputs.iter().position(|&o| o == v) {
            Some(i) => i,
            None => {
                p.graph.outputs.push(v);
                p.graph.outputs.len() - 1
            }
        })
        .collect()
}

/// A tensor name made safe for a file name.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_".contains(c) { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_string();
    let s = if s.is_empty() { "tensor".to_string() } else { s };
    s.chars().take(80).collect()
}
