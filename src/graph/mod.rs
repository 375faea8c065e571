//! The graph IR: values, typed nodes in topological order, constants; and the load-time passes
//! that specialise it for an actual input size (see [`prepare`]).

pub mod prepare;

use crate::error::OpResult;
use crate::op_bail;
use crate::ops::Op;
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

pub type ValueId = usize;

/// A dimension as declared in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(usize),
    Sym(String),
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

pub fn fmt_dims(d: &[Dim]) -> String {
    let parts: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub name: String,
    /// Declared (or, after `prepare`, inferred) element type.
    pub dtype: Option<DType>,
    /// Declared dimensions from the file, if any.
    pub dims: Option<Vec<Dim>>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub op: Op,
    /// Inputs in ONNX order; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs in ONNX order; `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
}

impl Node {
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub values: Vec<ValueInfo>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Inputs the caller must feed (graph inputs without an initializer).
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Initializers, `Constant` nodes and (after `prepare`) folded values.
    pub consts: HashMap<ValueId, Arc<Tensor>>,
    /// Version of the default ONNX opset the model imports.
    pub opset: i64,
    pub producer: String,
}

impl Graph {
    pub fn name(&self, v: ValueId) -> &str {
        &self.values[v].name
    }
    /// Number of parameters: elements of float constants.
    pub fn parameter_count(&self) -> usize {
        self.consts.values().filter(|t| t.dtype.is_float()).map(|t| t.len()).sum()
    }
    /// Count of nodes per op type, sorted by count then name.
    pub fn op_histogram(&self) -> Vec<(String, usize)> {
        let mut h: HashMap<&str, usize> = HashMap::new();
        for n in &self.nodes {
            *h.entry(n.op_type.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = h.into_iter().map(|(k, c)| (k.to_string(), c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
    /// For each value, the indices of the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut c = vec![Vec::new(); self.values.len()];
        for (k, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if !c[*v].contains(&k) {
                    c[*v].push(k);
                }
            }
        }
        c
    }
    /// For each value, the node that produces it.
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (k, n) in self.nodes.iter().enumerate() {
            for v in n.outputs.iter().flatten() {
                p[*v] = Some(k);
            }
        }
        p
    }
}

/// An attribute value.
#[derive(Clone, Debug)]
pub enum Attr {
    Float(f32),
    Int(i64),
    String(String),
    Tensor(Arc<Tensor>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<String>),
    Graph,
    Other(i32),
}

/// A node's attributes with typed getters that name what is wrong.
#[derive(Clone, Debug, Default)]
pub struct Attrs(pub HashMap<String, Attr>);

impl Attrs {
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    pub fn int_opt(&self, name: &str) -> OpResult<Option<i64>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(other) => op_bail!("attribute '{name}' should be an integer, got {other:?}"),
        }
    }
    pub fn int(&self, name: &str, default: i64) -> OpResult<i64> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }
    pub fn float_opt(&self, name: &str) -> OpResult<Option<f32>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(Attr::Int(v)) => Ok(Some(*v as f32)),
            Some(other) => op_bail!("attribute '{name}' should be a float, got {other:?}"),
        }
    }
    pub fn float(&self, name: &str, default: f32) -> OpResult<f32> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }
    pub fn string(&self, name: &str, default: &str) -> OpResult<String> {
        match self.0.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::String(v)) => Ok(v.clone()),
            Some(other) => op_bail!("attribute '{name}' should be a string, got {other:?}"),
        }
    }
    pub fn ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => {
                op_bail!("attribute '{name}' should be a list of integers, got {other:?}")
            }
        }
    }
    pub fn floats(&self, name: &str) -> OpResult<Option<Vec<f32>>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v.clone())),
            Some(Attr::Float(v)) => Ok(Some(vec![*v])),
            Some(other) => op_bail!("attribute '{name}' should be a list of floats, got {other:?}"),
        }
    }
    /// A list of non-negative integers (kernel sizes, strides, pads...).
    pub fn usizes(&self, name: &str) -> OpResult<Option<Vec<usize>>> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) => {
                if let Some(bad) = v.iter().find(|&&x| x < 0) {
                    op_bail!("attribute '{name}' = {v:?} has a negative value {bad}");
                }
                Ok(Some(v.into_iter().map(|x| x as usize).collect()))
            }
        }
    }
    pub fn tensor(&self, name: &str) -> OpResult<Option<Arc<Tensor>>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t.clone())),
            Some(other) => op_bail!("attribute '{name}' should be a tensor, got {other:?}"),
        }
    }
}
