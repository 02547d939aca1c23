//! The compute pipelines, built once when a device opens, and the uniform
//! structs their shaders read. Which matmul tiling runs is chosen here, per
//! adapter, and nowhere else.

use bytemuck::{Pod, Zeroable};

/// How the tiled matmul is blocked; the numbers reach WGSL as `const`s in a
/// preamble, so they are written down only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulTiling {
    /// Threads per workgroup along columns (N) and rows (M).
    pub wg_x: u32,
    /// Threads per workgroup along rows.
    pub wg_y: u32,
    /// Values of C each thread computes along rows and columns.
    pub rm: u32,
    /// Values of C each thread computes along columns.
    pub rn: u32,
    /// Depth of the K slice staged in workgroup memory.
    pub tk: u32,
    /// Which kernel this tiling drives.
    pub kind: MatmulKind,
}

/// The three matmul kernels; each is tested for parity on every adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKind {
    /// Tiles staged in workgroup memory (`matmul`): hardware GPUs.
    Shared,
    /// Operands read straight from storage buffers, no workgroup memory and
    /// no barriers (`matmul_direct`).
    Direct,
    /// Operands packed into rgba32float textures and read by texel fetches,
    /// four values a fetch, no barriers (`matmul_texture_*`): CPU
    /// implementations of Vulkan (lavapipe), where a fetch costs a fraction
    /// of a storage-buffer load.
    Texture,
}

impl MatmulTiling {
    /// Rows of C per workgroup.
    pub fn tile_m(&self) -> u32 {
        self.wg_y * self.rm
    }
    /// Columns of C per workgroup.
    pub fn tile_n(&self) -> u32 {
        self.wg_x * self.rn
    }

    /// The tiling for an adapter: the workgroup-memory kernel on hardware
    /// GPUs, the texture one on CPU implementations (lavapipe);
    /// `RETROPROP_MATMUL=shared`, `=direct` or `=texture` in the environment
    /// forces one.
    pub fn for_adapter(is_hardware: bool) -> MatmulTiling {
        match MatmulTiling::from_env() {
            Ok(Some(tiling)) => return tiling,
            Ok(None) => {}
            Err(e) => log::warn!("{e}; using the default kernel"),
        }
        if is_hardware {
            MatmulTiling::shared()
        } else {
            MatmulTiling::texture()
        }
    }

    /// The kernel `RETROPROP_MATMUL` asks for, if it is set.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when it is set to something
    /// [`parse`](Self::parse) does not accept; programs call this at start
    /// (the `retroprop` program does) so that a typo is not a silent
    /// fall back to the default kernel.
    pub fn from_env() -> crate::Result<Option<MatmulTiling>> {
        match std::env::var("RETROPROP_MATMUL") {
            Ok(text) => MatmulTiling::parse(&text).map(Some).ok_or_else(|| {
                crate::Error::Config(format!(
                    "RETROPROP_MATMUL=`{text}` is not a matmul kernel: use shared, direct or \
                     texture, optionally with :WGxWGyxRMxRNxTK (at most 1024 threads a workgroup, RM, RN \
                     and TK from 1 to 64; RN a multiple of 4 for direct, RM and RN for texture)"
                ))
            }),
            Err(_) => Ok(None),
        }
    }

