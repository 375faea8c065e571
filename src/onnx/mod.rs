//! ONNX decoding: protobuf bytes (and external data files) to the engine's graph IR.
//!
//! What happens here: decode `ModelProto`; turn initializers and `Constant` nodes into constant
//! tensors (raw or typed data, float16/bfloat16/float64 converted to f32, external data read from
//! beside the model with its location and range checked); inline model-local functions; build the
//! value table and sort the nodes topologically (the file's order is not trusted); parse each
//! node's attributes into its typed op. Shape inference and folding come later, in `graph`.

pub mod proto;

use crate::error::{Error, Result};
use crate::graph::{Attr, Attrs, Dim, Graph, Node, ValueInfo};
use crate::ops::Op;
use crate::tensor::{DType, Data, Tensor, checked_numel};
use prost::Message;
use proto::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where external tensor data may be read from.
#[derive(Clone, Debug)]
pub enum DataDir {
    /// The model came from bytes with no directory: external data is refused.
    None,
    /// The directory of the model file.
    Dir(PathBuf),
}

/// Load a model file (and its external data, if any).
pub fn load_file(path: &Path) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let dir = path.parent().map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() });
    load_bytes(&bytes, DataDir::Dir(dir.unwrap_or_else(|| PathBuf::from(".")))).map_err(|e| match e {
        Error::Model(m) => Error::Model(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Decode a `ModelProto`, checking that it really is one.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(Error::Model("not an ONNX model: the file is empty".into()));
    }
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::Model(format!("not an ONNX model, or a truncated one: protobuf decoding failed ({e})")))?;
    if model.graph.is_none() {
        return Err(Error::Model("not an ONNX model: it holds no graph".into()));
    }
    if model.ir_version <= 0 || model.ir_version > 100 {
        return Err(Error::Model(format!(
            "not an ONNX model: ir_version {} is not a valid ONNX IR version",
            model.ir_version
        )));
    }
    Ok(model)
}

pub fn load_bytes(bytes: &[u8], dir: DataDir) -> Result<Graph> {
    let model = decode_model(bytes)?;
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    // IR version 3 files without an opset_import entry for the default domain mean opset 1-ish;
    // nobody exports U-Nets like that any more, so ask for one.
    let opset = opset.ok_or_else(|| Error::Model("the model imports no version of the default ONNX opset".into()))?;
    let graph = model.graph.as_ref().unwrap();
    let functions: HashMap<(String, String), &FunctionProto> =
        model.functions.iter().map(|f| ((f.domain.clone(), f.name.clone()), f)).collect();
    build_graph(graph, opset, &functions, &dir, &model.producer_name)
}

/// Read the raw bytes of an external tensor, refusing locations outside the model's directory
/// and ranges past the end of the file.
fn read_external(t: &TensorProto, dir: &DataDir) -> Result<Vec<u8>> {
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv.value.parse().map_err(|_| {
                    Error::Model(format!("tensor '{}': external data offset '{}' is not a number", t.name, kv.value))
                })?
            }
            "length" => {
                length = Some(kv.value.parse().map_err(|_| {
                    Error::Model(format!("tensor '{}': external data length '{}' is not a number", t.name, kv.value))
                })?)
            }
            _ => {}
        }
    }
    let location =
        location.ok_or_else(|| Error::Model(format!("tensor '{}': external data without a location", t.name)))?;
    let base = match dir {
        DataDir::None => {
            return Err(Error::Model(format!(
                "tensor '{}' keeps its data in the external file '{location}', but the model was given as bytes without a directory",
                t.name
            )));
        }
        DataDir::Dir(d) => d,
    };
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
    {
        return Err(Error::Model(format!(
            "tensor '{}': external data location '{location}' escapes the model's directory; refused",
            t.name
        )));
    }
    let path = base.join(rel);
    // A symbolic link could still lead outside: compare canonical paths.
    let canon_base = base.canonicalize().map_err(|e| Error::io(base, e))?;
    let canon = path.canonicalize().map_err(|e| Error::io(&path, e))?;
    if !canon.starts_with(&canon_base) {
        return Err(Error::Model(format!(
            "tensor '{}': external data location '{location}' resolves outside the model's directory; refused",
            t.name
        )));
    }
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let size = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    let len = match length {
        Some(l) => l,
        None => size.checked_sub(offset).unwrap_or(u64::MAX),
    };
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Error::Model(format!(
            "tensor '{}': external data range offset {offset} length {} is past the end of '{}' ({size} bytes)",
            t.name,
            length.map(|l| l.to_string()).unwrap_or_else(|| "(rest of file)".into()),
            path.display()
        )));
    }
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&path, e))?;
    f.read_exact(&mut buf).map_err(|e| Error::io(&path, e))?;
    Ok(buf)
}

