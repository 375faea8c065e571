// Pad over up to 6 dimensions: constant, reflect, edge and wrap (negative pads crop).
//
// parameters: 0 total, 1..6 out shape, 7 y_off, 8..13 y strides, 14 x_off, 15..20 x strides,
// 21..26 input shape, 27..32 pad before (i32), 33 fill value (f32)

override MODE: u32 = 0u; // 0 constant, 1 reflect, 2 edge, 3 wrap

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read_write> Y: array<ST>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    var rest = i;
    var yo = pu(7u);
    var xo = pu(14u);
    var inside = true;
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        let ext = pu(1u + du);
        let c = rest % ext;
        rest = rest / ext;
        yo += c * pu(8u + du);
        let n = i32(pu(21u + du));
        var j = i32(c) - pi(27u + du);
        if (j < 0 || j >= n) {
            switch MODE {
                case 1u: {
                    if (n == 1) {
                        j = 0;
                    } else {
                        let period = 2 * (n - 1);
                        var m = j % period;
                        if (m < 0) {
                            m += period;
                        }
                        j = select(m, period - m, m >= n);
                    }
                }
                case 2u: { j = clamp(j, 0, n - 1); }
                case 3u: {
                    j = j % n;
                    if (j < 0) {
                        j += n;
                    }
                }
                default: { inside = false; j = 0; }
            }
        }
        xo += u32(j) * pu(15u + du);
    }
    if (inside) {
        Y[yo] = X[xo];
    } else {
        Y[yo] = ST(pf(33u));
    }
}
