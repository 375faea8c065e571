// MaxPool and AveragePool over 2-D windows (1-D pools run with a unit height):
// strides, pads, dilations, ceil_mode (already in OH/OW), count_include_pad.
//
// parameters: 0 total (N*C*OH*OW), 1 C, 2 IH, 3 IW, 4 OH, 5 OW, 6 KH, 7 KW, 8 SH, 9 SW,
// 10 pad top, 11 pad left, 12 DH, 13 DW, 14 pad bottom, 15 pad right,
// 16 x_off, 17 x_bs, 18 y_off, 19 y_bs

override MAX: bool = true;
override COUNT_PAD: bool = false;

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read_write> Y: array<ST>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let IH = i32(pu(2u));
    let IW = i32(pu(3u));
    let OH = pu(4u);
    let OW = pu(5u);
    let ox = i % OW;
    let oy = (i / OW) % OH;
    let plane = i / (OW * OH);
    let n = plane / C;
    let c = plane % C;
    let xb = pu(16u) + n * pu(17u) + c * u32(IH * IW);
    let pt = i32(pu(10u));
    let pl = i32(pu(11u));
    let pb = i32(pu(14u));
    let pr = i32(pu(15u));
    var best = -3.402823e38;
    var sum = 0.0;
    var cnt = 0u;
    var cnt_pad = 0u;
    for (var ky = 0u; ky < pu(6u); ky++) {
        let iy = i32(oy * pu(8u) + ky * pu(12u)) - pt;
        for (var kx = 0u; kx < pu(7u); kx++) {
            let ix = i32(ox * pu(9u) + kx * pu(13u)) - pl;
            if (iy >= -pt && iy < IH + pb && ix >= -pl && ix < IW + pr) {
                cnt_pad += 1u;
            }
            if (iy < 0 || ix < 0 || iy >= IH || ix >= IW) {
                continue;
            }
            let v = f32(X[xb + u32(iy * IW + ix)]);
            best = max(best, v);
            sum += v;
            cnt += 1u;
        }
    }
    var r: f32;
    if (MAX) {
        r = best;
        if (cnt == 0u) {
            r = -3.402823e38;
        }
    } else {
        let d = select(cnt, cnt_pad, COUNT_PAD);
        r = select(sum / f32(d), 0.0, d == 0u);
    }
    Y[pu(18u) + n * pu(19u) + c * OH * OW + oy * OW + ox] = ST(r);
}
