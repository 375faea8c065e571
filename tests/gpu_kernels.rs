//! Every GPU kernel against the CPU reference on random, odd-sized shapes (rel-L2 <= 1e-4).

mod common;
use common::build::*;
use common::*;
use unet_gpu::gpu::exec::GpuOptions;
use unet_gpu::gpu::lower::CoopMode;
use unet_gpu::gpu::{GpuModel, Precision};
use unet_gpu::onnx::proto::{AttributeProto, OperatorSetIdProto, TensorProto};
use unet_gpu::{Model, Tensor};

/// An operand of a test graph: fed at run time, or an initializer.
#[derive(Clone)]
enum Operand {
    Run(&'static str, Vec<usize>),
    Init(TensorProto),
    Skip,
}
use Operand::*;

#[derive(Clone)]
struct Case {
    name: &'static str,
    nodes: Vec<(&'static str, Vec<&'static str>, Vec<&'static str>, Vec<AttributeProto>)>,
    operands: Vec<Operand>,
    outputs: Vec<&'static str>,
    opset: i64,
    lo: f32,
    hi: f32,
}

fn case(
    name: &'static str,
    op: &'static str,
    ins: Vec<&'static str>,
    attrs: Vec<AttributeProto>,
    operands: Vec<Operand>,
) -> Case {
    Case { name, nodes: vec![(op, ins, vec!["y"], attrs)], operands, outputs: vec!["y"], opset: 17, lo: -2.0, hi: 2.0 }
}

fn init(name: &str, dims: &[i64], seed: u64) -> Operand {
    let n: i64 = dims.iter().product();
    Init(tensor(name, dims, &random(n as usize, seed, -1.0, 1.0)))
}

fn ints(name: &str, v: &[i64]) -> Operand {
    Init(tensor_i64(name, &[v.len() as i64], v))
}

fn floats(name: &str, v: &[f32]) -> Operand {
    Init(tensor(name, &[v.len() as i64], v))
}

type NodeSpec = (&'static str, Vec<&'static str>, Vec<&'static str>, Vec<AttributeProto>);

/// A Conv node of a test graph.
fn conv(ins: Vec<&'static str>, out: &'static str, attrs: Vec<AttributeProto>) -> NodeSpec {
    ("Conv", ins, vec![out], attrs)
}

fn pad1() -> Vec<AttributeProto> {
    vec![attr_ints("pads", &[1, 1, 1, 1])]
}

/// A test graph with output `y`, fed random values in [-1, 1].
fn graph(name: &'static str, nodes: Vec<NodeSpec>, operands: Vec<Operand>) -> Case {
    Case { name, nodes, operands, outputs: vec!["y"], opset: 17, lo: -1.0, hi: 1.0 }
}

/// A conv writing `ch` channels into the first slice of a concat buffer, a second conv reading
/// that slice and adding it as a residual into the second slice: input, output and residual
/// of the second conv are all views of one buffer. Input `x` (channels at index 1), weight
/// seeds from `seed`.
fn in_concat_buffer(name: &'static str, x: Vec<usize>, ch: i64, seed: u64) -> Case {
    let cin = x[1] as i64;
    graph(
        name,
        vec![
            conv(vec!["x", "w1"], "a", pad1()),
            conv(vec!["a", "w2", "b2"], "c", pad1()),
            ("Add", vec!["c", "a"], vec!["s"], vec![]),
            ("Concat", vec!["a", "s"], vec!["y"], vec![attr_i("axis", 1)]),
        ],
        vec![
            Run("x", x),
            init("w1", &[ch, cin, 3, 3], seed),
            init("w2", &[ch, ch, 3, 3], seed + 1),
            init("b2", &[ch], seed + 2),
        ],
    )
}

/// A 3x3 conv (pads 1) with bias, `cout` outputs, and a ReLU. Input `x` (channels at index 1),
/// seeds from `seed`.
fn conv3x3_relu(name: &'static str, x: Vec<usize>, cout: usize, seed: u64) -> Case {
    let cin = x[1] as i64;
    graph(
        name,
        vec![conv(vec!["x", "w", "b"], "c", pad1()), ("Relu", vec!["c"], vec!["y"], vec![])],
        vec![Run("x", x), init("w", &[cout as i64, cin, 3, 3], seed), init("b", &[cout as i64], seed + 1)],
    )
}

/// A 1x1 conv with bias, `cout` outputs, then ReLU (a direct GEMM). Input `x` (channels at
/// index 1), seeds from `seed`.
fn conv1x1_relu(name: &'static str, x: Vec<usize>, cout: usize, seed: u64) -> Case {
    let cin = x[1] as i64;
    graph(
        name,
        vec![conv(vec!["x", "w", "b"], "c", vec![]), ("Relu", vec!["c"], vec!["y"], vec![])],
        vec![Run("x", x), init("w", &[cout as i64, cin, 1, 1], seed), init("b", &[cout as i64], seed + 1)],
    )
}

/// A 2x2 stride-2 transposed conv with bias, `cout` outputs. Input `x` (channels at index 1),
/// seeds from `seed`.
fn conv_transpose2x2(name: &'static str, x: Vec<usize>, cout: usize, seed: u64) -> Case {
    let cin = x[1] as i64;
    graph(
        name,
        vec![("ConvTranspose", vec!["x", "w", "b"], vec!["y"], vec![attr_ints("strides", &[2, 2])])],
        vec![Run("x", x), init("w", &[cin, cout as i64, 2, 2], seed), init("b", &[cout as i64], seed + 1)],
    )
}

/// A 5x1 conv (pads 2 above and below) with bias, `cout` outputs, plus a fused residual Add
/// of the output's shape. Input `x` (channels at index 1), seeds from `seed`.
fn conv5x1_residual(name: &'static str, x: Vec<usize>, cout: usize, seed: u64) -> Case {
    let (cin, r) = (x[1] as i64, vec![x[0], cout, x[2], x[3]]);
    graph(
        name,
        vec![
            conv(vec!["x", "w", "b"], "c", vec![attr_ints("pads", &[2, 0, 2, 0])]),
            ("Add", vec!["c", "r"], vec!["y"], vec![]),
        ],
        vec![Run("x", x), Run("r", r), init("w", &[cout as i64, cin, 5, 1], seed), init("b", &[cout as i64], seed + 1)],
    )
}

/// The kernel variants every case runs in: f32 (cost-model tiles and split-K, or the thin
/// kernel where it applies: small test convs often have few channels), the same on GEMM tiles
/// only, the generic conv kernel, f16 without split-K, and the tensor-core kernels' tiling
/// through their emulation.
fn variants() -> [GpuOptions; 5] {
    let f32 = GpuOptions::default();
    [
        // the cost model's choice of tile and split-K (small tests often split)
        f32,
        GpuOptions { thin: false, ..f32 },
        GpuOptions { fast_conv: false, ..f32 },
        // never split: the fast kernels' own epilogue
        GpuOptions { coop: Some(CoopMode::Off), split_k: false, ..GpuOptions::f16() },
        GpuOptions { coop: Some(CoopMode::Emulate), thin: false, ..GpuOptions::f16() },
    ]
}

/// The tensor-core kernels through their scalar emulation, on a forced tile and K split.
fn emulated(tile: (u32, u32), split: Option<u32>) -> GpuOptions {
    GpuOptions { force_tile: Some(tile), force_split: split, coop: Some(CoopMode::Emulate), ..GpuOptions::f16() }
}

/// Every case under every variant matches the CPU reference, in exactly its number of
/// dispatches and without a concat copy (`why`: what a wrong count means).
fn check_dispatches(cases: &[(Case, usize)], variants: &[GpuOptions], why: &str) {
    let mut failed = Vec::new();
    for (c, dispatches) in cases {
        for v in variants {
            match run_case_with(c, *v) {
                Ok((_, st)) if st.dispatches != *dispatches || st.concat_copies != 0 => failed.push(format!(
                    "{} ({v:?}): {} dispatches (expected {dispatches}), {} concat copies: {why}",
                    c.name, st.dispatches, st.concat_copies
                )),
                Ok(_) => {}
                Err(e) => failed.push(format!("{}: {e}", c.name)),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every case under every variant matches the CPU reference and runs kernels whose names
/// contain each of `names`.
fn check_kernels(cases: &[Case], variants: &[GpuOptions], names: &[&str]) {
    let mut failed = Vec::new();
    for c in cases {
        for v in variants {
            match run_case_kernels(c, *v) {
                Ok((_, _, ran)) => {
                    // "!x": no kernel's name contains x; "x|y": some kernel's name contains x or y
                    let wrong = names.iter().find(|want| match want.strip_prefix('!') {
                        Some(absent) => ran.iter().any(|n| n.contains(absent)),
                        None => !ran.iter().any(|n| want.split('|').any(|w| n.contains(w))),
                    });
                    if let Some(wrong) = wrong {
                        failed.push(format!(
                            "{} ({:?} split {:?}): kernels {ran:?}, expected {wrong}",
                            c.name, v.force_tile, v.force_split
                        ));
                    }
                }
                Err(e) => failed.push(format!("{} ({:?} split {:?}): {e}", c.name, v.force_tile, v.force_split)),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn run_case(c: &Case) -> Result<(usize, unet_gpu::gpu::RunStats), String> {
    run_case_with(c, GpuOptions::default())
}

/// The case's model and its random inputs.
fn case_model(c: &Case) -> Result<(Model, Vec<Tensor>), String> {
    let mut inputs = Vec::new();
    let mut inits = Vec::new();
    let mut feeds = Vec::new();
    for (k, o) in c.operands.iter().enumerate() {
        match o {
            Run(name, shape) => {
                let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                inputs.push(vi(name, &dims));
                let n: usize = shape.iter().product();
                feeds.push(Tensor::f32(shape.clone(), random(n, 100 + k as u64, c.lo, c.hi)));
            }
            Init(t) => inits.push(t.clone()),
            Skip => {}
        }
    }
    let nodes = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, (op, ins, outs, attrs))| node(op, &format!("n{i}"), ins, outs, attrs.clone()))
        .collect();
    let outputs = c.outputs.iter().map(|o| vi(o, &[])).collect();
    let mut m = model(nodes, inputs, outputs, inits);
    m.opset_import = vec![OperatorSetIdProto { domain: String::new(), version: c.opset }];
    let model = Model::from_bytes(&bytes(&m), c.name).map_err(|e| format!("load: {e}"))?;
    Ok((model, feeds))
}

/// The names of the kernels the GPU model of a case runs.
fn kernel_names(c: &Case, opts: GpuOptions) -> Vec<String> {
    let (model, feeds) = case_model(c).unwrap();
    let shapes: Vec<Vec<usize>> = feeds.iter().map(|t| t.shape.clone()).collect();
    let p = model.prepare(&shapes).unwrap();
    let gm = GpuModel::with_options(gpu(), &p, opts).unwrap();
    gm.dispatches().iter().map(|d| d.shader.kernel_name()).collect()
}

/// Run on the GPU with these options and compare with the CPU reference (rel-L2 <= 1e-4 in f32,
/// <= 1e-2 with f16 storage).
fn run_case_with(c: &Case, opts: GpuOptions) -> Result<(usize, unet_gpu::gpu::RunStats), String> {
    run_case_kernels(c, opts).map(|(n, st, _)| (n, st))
}

/// [`run_case_with`], and the names of the kernels the GPU model ran.
fn run_case_kernels(c: &Case, opts: GpuOptions) -> Result<(usize, unet_gpu::gpu::RunStats, Vec<String>), String> {
    let (model, feeds) = case_model(c)?;
    let shapes: Vec<Vec<usize>> = feeds.iter().map(|t| t.shape.clone()).collect();
    let p = model.prepare(&shapes).map_err(|e| format!("prepare: {e}"))?;
    if p.graph.nodes.is_empty() {
        return Err("everything folded: the case tests nothing".into());
    }
    let want = unet_gpu::cpu::run(&p, &feeds).map_err(|e| format!("cpu: {e}"))?;
    // a fused residual Add: the fused CPU reference equals the graph as written
    if p.graph.nodes.iter().any(|n| matches!(&n.op, unet_gpu::ops::Op::Conv(c) if c.residual)) {
        let b: Vec<_> = shapes.iter().map(|s| unet_gpu::graph::prepare::Binding::Shape(s.clone())).collect();
        let opts = unet_gpu::graph::prepare::Options { fuse_residuals: false, ..Default::default() };
        let pu = model.prepare_with(&b, &opts).map_err(|e| format!("prepare unfused: {e}"))?;
        let plain = unet_gpu::cpu::run(&pu, &feeds).map_err(|e| format!("cpu unfused: {e}"))?;
        for (k, (f, w)) in want.iter().zip(&plain).enumerate() {
            let e = rel_l2(f.as_f32().unwrap(), w.as_f32().unwrap());
            if !(e <= 1e-7) {
                return Err(format!("output {k}: fused CPU reference vs unfused: rel-L2 {e:.3e}"));
            }
        }
    }
    let gm = GpuModel::with_options(gpu(), &p, opts).map_err(|e| format!("gpu build: {e}"))?;
    let tol = if opts.precision == Precision::F16 { 1e-2 } else { 1e-4 };
    let (got, stats) = gm.run_with_stats(&feeds, false).map_err(|e| format!("gpu run: {e}"))?;
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        if g.shape != w.shape {
            return Err(format!("output {k}: shape {:?} vs {:?}", g.shape, w.shape));
        }
        let e = rel_l2(g.as_f32().unwrap(), w.as_f32().unwrap());
        if !(e <= tol) {
            return Err(format!("output {k} ({opts:?}): rel-L2 {e:.3e}"));
        }
    }
    let names = gm.dispatches().iter().map(|d| d.shader.kernel_name()).collect();
    Ok((p.graph.nodes.len(), stats, names))
}

/// Every case in every variant of [`variants`].
fn run_all(cases: Vec<Case>) {
    let mut failed = Vec::new();
    for c in &cases {
        for v in variants() {
            if let Err(e) = run_case_with(c, v) {
                failed.push(format!("{}: {e}", c.name));
            }
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), cases.len(), failed.join("\n"));
}

#[test]
fn conv_kernels() {
    let x = |shape: &[usize]| Run("x", shape.to_vec());
    run_all(vec![
        case(
            "conv 3x3 pad 1 bias",
            "Conv",
            vec!["x", "w", "b"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
            vec![x(&[1, 3, 11, 13]), init("w", &[5, 3, 3, 3], 1), init("b", &[5], 2)],
        ),
        case(
            "conv stride 2, asymmetric pads, dilation, batch 2, no bias",
            "Conv",
            vec!["x", "w"],
            vec![attr_ints("pads", &[0, 1, 2, 1]), attr_ints("strides", &[2, 2]), attr_ints("dilations", &[2, 1])],
            vec![x(&[2, 4, 15, 12]), init("w", &[6, 4, 3, 2], 3)],
        ),
        case(
            "conv groups 2",
            "Conv",
            vec!["x", "w", "b"],
            vec![attr_i("group", 2)],
            vec![x(&[1, 6, 9, 10]), init("w", &[4, 3, 3, 3], 4), init("b", &[4], 5)],
        ),
        case(
            "depthwise stride 2 SAME_UPPER",
            "Conv",
            vec!["x", "w"],
            vec![attr_i("group", 5), attr_ints("strides", &[2, 2]), attr_s("auto_pad", "SAME_UPPER")],
            vec![x(&[1, 5, 12, 9]), init("w", &[5, 1, 3, 3], 6)],
        ),
        case(
            "conv 1x1",
            "Conv",
            vec!["x", "w", "b"],
            vec![],
            vec![x(&[1, 7, 10, 11]), init("w", &[9, 7, 1, 1], 7), init("b", &[9], 8)],
        ),
        case(
            "conv 1-D",
            "Conv",
            vec!["x", "w"],
            vec![attr_ints("pads", &[2, 2])],
            vec![x(&[2, 3, 17]), init("w", &[4, 3, 5], 9)],
        ),
        case(
            "conv many channels (K and M span several tiles)",
            "Conv",
            vec!["x", "w", "b"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
            vec![x(&[1, 37, 9, 8]), init("w", &[70, 37, 3, 3], 10), init("b", &[70], 11)],
        ),
        case(
            "conv weights fed at run time",
            "Conv",
            vec!["x", "w"],
            vec![attr_ints("pads", &[1, 0, 1, 0])],
            vec![x(&[1, 3, 7, 9]), Run("w", vec![4, 3, 3, 1])],
        ),
        case(
            "conv transpose stride 2, pads, output_padding, bias",
            "ConvTranspose",
            vec!["x", "w", "b"],
            vec![attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1]), attr_ints("output_padding", &[1, 1])],
            vec![x(&[1, 4, 5, 6]), init("w", &[4, 3, 3, 3], 12), init("b", &[3], 13)],
        ),
        case(
            "conv transpose 2x2 stride 2, batch 2",
            "ConvTranspose",
            vec!["x", "w", "b"],
            vec![attr_ints("strides", &[2, 2])],
            vec![x(&[2, 6, 7, 5]), init("w", &[6, 5, 2, 2], 14), init("b", &[5], 15)],
        ),
        case(
            "conv transpose group 2 dilation 2",
            "ConvTranspose",
            vec!["x", "w"],
            vec![attr_i("group", 2), attr_ints("dilations", &[2, 2])],
            vec![x(&[1, 4, 6, 5]), init("w", &[4, 3, 3, 3], 16)],
        ),
        case(
            "conv transpose output_shape",
            "ConvTranspose",
            vec!["x", "w"],
            vec![attr_ints("strides", &[3, 2]), attr_ints("output_shape", &[13, 9])],
            vec![x(&[1, 2, 4, 4]), init("w", &[2, 3, 3, 3], 17)],
        ),
        case(
            "conv transpose SAME_UPPER",
            "ConvTranspose",
            vec!["x", "w"],
            vec![attr_ints("strides", &[2, 2]), attr_s("auto_pad", "SAME_UPPER")],
            vec![x(&[1, 3, 5, 7]), init("w", &[3, 2, 3, 3], 18)],
        ),
    ]);
}

/// Each tile shape of the fast kernels, forced on convs whose sizes are not multiples of it.
#[test]
fn every_conv_tile_shape() {
    use unet_gpu::gpu::convgen::{BMode, COOP_TILES, TILES};
    let x = |shape: &[usize]| Run("x", shape.to_vec());
    let cases = vec![
        case(
            "conv 3x3 gather",
            "Conv",
            vec!["x", "w", "b"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
            vec![x(&[2, 5, 13, 11]), init("w", &[37, 5, 3, 3], 60), init("b", &[37], 61)],
        ),
        case("conv 1x1 direct", "Conv", vec!["x", "w"], vec![], vec![x(&[1, 9, 7, 23]), init("w", &[70, 9, 1, 1], 62)]),
        case(
            "conv transpose scatter",
            "ConvTranspose",
            vec!["x", "w", "b"],
            vec![attr_ints("strides", &[2, 2])],
            vec![x(&[1, 6, 9, 7]), init("w", &[6, 35, 2, 2], 63), init("b", &[35], 64)],
        ),
        case(
            "conv transpose scatter, 3x2 kernel and stride, batch 2",
            "ConvTranspose",
            vec!["x", "w", "b"],
            vec![attr_ints("strides", &[3, 2])],
            vec![x(&[2, 7, 5, 6]), init("w", &[7, 13, 3, 2], 65), init("b", &[13], 66)],
        ),
    ];
    let mut failed = Vec::new();
    for c in &cases {
        for &(bm, bn, ..) in &TILES {
            let o = GpuOptions { force_tile: Some((bm, bn)), ..GpuOptions::default() };
            if let Err(e) = run_case_with(c, o) {
                failed.push(format!("{} {bm}x{bn}: {e}", c.name));
            }
        }
        for &(bm, bn, wm, wn, _) in &COOP_TILES {
            let cc = unet_gpu::gpu::convgen::CoopCfg {
                bm,
                bn,
                wm,
                wn,
                b: BMode::Direct,
                scatter: false,
                emulate: true,
                split: false,
                epi: 1,
                quads: false,
            };
            if cc.shared_bytes() > gpu().limits.max_compute_workgroup_storage_size {
                continue; // (lavapipe: 32 KiB) the engine falls back to the scalar f16 kernel there
            }
            let o = emulated((bm, bn), None);
            if let Err(e) = run_case_with(c, o) {
                failed.push(format!("{} coop {bm}x{bn}: {e}", c.name));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn conv_fused_epilogues() {
    let mk = |name: &'static str,
              act: &'static str,
              attrs: Vec<AttributeProto>,
              extra: Vec<Operand>,
              ins: Vec<&'static str>| {
        let mut operands = vec![Run("x", vec![1, 3, 9, 11]), init("w", &[5, 3, 3, 3], 21), init("b", &[5], 22)];
        operands.extend(extra);
        Case {
            name,
            nodes: vec![
                ("Conv", vec!["x", "w", "b"], vec!["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
                (act, ins, vec!["y"], attrs),
            ],
            operands,
            outputs: vec!["y"],
            opset: 17,
            lo: -2.0,
            hi: 2.0,
        }
    };
    let mut cases = vec![
        mk("conv+relu", "Relu", vec![], vec![], vec!["c"]),
        mk("conv+leakyrelu", "LeakyRelu", vec![attr_f("alpha", 0.13)], vec![], vec!["c"]),
        mk("conv+sigmoid", "Sigmoid", vec![], vec![], vec!["c"]),
        mk("conv+tanh", "Tanh", vec![], vec![], vec!["c"]),
        mk(
            "conv+clip (inputs)",
            "Clip",
            vec![],
            vec![floats("lo", &[-0.3]), floats("hi", &[0.4])],
            vec!["c", "lo", "hi"],
        ),
        mk("conv+hardswish", "HardSwish", vec![], vec![], vec!["c"]),
    ];
    // SiLU written as Sigmoid then Mul
    cases.push(Case {
        name: "conv+silu",
        nodes: vec![
            ("Conv", vec!["x", "w", "b"], vec!["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
            ("Sigmoid", vec!["c"], vec!["s"], vec![]),
            ("Mul", vec!["c", "s"], vec!["y"], vec![]),
        ],
        operands: vec![Run("x", vec![1, 3, 9, 11]), init("w", &[5, 3, 3, 3], 23), init("b", &[5], 24)],
        outputs: vec!["y"],
        opset: 17,
        lo: -2.0,
        hi: 2.0,
    });
    for c in &cases {
        let (nodes, stats) = run_case(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        // the activation really is fused: one conv node, one dispatch
        assert_eq!((nodes, stats.dispatches), (1, 1), "{}: not fused", c.name);
    }
}

#[test]
fn conv_bias_fed_at_run_time() {
    // the conv kernels read their bias in f32 from a buffer written at load: a bias computed at
    // run time is split off into an Add after the conv (then the activation), in every variant
    let cases = vec![
        graph(
            "3x3 conv, bias fed at run time, relu",
            vec![conv(vec!["x", "w", "b"], "c", pad1()), ("Relu", vec!["c"], vec!["y"], vec![])],
            vec![Run("x", vec![2, 6, 9, 13]), init("w", &[7, 6, 3, 3], 31), Run("b", vec![7])],
        ),
        graph(
            "2x2 stride-2 transposed conv, bias fed at run time",
            vec![("ConvTranspose", vec!["x", "w", "b"], vec!["y"], vec![attr_ints("strides", &[2, 2])])],
            vec![Run("x", vec![1, 5, 7, 10]), init("w", &[5, 9, 2, 2], 32), Run("b", vec![9])],
        ),
    ];
    for c in &cases {
        let (model, feeds) = case_model(c).unwrap();
        let shapes: Vec<Vec<usize>> = feeds.iter().map(|t| t.shape.clone()).collect();
        let p = model.prepare(&shapes).unwrap();
        let ops: Vec<&str> = p.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&"Add") && ops.contains(&"Reshape"), "{}: {ops:?}", c.name);
        assert!(p.graph.nodes.iter().all(|n| n.input(2).is_none() || n.op_type != c.nodes[0].0), "{}", c.name);
    }
    check_kernels(&cases, &variants(), &[]);
}

#[test]
fn conv_fused_residual_add() {
    // Add(conv(..), r) with r of the output's shape runs as one conv whose epilogue adds r
    // (then the activation after the Add, if any); every kernel variant, odd shapes, batch 2.
    let cases = vec![
        // a ResNet basic block: relu(conv(relu(conv(x))) + x)
        (
            graph(
                "resnet block",
                vec![
                    conv(vec!["x", "w1", "b1"], "a", pad1()),
                    ("Relu", vec!["a"], vec!["ar"], vec![]),
                    conv(vec!["ar", "w2", "b2"], "c", pad1()),
                    ("Add", vec!["c", "x"], vec!["s"], vec![]),
                    ("Relu", vec!["s"], vec!["y"], vec![]),
                ],
                vec![
                    Run("x", vec![2, 7, 9, 11]),
                    init("w1", &[7, 7, 3, 3], 61),
                    init("b1", &[7], 62),
                    init("w2", &[7, 7, 3, 3], 63),
                    init("b2", &[7], 64),
                ],
            ),
            2,
        ),
        // u2netp's RSU closing: relu(conv(x)) + r, the residual first and fed at run time
        (
            graph(
                "residual first, run-time input",
                vec![
                    conv(vec!["x", "w", "b"], "c", pad1()),
                    ("Relu", vec!["c"], vec!["cr"], vec![]),
                    ("Add", vec!["r", "cr"], vec!["y"], vec![]),
                ],
                vec![
                    Run("x", vec![2, 3, 10, 13]),
                    Run("r", vec![2, 5, 10, 13]),
                    init("w", &[5, 3, 3, 3], 65),
                    init("b", &[5], 66),
                ],
            ),
            1,
        ),
        // 1x1 conv (the direct GEMM) with a residual and a LeakyRelu after it
        (
            graph(
                "1x1 + residual + leakyrelu",
                vec![
                    conv(vec!["x", "w"], "c", vec![]),
                    ("Add", vec!["c", "x"], vec!["s"], vec![]),
                    ("LeakyRelu", vec!["s"], vec!["y"], vec![attr_f("alpha", 0.2)]),
                ],
                vec![Run("x", vec![2, 6, 7, 9]), init("w", &[6, 6, 1, 1], 67)],
            ),
            1,
        ),
        // strided conv plus a pooled residual
        (
            graph(
                "strided conv + pooled residual",
                vec![
                    conv(
                        vec!["x", "w", "b"],
                        "c",
                        vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])],
                    ),
                    (
                        "MaxPool",
                        vec!["x"],
                        vec!["p"],
                        vec![
                            attr_ints("kernel_shape", &[3, 3]),
                            attr_ints("pads", &[1, 1, 1, 1]),
                            attr_ints("strides", &[2, 2]),
                        ],
                    ),
                    ("Add", vec!["p", "c"], vec!["y"], vec![]),
                ],
                vec![Run("x", vec![2, 5, 11, 9]), init("w", &[5, 5, 3, 3], 68), init("b", &[5], 69)],
            ),
            2,
        ),
        // the residual and the output are slices of one concat buffer: y = concat(a, conv(a) + a)
        (
            graph(
                "residual in the concat buffer",
                vec![
                    conv(vec!["x", "w1"], "a", pad1()),
                    conv(vec!["a", "w2", "b2"], "c", pad1()),
                    ("Add", vec!["c", "a"], vec!["s"], vec![]),
                    ("Concat", vec!["a", "s"], vec!["y"], vec![attr_i("axis", 1)]),
                ],
                vec![
                    Run("x", vec![2, 3, 9, 7]),
                    init("w1", &[6, 3, 3, 3], 70),
                    init("w2", &[6, 6, 3, 3], 71),
                    init("b2", &[6], 72),
                ],
            ),
            2,
        ),
    ];
    check_dispatches(&cases, &variants(), "the Add was not fused");
}

#[test]
fn split_k_convs() {
    // the K loop split over slices whose partial sums a reduction kernel adds up before the
    // epilogue (bias, activation, residual, activation after it), in every kernel variant
    let cases = vec![
        (conv3x3_relu("3x3 + relu", vec![2, 13, 9, 10], 11, 80), 2),
        (
            graph(
                "1x1 + residual + leakyrelu",
                vec![
                    conv(vec!["x", "w", "b"], "c", vec![]),
                    ("Add", vec!["c", "r"], vec!["s"], vec![]),
                    ("LeakyRelu", vec!["s"], vec!["y"], vec![attr_f("alpha", 0.3)]),
                ],
                vec![
                    Run("x", vec![2, 70, 5, 7]),
                    Run("r", vec![2, 9, 5, 7]),
                    init("w", &[9, 70, 1, 1], 82),
                    init("b", &[9], 83),
                ],
            ),
            2,
        ),
        // input and residual are slices of the concat buffer the conv writes
        (in_concat_buffer("in the concat buffer", vec![2, 5, 7, 9], 12, 84), 4),
        // a transposed conv's one GEMM splits like any other; its reduction scatters
        (
            graph(
                "transposed 2x2 stride 2 + relu, batch 2",
                vec![
                    ("ConvTranspose", vec!["x", "w", "b"], vec!["c"], vec![attr_ints("strides", &[2, 2])]),
                    ("Relu", vec!["c"], vec!["y"], vec![]),
                ],
                vec![Run("x", vec![2, 70, 5, 7]), init("w", &[70, 9, 2, 2], 85), init("b", &[9], 86)],
            ),
            2,
        ),
        (
            graph(
                "transposed 3x2 stride 3x2 + relu, into the second slice of a concat",
                vec![
                    ("ConvTranspose", vec!["x", "w1"], vec!["a"], vec![attr_ints("strides", &[3, 2])]),
                    ("ConvTranspose", vec!["x", "w2", "b2"], vec!["c"], vec![attr_ints("strides", &[3, 2])]),
                    ("Relu", vec!["c"], vec!["t"], vec![]),
                    ("Concat", vec!["a", "t"], vec!["y"], vec![attr_i("axis", 1)]),
                ],
                vec![
                    Run("x", vec![1, 70, 4, 5]),
                    init("w1", &[70, 5, 3, 2], 87),
                    init("w2", &[70, 6, 3, 2], 88),
                    init("b2", &[6], 89),
                ],
            ),
            4,
        ),
    ];
    let variants = [
        GpuOptions { force_split: Some(3), ..GpuOptions::default() },
        GpuOptions { force_split: Some(3), coop: Some(CoopMode::Off), ..GpuOptions::f16() },
        GpuOptions { force_split: Some(3), coop: Some(CoopMode::Emulate), ..GpuOptions::f16() },
    ];
    check_dispatches(&cases, &variants, "each conv split, plus its reduction");
}

#[test]
fn tap_major_gather() {
    // with input channels a multiple of the K tile (8 or 16 for the FMA kernels, 32 for the
    // tensor-core ones), K is ordered tap-major and a K tile shares one tap: every FMA tile in
    // f32, and the tensor-core kernels through their scalar emulation on both tile shapes that
    // fit lavapipe's workgroup memory, with and without split-K
    let cases = vec![
        conv3x3_relu("3x3 pad 1 + relu", vec![2, 32, 9, 13], 20, 90),
        graph(
            "3x3 stride 2 dilation 2",
            vec![conv(
                vec!["x", "w"],
                "y",
                vec![attr_ints("pads", &[2, 1, 2, 3]), attr_ints("strides", &[2, 2]), attr_ints("dilations", &[2, 2])],
            )],
            vec![Run("x", vec![1, 64, 11, 10]), init("w", &[17, 64, 3, 3], 92)],
        ),
        conv5x1_residual("5x1 + residual", vec![2, 32, 7, 6], 9, 93),
    ];
    let mut variants = Vec::new();
    let mut coop_64 = Vec::new();
    for split in [Some(1), Some(2)] {
        for &(bm, bn, ..) in &unet_gpu::gpu::convgen::TILES {
            variants.push(GpuOptions { force_tile: Some((bm, bn)), force_split: split, ..GpuOptions::default() });
        }
        variants.push(emulated((32, 128), split));
        coop_64.push(emulated((64, 64), split));
    }
    check_kernels(&cases, &variants, &["_taps"]);
    // in lavapipe's 32 KiB the 64x64 tile's epilogue takes two of its four fragments per round
    // (32x128 above: one), in 48 KiB (scripts/lavapipe-48k.sh, an H200) all four
    let wide = if gpu().limits.max_compute_workgroup_storage_size >= 49152 { "_e4" } else { "_e2" };
    check_kernels(&cases, &coop_64, &["_taps", wide]);
    // and switched off, the tap table
    let mut failed = Vec::new();
    for c in &cases {
        let off =
            GpuOptions { force_tile: Some((128, 128)), force_split: Some(1), tap_major: false, ..Default::default() };
        let names = kernel_names(c, off);
        if names.iter().any(|n| n.contains("_taps")) || !names.iter().any(|n| n.contains("_gather")) {
            failed.push(format!("{}: tap-major off still runs {names:?}", c.name));
        }
        if let Err(e) = run_case_with(c, off) {
            failed.push(format!("{} tap-major off: {e}", c.name));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn row_loads_tensor_core_convs() {
    // stride-1 tensor-core gathers whose output rows are runs of 16 pixels load each run of an
    // input channel as vectors (BMode::Rows): through the kernels' scalar emulation on every
    // tile that fits lavapipe's workgroup memory, with and without split-K: the tap's column
    // offset mod 4 takes every value (pads 1: 3, 0, 1; left pad 2: 2, 3, 0), image edges on
    // both sides, dilation, a 5x1 kernel with a residual, batch 2, a concat buffer, K tiles
    // spanning taps, and the direct GEMMs of a 1x1 conv and a transposed conv
    let cases = vec![
        conv3x3_relu("3x3 pad 1, 32 channels, 7x16, batch 2 + relu", vec![2, 32, 7, 16], 20, 140),
        graph(
            "3x3 pads left 2 right 0, 64 channels, 5x32",
            vec![conv(vec!["x", "w"], "y", vec![attr_ints("pads", &[1, 2, 1, 0])])],
            vec![Run("x", vec![1, 64, 5, 32]), init("w", &[17, 64, 3, 3], 142)],
        ),
        graph(
            "3x3 dilation 2 pads 2, 32 channels, 6x16",
            vec![conv(vec!["x", "w"], "y", vec![attr_ints("pads", &[2, 2, 2, 2]), attr_ints("dilations", &[2, 2])])],
            vec![Run("x", vec![1, 32, 6, 16]), init("w", &[24, 32, 3, 3], 143)],
        ),
        conv5x1_residual("5x1 + residual", vec![2, 32, 5, 16], 9, 144),
        // channels not a multiple of the K tile: a K tile spans taps (one shift per tap), and
        // with 24 channels the last one is partial
        graph(
            "3x3 pad 1, 16 channels, 4x32",
            vec![conv(vec!["x", "w"], "y", pad1())],
            vec![Run("x", vec![1, 16, 4, 32]), init("w", &[16, 16, 3, 3], 148)],
        ),
        graph(
            "3x3 pads left and right 3, 24 channels, 3x12 -> 3x16",
            vec![conv(vec!["x", "w", "b"], "y", vec![attr_ints("pads", &[1, 3, 1, 3])])],
            vec![Run("x", vec![2, 24, 3, 12]), init("w", &[12, 24, 3, 3], 149), init("b", &[12], 150)],
        ),
        // the first conv reads x, the second another slice of the buffer it writes (loaded one
        // f16 at a time: the vector binding cannot alias the output)
        in_concat_buffer("in the concat buffer", vec![2, 32, 3, 16], 32, 145),
        // the only conv reads the second slice of a concat buffer it does not write (the
        // view's offset is 12 planes)
        Case {
            outputs: vec!["y", "c"],
            ..graph(
                "reading a concat slice",
                vec![
                    ("Relu", vec!["x1"], vec!["a"], vec![]),
                    ("Relu", vec!["x2"], vec!["b"], vec![]),
                    ("Concat", vec!["a", "b"], vec!["y"], vec![attr_i("axis", 1)]),
                    conv(vec!["b", "w"], "c", pad1()),
                ],
                vec![Run("x1", vec![2, 12, 5, 16]), Run("x2", vec![2, 16, 5, 16]), init("w", &[8, 16, 3, 3], 156)],
            )
        },
        // direct GEMMs: their pixels are one long row (the last run partial)
        conv1x1_relu("1x1, 20 channels, 6x6 (36 pixels), batch 2 + relu", vec![2, 20, 6, 6], 11, 151),
        conv_transpose2x2("transposed 2x2 stride 2, 40 -> 9 channels, 5x8, batch 2", vec![2, 40, 5, 8], 9, 153),
    ];
    let mut variants = Vec::new();
    for split in [Some(1), Some(2)] {
        // 64x128 fits lavapipe's 32 KiB only with rows staged (the cost model prices it so);
        // where a conv cannot have them (the concat-buffer case's second conv) it takes an FMA
        // tile instead
        for tile in [(16, 128), (32, 128), (64, 64), (64, 128)] {
            variants.push(emulated(tile, split));
        }
    }
    check_kernels(&cases, &variants, &["_rows"]);
    // quads of 4 pixels (`--row-loads quads`) where the channels are a multiple of the K tile:
    // the shift and edges as above, a 64-channel K tile wrapping to the next tap, dilation, a
    // residual, the concat buffer, split-K, and direct GEMMs of 32 and 64 channels whose last
    // run of 16 is partial; runs of 16 where the channels are not
    let quads: Vec<Case> = [0, 1, 2, 3, 6]
        .iter()
        .map(|&i| cases[i].clone())
        .chain([
            conv1x1_relu("1x1, 32 channels, 6x6 (36 pixels), batch 2 + relu", vec![2, 32, 6, 6], 11, 157),
            conv_transpose2x2("transposed 2x2 stride 2, 64 -> 9 channels, 5x4, batch 2", vec![2, 64, 5, 4], 9, 159),
        ])
        .collect();
    let quad_variants: Vec<GpuOptions> = variants.iter().map(|v| GpuOptions { row_quads: true, ..*v }).collect();
    check_kernels(&quads, &quad_variants, &["_rows_q4"]);
    check_kernels(&[cases[4].clone(), cases[5].clone()], &quad_variants, &["_rows", "!_q4"]);
    // output rows not runs of 16 pixels, a stride, or a direct GEMM of pixels not a multiple
    // of 4: one f16 per load; and switched off
    let odd = vec![
        graph(
            "transposed 2x2 stride 2, 40 -> 9 channels, 3x3",
            vec![("ConvTranspose", vec!["x", "w"], vec!["y"], vec![attr_ints("strides", &[2, 2])])],
            vec![Run("x", vec![1, 40, 3, 3]), init("w", &[40, 9, 2, 2], 155)],
        ),
        graph(
            "3x3 pad 1, 32 channels, 5x13",
            vec![conv(vec!["x", "w"], "y", pad1())],
            vec![Run("x", vec![1, 32, 5, 13]), init("w", &[8, 32, 3, 3], 146)],
        ),
        graph(
            "3x3 stride 2, 32 channels, 9x32",
            vec![conv(vec!["x", "w"], "y", vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])])],
            vec![Run("x", vec![1, 32, 9, 32]), init("w", &[8, 32, 3, 3], 147)],
        ),
    ];
    check_kernels(&odd, &[emulated((32, 128), Some(1))], &["_taps|_direct", "!_rows"]);
    let off = GpuOptions { row_loads: false, ..emulated((32, 128), Some(1)) };
    check_kernels(&cases[..2], &[off], &["_taps", "!_rows"]);
}

#[test]
fn im2col_packed_tensor_core_convs() {
    // the tensor-core GEMM reading an operand written out by shaders/im2col.wgsl (K padded to
    // 32), through the kernels' scalar emulation, with and without split-K
    let cases = vec![
        graph(
            "3x3, 5 channels (K 45 padded to 64), batch 2 + relu",
            vec![
                conv(vec!["x", "w", "b"], "c", vec![attr_ints("pads", &[1, 1, 1, 1])]),
                ("Relu", vec!["c"], vec!["y"], vec![]),
            ],
            vec![Run("x", vec![2, 5, 9, 70]), init("w", &[19, 5, 3, 3], 95), init("b", &[19], 96)],
        ),
        graph(
            "stride 2 dilation 2, 40 channels",
            vec![conv(
                vec!["x", "w"],
                "y",
                vec![attr_ints("pads", &[2, 1, 2, 3]), attr_ints("strides", &[2, 2]), attr_ints("dilations", &[2, 2])],
            )],
            vec![Run("x", vec![1, 40, 11, 10]), init("w", &[17, 40, 3, 3], 97)],
        ),
        in_concat_buffer("in the concat buffer, with a residual", vec![2, 3, 7, 9], 12, 98),
    ];
    let mut variants = Vec::new();
    for tile in [(64, 64), (32, 128), (16, 128)] {
        for split in [Some(1), Some(2)] {
            variants.push(GpuOptions { im2col: true, ..emulated(tile, split) });
        }
    }
    check_kernels(&cases, &variants, &["_packed", "im2col.wgsl"]);
}

#[test]
fn halo_tile_tensor_core_convs() {
    // stride-1 convs on the tensor-core kernel that stages one input patch per channel block for
    // all taps (gpu/halo.rs), through its scalar emulation: output tiles cut at the image's
    // right and bottom edges, channel blocks of 32 and 16, dilation, asymmetric padding, a 5x1
    // kernel, a fused residual, input and output in one concat buffer; with and without split-K
    let cases = vec![
        conv3x3_relu("3x3 pad 1, 32 channels, batch 2, bias + relu", vec![2, 32, 19, 21], 20, 110),
        graph(
            "3x3 dilation 2, asymmetric pads, 48 channels",
            vec![conv(vec!["x", "w"], "y", vec![attr_ints("pads", &[2, 1, 0, 3]), attr_ints("dilations", &[2, 2])])],
            vec![Run("x", vec![1, 48, 11, 18]), init("w", &[17, 48, 3, 3], 112)],
        ),
        conv5x1_residual("5x1 + residual, 64 channels", vec![2, 64, 7, 33], 9, 113),
        in_concat_buffer("16 channels in the concat buffer, with a residual", vec![2, 3, 13, 17], 16, 115),
    ];
    // (three tiles: each emulated kernel costs lavapipe seconds to compile; the others validate
    // with naga in the unit tests). The 64x64 tile streams A tap by tap (resident A off), and
    // its epilogue takes two or all four fragments per round in lavapipe's 32 KiB of
    // workgroup memory (four with 16-channel blocks); the 16x128 and 32x128 tiles keep A for
    // all taps of a block resident, the first with a one-fragment epilogue (wide epilogue
    // off), the second with split-K.
    let streamed = GpuOptions { halo: true, halo_resident: false, ..emulated((64, 64), Some(2)) };
    check_kernels(&cases, &[streamed], &["halo_64x64", "!_res", "_e2_|_e4_"]);
    let narrow = GpuOptions { halo: true, wide_epilogue: false, ..emulated((16, 128), Some(1)) };
    check_kernels(&cases, &[narrow], &["halo_16x128", "_res", "!_e2_", "!_e4_"]);
    let resident_split = GpuOptions { halo: true, ..emulated((32, 128), Some(2)) };
    // (the 16-channel case has one channel block: nothing to split; nor has the 32-channel one
    // where 48 KiB of workgroup memory take blocks of 32 channels)
    check_kernels(&cases[1..3], &[resident_split], &["halo_32x128", "_res_splitk"]);
    check_kernels(&[cases[0].clone(), cases[3].clone()], &[resident_split], &["halo_32x128", "_res"]);
}

/// The generic conv kernel summing K backwards (`reverse_k`, the second summation order behind
/// `tune::noise_floor`) computes the same convs, in another order: within 1e-4 of the CPU
/// reference, and not bit for bit the forward sums.
#[test]
fn generic_conv_summing_k_backwards() {
    let cases = vec![
        conv3x3_relu("3x3 pad 1, 45 channels (K 405: a partial K tile), batch 2", vec![2, 45, 9, 11], 19, 190),
        conv_transpose2x2("transposed 2x2 stride 2, 37 -> 6 channels", vec![1, 37, 5, 7], 6, 192),
    ];
    let fwd = GpuOptions { fast_conv: false, ..GpuOptions::default() };
    let bwd = GpuOptions { reverse_k: true, ..fwd };
    check_kernels(&cases, &[bwd, GpuOptions { precision: Precision::F16, ..bwd }], &["conv.wgsl"]);
    for c in &cases {
        let (model, feeds) = case_model(c).unwrap();
        let shapes: Vec<Vec<usize>> = feeds.iter().map(|t| t.shape.clone()).collect();
        let p = model.prepare(&shapes).unwrap();
        let run = |o| GpuModel::with_options(gpu(), &p, o).unwrap().run(&feeds).unwrap()[0].to_f32_vec();
        let (a, b) = (run(fwd), run(bwd));
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(differ > 0, "{}: summing backwards gave the forward sums bit for bit", c.name);
    }
}

/// The tensor-core tiles that need the H200's 48 KiB of workgroup memory (128x128, and 128x64
/// with the gather), which lavapipe's 32 KiB cannot run, through their scalar emulation:
/// gathers per tap, runs of 16 and quads of 4 pixels, direct GEMMs of 1x1 and transposed convs,
/// the im2col-packed operand, the halo tile (128x128), split-K, one fragment per epilogue round,
/// output channels over one tile (two M tiles). Ignored by default: run it with
/// `scripts/lavapipe-48k.sh` (lavapipe with wgpu's workgroup-memory limit raised to 48 KiB:
/// llvmpipe allocates whatever a shader declares) or on a GPU that has 48 KiB
/// (`cargo test --release --test gpu_kernels -- --ignored`).
#[test]
#[ignore = "needs 48 KiB of workgroup memory: scripts/lavapipe-48k.sh, or a GPU with -- --ignored"]
fn tensor_core_tiles_needing_48k() {
    let have = gpu().limits.max_compute_workgroup_storage_size;
    assert!(
        have >= 49152,
        "this adapter has {have} bytes of workgroup memory; the 128-row tensor-core tiles need 49152 \
         (on lavapipe: scripts/lavapipe-48k.sh)"
    );
    let rows = vec![
        conv3x3_relu("3x3 pad 1, 32 channels, 7x16, batch 2, 136 outputs + relu", vec![2, 32, 7, 16], 136, 170),
        graph(
            "3x3 pads left 2 right 0, 64 channels, 5x32",
            vec![conv(vec!["x", "w"], "y", vec![attr_ints("pads", &[1, 2, 1, 0])])],
            vec![Run("x", vec![1, 64, 5, 32]), init("w", &[17, 64, 3, 3], 172)],
        ),
        conv5x1_residual("5x1 + residual, 32 channels, batch 2", vec![2, 32, 5, 16], 9, 173),
        in_concat_buffer("in the concat buffer, 32 channels", vec![2, 32, 3, 16], 32, 175),
        conv1x1_relu("1x1, 32 -> 140 channels, 6x6 (36 pixels), batch 2 + relu", vec![2, 32, 6, 6], 140, 178),
        conv_transpose2x2(
            "transposed 2x2 stride 2, 64 -> 40 channels (160 rows), 5x4, batch 2",
            vec![2, 64, 5, 4],
            40,
            180,
        ),
        // K tiles spanning taps (16 channels): runs of 16, never quads
        graph(
            "3x3 pad 1, 16 channels, 4x32",
            vec![conv(vec!["x", "w"], "y", pad1())],
            vec![Run("x", vec![1, 16, 4, 32]), init("w", &[16, 16, 3, 3], 182)],
        ),
    ];
    // rows not runs of 16, a stride (24 channels: K tiles span taps, through the tap table):
    // gathered one f16 per load
    let gathers = vec![
        graph(
            "3x3 pad 1, 32 channels, 5x13, 131 outputs",
            vec![conv(vec!["x", "w"], "y", pad1())],
            vec![Run("x", vec![1, 32, 5, 13]), init("w", &[131, 32, 3, 3], 183)],
        ),
        graph(
            "3x3 stride 2, 24 channels, 9x32",
            vec![conv(vec!["x", "w"], "y", vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])])],
            vec![Run("x", vec![1, 24, 9, 32]), init("w", &[8, 24, 3, 3], 184)],
        ),
    ];
    let halo = vec![
        conv3x3_relu("halo: 3x3 pad 1, 32 channels, batch 2, 130 outputs, bias + relu", vec![2, 32, 19, 21], 130, 185),
        conv5x1_residual("halo: 5x1 + residual, 64 channels", vec![2, 64, 7, 33], 9, 187),
        in_concat_buffer("halo: 16 channels in the concat buffer, with a residual", vec![2, 3, 13, 17], 16, 189),
    ];
    for tile in [(128, 128), (128, 64)] {
        let name = format!("coop_{}x{}_", tile.0, tile.1);
        let name = name.as_str();
        let plain: Vec<GpuOptions> = [Some(1), Some(2)].iter().map(|&s| emulated(tile, s)).collect();
        check_kernels(&rows, &plain, &[name, "_rows"]);
        check_kernels(&rows[..3], &plain[1..], &[name, "_splitk"]);
        let quads: Vec<GpuOptions> = plain.iter().map(|v| GpuOptions { row_quads: true, ..*v }).collect();
        check_kernels(&rows[..6], &quads, &[name, "_rows_q4"]);
        check_kernels(&gathers, &plain, &[name, "_taps|_gather", "!_rows"]);
        let off = GpuOptions { row_loads: false, ..plain[0] };
        check_kernels(&rows[..2], &[off], &[name, "_taps", "!_rows"]);
        let narrow = GpuOptions { wide_epilogue: false, ..plain[0] };
        check_kernels(&rows[..2], &[narrow], &[name, "_rows"]);
        let packed: Vec<GpuOptions> = plain.iter().map(|v| GpuOptions { im2col: true, ..*v }).collect();
        check_kernels(&gathers, &packed, &[name, "_packed"]);
    }
    let halo_opts: Vec<GpuOptions> =
        [Some(1), Some(2)].iter().map(|&s| GpuOptions { halo: true, ..emulated((128, 128), s) }).collect();
    check_kernels(&halo, &halo_opts, &["halo_128x128"]);
    let streamed = GpuOptions { halo_resident: false, wide_epilogue: false, ..halo_opts[0] };
    check_kernels(&halo, &[streamed], &["halo_128x128"]);
}

#[test]
fn thin_direct_convs() {
    // convs with few output channels or a short K on the thin direct kernel (gpu/thin.rs), in f32
    // and f16: pixel counts not a multiple of its 4 per invocation, channel blocks of 16 with a
    // partial last one, strides, dilation, asymmetric pads, a residual, the concat buffer, and
    // transposed convs
    let cases = vec![
        conv3x3_relu("first conv: 3 channels 3x3 pad 1 -> 21, batch 2, bias + relu", vec![2, 3, 13, 11], 21, 120),
        graph(
            "head: 1x1, 19 -> 3, bias + sigmoid",
            vec![conv(vec!["x", "w", "b"], "c", vec![]), ("Sigmoid", vec!["c"], vec!["y"], vec![])],
            vec![Run("x", vec![1, 19, 9, 7]), init("w", &[3, 19, 1, 1], 122), init("b", &[3], 123)],
        ),
        graph(
            "3x3 to one channel, stride 2, dilation 2, asymmetric pads",
            vec![conv(
                vec!["x", "w"],
                "y",
                vec![attr_ints("pads", &[2, 1, 0, 3]), attr_ints("strides", &[2, 2]), attr_ints("dilations", &[2, 2])],
            )],
            vec![Run("x", vec![2, 7, 15, 12]), init("w", &[1, 7, 3, 3], 124)],
        ),
        conv5x1_residual("5x1 + residual, 2 channels -> 6", vec![2, 2, 7, 6], 6, 125),
        // the second conv (3 -> 3 channels) reads and writes slices of one buffer
        in_concat_buffer("3 channels in the concat buffer, with a residual", vec![2, 3, 7, 9], 3, 127),
        // transposed convs (stride = kernel) as one GEMM of (output channel, tap) rows, scattered
        graph(
            "transposed 2x2 stride 2, 32 -> 16 channels (64 rows, K 32), batch 2, bias + relu",
            vec![
                ("ConvTranspose", vec!["x", "w", "b"], vec!["c"], vec![attr_ints("strides", &[2, 2])]),
                ("Relu", vec!["c"], vec!["y"], vec![]),
            ],
            vec![Run("x", vec![2, 32, 5, 7]), init("w", &[32, 16, 2, 2], 128), init("b", &[16], 129)],
        ),
        graph(
            "transposed 3x2 stride 3x2, 11 -> 4 and 5 channels (a partial block), into a concat",
            vec![
                ("ConvTranspose", vec!["x", "w1"], vec!["a"], vec![attr_ints("strides", &[3, 2])]),
                ("ConvTranspose", vec!["x", "w2", "b2"], vec!["c"], vec![attr_ints("strides", &[3, 2])]),
                ("Concat", vec!["a", "c"], vec!["y"], vec![attr_i("axis", 1)]),
            ],
            vec![
                Run("x", vec![1, 11, 4, 5]),
                init("w1", &[11, 4, 3, 2], 130),
                init("w2", &[11, 5, 3, 2], 131),
                init("b2", &[5], 132),
            ],
        ),
        graph(
            "transposed 2x2 stride 2 to one channel, K 40",
            vec![("ConvTranspose", vec!["x", "w"], vec!["y"], vec![attr_ints("strides", &[2, 2])])],
            vec![Run("x", vec![1, 40, 6, 3]), init("w", &[40, 1, 2, 2], 133)],
        ),
    ];
    let variants = [
        GpuOptions::default(),
        GpuOptions { coop: Some(CoopMode::Off), ..GpuOptions::f16() },
        // (on the tensor cores too: these convs never reach them)
        GpuOptions { coop: Some(CoopMode::Emulate), ..GpuOptions::f16() },
    ];
    check_kernels(&cases, &variants, &["thin_", "!conv_", "!coop_"]);
    // and switched off, GEMM tiles
    check_kernels(&cases, &[GpuOptions { thin: false, ..GpuOptions::default() }], &["conv_", "!thin_"]);
    // `--thin all`: convs the cost model keeps on GEMM tiles (more channels, a longer K; a 1x1
    // with 37 outputs, three blocks of 16 with a partial last; a transposed conv of 24 x 4 rows)
    let more = vec![
        conv3x3_relu("3x3, 18 -> 20 channels (K 162), bias + relu", vec![2, 18, 9, 13], 20, 134),
        graph(
            "1x1, 40 -> 37",
            vec![conv(vec!["x", "w", "b"], "y", vec![])],
            vec![Run("x", vec![1, 40, 7, 9]), init("w", &[37, 40, 1, 1], 135), init("b", &[37], 136)],
        ),
        graph(
            "transposed 2x2 stride 2, 48 -> 24 channels",
            vec![("ConvTranspose", vec!["x", "w"], vec!["y"], vec![attr_ints("strides", &[2, 2])])],
            vec![Run("x", vec![1, 48, 5, 6]), init("w", &[48, 24, 2, 2], 137)],
        ),
    ];
    let all = |o: GpuOptions| GpuOptions { thin_all: true, ..o };
    check_kernels(&more, &variants.map(all), &["thin_", "!conv_", "!coop_"]);
    check_kernels(&more, &[GpuOptions::default()], &["conv_", "!thin_"]);
}

#[test]
fn elementwise_kernels() {
    let x = || Run("x", vec![2, 3, 7, 5]);
    let mut cases = Vec::new();
    for (op, attrs) in [
        ("Relu", vec![]),
        ("LeakyRelu", vec![attr_f("alpha", 0.2)]),
        ("Sigmoid", vec![]),
        ("HardSigmoid", vec![attr_f("alpha", 0.3), attr_f("beta", 0.4)]),
        ("HardSwish", vec![]),
        ("Tanh", vec![]),
        ("Clip", vec![]),
        ("Elu", vec![attr_f("alpha", 0.7)]),
        ("Selu", vec![]),
        ("Celu", vec![attr_f("alpha", 1.3)]),
        ("Softplus", vec![]),
        ("Softsign", vec![]),
        ("Mish", vec![]),
        ("Erf", vec![]),
        ("Gelu", vec![]),
        ("Gelu", vec![attr_s("approximate", "tanh")]),
        ("Abs", vec![]),
        ("Neg", vec![]),
        ("Exp", vec![]),
        ("Floor", vec![]),
        ("Ceil", vec![]),
        ("Sign", vec![]),
        ("Reciprocal", vec![]),
    ] {
        let mut c = case(op, op, vec!["x"], attrs, vec![x()]);
        c.opset = 20;
        cases.push(c);
    }
    let mut pos = |op: &'static str| {
        let mut c = case(op, op, vec!["x"], vec![], vec![x()]);
        c.lo = 0.1;
        c.hi = 3.0;
        cases.push(c);
    };
    pos("Log");
    pos("Sqrt");
    let mut sw = case("Swish", "Swish", vec!["x"], vec![attr_f("alpha", 0.8)], vec![x()]);
    sw.opset = 24;
    cases.push(sw);
    cases.push(case(
        "Clip attrs (opset 6)",
        "Clip",
        vec!["x"],
        vec![attr_f("min", -0.5), attr_f("max", 0.7)],
        vec![x()],
    ));
    cases.last_mut().unwrap().opset = 6;
    cases.push(case("Clip one bound", "Clip", vec!["x", "lo"], vec![], vec![x(), floats("lo", &[0.25])]));
    for op in ["Add", "Sub", "Mul", "Max", "Min"] {
        cases.push(case(op, op, vec!["x", "z"], vec![], vec![Run("x", vec![2, 3, 5, 7]), Run("z", vec![3, 1, 7])]));
    }
    cases.push(case(
        "Div",
        "Div",
        vec!["x", "z"],
        vec![],
        vec![Run("x", vec![2, 3, 5, 7]), init("z", &[1, 3, 1, 1], 30)],
    ));
    let mut pw = case("Pow", "Pow", vec!["x", "z"], vec![], vec![Run("x", vec![3, 5, 4]), Run("z", vec![4])]);
    pw.lo = 0.2;
    pw.hi = 2.0;
    cases.push(pw);
    cases.push(case("Add scalar", "Add", vec!["x", "z"], vec![], vec![Run("x", vec![2, 5, 3]), floats("z", &[0.75])]));
    cases.push(case(
        "PRelu",
        "PRelu",
        vec!["x", "s"],
        vec![],
        vec![Run("x", vec![2, 3, 5, 7]), init("s", &[3, 1, 1], 31)],
    ));
    cases.push(case(
        "Where",
        "Where",
        vec!["c", "x", "z"],
        vec![],
        vec![
            Init(unet_gpu::onnx::proto::TensorProto {
                name: "c".into(),
                dims: vec![5, 1],
                data_type: unet_gpu::onnx::proto::data_type::BOOL,
                int32_data: vec![1, 0, 0, 1, 1],
                ..Default::default()
            }),
            Run("x", vec![2, 5, 3]),
            Run("z", vec![3]),
        ],
    ));
    for op in ["Sum", "Mean", "Max", "Min"] {
        cases.push(case(
            op,
            op,
            vec!["x", "z", "u"],
            vec![],
            vec![Run("x", vec![2, 3, 4, 5]), Run("z", vec![3, 1, 5]), Run("u", vec![2, 1, 4, 1])],
        ));
    }
    let mut cast = case("Cast to f16", "Cast", vec!["x"], vec![attr_i("to", 10)], vec![x()]);
    cast.lo = -300.0;
    cast.hi = 300.0;
    cases.push(cast);
    run_all(cases);
}

#[test]
fn max_pool_2x2_kernel() {
    // a U-Net's 2x2 stride-2 max-pool on its loop-free kernel: odd sizes in floor mode (the last
    // row and column dropped) and in ceil mode (windows cut at the edge), and reading a slice
    // of a concat buffer (an encoder's skip tensor), with batch 2
    let x = |s: &[usize]| Run("x", s.to_vec());
    let k2 = || vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])];
    let mut ceil = k2();
    ceil.push(attr_i("ceil_mode", 1));
    let cases = vec![
        case("maxpool 2x2 floor, odd sizes", "MaxPool", vec!["x"], k2(), vec![x(&[2, 3, 9, 11])]),
        case("maxpool 2x2 ceil, odd sizes", "MaxPool", vec!["x"], ceil, vec![x(&[1, 4, 7, 13])]),
        Case {
            name: "maxpool 2x2 of the second slice of a concat buffer",
            nodes: vec![
                conv(vec!["x", "w1"], "a", pad1()),
                conv(vec!["a", "w2"], "b", pad1()),
                ("Concat", vec!["a", "b"], vec!["y"], vec![attr_i("axis", 1)]),
                ("MaxPool", vec!["b"], vec!["p"], k2()),
            ],
            operands: vec![x(&[2, 3, 10, 9]), init("w1", &[5, 3, 3, 3], 130), init("w2", &[6, 5, 3, 3], 131)],
            outputs: vec!["y", "p"],
            opset: 17,
            lo: -1.0,
            hi: 1.0,
        },
    ];
    let f16 = GpuOptions { coop: Some(CoopMode::Off), ..GpuOptions::f16() };
    check_kernels(&cases, &[GpuOptions::default(), f16], &["pool2x2.wgsl", "!pool.wgsl", "!pool2x2v4"]);
    // rows a multiple of 8 wide: four outputs per invocation as vec4 (even and odd heights, in
    // floor and ceil mode, several row quads per workgroup, and the concat buffer's slice)
    let mut ceil = k2();
    ceil.push(attr_i("ceil_mode", 1));
    let quads = vec![
        case("maxpool 2x2 quads, batch 2", "MaxPool", vec!["x"], k2(), vec![x(&[2, 3, 10, 16])]),
        case("maxpool 2x2 quads, odd height, floor", "MaxPool", vec!["x"], k2(), vec![x(&[2, 3, 9, 8])]),
        case("maxpool 2x2 quads, odd height, ceil", "MaxPool", vec!["x"], ceil, vec![x(&[1, 5, 7, 24])]),
        case("maxpool 2x2 quads, 66 quads a row", "MaxPool", vec!["x"], k2(), vec![x(&[1, 2, 3, 528])]),
        case("maxpool 2x2 quads, 90 quads a plane over 10 rows", "MaxPool", vec!["x"], k2(), vec![x(&[2, 3, 20, 72])]),
        Case {
            name: "maxpool 2x2 quads of the second slice of a concat buffer",
            nodes: vec![
                conv(vec!["x", "w1"], "a", pad1()),
                conv(vec!["a", "w2"], "b", pad1()),
                ("Concat", vec!["a", "b"], vec!["y"], vec![attr_i("axis", 1)]),
                ("MaxPool", vec!["b"], vec!["p"], k2()),
            ],
            operands: vec![x(&[2, 3, 6, 16]), init("w1", &[5, 3, 3, 3], 132), init("w2", &[7, 5, 3, 3], 133)],
            outputs: vec!["y", "p"],
            opset: 17,
            lo: -1.0,
            hi: 1.0,
        },
    ];
    check_kernels(&quads, &[GpuOptions::default(), f16], &["pool2x2v4.wgsl", "!pool.wgsl", "!pool2x2.wgsl"]);
    // any other pool keeps the general kernel
    let k3 = case(
        "maxpool 3x3 s2",
        "MaxPool",
        vec!["x"],
        vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2])],
        vec![x(&[1, 2, 9, 9])],
    );
    check_kernels(&[k3], &[GpuOptions::default()], &["pool.wgsl", "!pool2x2"]);
}

#[test]
fn pool_reduce_norm_softmax_kernels() {
    let x = |s: &[usize]| Run("x", s.to_vec());
    let mut cases = vec![
        case(
            "maxpool k3 s2 p1 ceil",
            "MaxPool",
            vec!["x"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_i("ceil_mode", 1),
            ],
            vec![x(&[1, 3, 12, 11])],
        ),
        case(
            "maxpool dilated",
            "MaxPool",
            vec!["x"],
            vec![attr_ints("kernel_shape", &[2, 3]), attr_ints("dilations", &[2, 2])],
            vec![x(&[2, 2, 9, 10])],
        ),
        case(
            "avgpool count_include_pad",
            "AveragePool",
            vec!["x"],
            vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("pads", &[1, 2, 1, 0]), attr_i("count_include_pad", 1)],
            vec![x(&[1, 3, 8, 9])],
        ),
        case(
            "avgpool ceil stride 2",
            "AveragePool",
            vec!["x"],
            vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2]), attr_i("ceil_mode", 1)],
            vec![x(&[1, 4, 7, 9])],
        ),
        case(
            "maxpool 1-D",
            "MaxPool",
            vec!["x"],
            vec![attr_ints("kernel_shape", &[3]), attr_ints("strides", &[2])],
            vec![x(&[2, 3, 15])],
        ),
        case("global average pool", "GlobalAveragePool", vec!["x"], vec![], vec![x(&[2, 5, 17, 19])]),
        case("global max pool", "GlobalMaxPool", vec!["x"], vec![], vec![x(&[2, 5, 7, 9])]),
        case("reduce mean H W", "ReduceMean", vec!["x"], vec![attr_ints("axes", &[2, 3])], vec![x(&[2, 3, 7, 5])]),
        case(
            "reduce max C keepdims 0",
            "ReduceMax",
            vec!["x"],
            vec![attr_ints("axes", &[1]), attr_i("keepdims", 0)],
            vec![x(&[2, 5, 3, 4])],
        ),
        case("reduce min", "ReduceMin", vec!["x"], vec![attr_ints("axes", &[-1])], vec![x(&[3, 4, 6])]),
        case(
            "reduce sum long (workgroup path)",
            "ReduceSum",
            vec!["x", "ax"],
            vec![],
            vec![x(&[1, 3, 21, 23]), ints("ax", &[2, 3])],
        ),
        case(
            "batchnorm with run-time statistics",
            "BatchNormalization",
            vec!["x", "s", "b", "m", "v"],
            vec![attr_f("epsilon", 1e-3)],
            vec![
                x(&[2, 3, 5, 7]),
                Run("s", vec![3]),
                Run("b", vec![3]),
                Run("m", vec![3]),
                floats("v", &[0.5, 1.2, 2.0]),
            ],
        ),
        case(
            "instancenorm",
            "InstanceNormalization",
            vec!["x", "s", "b"],
            vec![],
            vec![x(&[2, 5, 9, 11]), init("s", &[5], 40), init("b", &[5], 41)],
        ),
        case(
            "instancenorm 3-D, long plane",
            "InstanceNormalization",
            vec!["x", "s", "b"],
            vec![],
            vec![x(&[1, 4, 301]), init("s", &[4], 42), init("b", &[4], 43)],
        ),
        case("softmax axis 1", "Softmax", vec!["x"], vec![attr_i("axis", 1)], vec![x(&[2, 5, 3, 4])]),
        case("logsoftmax last axis", "LogSoftmax", vec!["x"], vec![], vec![x(&[2, 3, 7])]),
    ];
    let mut old =
        case("softmax opset 11 (2-D coercion)", "Softmax", vec!["x"], vec![attr_i("axis", 1)], vec![x(&[2, 3, 4])]);
    old.opset = 11;
    cases.push(old);
    run_all(cases);
}