    /// Parses `shared`, `direct`, `texture`, or one of them followed by
    /// `:WG_XxWG_YxRMxRNxTK` (e.g. `shared:16x16x8x8x8`), for tuning runs:
    /// at most 1024 threads a workgroup, RM, RN and TK from 1 to 64.
    pub fn parse(text: &str) -> Option<MatmulTiling> {
        let (kind, dims) = text
            .split_once(':')
            .map_or((text, None), |(k, d)| (k, Some(d)));
        let mut tiling = match kind {
            "shared" => MatmulTiling::shared(),
            "direct" => MatmulTiling::direct(),
            "texture" => MatmulTiling::texture(),
            _ => return None,
        };
        if let Some(dims) = dims {
            let n: Vec<u32> = dims
                .split('x')
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            let [wg_x, wg_y, rm, rn, tk] = n[..] else {
                return None;
            };
            // Checked: 2147483649x2 wraps to 2 threads in u32. Past 64 values
            // a thread (or a K slice), registers and workgroup memory are far
            // beyond any adapter's.
            let threads = wg_x.checked_mul(wg_y);
            let per_thread = [rm, rn, tk].iter().all(|&n| (1..=64).contains(&n));
            let valid = threads.is_some_and(|t| (1..=1024).contains(&t)) && per_thread;
            let quads = match tiling.kind {
                MatmulKind::Shared => true,
                MatmulKind::Direct => rn % 4 == 0,
                MatmulKind::Texture => rn % 4 == 0 && rm % 4 == 0,
            };
            if !valid || !quads {
                return None;
            }
            tiling = MatmulTiling {
                wg_x,
                wg_y,
                rm,
                rn,
                tk,
                kind: tiling.kind,
            };
        }
        Some(tiling)
    }

    /// The workgroup-memory kernel, for GPUs: 64×64 tiles, 4×4 per thread.
    pub fn shared() -> MatmulTiling {
        MatmulTiling {
            wg_x: 16,
            wg_y: 16,
            rm: 4,
            rn: 4,
            tk: 16,
            kind: MatmulKind::Shared,
        }
    }

    /// The barrier-free storage-buffer kernel: 16×16 per thread.
    pub fn direct() -> MatmulTiling {
        MatmulTiling {
            wg_x: 8,
            wg_y: 4,
            rm: 16,
            rn: 16,
            tk: 16,
            kind: MatmulKind::Direct,
        }
    }

    /// The texture kernel, for CPU adapters: 8×8 per thread. Larger blocks
    /// run faster once compiled (16×16: 1.4× at batch 1024 on lavapipe) but
    /// take far longer to compile the first time (standard work, Mesa's
    /// cache empty: 32 s to the first step against 4.7 s);
    /// `RETROPROP_MATMUL=texture:8x4x16x16x4` chooses them for long runs.
    pub fn texture() -> MatmulTiling {
        MatmulTiling {
            wg_x: 8,
            wg_y: 4,
            rm: 8,
            rn: 8,
            tk: 4,
            kind: MatmulKind::Texture,
        }
    }

    /// The name of the entry point for a transposition variant.
    fn entry_point(&self, trans_a: bool, trans_b: bool) -> String {
        match self.kind {
            MatmulKind::Shared => "matmul".into(),
            MatmulKind::Direct => "matmul_direct".into(),
            MatmulKind::Texture => format!(
                "matmul_texture_{}{}",
                if trans_a { 't' } else { 'n' },
                if trans_b { 't' } else { 'n' }
            ),
        }
    }

