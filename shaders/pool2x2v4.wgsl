// MaxPool 2x2, stride 2, as pool2x2.wgsl, four outputs of one row per invocation: two vec4
// loads from each of the window's two input rows, one vec4 store. For inputs whose rows are a
// multiple of 8 wide, with views whose offsets and batch strides are multiples of 4 (lower.rs
// checks both), so that every vec4 lies inside one row. The grid is (quads of an output plane,
// planes), the quads numbered row by row across workgroups so that narrow planes (16 outputs
// a row at a U-Net's bottleneck) still fill them: two divisions per invocation (the quad's row,
// the plane's image). Built without runtime checks: every index is inside the extents the host
// proves (lower.rs, `Dispatch::min_bytes`).
//
// parameters: those of pool.wgsl (this kernel reads 1 C, 2 IH, 3 IW, 4 OH, 5 OW, 16 x_off,
// 17 x_bs, 18 y_off, 19 y_bs)

@group(0) @binding(1) var<storage, read> X: array<vec4<ST>>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<ST>>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let OW4 = pu(5u) / 4u;
    if (gid.x >= pu(4u) * OW4) {
        return;
    }
    let oy = gid.x / OW4;
    let q = gid.x % OW4;
    let C = pu(1u);
    let IH = pu(2u);
    let IW4 = pu(3u) / 4u;
    let n = gid.y / C;
    let c = gid.y % C;
    let iy = 2u * oy;
    // vec4 index of the window row's first input: offsets, strides and rows are multiples of 4
    let r = (pu(16u) + n * pu(17u)) / 4u + (c * IH + iy) * IW4 + 2u * q;
    var a = X[r];
    var b = X[r + 1u];
    if (iy + 1u < IH) {
        a = max(a, X[r + IW4]);
        b = max(b, X[r + IW4 + 1u]);
    }
    let o = (pu(18u) + n * pu(19u)) / 4u + (c * pu(4u) + oy) * OW4 + q;
    Y[o] = vec4<ST>(max(a.x, a.y), max(a.z, a.w), max(b.x, b.y), max(b.z, b.w));
}
