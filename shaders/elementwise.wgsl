// Elementwise ops with numpy broadcasting over up to 6 dimensions: unary maps (the activation
// set in common.wgsl), binary arithmetic, PRelu and Where. Each operand is addressed by an
// offset and per-dimension strides (0 on broadcast axes; the batch stride of a view).
//
// parameters: 0 total, 1..6 out shape, 7 y_off, 8..13 y strides,
// input k (k = 0, 1, 2) at 14 + 7k: offset, then 6 strides.

override OP: u32 = 0u;      // 0 unary act(a); 1 add 2 sub 3 mul 4 div 5 pow 6 max 7 min 8 prelu; 9 where(a, b, c)
override ACCUM: bool = false; // operand a is Y itself (variadic ops accumulate in place)

@group(0) @binding(1) var<storage, read> A: array<ST>;
@group(0) @binding(2) var<storage, read> B: array<ST>;
@group(0) @binding(3) var<storage, read> C: array<ST>;
@group(0) @binding(4) var<storage, read_write> Y: array<ST>;

fn pow_(a: f32, b: f32) -> f32 {
    if (b == 0.0) {
        return 1.0;
    }
    if (a < 0.0 && floor(b) == b) {
        let r = pow(-a, b);
        return select(r, -r, (i32(b) & 1) == 1);
    }
    return pow(a, b);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    var rest = i;
    var yo = pu(7u);
    var ao = pu(14u);
    var bo = pu(21u);
    var co = pu(28u);
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        let ext = pu(1u + du);
        let c = rest % ext;
        rest = rest / ext;
        yo += c * pu(8u + du);
        ao += c * pu(15u + du);
        bo += c * pu(22u + du);
        co += c * pu(29u + du);
    }
    var a: f32;
    if (ACCUM) {
        a = f32(Y[yo]);
    } else {
        a = f32(A[ao]);
    }
    var r: f32;
    switch OP {
        case 0u: { r = a; }
        case 1u: { r = a + f32(B[bo]); }
        case 2u: { r = a - f32(B[bo]); }
        case 3u: { r = a * f32(B[bo]); }
        case 4u: { r = a / f32(B[bo]); }
        case 5u: { r = pow_(a, f32(B[bo])); }
        case 6u: { r = max(a, f32(B[bo])); }
        case 7u: { r = min(a, f32(B[bo])); }
        case 8u: { r = select(a, a * f32(B[bo]), a < 0.0); }
        case 9u: { r = select(f32(C[co]), f32(B[bo]), a != 0.0); }
        default: { r = a; }
    }
    Y[yo] = ST(act(r));
}
