// The elementwise steps of a network that is more than dense layers one
// after another (`Mlp::kinds`; src/gpu/sequence.rs runs them): an
// activation alone (a residual network's head, Norm → Act → Linear), the
// residual add x + block(x), and the backward step that carries a
// gradient through either of them or into a dense layer's dZ.
// CPU twin: src/cpu/sequence.rs.

// The twin of `ResidualShape` in src/gpu/uniforms.rs.
struct ResidualShape {
    rows: u32,
    width: u32,
    activation: u32,
    slope: f32,
    // 1: `b` is added (the add; a skip's waiting gradient).
    has_b: u32,
    // Dropout of the dense layer whose dZ `grad_step` forms (threshold 0:
    // off), as `MatmulShape`'s.
    dropout_threshold: u32,
    dropout_scale: f32,
    dropout_seed: u32,
    dropout_layer: u32,
    // Rows into the batch where this pass starts (micro-batches).
    row_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> shape: ResidualShape;
@group(0) @binding(1) var<uniform> step: StepUniform;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
// The values f' is taken at (`grad_step`).
@group(0) @binding(4) var<storage, read> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const GROUP: u32 = 256u;

// out = f(a), or with `has_b` out = a + b.
@compute @workgroup_size(GROUP)
fn forward_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.rows * shape.width {
        return;
    }
    if shape.has_b != 0u {
        out[i] = a[i] + b[i];
    } else {
        out[i] = activation_forward(shape.activation, shape.slope, a[i]);
    }
}

// out = (a (+ b)) ⊙ dropout ⊙ f'(z): an activation step's backward (z its
// input), a skip's (the block's gradient plus the one waiting from its
// add; identity), or a gradient into a dense layer's dZ (z its Z, its
// dropout).
@compute @workgroup_size(GROUP)
fn grad_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.rows * shape.width {
        return;
    }
    var g = a[i];
    if shape.has_b != 0u {
        g += b[i];
    }
    if shape.dropout_threshold != 0u {
        let row = shape.row_offset + i / shape.width;
        let col = i % shape.width;
        g *= dropout_factor(shape.dropout_threshold, shape.dropout_scale, shape.dropout_seed, step.t, shape.dropout_layer, row, col);
    }
    if shape.activation != ACTIVATION_IDENTITY {
        g *= activation_derivative(shape.activation, shape.slope, z[i]);
    }
    out[i] = g;
}