    /// The whole matmul module's source for this tiling.
    fn source(&self) -> String {
        let mut source = format!(
            "{}{COMMON}\n{}",
            self.preamble(),
            include_str!("../../shaders/matmul.wgsl")
        );
        match self.kind {
            MatmulKind::Shared => source += include_str!("../../shaders/matmul_tiled.wgsl"),
            MatmulKind::Direct => {
                source += "@group(0) @binding(1) var<storage, read> a: array<f32>;\n";
                source += "@group(0) @binding(2) var<storage, read> b: array<f32>;\n";
                source += &self.direct_kernel();
            }
            MatmulKind::Texture => {
                source += "@group(0) @binding(1) var ta: texture_2d<f32>;\n";
                source += "@group(0) @binding(2) var tb: texture_2d<f32>;\n";
                for (trans_a, trans_b) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    source += &self.texture_kernel(trans_a, trans_b);
                }
            }
        }
        source
    }

    /// `matmul_direct`: the product without workgroup memory or barriers,
    /// for CPU implementations of Vulkan (lavapipe). There a workgroup runs
    /// as a SIMD loop over its invocations, caches do what workgroup tiles
    /// do on a GPU, barriers are expensive, and every load from a storage
    /// buffer costs tens of cycles (per-lane robustness checks). So each
    /// thread computes a large RM × RN block of contiguous rows and columns:
    /// RM + RN loads feed RM · RN multiply-adds per step of k. The block is
    /// unrolled into named vec4 accumulators here because llvmpipe's LLVM
    /// keeps a large array in memory (3× slower, measured).
    fn direct_kernel(&self) -> String {
        let (rm, groups) = (self.rm, self.rn / 4);
        let mut k = String::new();
        k += "@compute @workgroup_size(WG_X, WG_Y, 1)\n";
        k += "fn matmul_direct(@builtin(global_invocation_id) gid: vec3<u32>) {\n";
        k += "    let row = gid.y * RM;\n    let col = gid.x * RN;\n";
        // Rows and columns past the edge read the last valid one (always in
        // bounds, no branch); store_one drops their results.
        for r in 0..rm {
            k += &format!("    let ar{r} = min(row + {r}u, shape.m - 1u);\n");
        }
        for j in 0..4 * groups {
            k += &format!("    let bc{j} = min(col + {j}u, shape.n - 1u);\n");
        }
        for r in 0..rm {
            for g in 0..groups {
                k += &format!("    var acc{r}_{g} = vec4<f32>(0.0);\n");
            }
        }
        k += "    for (var kk = 0u; kk < shape.k; kk++) {\n";
        for g in 0..groups {
            let b =
                |j: u32| format!("b[select(kk * shape.n + bc{j}, bc{j} * shape.k + kk, TRANS_B)]");
            let j = 4 * g;
            k += &format!(
                "        let b{g} = vec4<f32>({}, {}, {}, {});\n",
                b(j),
                b(j + 1),
                b(j + 2),
                b(j + 3)
            );
        }
        for r in 0..rm {
            k += &format!(
                "        let a{r} = vec4<f32>(a[select(ar{r} * shape.k + kk, kk * shape.m + ar{r}, TRANS_A)]);\n"
            );
            for g in 0..groups {
                k += &format!("        acc{r}_{g} = fma(a{r}, b{g}, acc{r}_{g});\n");
            }
        }
        k += "    }\n";
        // Through an array and a loop: the epilogue compiled once, not
        // RM · RN times. The bound is opaque to LLVM (shape.m is never
        // u32::MAX) so that it does not unroll the loop again.
        let blocks = rm * groups;
        k += &format!("    var out: array<vec4<f32>, {blocks}>;\n");
        for r in 0..rm {
            for g in 0..groups {
                k += &format!("    out[{}] = acc{r}_{g};\n", r * groups + g);
            }
        }
        k += &format!("    let blocks = select({blocks}u, 0u, shape.m == 0xffffffffu);\n");
        k += "    for (var i = 0u; i < blocks; i++) {\n";
        k += &format!("        let r = i / {groups}u;\n        let c0 = (i % {groups}u) * 4u;\n");
        k += "        for (var j = 0u; j < 4u; j++) {\n";
        k += "            store_one(row + r, col + c0 + j, out[i][j]);\n";
        k += "        }\n    }\n}\n";
        k
    }

    /// `matmul_texture_{n,t}{n,t}`: like `matmul_direct`, but the operands
    /// are textures packed by shaders/pack.wgsl, each texel four consecutive
    /// values of a row as stored. A texel fetch on lavapipe is vectorised
    /// (no per-lane loop with bounds branches, as a storage-buffer load has)
    /// and brings four values: 13–22 GFLOP/s against 3 for `matmul_direct`
    /// (measured, docs/performance.md). K advances a quad at a time; the
    /// packing pads every operand with zeros to whole quads along K, so no
    /// edge test is needed inside the loop. Per quad a thread fetches
    /// RM + RN texels for 4 · RM · RN multiply-adds, in the same k order as
    /// the CPU.
    fn texture_kernel(&self, trans_a: bool, trans_b: bool) -> String {
        let (rm, rn) = (self.rm, self.rn);
        let mut k = String::new();
        k += "@compute @workgroup_size(WG_X, WG_Y, 1)\n";
        k += &format!(
            "fn {}(@builtin(global_invocation_id) gid: vec3<u32>) {{\n",
            self.entry_point(trans_a, trans_b)
        );
        k += "    let row = gid.y * RM;\n    let col = gid.x * RN;\n";
        // Coordinates past the edge are clamped to the last valid row or
        // texel (always in bounds, no branch); store_one drops their results.
        if trans_a {
            // A stored K × M: texel (m / 4, k) holds a(m..m+4, k).
            for g in 0..rm / 4 {
                k += &format!(
                    "    let ax{g} = i32(min(row / 4u + {g}u, (shape.m + 3u) / 4u - 1u));\n"
                );
            }
        } else {
            // A stored M × K: texel (k / 4, m) holds a(m, k..k+4).
            for r in 0..rm {
                k += &format!("    let ay{r} = i32(min(row + {r}u, shape.m - 1u));\n");
            }
        }
        if trans_b {
            // B stored N × K: texel (k / 4, n) holds b(k..k+4, n).
            for j in 0..rn {
                k += &format!("    let by{j} = i32(min(col + {j}u, shape.n - 1u));\n");
            }
        } else {
            // B stored K × N: texel (n / 4, k) holds b(k, n..n+4).
            for g in 0..rn / 4 {
                k += &format!(
                    "    let bx{g} = i32(min(col / 4u + {g}u, (shape.n + 3u) / 4u - 1u));\n"
                );
            }
        }
        for r in 0..rm {
            for j in 0..rn {
                k += &format!("    var acc{r}_{j} = 0.0;\n");
            }
        }
        const LANE: [char; 4] = ['x', 'y', 'z', 'w'];
        k += "    let quads = i32((shape.k + 3u) / 4u);\n";
        k += "    for (var q = 0i; q < quads; q++) {\n";
        // a(r, kk) and b(kk, j) as WGSL expressions over the fetched texels.
        let a: Box<dyn Fn(u32, usize) -> String> = if trans_a {
            for kk in 0..4 {
                for g in 0..rm / 4 {
                    k += &format!(
                        "        let a{kk}_{g} = textureLoad(ta, vec2<i32>(ax{g}, 4i * q + {kk}i), 0);\n"
                    );
                }
            }
            Box::new(|r, kk| format!("a{kk}_{}.{}", r / 4, LANE[r as usize % 4]))
        } else {
            for r in 0..rm {
                k += &format!("        let a{r} = textureLoad(ta, vec2<i32>(q, ay{r}), 0);\n");
            }
            Box::new(|r, kk| format!("a{r}.{}", LANE[kk]))
        };
        let b: Box<dyn Fn(usize, u32) -> String> = if trans_b {
            for j in 0..rn {
                k += &format!("        let b{j} = textureLoad(tb, vec2<i32>(q, by{j}), 0);\n");
            }
            Box::new(|kk, j| format!("b{j}.{}", LANE[kk]))
        } else {
            for kk in 0..4 {
                for g in 0..rn / 4 {
                    k += &format!(
                        "        let b{kk}_{g} = textureLoad(tb, vec2<i32>(bx{g}, 4i * q + {kk}i), 0);\n"
                    );
                }
            }
            Box::new(|kk, j| format!("b{kk}_{}.{}", j / 4, LANE[j as usize % 4]))
        };
        for r in 0..rm {
            for j in 0..rn {
                let mut sum = format!("acc{r}_{j}");
                for kk in 0..4 {
                    sum = format!("fma({}, {}, {sum})", a(r, kk), b(kk, j));
                }
                k += &format!("        acc{r}_{j} = {sum};\n");
            }
        }
        k += "    }\n";
        // The epilogue through an array and a loop, as in matmul_direct.
        let blocks = rm * rn;
        k += &format!("    var out: array<f32, {blocks}>;\n");
        for r in 0..rm {
            for j in 0..rn {
                k += &format!("    out[{}] = acc{r}_{j};\n", r * rn + j);
            }
        }
        k += &format!("    let blocks = select({blocks}u, 0u, shape.m == 0xffffffffu);\n");
        k += "    for (var i = 0u; i < blocks; i++) {\n";
        k += "        store_one(row + i / RN, col + i % RN, out[i]);\n    }\n}\n";
        k
    }

    fn preamble(&self) -> String {
        format!(
            "const WG_X: u32 = {}u;\nconst WG_Y: u32 = {}u;\nconst RM: u32 = {}u;\nconst RN: u32 = {}u;\n\
             const TK: u32 = {}u;\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\n",
            self.wg_x,
            self.wg_y,
            self.rm,
            self.rn,
            self.tk,
            self.tile_m(),
            self.tile_n()
        )
    }
}

