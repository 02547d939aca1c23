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

    /// The tiling for an adapter: 64×64 tiles of 4×4 per thread on hardware
    /// GPUs; on CPU implementations (lavapipe), where a workgroup runs as a
    /// SIMD loop, a wider register block with fewer threads per tile.
    pub fn for_adapter(is_hardware: bool) -> MatmulTiling {
        if is_hardware {
            MatmulTiling {
                wg_x: 16,
                wg_y: 16,
                rm: 4,
                rn: 4,
                tk: 16,
            }
        } else {
            MatmulTiling {
                wg_x: 8,
                wg_y: 8,
                rm: 4,
                rn: 4,
                tk: 16,
            }
        }
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
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub activation: u32,
    pub slope: f32,
    pub accumulate: u32,
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
}

/// Mirrors `Shape` in shaders/data.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct GatherShape {
    pub rows: u32,
    pub features: u32,
    pub target_width: u32,
    pub _pad: u32,
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
        let tf = t as f64;
        StepParams {
            batch_start,
            slot,
            t: t.min(u32::MAX as u64) as u32,
            _pad: 0,
            lr: lr as f32,
            step_size: (lr / (1.0 - rule.a.powf(tf))) as f32,
            bias_correction2_sqrt: (1.0 - rule.b.powf(tf)).sqrt() as f32,
            adagrad_lr: (lr / (1.0 + (tf - 1.0) * rule.b)) as f32,
            decay: (1.0 - lr * rule.weight_decay) as f32,
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
}

/// A pipeline with its explicit bind group layout.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
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
    pub optimizer: Kernel,
    pub gather: Kernel,
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
];
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
        let matmul = module(
            "matmul",
            include_str!("../../shaders/matmul.wgsl"),
            &tiling.preamble(),
        );
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
            Kernel { pipeline, layout }
        };
        let variant = |trans_a: bool, trans_b: bool, epilogue: u32| {
            let constants = [
                ("TRANS_A", trans_a as u32 as f64),
                ("TRANS_B", trans_b as u32 as f64),
                ("EPILOGUE", epilogue as f64),
            ];
            build(&matmul, "matmul", MATMUL, &constants)
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
            optimizer: build(&optimizer, "update", OPTIMIZER, &[]),
            gather: build(&data, "gather", GATHER, &[]),
        }
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
