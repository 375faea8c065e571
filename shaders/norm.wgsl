// InstanceNormalization (a workgroup per (n, c) plane, mean and variance reduced in workgroup
// memory) and BatchNormalization whose statistics arrive at run time (folded into the conv
// otherwise).
//
// instance: 0 C, 1 S (plane size), 2 x_off, 3 x_bs, 4 y_off, 5 y_bs, 6 epsilon (f32)
// batch:    0 total, 1 C, 2 S, 3 x_off, 4 x_bs, 5 y_off, 6 y_bs, 7 epsilon (f32)

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read> Scale: array<ST>;
@group(0) @binding(3) var<storage, read> Shift: array<ST>;
@group(0) @binding(4) var<storage, read> Mean: array<ST>;
@group(0) @binding(5) var<storage, read> Var: array<ST>;
@group(0) @binding(6) var<storage, read_write> Y: array<ST>;

var<workgroup> red: array<f32, 256>;

fn wg_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256, 1, 1)
fn instance(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let plane = wg.x + wg.y * nwg.x;
    let C = pu(0u);
    let S = pu(1u);
    let n = plane / C;
    let c = plane % C;
    let xb = pu(2u) + n * pu(3u) + c * S;
    let yb = pu(4u) + n * pu(5u) + c * S;
    var s = 0.0;
    for (var j = li; j < S; j += 256u) {
        s += f32(X[xb + j]);
    }
    let mean = wg_sum(li, s) / f32(S);
    var q = 0.0;
    for (var j = li; j < S; j += 256u) {
        let d = f32(X[xb + j]) - mean;
        q += d * d;
    }
    let variance = wg_sum(li, q) / f32(S);
    let k = f32(Scale[c]) / sqrt(variance + pf(6u));
    let b = f32(Shift[c]);
    for (var j = li; j < S; j += 256u) {
        Y[yb + j] = ST((f32(X[xb + j]) - mean) * k + b);
    }
}

@compute @workgroup_size(256, 1, 1)
fn batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let S = pu(2u);
    let c = (i / S) % C;
    let pb = C * S;
    let k = f32(Scale[c]) / sqrt(f32(Var[c]) + pf(7u));
    let v = (f32(X[vaddr(i, pu(3u), pb, pu(4u))]) - f32(Mean[c])) * k + f32(Shift[c]);
    Y[vaddr(i, pu(5u), pb, pu(6u))] = ST(v);
}