/// Mirrors `Shape` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub activation: u32,
    pub slope: f32,
    pub accumulate: u32,
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u32,
    pub dropout_layer: u32,
    pub row_offset: u32,
    pub _pad: u32,
}

impl MatmulShape {
    /// With `dropout` (of layer `layer`, masks from `seed`) in the epilogue.
    pub(crate) fn with_dropout(
        mut self,
        dropout: Option<crate::dropout::Dropout>,
        seed: u32,
        layer: usize,
    ) -> Self {
        if let Some(d) = dropout {
            self.dropout_threshold = d.threshold.max(1);
            self.dropout_scale = d.scale;
            self.dropout_seed = seed;
            self.dropout_layer = layer as u32;
        }
        self
    }
}

/// Mirrors `Shape` in shaders/activation.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ElementwiseShape {
    pub rows: u32,
    pub width: u32,
    pub activation: u32,
    pub slope: f32,
}

/// Mirrors `Shape` in shaders/loss.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct LossShape {
    pub rows: u32,
    pub width: u32,
    pub loss: u32,
    pub activation: u32,
    pub slope: f32,
    pub inv_norm: f32,
}

/// Mirrors `Shape` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ReduceShape {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: u32,
    pub out_offset: u32,
}

/// Mirrors `Rule` in shaders/optimizer.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct OptimizerShape {
    pub n: u32,
    pub kind: u32,
    pub flag: u32,
    pub decoupled: u32,
    pub a: f32,
    pub b: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub clip_norm: f32,
    pub clip_value: f32,
}

