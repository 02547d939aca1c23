// Copies a row-major matrix into an rgba32float texture, four consecutive
// columns per texel, for the texture matmul (matmul_texture_* in
// src/gpu/kernels.rs): on lavapipe a texel fetch costs a fraction of a load
// from a storage buffer. Columns past `cols` in the last texel of a row, and
// rows from `rows` up to `padded_rows`, are written as zeros: the matmul
// reads whole quads along K and relies on them adding nothing.
// CPU twin: none needed (the matmul parity tests go through it).

// Mirrors `PackShape` in src/gpu/kernels.rs.
struct Shape {
    rows: u32,
    cols: u32,
    padded_rows: u32,
    // Texels per row: ceil(cols / 4).
    texels: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;

const GROUP: u32 = 64u;

@compute @workgroup_size(GROUP)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.texels * shape.padded_rows {
        return;
    }
    let row = i / shape.texels;
    let col = (i % shape.texels) * 4u;
    var v = vec4<f32>(0.0);
    if row < shape.rows {
        let at = row * shape.cols + col;
        v.x = src[at];
        if col + 1u < shape.cols {
            v.y = src[at + 1u];
        }
        if col + 2u < shape.cols {
            v.z = src[at + 2u];
        }
        if col + 3u < shape.cols {
            v.w = src[at + 3u];
        }
    }
    textureStore(dst, vec2<u32>(col / 4u, row), v);
}

// The same when every row is a whole number of quads (cols a multiple of
// four): one vec4 load per texel, a quarter of the storage accesses.
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;

@compute @workgroup_size(GROUP)
fn pack_quads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid, GROUP);
    if i >= shape.texels * shape.padded_rows {
        return;
    }
    let row = i / shape.texels;
    var v = vec4<f32>(0.0);
    if row < shape.rows {
        v = src4[i];
    }
    textureStore(dst, vec2<u32>(i % shape.texels, row), v);
}
