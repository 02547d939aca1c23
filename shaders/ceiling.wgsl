// The adapter's arithmetic ceiling (`retroprop bench --full`): multiply-adds
// and nothing else. Each invocation runs eight independent chains of vec4
// multiply-adds, x ← x · m + c, so that a lane never waits on its previous
// result; the only memory traffic is one store of the chains' sum at the
// end, which keeps the compiler from removing the loop. 64 FLOPs an
// iteration an invocation.

struct CeilingShape {
    iterations: u32,
    m: f32,
    c: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> shape: CeilingShape;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;

const CEILING_GROUP: u32 = 64u;

@compute @workgroup_size(64)
fn ceiling(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let index = id.x + id.y * groups.x * CEILING_GROUP;
    // Chain j, lane l starts at index · 1e-3 + 4j + l.
    let x = f32(index) * 1e-3 + vec4<f32>(0.0, 1.0, 2.0, 3.0);
    var x0 = x;
    var x1 = x + 4.0;
    var x2 = x + 8.0;
    var x3 = x + 12.0;
    var x4 = x + 16.0;
    var x5 = x + 20.0;
    var x6 = x + 24.0;
    var x7 = x + 28.0;
    let m = vec4<f32>(shape.m);
    let c = vec4<f32>(shape.c);
    for (var i = 0u; i < shape.iterations; i++) {
        x0 = fma(x0, m, c);
        x1 = fma(x1, m, c);
        x2 = fma(x2, m, c);
        x3 = fma(x3, m, c);
        x4 = fma(x4, m, c);
        x5 = fma(x5, m, c);
        x6 = fma(x6, m, c);
        x7 = fma(x7, m, c);
    }
    let total = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    sink[index] = total.x + total.y + total.z + total.w;
}
