//! The compute pipelines, built once when a device opens, and the uniform
//! structs their shaders read.

use super::tiling::{MatmulChoice, MatmulKind, MatmulTiling};
use bytemuck::{Pod, Zeroable};

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

/// Every pipeline training uses, compiled once per device (the kernel
/// harness compiles its test-only ones itself).
#[derive(Debug)]
pub(crate) struct Kernels {
    /// Which tiling runs each product.
    pub choice: MatmulChoice,
    /// The matmuls of each of `choice.tilings()`, in that order; they share
    /// their bind group layouts, so one bind group serves every tiling.
    pub matmuls: Vec<MatmulKernels>,
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

/// What every kernel module starts with: the named codes, the common
/// helpers and the activation functions.
pub(crate) fn common_source() -> String {
    format!(
        "{}{}\n{}",
        super::codes::wgsl(),
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/activation.wgsl")
    )
}

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
pub(crate) const ELEMENTWISE: &[Slot] = &[
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

/// A module of common.wgsl and `body`, with `preamble` before both.
pub(crate) fn module(
    device: &wgpu::Device,
    name: &str,
    body: &str,
    preamble: &str,
) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(format!("{preamble}{}\n{body}", common_source()).into()),
    })
}

/// The matmul module of `tiling`.
pub(crate) fn matmul_module(device: &wgpu::Device, tiling: &MatmulTiling) -> wgpu::ShaderModule {
    // SAFETY: every load and store in the matmul kernels is guarded by an
    // explicit check against the shape (load_a, load_b, store_tile, the
    // index and texel clamping of matmul_direct and matmul_texture_*,
    // store_one), and the host binds buffers and textures at least as
    // large as those shapes. Without naga's clamping of each index the
    // inner loop runs about 15 % faster on lavapipe.
    unsafe {
        device.create_shader_module_trusted(
            wgpu::ShaderModuleDescriptor {
                label: Some("matmul"),
                source: wgpu::ShaderSource::Wgsl(tiling.source().into()),
            },
            wgpu::ShaderRuntimeChecks::unchecked(),
        )
    }
}

/// The three matmuls of a training step, compiled for one tiling.
#[derive(Debug)]
pub(crate) struct MatmulKernels {
    pub tiling: MatmulTiling,
    /// C = A · Bᵀ with the bias + activation epilogue (forward).
    pub forward: Kernel,
    /// C (+)= Aᵀ · B (weight gradients).
    pub weight_grad: Kernel,
    /// C = (A · B) ⊙ f'(aux) (input gradients through the previous activation).
    pub input_grad: Kernel,
}

impl MatmulKernels {
    fn new(device: &wgpu::Device, tiling: MatmulTiling, layout: &wgpu::BindGroupLayout) -> Self {
        let module = matmul_module(device, &tiling);
        let variant =
            |trans, epilogue| matmul_variant(device, &module, &tiling, trans, epilogue, layout);
        MatmulKernels {
            tiling,
            forward: variant((false, true), 1),
            weight_grad: variant((true, false), 0),
            input_grad: variant((false, false), 2),
        }
    }

    /// Workgroups of an `m` × `n` product.
    pub(crate) fn workgroups(&self, m: usize, n: usize) -> (u32, u32) {
        (
            (n as u32).div_ceil(self.tiling.tile_n()),
            (m as u32).div_ceil(self.tiling.tile_m()),
        )
    }
}

/// The bind group layout of every matmul of `kind`.
pub(crate) fn matmul_layout(device: &wgpu::Device, kind: MatmulKind) -> wgpu::BindGroupLayout {
    let slots = if kind == MatmulKind::Texture {
        MATMUL_TEXTURE
    } else {
        MATMUL
    };
    bind_group_layout(device, "matmul", slots)
}

/// The pipeline of `entry` in `module`, with its bind group layout from
/// `slots` and its override constants.
pub(crate) fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    slots: &[Slot],
    constants: &[(&str, f64)],
) -> Kernel {
    let layout = bind_group_layout(device, entry, slots);
    pipeline_in(device, module, entry, (layout, slots.len()), constants)
}

/// The pipeline of `entry` in `module` with a given bind group layout (of
/// so many bindings).
fn pipeline_in(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    (layout, bindings): (wgpu::BindGroupLayout, usize),
    constants: &[(&str, f64)],
) -> Kernel {
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
        bindings,
    }
}

/// The matmul pipeline of `tiling` for one transposition variant and
/// epilogue (0 plain, 1 bias + activation, 2 times f'(aux)).
pub(crate) fn matmul_variant(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    tiling: &MatmulTiling,
    (trans_a, trans_b): (bool, bool),
    epilogue: u32,
    layout: &wgpu::BindGroupLayout,
) -> Kernel {
    let constants = [
        ("TRANS_A", trans_a as u32 as f64),
        ("TRANS_B", trans_b as u32 as f64),
        ("EPILOGUE", epilogue as f64),
    ];
    pipeline_in(
        device,
        module,
        &tiling.entry_point(trans_a, trans_b),
        (layout.clone(), MATMUL.len()),
        &constants,
    )
}

impl Kernels {
    /// Every pipeline training uses, compiled for `device`.
    pub(crate) fn new(device: &wgpu::Device, choice: MatmulChoice) -> Kernels {
        let layout = matmul_layout(device, choice.small.kind);
        let matmuls = choice
            .tilings()
            .into_iter()
            .map(|tiling| MatmulKernels::new(device, tiling, &layout))
            .collect();
        let loss = module(device, "loss", include_str!("../../shaders/loss.wgsl"), "");
        let reduce = module(
            device,
            "reduce",
            include_str!("../../shaders/reduce.wgsl"),
            "",
        );
        let optimizer = module(
            device,
            "optimizer",
            include_str!("../../shaders/optimizer.wgsl"),
            "",
        );
        let data = module(device, "data", include_str!("../../shaders/data.wgsl"), "");
        let pack = module(device, "pack", include_str!("../../shaders/pack.wgsl"), "");
        let build = |module, entry, slots| pipeline(device, module, entry, slots, &[]);
        Kernels {
            choice,
            matmuls,
            loss: build(&loss, "loss", LOSS),
            column_sums: build(&reduce, "column_sums", COLUMN_SUMS),
            loss_sum: build(&reduce, "loss_sum", LOSS_SUM),
            sum_squares: build(&reduce, "sum_squares", COLUMN_SUMS),
            norm_finish: build(&reduce, "norm_finish", COLUMN_SUMS),
            layer_norms: build(&reduce, "layer_norms", LAYER_NORMS),
            optimizer: build(&optimizer, "update", OPTIMIZER),
            gather: build(&data, "gather", GATHER),
            pack: build(&pack, "pack", PACK),
            pack_quads: build(&pack, "pack_quads", PACK_QUADS),
        }
    }
}

impl Kernels {
    /// The matmuls an `m` × `n` product runs with (see
    /// [`MatmulChoice::for_product`]), and its workgroups.
    pub(crate) fn matmul(&self, m: usize, n: usize) -> (&MatmulKernels, (u32, u32)) {
        let kernels = &self.matmuls[self.choice.for_product(m, n)];
        (kernels, kernels.workgroups(m, n))
    }

    /// The tiling of the products that do not take large tiles (the only
    /// one, off hardware GPUs).
    pub(crate) fn tiling(&self) -> MatmulTiling {
        self.choice.small
    }

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
