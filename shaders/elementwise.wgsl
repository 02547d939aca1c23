// Elementwise activation kernels on their own: the fused bias + activation
// forward and the activation backward. Training fuses both into the matmul
// epilogues (matmul.wgsl) and never compiles these; the kernel harness
// (src/gpu/harness/mod.rs) runs them in the parity tests and benchmarks. The
// formulas are in activation.wgsl; CPU twin: src/activation.rs.

// The twin of `ElementwiseShape` in src/gpu/uniforms.rs.
struct ElementwiseShape {
    rows: u32,
    width: u32,
    activation: u32,
    slope: f32,
}

@group(0) @binding(0) var<uniform> shape: ElementwiseShape;
@group(0) @binding(1) var<storage, read> input: array<f32>;   // Z (or Z before bias)
@group(0) @binding(2) var<storage, read> other: array<f32>;   // bias [width] or dA
@group(0) @binding(3) var<storage, read_write> z_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const GROUP: u32 = 256u;

// Z = input + b (broadcast over rows), A = f(Z).
@compute @workgroup_size(GROUP)
fn bias_activation_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.rows * shape.width {
        return;
    }
    let z = input[i] + other[i % shape.width];
    z_out[i] = z;
    out[i] = activation_forward(shape.activation, shape.slope, z);
}

// dZ = dA ⊙ f'(Z).
@compute @workgroup_size(GROUP)
fn activation_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.rows * shape.width {
        return;
    }
    out[i] = other[i] * activation_derivative(shape.activation, shape.slope, input[i]);
}
