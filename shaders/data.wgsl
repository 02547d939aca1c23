// Batch gather from the resident data set through the epoch's permutation:
// the rows perm[batch_start + offset ..][..rows] of x and of the targets,
// copied bit for bit (targets are class indices or f32 bits alike).
// CPU twin: `Dataset::gather` in src/data.rs.

// The twin of `GatherShape` in src/gpu/uniforms.rs.
struct GatherShape {
    rows: u32,
    features: u32,
    target_width: u32,
    // Rows into the batch where this pass starts (micro-batches).
    offset: u32,
}

@group(0) @binding(0) var<uniform> shape: GatherShape;
@group(0) @binding(1) var<uniform> step: StepUniform;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<u32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_batch: array<u32>;
@group(0) @binding(6) var<storage, read_write> target_batch: array<u32>;

const GROUP: u32 = 256u;

@compute @workgroup_size(GROUP)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    let x_count = shape.rows * shape.features;
    if i < x_count {
        let row = perm[step.batch_start + shape.offset + i / shape.features];
        x_batch[i] = x[row * shape.features + i % shape.features];
        return;
    }
    let j = i - x_count;
    if j < shape.rows * shape.target_width {
        let row = perm[step.batch_start + shape.offset + j / shape.target_width];
        target_batch[j] = targets[row * shape.target_width + j % shape.target_width];
    }
}
