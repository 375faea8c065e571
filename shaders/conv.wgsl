// Convolution and transposed convolution as an implicit GEMM (NCHW, f32):
//   Y[n, g*Mg + m, p] = post_act(act(bias[g*Mg + m] + sum_k A[m, k] * B[k, p]) + R[n, g*Mg + m, p])
// (R: a fused residual Add, when HAS_RES)
// with m an output channel of group g, p an output pixel, k = (input channel, ky, kx).
// A comes from the weights, B is gathered from the input on the fly (zero outside it).
// A workgroup computes a BM x BN tile, staging BK-deep slices of A and B in workgroup memory;
// each of its 16 x 16 invocations computes TM x TN outputs.

override TRANSPOSED: bool = false;
override HAS_BIAS: bool = false;
// the input lives in the buffer this dispatch writes (another slice of a concat): read it there
override X_IN_Y: bool = false;
override HAS_RES: bool = false;
// the residual lives in the buffer this dispatch writes (another slice of a concat)
override R_IN_Y: bool = false;
// sum K from its last element to its first: a second summation order of the same products,
// to measure how far a model's outputs move with f32 rounding alone (crate::tune::noise_floor)
override REVERSE_K: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read> Wt: array<ST>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<ST>;
@group(0) @binding(5) var<storage, read> R: array<ST>;

var<workgroup> As: array<f32, 1024>; // [BK][BM]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

// parameters
// 0 C, 1 IH, 2 IW, 3 M, 4 OH, 5 OW, 6 KH, 7 KW, 8 SH, 9 SW, 10 PH (i32), 11 PW (i32),
// 12 DH, 13 DW, 14 Cg, 15 Mg, 16 K, 17 x_off, 18 x_bs, 19 y_off, 20 y_bs, 21 groups, 22 r_off, 23 r_bs

fn weight(g: u32, m: u32, k: u32) -> f32 {
    let K = pu(16u);
    if (!TRANSPOSED) {
        // [M, Cg, KH, KW]: row g*Mg + m is contiguous in k
        return f32(Wt[(g * pu(15u) + m) * K + k]);
    }
    // [C, Mg, KH, KW]
    let khw = pu(6u) * pu(7u);
    let icg = k / khw;
    let r = k % khw;
    return f32(Wt[((g * pu(14u) + icg) * pu(15u) + m) * khw + r]);
}

fn gather_x(n: u32, g: u32, k: u32, p: u32) -> f32 {
    let KH = pu(6u);
    let KW = pu(7u);
    let khw = KH * KW;
    let icg = k / khw;
    let r = k % khw;
    let ky = r / KW;
    let kx = r % KW;
    let OW = pu(5u);
    let oy = p / OW;
    let ox = p % OW;
    let IH = pu(1u);
    let IW = pu(2u);
    var iy: i32;
    var ix: i32;
    if (!TRANSPOSED) {
        iy = i32(oy * pu(8u) + ky * pu(12u)) - pi(10u);
        ix = i32(ox * pu(9u) + kx * pu(13u)) - pi(11u);
    } else {
        let ty = i32(oy) + pi(10u) - i32(ky * pu(12u));
        let tx = i32(ox) + pi(11u) - i32(kx * pu(13u));
        let sh = i32(pu(8u));
        let sw = i32(pu(9u));
        if (ty < 0 || tx < 0 || ty % sh != 0 || tx % sw != 0) {
            return 0.0;
        }
        iy = ty / sh;
        ix = tx / sw;
    }
    if (iy < 0 || ix < 0 || iy >= i32(IH) || ix >= i32(IW)) {
        return 0.0;
    }
    let c = g * pu(14u) + icg;
    let xi = pu(17u) + n * pu(18u) + (c * IH + u32(iy)) * IW + u32(ix);
    if (X_IN_Y) {
        return f32(Y[xi]);
    }
    return f32(X[xi]);
}

// The fused residual at element i of the output (relative to the image's base), or 0.
fn residual(n: u32, i: u32) -> f32 {
    if (!HAS_RES) {
        return 0.0;
    }
    let ri = pu(22u) + n * pu(23u) + i;
    if (R_IN_Y) {
        return f32(Y[ri]);
    }
    return f32(R[ri]);
}

// Grid: x * y workgroups enumerate the (pixel tile, channel tile) pairs, z = batch * groups.
@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let groups = pu(21u);
    let n = wg.z / groups;
    let g = wg.z % groups;
    let npix = pu(4u) * pu(5u);
    let Mg = pu(15u);
    let K = pu(16u);
    let p_tiles = (npix + BN - 1u) / BN;
    let m_tiles = (Mg + BM - 1u) / BM;
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= p_tiles * m_tiles) {
        return;
    }
    let p0 = (tile % p_tiles) * BN;
    let m0 = (tile / p_tiles) * BM;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            acc[i][j] = 0.0;
        }
    }
    let k_tiles = (K + BK - 1u) / BK;
    for (var kt = 0u; kt < k_tiles; kt++) {
        var k0 = kt * BK;
        if (REVERSE_K) {
            k0 = (k_tiles - 1u - kt) * BK;
        }
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            let kk = e % BK;
            let mm = e / BK;
            let m = m0 + mm;
            let k = k0 + kk;
            var v = 0.0;
            if (m < Mg && k < K) {
                v = weight(g, m, k);
            }
            As[kk * BM + mm] = v;
        }
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            let pp = e % BN;
            let kk = e / BN;
            let p = p0 + pp;
            let k = k0 + kk;
            var v = 0.0;
            if (p < npix && k < K) {
                v = gather_x(n, g, k, p);
            }
            Bs[kk * BN + pp] = v;
        }
        workgroupBarrier();
        for (var q = 0u; q < BK; q++) {
            var kk = q;
            if (REVERSE_K) {
                kk = BK - 1u - q;
            }
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                a[i] = As[kk * BM + lid.y * TM + i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = Bs[kk * BN + lid.x * TN + j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    let y_base = pu(19u) + n * pu(20u);
    for (var i = 0u; i < TM; i++) {
        let m = m0 + lid.y * TM + i;
        if (m >= Mg) {
            continue;
        }
        let oc = g * Mg + m;
        var bias = 0.0;
        if (HAS_BIAS) {
            bias = f32(Bias[oc]);
        }
        for (var j = 0u; j < TN; j++) {
            let p = p0 + lid.x * TN + j;
            if (p < npix) {
                let o = oc * npix + p;
                Y[y_base + o] = ST(post_act(act(acc[i][j] + bias) + residual(n, o)));
            }
        }
    }
}