#[test]
fn resize_pad_layout_kernels() {
    let x = |s: &[usize]| Run("x", s.to_vec());
    let r = |name: &'static str,
             attrs: Vec<AttributeProto>,
             xs: &[usize],
             scales: Option<&[f32]>,
             sizes: Option<&[i64]>| {
        let mut ops = vec![x(xs), Skip];
        let mut ins = vec!["x", ""];
        match scales {
            Some(s) => {
                ops.push(floats("scales", s));
                ins.push("scales");
            }
            None => {
                ins.push("");
            }
        }
        if let Some(z) = sizes {
            ops.push(ints("sizes", z));
            ins.push("sizes");
        }
        case(name, "Resize", ins, attrs, ops)
    };
    let cases = vec![
        r("nearest x2 half_pixel", vec![], &[1, 2, 5, 7], Some(&[1.0, 1.0, 2.0, 2.0]), None),
        r(
            "nearest asymmetric floor, sizes down",
            vec![attr_s("coordinate_transformation_mode", "asymmetric"), attr_s("nearest_mode", "floor")],
            &[1, 3, 9, 11],
            None,
            Some(&[1, 3, 4, 6]),
        ),
        r(
            "nearest round_prefer_ceil",
            vec![attr_s("nearest_mode", "round_prefer_ceil")],
            &[1, 1, 6, 7],
            Some(&[1.0, 1.0, 1.7, 2.3]),
            None,
        ),
        r(
            "linear align_corners",
            vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "align_corners")],
            &[1, 2, 5, 6],
            Some(&[1.0, 1.0, 2.0, 2.0]),
            None,
        ),
        r("linear half_pixel odd sizes", vec![attr_s("mode", "linear")], &[1, 2, 5, 7], None, Some(&[1, 2, 9, 12])),
        r(
            "linear pytorch_half_pixel",
            vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "pytorch_half_pixel")],
            &[2, 2, 7, 5],
            None,
            Some(&[2, 2, 13, 1]),
        ),
        r(
            "linear antialias downscale",
            vec![attr_s("mode", "linear"), attr_i("antialias", 1)],
            &[1, 1, 13, 11],
            Some(&[1.0, 1.0, 0.6, 0.45]),
            None,
        ),
        r("linear on the channel axis too", vec![attr_s("mode", "linear")], &[1, 3, 4, 5], None, Some(&[1, 5, 8, 3])),
        case(
            "upsample opset 9",
            "Upsample",
            vec!["x", "scales"],
            vec![attr_s("mode", "nearest")],
            vec![x(&[1, 2, 3, 4]), floats("scales", &[1.0, 1.0, 2.0, 3.0])],
        ),
        case(
            "pad constant",
            "Pad",
            vec!["x", "p", "v"],
            vec![],
            vec![x(&[1, 2, 5, 6]), ints("p", &[0, 0, 1, 2, 0, 0, 2, 1]), floats("v", &[0.5])],
        ),
        case(
            "pad reflect",
            "Pad",
            vec!["x", "p"],
            vec![attr_s("mode", "reflect")],
            vec![x(&[1, 2, 5, 6]), ints("p", &[0, 0, 2, 3, 0, 0, 4, 1])],
        ),
        case(
            "pad edge",
            "Pad",
            vec!["x", "p"],
            vec![attr_s("mode", "edge")],
            vec![x(&[2, 5, 6]), ints("p", &[0, 1, 2, 0, 3, 1])],
        ),
        case(
            "pad wrap",
            "Pad",
            vec!["x", "p"],
            vec![attr_s("mode", "wrap")],
            vec![x(&[1, 2, 5, 6]), ints("p", &[0, 0, 1, 2, 0, 0, 2, 1])],
        ),
        case(
            "pad negative (crop)",
            "Pad",
            vec!["x", "p"],
            vec![],
            vec![x(&[1, 3, 7, 6]), ints("p", &[0, 0, -1, 2, 0, -1, -2, 1])],
        ),
        case("depth to space DCR", "DepthToSpace", vec!["x"], vec![attr_i("blocksize", 2)], vec![x(&[2, 8, 3, 5])]),
        case(
            "depth to space CRD",
            "DepthToSpace",
            vec!["x"],
            vec![attr_i("blocksize", 2), attr_s("mode", "CRD")],
            vec![x(&[1, 12, 3, 4])],
        ),
        case("transpose", "Transpose", vec!["x"], vec![attr_ints("perm", &[0, 2, 3, 1])], vec![x(&[2, 3, 4, 5])]),
        case(
            "slice negative step",
            "Slice",
            vec!["x", "s", "e", "a", "st"],
            vec![],
            vec![x(&[2, 5, 7, 6]), ints("s", &[6, 1]), ints("e", &[0, 5]), ints("a", &[2, 3]), ints("st", &[-2, 2])],
        ),
        case("expand", "Expand", vec!["x", "sh"], vec![], vec![x(&[3, 1, 5]), ints("sh", &[2, 3, 4, 5])]),
        case("tile", "Tile", vec!["x", "r"], vec![], vec![x(&[2, 3, 4]), ints("r", &[1, 2, 3])]),
        case("gather", "Gather", vec!["x", "i"], vec![attr_i("axis", 1)], vec![x(&[2, 4, 5]), ints("i", &[2, 0, -1])]),
        case(
            "concat axis 2 (copies)",
            "Concat",
            vec!["x", "z"],
            vec![attr_i("axis", 2)],
            vec![x(&[2, 3, 4, 5]), Run("z", vec![2, 3, 2, 5])],
        ),
        case(
            "concat axis 1 of inputs",
            "Concat",
            vec!["x", "z"],
            vec![attr_i("axis", 1)],
            vec![x(&[2, 3, 4, 5]), Run("z", vec![2, 1, 4, 5])],
        ),
    ];
    run_all(cases);
    // Split: two outputs
    let split = Case {
        name: "split",
        nodes: vec![("Split", vec!["x", "sp"], vec!["y", "y2"], vec![attr_i("axis", 1)])],
        operands: vec![x(&[2, 5, 3, 3]), ints("sp", &[2, 3])],
        outputs: vec!["y", "y2"],
        opset: 17,
        lo: -1.0,
        hi: 1.0,
    };
    run_case(&split).unwrap();
}