impl OptimizerShape {
    /// The rule over `n` padded parameters, with clipping.
    pub(crate) fn new(
        optimizer: &crate::optim::Optimizer,
        clip: &crate::optim::GradClip,
        n: u64,
    ) -> Self {
        let rule = optimizer.rule();
        OptimizerShape {
            n: n as u32,
            kind: rule.kind as u32,
            flag: rule.flag as u32,
            decoupled: rule.decoupled as u32,
            a: rule.a as f32,
            b: rule.b as f32,
            eps: rule.eps as f32,
            weight_decay: rule.weight_decay as f32,
            momentum: rule.momentum as f32,
            clip_norm: clip.max_norm.unwrap_or(0.0) as f32,
            clip_value: clip.max_value.unwrap_or(0.0) as f32,
        }
    }
}

/// Workgroups of the first pass of the gradient norm.
pub(crate) const NORM_GROUPS: u32 = 256;

/// Mirrors `Shape` in shaders/pack.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct PackShape {
    pub rows: u32,
    pub cols: u32,
    pub padded_rows: u32,
    pub texels: u32,
}

/// A matrix of up to `rows` × `cols` as a matmul operand texture: four
/// consecutive values of a row per rgba32float texel, rows padded to a
/// multiple of four (the texture matmul reads whole quads along K).
#[derive(Debug)]
pub(crate) struct OperandTexture {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    pub cols: u32,
}

