// MaxPool with a 2x2 window and stride 2, no padding or dilation (a U-Net's downsampling), in
// floor or ceil mode (a last window cut by the edge keeps what is inside): one output per
// invocation, no loops, in the storage precision. Built without runtime checks: every index is
// inside the extents the host proves (lower.rs, `Dispatch::min_bytes`).
//
// parameters: those of pool.wgsl (this kernel reads 0 total (N*C*OH*OW), 1 C, 2 IH, 3 IW, 4 OH,
// 5 OW, 16 x_off, 17 x_bs, 18 y_off, 19 y_bs)

@group(0) @binding(1) var<storage, read> X: array<ST>;
@group(0) @binding(2) var<storage, read_write> Y: array<ST>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let IH = pu(2u);
    let IW = pu(3u);
    let OH = pu(4u);
    let OW = pu(5u);
    let ox = i % OW;
    let t = i / OW;
    let oy = t % OH;
    let plane = t / OH;
    let n = plane / C;
    let c = plane % C;
    let ix = 2u * ox;
    let iy = 2u * oy;
    let r = pu(16u) + n * pu(17u) + c * IH * IW + iy * IW + ix;
    let right = ix + 1u < IW;
    var m = X[r];
    if (right) {
        m = max(m, X[r + 1u]);
    }
    if (iy + 1u < IH) {
        m = max(m, X[r + IW]);
        if (right) {
            m = max(m, X[r + IW + 1u]);
        }
    }
    Y[pu(18u) + n * pu(19u) + c * OH * OW + oy * OW + ox] = m;
}