#[test]
fn concat_of_conv_outputs_is_written_in_place() {
    // y = concat(conv1(x), conv2(conv1(x)), 1): the second conv reads a slice of the buffer it
    // writes into; neither needs a copy.
    let c = Case {
        name: "concat in place",
        nodes: vec![
            ("Conv", vec!["x", "w1"], vec!["a"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
            ("Conv", vec!["a", "w2"], vec!["b"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
            ("Concat", vec!["a", "b"], vec!["c"], vec![attr_i("axis", 1)]),
            ("Relu", vec!["c"], vec!["y"], vec![]),
        ],
        operands: vec![Run("x", vec![2, 3, 9, 7]), init("w1", &[4, 3, 3, 3], 50), init("w2", &[5, 4, 3, 3], 51)],
        outputs: vec!["y"],
        opset: 17,
        lo: -1.0,
        hi: 1.0,
    };
    let (_, stats) = run_case(&c).unwrap();
    assert_eq!(stats.concat_copies, 0);
    assert_eq!(stats.dispatches, 3, "two convs and the relu, no copy");
}

#[test]
fn f16_split_weights_of_convs_whose_bias_cancels() {
    // A conv whose bias cancels its weighted sum (u2netp's Conv_787 in miniature): input channel
    // 0 holds values near 200, and each output channel's bias is minus 200 x the sum of its
    // channel-0 weights, so the outputs are of order 1 while W*x and b are of order 100. The
    // inputs are exact in f16 (multiples of 1/8 near 200, of 1/1024 in [-1, 1]) so that only the
    // weights' rounding differs between the runs. With f16 weights the outputs are off by
    // about 3e-2; with the weights split into two f16 parts (two convs, `gpu/f16split.rs`) by
    // about the f16 rounding of the outputs. Cases: with a fused Relu (which moves after the
    // second conv's residual), with a residual Add (which the first conv takes), with both (the
    // residual becomes an Add after the pair), and with a Relu after the residual (left alone:
    // the pair cannot express it).
    use unet_gpu::ops::Op;
    let (c, m, h, w) = (4usize, 6usize, 11usize, 13usize);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |k: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % k) as f32
    };
    let mut x = vec![0f32; c * h * w];
    for (i, v) in x.iter_mut().enumerate() {
        *v = if i < h * w { 200.0 + (next(17) - 8.0) / 8.0 } else { (next(2049) - 1024.0) / 1024.0 };
    }
    let wt = random(m * c * 9, 211, -1.0, 1.0);
    let b: Vec<f32> = (0..m).map(|o| -200.0 * wt[o * c * 9..][..9].iter().sum::<f32>()).collect();
    assert!(b.iter().any(|v| v.abs() >= unet_gpu::gpu::f16split::BIAS_LIMIT), "{b:?}");
    let r = random(m * (h - 2) * (w - 2), 212, -1.0, 1.0);
    let (xs, ys) = (vec![1, c, h, w], vec![1, m, h - 2, w - 2]);
    let relu = ("Relu", vec!["z"], vec!["y"], vec![]);
    let add = |a: &'static str| ("Add", vec![a, "r"], vec!["y"], vec![]);
    let relu_of = |a: &'static str| ("Relu", vec![a], vec!["y"], vec![]);
    // (name, nodes, whether it has the residual input, dispatches the split adds)
    let cases: Vec<(&str, Vec<NodeSpec>, bool, usize)> = vec![
        ("conv + relu", vec![conv(vec!["x", "w", "b"], "z", vec![]), relu.clone()], false, 1),
        ("conv + residual", vec![conv(vec!["x", "w", "b"], "z", vec![]), add("z")], true, 1),
        (
            "conv + relu + residual",
            vec![conv(vec!["x", "w", "b"], "z", vec![]), ("Relu", vec!["z"], vec!["a"], vec![]), add("a")],
            true,
            2,
        ),
        (
            "conv + residual + relu",
            vec![conv(vec!["x", "w", "b"], "z", vec![]), ("Add", vec!["z", "r"], vec!["a"], vec![]), relu_of("a")],
            true,
            0,
        ),
    ];
    for (name, nodes, with_r, extra) in cases {
        let mut inputs = vec![vi("x", &[1, c as i64, h as i64, w as i64])];
        let mut feeds = vec![Tensor::f32(xs.clone(), x.clone())];
        if with_r {
            inputs.push(vi("r", &[1, m as i64, h as i64 - 2, w as i64 - 2]));
            feeds.push(Tensor::f32(ys.clone(), r.clone()));
        }
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, (op, ins, outs, attrs))| node(op, &format!("n{i}"), ins, outs, attrs.clone()))
            .collect();
        let inits = vec![tensor("w", &[m as i64, c as i64, 3, 3], &wt), tensor("b", &[m as i64], &b)];
        let model = Model::from_bytes(&bytes(&model(nodes, inputs, vec![vi("y", &[])], inits)), name).unwrap();
        let p = model.prepare(&feeds.iter().map(|t| t.shape.clone()).collect::<Vec<_>>()).unwrap();
        assert!(
            p.graph.nodes.len() == 1 && matches!(&p.graph.nodes[0].op, Op::Conv(k) if k.residual == with_r),
            "{name}: expected one fused conv"
        );
        // f32 storage is never split
        let (split, n) = unet_gpu::gpu::f16split::split_cancelling_convs(&p, Precision::F32);
        assert_eq!((n, split.graph.nodes.len()), (0, 1), "{name}");
        let want = unet_gpu::cpu::run(&p, &feeds).unwrap();
        for coop in [CoopMode::Off, CoopMode::Emulate] {
            let run = |f16_split: bool| {
                let opts = GpuOptions { coop: Some(coop), f16_split, ..GpuOptions::f16() };
                let gm = GpuModel::with_options(gpu(), &p, opts).unwrap();
                let out = gm.run(&feeds).unwrap();
                (rel_l2(out[0].as_f32().unwrap(), want[0].as_f32().unwrap()), gm.dispatches().len())
            };
            let ((on, n_on), (off, n_off)) = (run(true), run(false));
            eprintln!("{name} {coop:?}: rel-L2 {on:.2e} split, {off:.2e} not split; {n_on} vs {n_off} dispatches");
            if extra > 0 {
                assert_eq!(n_on, n_off + extra, "{name} {coop:?}: one more conv (and an Add)");
                assert!(off > 5e-3 && on < 1e-3 && on * 10.0 < off, "{name} {coop:?}: {on:.2e} split vs {off:.2e}");
            } else {
                assert_eq!((n_on, on), (n_off, off), "{name} {coop:?}: not split, the same run");
            }
        }
    }
}
