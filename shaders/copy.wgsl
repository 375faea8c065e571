// Strided copy over up to 6 dimensions: Transpose, DepthToSpace, Slice (negative steps too),
// Expand (stride 0), Tile (coordinate modulo the input size), Gather (a lookup table on one
// axis), Split, and Concat where a producer could not write into its slice directly.
//
// parameters: 0 total, 1..6 out shape, 7 y_off, 8..13 y strides, 14 x_off (i32),
// 15..20 x strides (i32), 21..26 modulo per axis (0: none), 27 table axis (6: none), 28 table offset

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read> T: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<ST>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    var rest = i;
    var yo = pu(7u);
    var xo = pi(14u);
    let taxis = pu(27u);
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        let ext = pu(1u + du);
        var c = rest % ext;
        rest = rest / ext;
        yo += c * pu(8u + du);
        var src = i32(c);
        if (du == taxis) {
            src = T[pu(28u) + c];
        } else if (pu(21u + du) != 0u) {
            src = i32(c % pu(21u + du));
        }
        xo += src * pi(15u + du);
    }
    Y[yo] = X[u32(xo)];
}
