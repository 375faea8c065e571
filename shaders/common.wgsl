// Shared by every kernel: the parameter block, view addressing and the activation functions
// (used by the elementwise kernel's unary ops and by the conv epilogues).

struct Params {
    v: array<vec4<u32>, 16>,
}
@group(0) @binding(0) var<uniform> P: Params;

fn pu(i: u32) -> u32 {
    return P.v[i >> 2u][i & 3u];
}
fn pi(i: u32) -> i32 {
    return bitcast<i32>(pu(i));
}
fn pf(i: u32) -> f32 {
    return bitcast<f32>(pu(i));
}

// Address of flat element i of a tensor stored as a view: `off` elements into its buffer, with
// `bs` elements between batch entries of `pb` elements each (bs == pb when contiguous).
fn vaddr(i: u32, off: u32, pb: u32, bs: u32) -> u32 {
    return off + (i / pb) * bs + (i % pb);
}

// Flat invocation index of a 1-D problem dispatched as a 2-D grid of 256-wide workgroups.
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

override ACT: u32 = 0u;
override ACT_A: f32 = 0.0;
override ACT_B: f32 = 0.0;

fn sigmoid_(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_(x: f32) -> f32 {
    let t = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - t) / (1.0 + t);
}

fn softplus_(x: f32) -> f32 {
    if (x > 20.0) {
        return x;
    }
    return log(1.0 + exp(x));
}

fn erf_(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.5) {
        let x2 = x * x;
        return 1.1283791670955126 * x * (1.0 + x2 * (-0.3333333333 + x2 * (0.1 + x2 * (-0.0238095238 + x2 * 0.0046296296))));
    }
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return select(y, -y, x < 0.0);
}

// The activation after a fused residual Add (conv epilogues only).
override POST_ACT: u32 = 0u;
override POST_A: f32 = 0.0;
override POST_B: f32 = 0.0;

fn act(x: f32) -> f32 {
    return act_by(ACT, ACT_A, ACT_B, x);
}

fn post_act(x: f32) -> f32 {
    return act_by(POST_ACT, POST_A, POST_B, x);
}

// Activation `k` with parameters a and b (always called with override constants, so the switch
// folds away).
fn act_by(k: u32, a: f32, b: f32, x: f32) -> f32 {
    switch k {
        case 0u: { return x; }
        case 1u: { return max(x, 0.0); }
        case 2u: { return select(a * x, x, x >= 0.0); }
        case 3u: { return sigmoid_(x); }
        case 4u: { return clamp(a * x + b, 0.0, 1.0); }
        case 5u: { return x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 6u: { return tanh_(x); }
        case 7u: { return min(max(x, a), b); }
        case 8u: { return select(a * (exp(x) - 1.0), x, x >= 0.0); }
        case 9u: { return b * select(a * (exp(x) - 1.0), x, x > 0.0); }
        case 10u: { return max(x, 0.0) + min(0.0, a * (exp(x / a) - 1.0)); }
        case 11u: { return softplus_(x); }
        case 12u: { return x / (1.0 + abs(x)); }
        case 13u: { return x * tanh_(softplus_(x)); }
        case 14u: { return x * sigmoid_(a * x); }
        case 15u: { return erf_(x); }
        case 16u: { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }
        case 17u: { return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
        case 18u: { return abs(x); }
        case 19u: { return -x; }
        case 20u: { return exp(x); }
        case 21u: { return log(x); }
        case 22u: { return sqrt(x); }
        case 23u: { return 1.0 / x; }
        case 24u: { return floor(x); }
        case 25u: { return ceil(x); }
        case 26u: { return round(x); }
        case 27u: { return sign(x); }
        case 28u: { return select(0.0, 1.0, x == 0.0); }
        case 29u: { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }
        case 30u: { return x * a; }
        default: { return x; }
    }
}
