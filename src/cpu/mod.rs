//! The CPU reference executor: runs a prepared graph node by node with the ops' plain-loop
//! implementations (f64 accumulation), freeing each intermediate after its last use. Every GPU
//! kernel is tested against it.

use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::graph::prepare::Prepared;
use crate::tensor::{Tensor, fmt_shape};
use std::sync::Arc;

/// Check run-time inputs against the shapes the graph was prepared for.
pub fn check_inputs(p: &Prepared, inputs: &[Tensor]) -> Result<()> {
    if inputs.len() != p.graph.inputs.len() {
        return Err(Error::Model(format!(
            "the prepared graph takes {} run-time input(s), {} were given",
            p.graph.inputs.len(),
            inputs.len()
        )));
    }
    for (&v, t) in p.graph.inputs.iter().zip(inputs) {
        if t.shape != p.shape(v) {
            return Err(Error::Input {
                name: p.graph.name(v).to_string(),
                msg: format!("shape {} differs from the prepared {}", fmt_shape(&t.shape), fmt_shape(p.shape(v))),
            });
        }
        if !t.dtype.is_float() {
            return Err(Error::Input {
                name: p.graph.name(v).to_string(),
                msg: format!("has type {}, expected float32", t.dtype.name()),
            });
        }
    }
    Ok(())
}

/// Run the graph; returns the graph outputs in order. `observe` sees every value computed
/// (for activation dumps); pass `|_, _| {}` otherwise.
pub fn run_observed(p: &Prepared, inputs: &[Tensor], mut observe: impl FnMut(ValueId, &Tensor)) -> Result<Vec<Tensor>> {
    check_inputs(p, inputs)?;
    let g = &p.graph;
    let mut vals: Vec<Option<Arc<Tensor>>> = vec![None; g.values.len()];
    for (&v, t) in g.inputs.iter().zip(inputs) {
        vals[v] = Some(Arc::new(t.clone()));
    }
    // remaining uses of each value, so intermediates are freed early
    let mut uses = vec![0usize; g.values.len()];
    for n in &g.nodes {
        for v in n.inputs.iter().flatten() {
            uses[*v] += 1;
        }
    }
    for &v in &g.outputs {
        uses[v] += 1;
    }
    for n in &g.nodes {
        let mut ins: Vec<Option<Arc<Tensor>>> = Vec::with_capacity(n.inputs.len());
        for v in &n.inputs {
            ins.push(match v {
                None => None,
                Some(v) => Some(match (&vals[*v], g.consts.get(v)) {
                    (Some(t), _) => t.clone(),
                    (None, Some(c)) => c.clone(),
                    (None, None) => {
                        return Err(Error::node(
                            &n.name,
                            &n.op_type,
                            format!("input '{}' was not computed", g.name(*v)),
                        ));
                    }
                }),
            });
        }
        let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_deref()).collect();
        let outs = n.op.eval(&refs).map_err(|m| Error::node(&n.name, &n.op_type, m))?;
        drop(refs);
        drop(ins);
        for (o, t) in n.outputs.iter().zip(outs) {
            if let Some(o) = o {
                observe(*o, &t);
                vals[*o] = Some(Arc::new(t));
            }
        }
        for v in n.inputs.iter().flatten() {
            uses[*v] -= 1;
            if uses[*v] == 0 {
                vals[*v] = None;
            }
        }
    }
    g.outputs
        .iter()
        .map(|v| {
            vals[*v]
                .as_ref()
                .or_else(|| g.consts.get(v))
                .map(|t| (**t).clone())
                .ok_or_else(|| Error::Model(format!("output '{}' was not computed", g.name(*v))))
        })
        .collect()
}

pub fn run(p: &Prepared, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    run_observed(p, inputs, |_, _| {})
}