impl OperandTexture {
    /// The texture's extent for a `rows` × `cols` matrix.
    pub(crate) fn extent(rows: usize, cols: usize) -> (u32, u32) {
        (cols.div_ceil(4) as u32, rows.next_multiple_of(4) as u32)
    }

    /// Whether a `rows` × `cols` matrix fits the device's texture limits.
    pub(crate) fn fits(limits: &wgpu::Limits, rows: usize, cols: usize) -> bool {
        let (w, h) = OperandTexture::extent(rows.max(1), cols.max(1));
        w <= limits.max_texture_dimension_2d && h <= limits.max_texture_dimension_2d
    }

    pub(crate) fn new(device: &wgpu::Device, label: &str, rows: usize, cols: usize) -> Self {
        let (width, height) = OperandTexture::extent(rows.max(1), cols.max(1));
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        OperandTexture {
            texture,
            view,
            cols: cols as u32,
        }
    }

    /// Whether every row is a whole number of texels (`pack_quads` fills it).
    pub(crate) fn quads(&self) -> bool {
        self.cols.is_multiple_of(4)
    }

    /// Bytes the texture occupies.
    pub(crate) fn bytes(&self) -> u64 {
        let size = self.texture.size();
        size.width as u64 * size.height as u64 * 16
    }

    /// The pack kernel's shape and workgroups for `rows` rows of it.
    pub(crate) fn pack_shape(&self, rows: usize, max_per_dim: u32) -> (PackShape, (u32, u32)) {
        let shape = PackShape {
            rows: rows as u32,
            cols: self.cols,
            padded_rows: rows.next_multiple_of(4) as u32,
            texels: self.cols.div_ceil(4),
        };
        let texels = shape.texels as u64 * shape.padded_rows as u64;
        (shape, grid(texels, 64, max_per_dim))
    }
}

/// Mirrors `Shape` in shaders/data.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct GatherShape {
    pub rows: u32,
    pub features: u32,
    pub target_width: u32,
    /// Rows into the batch where this pass starts (micro-batches).
    pub offset: u32,
}

/// Mirrors `Step` in shaders/data.wgsl, reduce.wgsl and optimizer.wgsl: what
/// changes from one step to the next, written for a whole epoch at once
/// beside the permutation. The scalars torch computes in double precision
/// are computed here in f64, as the CPU backend does.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct StepParams {
    pub batch_start: u32,
    pub slot: u32,
    pub t: u32,
    pub _pad: u32,
    pub lr: f32,
    pub step_size: f32,
    pub bias_correction2_sqrt: f32,
    pub adagrad_lr: f32,
    pub decay: f32,
}

impl StepParams {
    /// The parameters of optimizer step `t` (1-based) at learning rate `lr`.
    pub(crate) fn new(
        rule: &crate::optim::UpdateRule,
        t: u64,
        lr: f64,
        batch_start: u32,
        slot: u32,
    ) -> StepParams {
        let s = crate::optim::UpdateRule { lr, ..*rule }.scalars(t);
        StepParams {
            batch_start,
            slot,
            t: t.min(u32::MAX as u64) as u32,
            _pad: 0,
            lr: s.lr as f32,
            step_size: s.step_size as f32,
            bias_correction2_sqrt: s.bias_correction2_sqrt as f32,
            adagrad_lr: s.adagrad_lr as f32,
            decay: s.decay as f32,
        }
    }
}

/// One binding of a bind group layout.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Uniform,
    /// A uniform read at a dynamic offset (the per-step parameters).
    StepUniform,
    Read,
    ReadWrite,
    /// An rgba32float texture read by texel fetches (matmul operands).
    Texture,
    /// An rgba32float storage texture written by the pack kernel.
    StorageTexture,
}

/// A pipeline with its explicit bind group layout.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// Number of bindings in the layout.
    pub bindings: usize,
}

