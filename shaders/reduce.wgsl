// Reductions (sum / mean / max / min) over any set of axes of a tensor of up to 6 dimensions;
// also GlobalAveragePool and GlobalMaxPool. `reduce_wg` gives each output a workgroup that
// reduces in workgroup memory (long reductions); `reduce_thread` one invocation (short ones).
//
// parameters: 0 n_out, 1..6 out shape (reduced axes 1), 7 y_off, 8..13 y strides,
// 14 x_off, 15..20 x strides, 21..26 reduced extents (1 on kept axes), 27 n_red, 28 scale (f32)

override KIND: u32 = 0u; // 0 sum (scaled: mean), 1 max, 2 min

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read_write> Y: array<ST>;

var<workgroup> red: array<f32, 256>;

fn combine(a: f32, b: f32) -> f32 {
    switch KIND {
        case 1u: { return max(a, b); }
        case 2u: { return min(a, b); }
        default: { return a + b; }
    }
}

fn init() -> f32 {
    switch KIND {
        case 1u: { return -3.402823e38; }
        case 2u: { return 3.402823e38; }
        default: { return 0.0; }
    }
}

// (x base offset, y offset) of output o
fn bases(o: u32) -> vec2<u32> {
    var rest = o;
    var xo = pu(14u);
    var yo = pu(7u);
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        let ext = pu(1u + du);
        let c = rest % ext;
        rest = rest / ext;
        xo += c * pu(15u + du);
        yo += c * pu(8u + du);
    }
    return vec2<u32>(xo, yo);
}

fn red_offset(j: u32) -> u32 {
    var rest = j;
    var off = 0u;
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        let ext = pu(21u + du);
        let c = rest % ext;
        rest = rest / ext;
        off += c * pu(15u + du);
    }
    return off;
}

fn finish(v: f32) -> f32 {
    if (KIND == 0u) {
        return v * pf(28u);
    }
    return v;
}

@compute @workgroup_size(256, 1, 1)
fn reduce_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_id(gid, nwg);
    if (o >= pu(0u)) {
        return;
    }
    let b = bases(o);
    var acc = init();
    for (var j = 0u; j < pu(27u); j++) {
        acc = combine(acc, f32(X[b.x + red_offset(j)]));
    }
    Y[b.y] = ST(finish(acc));
}

@compute @workgroup_size(256, 1, 1)
fn reduce_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let o = wg.x + wg.y * nwg.x;
    let valid = o < pu(0u);
    var acc = init();
    if (valid) {
        let b = bases(o);
        for (var j = li; j < pu(27u); j += 256u) {
            acc = combine(acc, f32(X[b.x + red_offset(j)]));
        }
    }
    red[li] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = combine(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    if (valid && li == 0u) {
        Y[bases(o).y] = ST(finish(red[0]));
    }
}
