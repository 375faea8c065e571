// The B operand of a conv's implicit GEMM written out once: Packed[b][n][k] for output pixel n and
// k = (input channel, ky, kx), zero outside the input and for k past K (rows are padded to
// Kp, a multiple of the 32-deep K tile). The tensor-core GEMM then reads each pixel's K values
// as 16-byte vectors instead of gathering them element by element for every tile of output
// channels. A workgroup moves a 64-pixel x 32-k block: loads run along pixels (coalesced in
// NCHW), stores along k (coalesced), transposed through workgroup memory.

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read_write> Packed: array<vec4<ST>>;

var<workgroup> T: array<f32, 2112>; // [64 pixels][33]

// parameters: 0 C, 1 IH, 2 IW, 3 OW, 4 npix, 5 SH, 6 SW, 7 PH (i32), 8 PW (i32), 9 KH, 10 KW,
// 11 DH, 12 DW, 13 x_off, 14 x_bs, 15 K, 16 Kp / 4, 17 pixel blocks, 18 k blocks

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let blocks = pu(17u);
    let blk = wg.x + wg.y * nwg.x;
    if (blk >= blocks * pu(18u)) {
        return;
    }
    let n0 = (blk % blocks) * 64u;
    let k0 = (blk / blocks) * 32u;
    let b = wg.z;
    let npix = pu(4u);
    let K = pu(15u);
    let KW = pu(10u);
    let khw = pu(9u) * KW;
    let IH = i32(pu(1u));
    let IW = i32(pu(2u));
    let xb = pu(13u) + b * pu(14u);
    // load: pixel n0 + li % 64, k rows li / 64 + 4 j
    let nl = li % 64u;
    let n = n0 + nl;
    let oy = i32(n / max(pu(3u), 1u));
    let ox = i32(n % max(pu(3u), 1u));
    for (var j = 0u; j < 8u; j++) {
        let kl = li / 64u + 4u * j;
        let k = k0 + kl;
        var v = 0.0;
        if (n < npix && k < K) {
            let c = k / khw;
            let tap = k % khw;
            let iy = oy * i32(pu(5u)) + i32((tap / KW) * pu(11u)) - pi(7u);
            let ix = ox * i32(pu(6u)) + i32((tap % KW) * pu(12u)) - pi(8u);
            if (iy >= 0 && ix >= 0 && iy < IH && ix < IW) {
                v = f32(X[xb + (c * u32(IH) + u32(iy)) * u32(IW) + u32(ix)]);
            }
        }
        T[nl * 33u + kl] = v;
    }
    workgroupBarrier();
    // store: pixel li / 4, k vec4s 2 (li % 4) and 2 (li % 4) + 1
    let ns = li / 4u;
    let part = li % 4u;
    if (n0 + ns < npix) {
        let kp4 = pu(16u);
        let o = (b * npix + n0 + ns) * kp4 + k0 / 4u + part * 2u;
        for (var h = 0u; h < 2u; h++) {
            let t = ns * 33u + part * 8u + h * 4u;
            Packed[o + h] = vec4<ST>(ST(T[t]), ST(T[t + 1u]), ST(T[t + 2u]), ST(T[t + 3u]));
        }
    }
}
