//! The crate's error type. Every failure a user can cause (a bad file, an unsupported op, a shape
//! that does not fit) becomes one of these, with the file, node, op or input it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS error's text is part of the message and not also chained as a source, so that
    /// `{:#}` (anyhow's chain, as `main` prints it) does not repeat it.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// The file is not a usable ONNX model (decoding failed, no graph, bad tensor data...).
    #[error("{0}")]
    Model(String),
    /// A node could not be loaded, shape-inferred or executed.
    #[error("node '{node}' ({op}): {msg}")]
    Node { node: String, op: String, msg: String },
    /// A model input given by the caller does not fit the model.
    #[error("input '{name}': {msg}")]
    Input { name: String, msg: String },
    /// A .npy file or an image could not be read or written.
    #[error("{0}")]
    Data(String),
    /// Anything the GPU layer reports (no adapter, device lost, out of memory, a binding limit).
    #[error("GPU: {0}")]
    Gpu(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }
    pub fn node(node: &str, op: &str, msg: impl Into<String>) -> Self {
        Error::Node { node: node.to_string(), op: op.to_string(), msg: msg.into() }
    }
}

/// Errors inside an op's shape rule or CPU kernel: a plain message that the graph layer wraps
/// with the node's name and op type.
pub type OpResult<T> = std::result::Result<T, String>;

/// `bail!("...")` for [`OpResult`] functions.
#[macro_export]
macro_rules! op_bail {
    ($($arg:tt)*) => { return Err(format!($($arg)*)) };
}