/// Convert a `TensorProto` to a host tensor.
pub fn tensor_from_proto(t: &TensorProto, dir: &DataDir) -> Result<Tensor> {
    let name = if t.name.is_empty() { "(unnamed)" } else { t.name.as_str() };
    let dtype = DType::from_onnx(t.data_type).ok_or_else(|| {
        Error::Model(format!("tensor '{name}': data type {} is not supported", data_type::name(t.data_type)))
    })?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(Error::Model(format!("tensor '{name}': negative dimension {d} in {:?}", t.dims)));
        }
        shape.push(d as usize);
    }
    let n = checked_numel(&shape).map_err(|m| Error::Model(format!("tensor '{name}': {m}")))?;
    let external;
    let raw: Option<&[u8]> = if t.data_location == 1 {
        external = read_external(t, dir)?;
        Some(&external)
    } else if !t.raw_data.is_empty() || (n == 0) {
        Some(&t.raw_data)
    } else {
        None
    };
    let bad_count = |got: usize| {
        Error::Model(format!(
            "tensor '{name}': shape {:?} needs {n} values of {} but the file holds {got}",
            t.dims,
            dtype.name()
        ))
    };
    let data = if let Some(raw) = raw {
        let es = dtype.size();
        if raw.len() != n * es {
            return Err(Error::Model(format!(
                "tensor '{name}': shape {:?} of {} needs {} bytes of data but {} are stored",
                t.dims,
                dtype.name(),
                n * es,
                raw.len()
            )));
        }
        match dtype {
            DType::F32 => Data::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
            DType::F16 => Data::F32(
                raw.chunks_exact(2).map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect(),
            ),
            DType::BF16 => Data::F32(
                raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect(),
            ),
            DType::F64 => {
                Data::F32(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect())
            }
            DType::I64 => Data::I64(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            DType::U64 => {
                Data::I64(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            DType::I32 => {
                Data::I64(raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            DType::U32 => {
                Data::I64(raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            DType::I16 => {
                Data::I64(raw.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            DType::U16 => {
                Data::I64(raw.chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            DType::I8 => Data::I64(raw.iter().map(|&b| b as i8 as i64).collect()),
            DType::U8 => Data::I64(raw.iter().map(|&b| b as i64).collect()),
            DType::Bool => Data::I64(raw.iter().map(|&b| (b != 0) as i64).collect()),
        }
    } else {
        match dtype {
            DType::F32 => {
                if t.float_data.len() != n {
                    return Err(bad_count(t.float_data.len()));
                }
                Data::F32(t.float_data.clone())
            }
            DType::F64 => {
                if t.double_data.len() != n {
                    return Err(bad_count(t.double_data.len()));
                }
                Data::F32(t.double_data.iter().map(|&x| x as f32).collect())
            }
            DType::F16 | DType::BF16 => {
                if t.int32_data.len() != n {
                    return Err(bad_count(t.int32_data.len()));
                }
                Data::F32(
                    t.int32_data
                        .iter()
                        .map(|&b| {
                            if dtype == DType::F16 {
                                half::f16::from_bits(b as u16).to_f32()
                            } else {
                                half::bf16::from_bits(b as u16).to_f32()
                            }
                        })
                        .collect(),
                )
            }
            DType::I64 => {
                if t.int64_data.len() != n {
                    return Err(bad_count(t.int64_data.len()));
                }
                Data::I64(t.int64_data.clone())
            }
            DType::U64 | DType::U32 => {
                if t.uint64_data.len() != n {
                    return Err(bad_count(t.uint64_data.len()));
                }
                Data::I64(t.uint64_data.iter().map(|&x| x as i64).collect())
            }
            DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::U16 | DType::Bool => {
                if t.int32_data.len() != n {
                    return Err(bad_count(t.int32_data.len()));
                }
                Data::I64(t.int32_data.iter().map(|&x| dtype.wrap_int(x as i64)).collect())
            }
        }
    };
    Ok(Tensor { dtype, shape, data })
}

fn attr_from_proto(a: &AttributeProto, dir: &DataDir) -> Result<Attr> {
    use attribute_type as at;
    let ty = if a.r#type != at::UNDEFINED {
        a.r#type
    } else if !a.ints.is_empty() {
        at::INTS
    } else if !a.floats.is_empty() {
        at::FLOATS
    } else if a.t.is_some() {
        at::TENSOR
    } else if !a.s.is_empty() {
        at::STRING
    } else {
        at::INT
    };
    Ok(match ty {
        at::FLOAT => Attr::Float(a.f),
        at::INT => Attr::Int(a.i),
        at::STRING => Attr::String(String::from_utf8_lossy(&a.s).into_owned()),
        at::TENSOR => Attr::Tensor(Arc::new(tensor_from_proto(
            a.t.as_ref().ok_or_else(|| Error::Model(format!("attribute '{}' has no tensor", a.name)))?,
            dir,
        )?)),
        at::FLOATS => Attr::Floats(a.floats.clone()),
        at::INTS => Attr::Ints(a.ints.clone()),
        at::STRINGS => Attr::Strings(a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()),
        at::GRAPH | at::GRAPHS => Attr::Graph,
        _ => Attr::Other(ty),
    })
}

/// A node as it comes from the file, before its op is parsed.
struct RawNode {
    name: String,
    op_type: String,
    domain: String,
    attrs: Attrs,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Expand calls of model-local functions into their bodies.
fn inline_functions(
    nodes: &[NodeProto],
    functions: &HashMap<(String, String), &FunctionProto>,
    dir: &DataDir,
    depth: usize,
    prefix: &str,
    out: &mut Vec<RawNode>,
) -> Result<()> {
    if depth > 16 {
        return Err(Error::Model("model-local functions nest more than 16 deep".into()));
    }
    for (i, n) in nodes.iter().enumerate() {
        let mut attrs = Attrs::default();
        for a in &n.attribute {
            attrs.0.insert(a.name.clone(), attr_from_proto(a, dir)?);
        }
        let base_name = if n.name.is_empty() { format!("{}#{}", n.op_type, i) } else { n.name.clone() };
        let name = format!("{prefix}{base_name}");
        if let Some(f) = functions.get(&(n.domain.clone(), n.op_type.clone())) {
            // Rename the body's values: formal inputs/outputs to the call's, the rest made unique.
            let mut map: HashMap<String, String> = HashMap::new();
            for (k, formal) in f.input.iter().enumerate() {
                map.insert(formal.clone(), n.input.get(k).cloned().unwrap_or_default());
            }
            for (k, formal) in f.output.iter().enumerate() {
                map.insert(formal.clone(), n.output.get(k).cloned().unwrap_or_default());
            }
            let inner_prefix = format!("{name}/");
            let mut body = Vec::with_capacity(f.node.len());
            for fnode in &f.node {
                let mut c = fnode.clone();
                for v in c.input.iter_mut().chain(c.output.iter_mut()) {
                    if v.is_empty() {
                        continue;
                    }
                    *v = map.get(v.as_str()).cloned().unwrap_or_else(|| format!("{inner_prefix}{v}"));
                }
                // Attributes that refer to the caller's attributes.
                let mut resolved = Vec::with_capacity(c.attribute.len());
                for a in c.attribute.drain(..) {
                    if a.ref_attr_name.is_empty() {
                        resolved.push(a);
                    } else if let Some(src) = n.attribute.iter().find(|x| x.name == a.ref_attr_name) {
                        let mut r = src.clone();
                        r.name = a.name.clone();
                        resolved.push(r);
                    } else if let Some(src) = f.attribute_proto.iter().find(|x| x.name == a.ref_attr_name) {
                        let mut r = src.clone();
                        r.name = a.name.clone();
                        resolved.push(r);
                    }
                }
                c.attribute = resolved;
                body.push(c);
            }
            inline_functions(&body, functions, dir, depth + 1, &inner_prefix, out)?;
            continue;
        }
        out.push(RawNode {
            name,
            op_type: n.op_type.clone(),
            domain: n.domain.clone(),
            attrs,
            inputs: n.input.clone(),
            outputs: n.output.clone(),
        });
    }
    Ok(())
}

fn value_info_dims(vi: &ValueInfoProto) -> (Option<DType>, Option<Vec<Dim>>) {
    let Some(tt) = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return (None, None);
    };
    let dtype = DType::from_onnx(tt.elem_type);
    let dims = tt.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match (&d.dim_value, &d.dim_param) {
                (Some(v), _) if *v >= 0 => Dim::Fixed(*v as usize),
                (_, Some(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                _ => Dim::Unknown,
            })
            .collect()
    });
    (dtype, dims)
}

fn build_graph(
    g: &GraphProto,
    opset: i64,
    functions: &HashMap<(String, String), &FunctionProto>,
    dir: &DataDir,
    producer: &str,
) -> Result<Graph> {
    let mut graph = Graph { opset, producer: producer.to_string(), ..Default::default() };
    let mut ids: HashMap<String, usize> = HashMap::new();
    let new_value = |graph: &mut Graph, ids: &mut HashMap<String, usize>, name: &str| -> usize {
        let id = graph.values.len();
        graph.values.push(ValueInfo { name: name.to_string(), dtype: None, dims: None });
        ids.insert(name.to_string(), id);
        id
    };

    // Constants: initializers (a graph input with an initializer is a constant with a default).
    for t in &g.initializer {
        if t.name.is_empty() {
            return Err(Error::Model("an initializer has no name".into()));
        }
        let tensor = tensor_from_proto(t, dir)?;
        let id = match ids.get(&t.name) {
            Some(&id) => id,
            None => new_value(&mut graph, &mut ids, &t.name),
        };
        graph.values[id].dtype = Some(tensor.dtype);
        graph.consts.insert(id, Arc::new(tensor));
    }
    if !g.sparse_initializer.is_empty() {
        return Err(Error::Model("sparse initializers are not supported".into()));
    }
    for vi in &g.input {
        if graph.consts.contains_key(ids.get(&vi.name).unwrap_or(&usize::MAX)) {
            continue;
        }
        if ids.contains_key(&vi.name) {
            return Err(Error::Model(format!("graph input '{}' is declared twice", vi.name)));
        }
        let id = new_value(&mut graph, &mut ids, &vi.name);
        let (dtype, dims) = value_info_dims(vi);
        graph.values[id].dtype = dtype;
        graph.values[id].dims = dims;
        graph.inputs.push(id);
    }

    let mut raw = Vec::new();
    inline_functions(&g.node, functions, dir, 0, "", &mut raw)?;

    // Constant nodes become constants right away.
    let mut nodes: Vec<RawNode> = Vec::with_capacity(raw.len());
    for n in raw {
        if n.op_type == "Constant" && (n.domain.is_empty() || n.domain == "ai.onnx") {
            let t = crate::ops::constant_value(&n.attrs).map_err(|m| Error::node(&n.name, "Constant", m))?;
            let out = n
                .outputs
                .first()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::node(&n.name, "Constant", "has no output"))?;
            if ids.contains_key(out) {
                return Err(Error::node(&n.name, "Constant", format!("output '{out}' is produced twice")));
            }
            let id = new_value(&mut graph, &mut ids, out);
            graph.values[id].dtype = Some(t.dtype);
            graph.consts.insert(id, Arc::new(t));
            continue;
        }
        nodes.push(n);
    }

    // Every node output gets a value; a value produced twice is an error.
    let mut producer_of: HashMap<usize, usize> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for o in &n.outputs {
            if o.is_empty() {
                continue;
            }
            if let Some(&id) = ids.get(o) {
                let what = if graph.consts.contains_key(&id) {
                    "a constant"
                } else if graph.inputs.contains(&id) {
                    "a graph input"
                } else {
                    "another node"
                };
                return Err(Error::node(&n.name, &n.op_type, format!("output '{o}' is also produced by {what}")));
            }
            let id = new_value(&mut graph, &mut ids, o);
            producer_of.insert(id, k);
        }
    }
    // Declared types of intermediate values and outputs (used for checks and `info`).
    for vi in g.value_info.iter().chain(g.output.iter()) {
        if let Some(&id) = ids.get(&vi.name) {
            let (dtype, dims) = value_info_dims(vi);
            if graph.values[id].dtype.is_none() {
                graph.values[id].dtype = dtype;
            }
            if graph.values[id].dims.is_none() {
                graph.values[id].dims = dims;
            }
        }
    }

    // Resolve node inputs; a name that nothing produces is a missing initializer or input.
    let mut node_inputs: Vec<Vec<Option<usize>>> = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let mut ins = Vec::with_capacity(n.inputs.len());
        for i in &n.inputs {
            if i.is_empty() {
                ins.push(None);
                continue;
            }
            match ids.get(i) {
                Some(&id) => ins.push(Some(id)),
                None => {
                    return Err(Error::node(
                        &n.name,
                        &n.op_type,
                        format!(
                            "input '{i}' is not produced by any node and is neither a graph input nor an initializer (missing initializer?)"
                        ),
                    ));
                }
            }
        }
        node_inputs.push(ins);
    }

    // Kahn's algorithm over the nodes.
    let mut indeg = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (k, ins) in node_inputs.iter().enumerate() {
        let mut seen = HashSet::new();
        for id in ins.iter().flatten() {
            if let Some(&p) = producer_of.get(id)
                && seen.insert(p)
            {
                indeg[k] += 1;
                users[p].push(k);
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> = (0..nodes.len()).filter(|&k| indeg[k] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(k) = ready.pop_front() {
        order.push(k);
        for &u in &users[k] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<String> =
            (0..nodes.len()).filter(|&k| indeg[k] > 0).take(5).map(|k| format!("'{}'", nodes[k].name)).collect();
        return Err(Error::Model(format!(
            "the graph has a cycle: nodes {} (and maybe others) depend on each other",
            stuck.join(", ")
        )));
    }

    let mut slots: Vec<Option<RawNode>> = nodes.into_iter().map(Some).collect();
    // every node that cannot be loaded is reported, not only the first
    let mut bad: Vec<Error> = Vec::new();
    for k in order {
        let n = slots[k].take().unwrap();
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            bad.push(Error::node(
                &n.name,
                &n.op_type,
                format!("op domain '{}' is not supported (only the default ONNX domain is)", n.domain),
            ));
            continue;
        }
        let op = match Op::parse(&n.op_type, &n.attrs, opset, n.inputs.len(), n.outputs.len()) {
            Ok(op) => op,
            Err(m) => {
                bad.push(Error::node(&n.name, &n.op_type, m));
                continue;
            }
        };
        let outputs = n.outputs.iter().map(|o| if o.is_empty() { None } else { ids.get(o).copied() }).collect();
        graph.nodes.push(Node {
            name: n.name,
            op_type: n.op_type,
            op,
            inputs: std::mem::take(&mut node_inputs[k]),
            outputs,
        });
    }
    match bad.len() {
        0 => {}
        1 => return Err(bad.remove(0)),
        n => {
            let lines: Vec<String> = bad.iter().map(|e| format!("  {e}")).collect();
            return Err(Error::Model(format!("{n} nodes cannot be loaded:\n{}", lines.join("\n"))));
        }
    }

    for vi in &g.output {
        let id = ids
            .get(&vi.name)
            .copied()
            .ok_or_else(|| Error::Model(format!("graph output '{}' is not produced by any node", vi.name)))?;
        graph.outputs.push(id);
    }
    if graph.outputs.is_empty() {
        return Err(Error::Model("the graph has no outputs".into()));
    }
    Ok(graph)
}