/// Every pipeline the backend uses, compiled once per device.
#[derive(Debug)]
pub(crate) struct Kernels {
    pub tiling: MatmulTiling,
    /// C = A · Bᵀ with the bias + activation epilogue (forward).
    pub matmul_forward: Kernel,
    /// C (+)= Aᵀ · B (weight gradients).
    pub matmul_weight_grad: Kernel,
    /// C = (A · B) ⊙ f'(aux) (input gradients through the previous activation).
    pub matmul_input_grad: Kernel,
    /// Plain C (+)= op(A) · op(B) for the four transposition variants, for
    /// kernel tests and benchmarks (index: trans_a · 2 + trans_b).
    pub matmul_plain: [Kernel; 4],
    pub bias_activation_forward: Kernel,
    pub activation_backward: Kernel,
    pub loss: Kernel,
    pub column_sums: Kernel,
    pub loss_sum: Kernel,
    /// The gradient's global norm, in two passes (clipping).
    pub sum_squares: Kernel,
    pub norm_finish: Kernel,
    /// Per-layer gradient and weight norms (training metrics).
    pub layer_norms: Kernel,
    pub optimizer: Kernel,
    pub gather: Kernel,
    /// A matrix into an operand texture (the texture matmul).
    pub pack: Kernel,
    /// The same for matrices whose rows are whole quads (one vec4 load a
    /// texel).
    pub pack_quads: Kernel,
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Each kernel's bindings, in binding order.
const MATMUL: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
];
const MATMUL_TEXTURE: &[Slot] = &[
    Slot::Uniform,
    Slot::Texture,
    Slot::Texture,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
];
const PACK: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::StorageTexture];
/// Binding 1 is bound too (to the same source) but not read.
const PACK_QUADS: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::StorageTexture, Slot::Read];
const ELEMENTWISE: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];
const LOSS: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];
const COLUMN_SUMS: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::ReadWrite];
const LAYER_NORMS: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
    Slot::Read,
    Slot::Read,
];
const LOSS_SUM: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::ReadWrite,
    Slot::StepUniform,
];
const OPTIMIZER: &[Slot] = &[
    Slot::Uniform,
    Slot::StepUniform,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
    Slot::Read,
];
const GATHER: &[Slot] = &[
    Slot::Uniform,
    Slot::StepUniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device, tiling: MatmulTiling) -> Kernels {
        let module = |name: &str, body: &str, preamble: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(format!("{preamble}{COMMON}\n{body}").into()),
            })
        };
        // SAFETY: every load and store in the matmul kernels is guarded by an
        // explicit check against the shape (load_a, load_b, store_tile, the
        // index and texel clamping of matmul_direct and matmul_texture_*,
        // store_one), and the host binds buffers and textures at least as
        // large as those shapes. Without naga's clamping of each index the
        // inner loop runs about 15 % faster on lavapipe.
        let matmul = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some("matmul"),
                    source: wgpu::ShaderSource::Wgsl(tiling.source().into()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let activation = module(
            "activation",
            include_str!("../../shaders/activation.wgsl"),
            "",
        );
        let loss = module("loss", include_str!("../../shaders/loss.wgsl"), "");
        let reduce = module("reduce", include_str!("../../shaders/reduce.wgsl"), "");
        let optimizer = module(
            "optimizer",
            include_str!("../../shaders/optimizer.wgsl"),
            "",
        );
        let data = module("data", include_str!("../../shaders/data.wgsl"), "");
        let pack = module("pack", include_str!("../../shaders/pack.wgsl"), "");
        let build = |module: &wgpu::ShaderModule,
                     entry: &str,
                     slots: &[Slot],
                     constants: &[(&str, f64)]| {
            let layout = bind_group_layout(device, entry, slots);
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            Kernel {
                pipeline,
                layout,
                bindings: slots.len(),
            }
        };
        let variant = |trans_a: bool, trans_b: bool, epilogue: u32| {
            let constants = [
                ("TRANS_A", trans_a as u32 as f64),
                ("TRANS_B", trans_b as u32 as f64),
                ("EPILOGUE", epilogue as f64),
            ];
            let slots = if tiling.kind == MatmulKind::Texture {
                MATMUL_TEXTURE
            } else {
                MATMUL
            };
            build(
                &matmul,
                &tiling.entry_point(trans_a, trans_b),
                slots,
                &constants,
            )
        };
        Kernels {
            tiling,
            matmul_forward: variant(false, true, 1),
            matmul_weight_grad: variant(true, false, 0),
            matmul_input_grad: variant(false, false, 2),
            matmul_plain: [
                variant(false, false, 0),
                variant(false, true, 0),
                variant(true, false, 0),
                variant(true, true, 0),
            ],
            bias_activation_forward: build(
                &activation,
                "bias_activation_forward",
                ELEMENTWISE,
                &[],
            ),
            activation_backward: build(&activation, "activation_backward", ELEMENTWISE, &[]),
            loss: build(&loss, "loss", LOSS, &[]),
            column_sums: build(&reduce, "column_sums", COLUMN_SUMS, &[]),
            loss_sum: build(&reduce, "loss_sum", LOSS_SUM, &[]),
            sum_squares: build(&reduce, "sum_squares", COLUMN_SUMS, &[]),
            norm_finish: build(&reduce, "norm_finish", COLUMN_SUMS, &[]),
            layer_norms: build(&reduce, "layer_norms", LAYER_NORMS, &[]),
            optimizer: build(&optimizer, "update", OPTIMIZER, &[]),
            gather: build(&data, "gather", GATHER, &[]),
            pack: build(&pack, "pack", PACK, &[]),
            pack_quads: build(&pack, "pack_quads", PACK_QUADS, &[]),
        }
    }
}

