//! The skip-connection finder finds exactly the right tensors in the shipped models, the U-Net
//! fixtures and u2netp; ablation replaces exactly those inputs.

mod common;
use unet_gpu::Model;
use unet_gpu::skips::{SkipSelection, UnetStructure, analyze};

fn structure(model: &Model, shape: &[usize]) -> (unet_gpu::graph::prepare::Prepared, UnetStructure) {
    let p = model.prepare(&[shape.to_vec()]).unwrap();
    let s = analyze(&p);
    (p, s)
}

fn fixture(name: &str) -> Model {
    Model::load(&common::data_dir().join("fixtures").join(name).join("model.onnx")).unwrap()
}

fn found(s: &UnetStructure) -> Vec<(usize, String, Vec<usize>)> {
    s.skips.iter().map(|k| (k.level, k.name.clone(), k.shape.clone())).collect()
}

fn expect(s: &UnetStructure, want: &[(usize, &str, [usize; 4])]) {
    let want: Vec<(usize, String, Vec<usize>)> =
        want.iter().map(|(l, n, sh)| (*l, n.to_string(), sh.to_vec())).collect();
    assert_eq!(found(s), want);
}

#[test]
fn classic_unet_has_three_skips_and_noskip_none() {
    let (_, s) = structure(&fixture("classic_unet"), &[1, 3, 64, 48]);
    expect(
        &s,
        &[
            (0, "/downs.0/downs.0.3/Relu_output_0", [1, 8, 64, 48]),
            (1, "/downs.1/downs.1.3/Relu_output_0", [1, 16, 32, 24]),
            (2, "/downs.2/downs.2.3/Relu_output_0", [1, 32, 16, 12]),
        ],
    );
    assert!(s.skips.iter().all(|k| k.op == "Concat" && k.input_index == 0));
    let (p, s2) = structure(&fixture("classic_unet_noskip"), &[1, 3, 64, 48]);
    assert!(s2.skips.is_empty(), "{:?}", s2.skips);
    assert_eq!(p.graph.name(s2.bottleneck.unwrap()), "/bottleneck/bottleneck.3/Relu_output_0");
}

#[test]
fn bilinear_and_groupnorm_unets() {
    let (_, s) = structure(&fixture("bilinear_unet"), &[1, 3, 40, 56]);
    expect(
        &s,
        &[
            (0, "/inc/inc.5/Relu_output_0", [1, 8, 40, 56]),
            (1, "/down1/down1.1/down1.1.5/Relu_output_0", [1, 16, 20, 28]),
            (2, "/down2/down2.1/down2.1.5/Relu_output_0", [1, 32, 10, 14]),
        ],
    );
    // residual Adds inside the GroupNorm blocks are not skips: only the encoder block outputs
    let (_, s) = structure(&fixture("groupnorm_unet"), &[1, 3, 32, 32]);
    expect(&s, &[(0, "add_8", [1, 8, 32, 32]), (1, "add_9", [1, 16, 16, 16]), (2, "add_10", [1, 32, 8, 8])]);
}

#[test]
fn gated_skip_and_other_variants() {
    // concat([s1 * gate(s1), up]) is a skip too, the gated tensor being the one merged
    let (_, s) = structure(&fixture("extra_pixelshuffle_attention"), &[1, 3, 32, 32]);
    expect(&s, &[(0, "/Mul_output_0", [1, 8, 32, 32]), (1, "/se1/Mul_output_0", [1, 16, 16, 16])]);
    let (_, s) = structure(&fixture("extra_opset11_nearest"), &[1, 3, 32, 32]);
    assert_eq!(s.levels(), vec![0, 1]);
}

#[test]
fn u2netp_outer_skips_are_its_five_stage_outputs() {
    // The top-level U-Net of u2netp concatenates the outputs hx1..hx5 of its encoder stages
    // (each an RSU block, a small U-Net with its own inner skips and residual Add) into its
    // decoder stages; the outputs are the residual Adds 947 (320x320), 1070, 1166, 1235, 1264.
    let m = Model::load(&common::data_dir().join("data/u2netp/model.onnx")).unwrap();
    let (p, s) = structure(&m, &[1, 3, 320, 320]);
    expect(
        &s,
        &[
            (0, "947", [1, 64, 320, 320]),
            (1, "1070", [1, 64, 160, 160]),
            (2, "1166", [1, 64, 80, 80]),
            (3, "1235", [1, 64, 40, 40]),
            (4, "1264", [1, 64, 20, 20]),
        ],
    );
    for k in &s.skips {
        assert_eq!(p.graph.nodes[k.node].op_type, "Concat");
        // each is the output of the Add that closes an RSU block, fused into the conv before it
        let prod = p.graph.producers()[k.value].unwrap();
        assert!(
            matches!(&p.graph.nodes[prod].op, unet_gpu::ops::Op::Conv(c) if c.residual),
            "{:?}",
            p.graph.nodes[prod].op
        );
    }
    // the bottleneck: stage 6's output hx6 at 10x10
    assert_eq!(p.graph.name(s.bottleneck.unwrap()), "1293");
}

#[test]
fn shipped_models() {
    let (m, shipped) = unet_gpu::infer::load_model("colorize").unwrap();
    assert!(shipped);
    let (_, s) = structure(&m, &[1, 1, 64, 96]);
    assert_eq!(s.levels(), vec![0, 1, 2]);
    let shapes: Vec<Vec<usize>> = s.skips.iter().map(|k| k.shape.clone()).collect();
    assert_eq!(shapes, vec![vec![1, 20, 64, 96], vec![1, 40, 32, 48], vec![1, 80, 16, 24]]);
    let (m, _) = unet_gpu::infer::load_model("noskip").unwrap();
    let (_, s) = structure(&m, &[1, 1, 64, 96]);
    assert!(s.skips.is_empty(), "{:?}", s.skips);
}

#[test]
fn ablation_replaces_exactly_the_selected_inputs() {
    let m = fixture("classic_unet");
    let (mut p, s) = structure(&m, &[1, 3, 32, 32]);
    let sel: SkipSelection = "0,2".parse().unwrap();
    let chosen: Vec<_> = sel.select(&s).unwrap().into_iter().cloned().collect();
    assert_eq!(chosen.iter().map(|k| k.level).collect::<Vec<_>>(), vec![0, 2]);
    let nodes_before = p.graph.nodes.len();
    unet_gpu::skips::ablate(&mut p, &chosen.iter().collect::<Vec<_>>());
    assert_eq!(p.graph.nodes.len(), nodes_before, "the skip tensors still feed the pools");
    for k in &s.skips {
        let inp = p.graph.nodes[k.node].inputs[k.input_index].unwrap();
        let zeroed = p.graph.consts.get(&inp).map(|t| t.to_f32_vec().iter().all(|&v| v == 0.0));
        assert_eq!(zeroed.is_some(), k.level != 1, "level {}", k.level);
        if let Some(z) = zeroed {
            assert!(z);
            assert_eq!(p.shape(inp), k.shape.as_slice());
        }
    }
    // a level without a skip, and a model without skips, are errors that say so
    let err = "5".parse::<SkipSelection>().unwrap().select(&s).unwrap_err().to_string();
    assert!(err.contains("level 5") && err.contains("0, 1, 2"), "{err}");
    let (_, s2) = structure(&fixture("classic_unet_noskip"), &[1, 3, 32, 32]);
    let err = SkipSelection::All.select(&s2).unwrap_err().to_string();
    assert!(err.contains("no skip connections"), "{err}");
    assert!("0,x".parse::<SkipSelection>().is_err());
}
