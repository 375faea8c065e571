//! The library's front door: load a model once, prepare it for an input shape, run it.

use crate::error::Result;
use crate::graph::Graph;
use crate::graph::prepare::{Binding, Options, Prepared, prepare};
use crate::tensor::Tensor;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    /// Where the model came from (a path or a name), for messages.
    pub source: String,
}

impl Model {
    /// Load an ONNX file; external data is read from beside it.
    pub fn load(path: &Path) -> Result<Model> {
        Ok(Model { graph: crate::onnx::load_file(path)?, source: path.display().to_string() })
    }

    /// Load from bytes (no external data possible).
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Model> {
        Ok(Model { graph: crate::onnx::load_bytes(bytes, crate::onnx::DataDir::None)?, source: name.to_string() })
    }

    /// Specialise for run-time inputs of these shapes (one per graph input).
    pub fn prepare(&self, shapes: &[Vec<usize>]) -> Result<Prepared> {
        let b: Vec<Binding> = shapes.iter().map(|s| Binding::Shape(s.clone())).collect();
        prepare(&self.graph, &b, &Options::default())
    }

    pub fn prepare_with(&self, bindings: &[Binding], opts: &Options) -> Result<Prepared> {
        prepare(&self.graph, bindings, opts)
    }

    /// Prepare for the given inputs' shapes and run on the CPU reference.
    pub fn run_cpu(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let p = self.prepare(&inputs.iter().map(|t| t.shape.clone()).collect::<Vec<_>>())?;
        crate::cpu::run(&p, inputs)
    }
}
