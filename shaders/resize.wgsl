// Resize (nearest / linear / antialiased linear, every coordinate mode) from per-axis tap
// tables made on the host: output coordinate c of a resized axis reads `taps` source indices
// with weights. Up to 6 axes; the taps of all resized axes are combined (separable filter).
//
// parameters: 0 total, 1..6 out shape, 7 y_off, 8..13 y strides, 14 x_off, 15..20 x strides,
// 21..26 table offset per axis (0xffffffff: axis not resized), 27..32 taps per axis
// table T: for each axis, for each output coordinate, `taps` pairs (index, weight bits)

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read> T: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<ST>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    var coord: array<u32, 6>;
    var rest = i;
    var yo = pu(7u);
    var combos = 1u;
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        let ext = pu(1u + du);
        coord[du] = rest % ext;
        rest = rest / ext;
        yo += coord[du] * pu(8u + du);
        if (pu(21u + du) != 0xffffffffu) {
            combos *= pu(27u + du);
        }
    }
    var acc = 0.0;
    for (var q = 0u; q < combos; q++) {
        var qr = q;
        var w = 1.0;
        var xo = pu(14u);
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let toff = pu(21u + du);
            if (toff == 0xffffffffu) {
                xo += coord[du] * pu(15u + du);
            } else {
                let taps = pu(27u + du);
                let t = qr % taps;
                qr = qr / taps;
                let e = toff + (coord[du] * taps + t) * 2u;
                xo += T[e] * pu(15u + du);
                w *= bitcast<f32>(T[e + 1u]);
            }
        }
        if (w != 0.0) {
            acc += w * f32(X[xo]);
        }
    }
    Y[yo] = ST(acc);
}
