// The epilogue of a split-K convolution: sums the partial results of its K slices, then adds
// the bias, applies the activation, adds the fused residual and applies the activation after
// it, and stores into the output view.
//   Part[(b * S + s) * M * P + m * P + p]  (f32, written by the generated kernels)
//   Y[y_off + b * y_bs + m * P + p] = post_act(act(sum_s Part + bias[m]) + R[r_off + b * r_bs + m * P + p])
// With SCATTER (a transposed conv whose stride equals its kernel, all taps in one GEMM), GEMM
// row m is (output channel c, tap (ky, kx)) and column p an input pixel (iy, ix): each
// invocation takes one output element c * plane + oy * OW + ox, in the output's order so that
// the stores are contiguous, and sums Part at m = (c * SH + oy % SH) * SW + ox % SW and
// p = (oy / SH) * IW + ox / SW.

override HAS_BIAS: bool = false;
override HAS_RES: bool = false;
// the residual lives in the buffer this dispatch writes (another slice of a concat)
override R_IN_Y: bool = false;
override SCATTER: bool = false;

@group(0) @binding(1) var<storage, read> Part: array<f32>;
@group(0) @binding(2) var<storage, read> Bias: array<f32>;
@group(0) @binding(3) var<storage, read> R: array<ST>;
@group(0) @binding(4) var<storage, read_write> Y: array<ST>;

// parameters: 0 total outputs (images x M x P), 1 M x P, 2 P, 3 slices S, 4 y_off, 5 y_bs,
// 6 r_off, 7 r_bs; with SCATTER: 8 output plane, 9 OW, 10 IW, 11 SH, 12 SW

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    let mp = pu(1u);
    let b = i / mp;
    // the output element (in the image) and, where the GEMM's order differs, its partial sums'
    let o = i % mp;
    var src = o;
    var ch = o / pu(2u);
    if (SCATTER) {
        let plane = pu(8u);
        let OW = pu(9u);
        let SH = pu(11u);
        let SW = pu(12u);
        ch = o / plane;
        let oy = (o % plane) / OW;
        let ox = (o % plane) % OW;
        let m = (ch * SH + oy % SH) * SW + ox % SW;
        src = m * pu(2u) + (oy / SH) * pu(10u) + ox / SW;
    }
    let S = pu(3u);
    var sum = 0.0;
    for (var s = 0u; s < S; s++) {
        sum += Part[(b * S + s) * mp + src];
    }
    if (HAS_BIAS) {
        sum += f32(Bias[ch]);
    }
    var v = act(sum);
    if (HAS_RES) {
        let ri = pu(6u) + b * pu(7u) + o;
        if (R_IN_Y) {
            v += f32(Y[ri]);
        } else {
            v += f32(R[ri]);
        }
    }
    Y[pu(4u) + b * pu(5u) + o] = ST(post_act(v));
}