impl Kernels {
    /// The pack kernel for a texture: `pack_quads` when its rows are whole
    /// quads (`OperandTexture::quads`), else `pack`.
    pub(crate) fn pack_kernel(&self, quads: bool) -> &Kernel {
        if quads { &self.pack_quads } else { &self.pack }
    }

    /// The pack kernel's bind group: `source` (buffer, byte offset, size)
    /// into `texture`, shaped by the `PackShape` at byte `uniform.1` of
    /// `uniform.0`.
    pub(crate) fn pack_group(
        &self,
        device: &wgpu::Device,
        uniform: (&wgpu::Buffer, u64),
        source: (&wgpu::Buffer, u64, Option<std::num::NonZeroU64>),
        texture: &OperandTexture,
    ) -> wgpu::BindGroup {
        let (buffer, offset, size) = source;
        let kernel = self.pack_kernel(texture.quads());
        let source = |binding| wgpu::BindGroupEntry {
            binding,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size,
            }),
        };
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: uniform.0,
                    offset: uniform.1,
                    size: std::num::NonZeroU64::new(std::mem::size_of::<PackShape>() as u64),
                }),
            },
            source(1),
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(&texture.view),
            },
        ];
        if kernel.bindings == 4 {
            entries.push(source(3));
        }
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pack"),
            layout: &kernel.layout,
            entries: &entries,
        })
    }
}

fn bind_group_layout(device: &wgpu::Device, label: &str, slots: &[Slot]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match slot {
                Slot::Uniform | Slot::StepUniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: matches!(slot, Slot::StepUniform),
                    min_binding_size: None,
                },
                Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(slot, Slot::Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Slot::Texture => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                Slot::StorageTexture => wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// Workgroups for `threads` threads in groups of `group`, folded into two
/// dimensions past the per-dimension limit (the shaders' `flat_index`).
pub(crate) fn grid(threads: u64, group: u32, max_per_dim: u32) -> (u32, u32) {
    let groups = threads.div_ceil(group as u64).max(1);
    if groups <= max_per_dim as u64 {
        (groups as u32, 1)
    } else {
        (max_per_dim, groups.div_ceil(max_per_dim as u64) as u32)
    }
}
