// Softmax / LogSoftmax along one axis: an invocation per (outer, inner) row.
//
// parameters: 0 rows (outer * inner), 1 n (axis length), 2 inner, 3 x_off, 4 x_bs, 5 y_off,
// 6 y_bs, 7 per-batch elements

override LOG: bool = false;

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read_write> Y: array<ST>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_id(gid, nwg);
    if (r >= pu(0u)) {
        return;
    }
    let n = pu(1u);
    let inner = pu(2u);
    let pb = pu(7u);
    let base = (r / inner) * n * inner + r % inner;
    var m = -3.402823e38;
    for (var k = 0u; k < n; k++) {
        m = max(m, f32(X[vaddr(base + k * inner, pu(3u), pb, pu(4u))]));
    }
    var s = 0.0;
    for (var k = 0u; k < n; k++) {
        s += exp(f32(X[vaddr(base + k * inner, pu(3u), pb, pu(4u))]) - m);
    }
    for (var k = 0u; k < n; k++) {
        let e = f32(X[vaddr(base + k * inner, pu(3u), pb, pu(4u))]) - m;
        var v: f32;
        if (LOG) {
            v = e - log(s);
        } else {
            v = exp(e) / s;
        }
        Y[vaddr(base + k * inner, pu(5u), pb, pu(6u))] = ST(v);
    }
}
