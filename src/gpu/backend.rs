//! Training on the GPU: buffers allocated once, the data set resident, many
//! steps recorded into one submission, one read-back per epoch.

use super::context::GpuContext;
use super::kernels::{
    GatherShape, Kernel, Kernels, LossShape, MatmulKind, MatmulShape, MatmulTiling, NORM_GROUPS,
    OperandTexture, OptimizerShape, ReduceShape, StepParams, grid,
};
use crate::backend::{Backend, BackendConfig, BatchShare, DeviceData, LayerNorms, StepsLoss};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::Mlp;
use crate::optim::UpdateRule;
use crate::stop::StopFlag;
use bytemuck::Pod;
use std::collections::HashMap;
use std::num::NonZeroU64;
use wgpu::util::DeviceExt;

/// Steps recorded into one command buffer before it is submitted.
const STEPS_PER_SUBMIT: usize = 64;

/// Where each layer's weight and bias start in the GPU's flat buffers: the
/// CPU layout with each tensor moved to the device's storage-offset
/// alignment, so that every tensor can be bound on its own. Padding is zero
/// and stays zero (its gradient is zero).
#[derive(Debug, Clone)]
pub(crate) struct ParamLayout {
    pub weight: Vec<u64>,
    pub bias: Vec<u64>,
    pub len: u64,
}

impl ParamLayout {
    pub(crate) fn new(mlp: &Mlp, align_floats: u64) -> ParamLayout {
        let mut at = 0u64;
        let (mut weight, mut bias) = (Vec::new(), Vec::new());
        let mut place = |count: usize| {
            let start = at;
            at = (at + count as u64).next_multiple_of(align_floats);
            start
        };
        for layer in mlp.layers() {
            weight.push(place(layer.inputs * layer.outputs));
            bias.push(place(layer.outputs));
        }
        ParamLayout {
            weight,
            bias,
            // A whole number of vec4s (the optimizer kernel's unit).
            len: at.max(1).next_multiple_of(4),
        }
    }

    fn pack(&self, mlp: &Mlp, flat: &[f32]) -> Vec<f32> {
        let mut padded = vec![0f32; self.len as usize];
        for l in 0..mlp.layers().len() {
            let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
            let wo = self.weight[l] as usize;
            let bo = self.bias[l] as usize;
            padded[wo..wo + w.len()].copy_from_slice(&flat[w]);
            padded[bo..bo + b.len()].copy_from_slice(&flat[b]);
        }
        padded
    }

    fn unpack(&self, mlp: &Mlp, padded: &[f32]) -> Vec<f32> {
        let mut flat = vec![0f32; mlp.parameter_count()];
        for l in 0..mlp.layers().len() {
            let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
            let wo = self.weight[l] as usize;
            let bo = self.bias[l] as usize;
            let (wl, bl) = (w.len(), b.len());
            flat[w].copy_from_slice(&padded[wo..wo + wl]);
            flat[b].copy_from_slice(&padded[bo..bo + bl]);
        }
        flat
    }
}

/// A buffer region to bind: (buffer, offset in floats, length in floats).
type Region<'a> = (&'a wgpu::Buffer, u64, u64);

fn whole(buffer: &wgpu::Buffer) -> Region<'_> {
    (buffer, 0, buffer.size() / 4)
}

/// What a binding of a pass's bind group holds.
#[derive(Clone, Copy)]
enum Bound<'a> {
    Buffer(Region<'a>),
    /// A matmul operand texture (the texture matmul).
    Texture(&'a OperandTexture),
}

/// The data set of the current `fit`, resident on the device.
#[derive(Debug)]
struct Resident {
    x: wgpu::Buffer,
    targets: wgpu::Buffer,
    perm: wgpu::Buffer,
    features: usize,
    target_width: usize,
}

/// What a pass covers: `rows` rows starting `offset` rows into a batch of
/// `batch` rows. A batch larger than the activation buffers is split into
/// such passes (micro-batches): the loss is normalised by the whole batch,
/// and every pass after the first adds its gradients and loss to the
/// first's, so that one update follows the same step as the unsplit batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PassKey {
    rows: usize,
    batch: usize,
    offset: usize,
    /// A training pass (dropout on) rather than evaluation or prediction.
    train: bool,
    /// Adds its gradients and loss to those already there (every pass of
    /// a step but its first).
    accumulate: bool,
}

impl PassKey {
    /// An evaluation or prediction pass over `rows` rows.
    fn whole(rows: usize) -> PassKey {
        PassKey {
            rows,
            batch: rows,
            offset: 0,
            train: false,
            accumulate: false,
        }
    }

    /// The training passes over `len` rows at `offset` in a batch of
    /// `batch` rows, at most `capacity` rows each.
    fn training(
        len: usize,
        batch: usize,
        offset: usize,
        capacity: usize,
    ) -> impl Iterator<Item = PassKey> {
        (0..len).step_by(capacity).map(move |start| PassKey {
            rows: capacity.min(len - start),
            batch,
            offset: offset + start,
            train: true,
            accumulate: start > 0,
        })
    }
}

/// A pack kernel dispatch: its bind group, workgroups, and whether it is
/// `pack_quads`.
type Pack = (wgpu::BindGroup, (u32, u32), bool);

/// The texture matmul's operands: every matrix a matmul reads, as a texture
/// (see `MatmulKind::Texture`), packed once per pass after it is written.
#[derive(Debug)]
struct Textures {
    x: OperandTexture,
    /// Activations of every layer but the last (inputs of the next one).
    a: Vec<OperandTexture>,
    dz: Vec<OperandTexture>,
    weights: Vec<OperandTexture>,
    /// Packs of the weights, the same for every pass.
    weight_packs: Vec<Pack>,
    _weight_uniforms: wgpu::Buffer,
}

impl Textures {
    /// Whether every operand of `mlp` at `rows` rows fits the texture limits.
    fn fit(limits: &wgpu::Limits, mlp: &Mlp, rows: usize) -> bool {
        OperandTexture::fits(limits, rows, mlp.inputs())
            && mlp.layers().iter().all(|l| {
                OperandTexture::fits(limits, rows, l.outputs)
                    && OperandTexture::fits(limits, l.outputs, l.inputs)
            })
    }

    fn bytes(&self) -> u64 {
        std::iter::once(&self.x)
            .chain(&self.a)
            .chain(&self.dz)
            .chain(&self.weights)
            .map(OperandTexture::bytes)
            .sum()
    }

    /// The input texture of layer `l`.
    fn input(&self, l: usize) -> &OperandTexture {
        if l == 0 { &self.x } else { &self.a[l - 1] }
    }
}

/// The packs of one pass (texture matmul): its input, the activations of
/// every layer but the last, and every dZ.
#[derive(Debug)]
struct PlanPacks {
    x: Pack,
    a: Vec<Pack>,
    dz: Vec<Pack>,
    _uniforms: wgpu::Buffer,
}

/// The bind groups of one pass over `rows` rows: forward, loss, backward.
#[derive(Debug)]
struct Plan {
    rows: usize,
    gather: Option<wgpu::BindGroup>,
    forward: Vec<wgpu::BindGroup>,
    loss: wgpu::BindGroup,
    loss_sum: wgpu::BindGroup,
    weight_grad: Vec<wgpu::BindGroup>,
    bias_grad: Vec<wgpu::BindGroup>,
    /// `input_grad[l]` carries dZ of layer l back to layer l − 1 (none for 0).
    input_grad: Vec<Option<wgpu::BindGroup>>,
    packs: Option<PlanPacks>,
    _uniforms: wgpu::Buffer,
}

/// The wgpu backend: the whole step in WGSL compute shaders, parameters,
/// gradients and optimizer state each in one flat buffer, the training data
/// resident, many steps recorded into one submission.
pub struct GpuBackend {
    ctx: GpuContext,
    kernels: Kernels,
    mlp: Mlp,
    loss: Loss,
    rule: UpdateRule,
    layout: ParamLayout,
    params: wgpu::Buffer,
    /// The parameters and optimizer state as they were before the current
    /// `train_steps`: put back when a step diverges (then the good steps
    /// before it run again), so that a divergence keeps what the CPU keeps.
    params_before: wgpu::Buffer,
    state_before: wgpu::Buffer,
    grads: wgpu::Buffer,
    state: wgpu::Buffer,
    /// Rows the activation buffers hold.
    capacity: usize,
    x_batch: wgpu::Buffer,
    y_batch: wgpu::Buffer,
    z: Vec<wgpu::Buffer>,
    a: Vec<wgpu::Buffer>,
    dz: Vec<wgpu::Buffer>,
    /// The matmul operands as textures, for the texture matmul.
    textures: Option<Textures>,
    row_stats: wgpu::Buffer,
    /// Dropout per layer (training passes) and the seed of its masks.
    dropout: Vec<Option<crate::dropout::Dropout>>,
    dropout_seed: u32,
    /// Stand-ins for bindings a kernel variant does not use.
    unused_read: wgpu::Buffer,
    unused_write: wgpu::Buffer,
    /// Per step of an epoch (or chunk of an evaluation): [loss, correct].
    results: wgpu::Buffer,
    steps: wgpu::Buffer,
    step_stride: u64,
    step_slots: usize,
    optimizer_group: wgpu::BindGroup,
    _optimizer_uniform: wgpu::Buffer,
    /// Clipping by norm: the two passes' bind groups (grads → partial sums →
    /// norm), their buffers, and whether to run them.
    clip_norm: bool,
    norm_groups: [wgpu::BindGroup; 2],
    norm: wgpu::Buffer,
    _norm_buffers: [wgpu::Buffer; 3],
    /// Per-layer norms every this many steps: their results (per step slot,
    /// layer, gradient/weight), the layer ranges, and the bind group.
    norms_every: Option<u64>,
    layer_norm_results: wgpu::Buffer,
    layer_ranges: wgpu::Buffer,
    layer_norms_uniform: wgpu::Buffer,
    layer_norms_group: wgpu::BindGroup,
    resident: Option<Resident>,
    /// Uploads made; the current one's id (see `DeviceData`).
    uploads: u64,
    /// The training data is larger than one binding may hold: batches are
    /// gathered on the host and written before each pass instead.
    streamed: bool,
    /// The adapter's max_storage_buffer_binding_size, or less when
    /// `TrainConfig::max_binding_bytes` lowers it.
    binding_limit: u64,
    plans: HashMap<PassKey, Plan>,
    /// Optimizer steps taken (t of the last step).
    t: u64,
    /// Optimizer state slots per parameter.
    slots: usize,
    uniform_align: u64,
    /// Checked before every submission of `train_steps`.
    stop_flag: Option<StopFlag>,
}

fn storage(device: &wgpu::Device, label: &str, floats: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats.max(1) * 4).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn storage_init<T: Pod>(device: &wgpu::Device, label: &str, data: &[T]) -> wgpu::Buffer {
    let mut bytes = bytemuck::cast_slice::<T, u8>(data).to_vec();
    bytes.resize(bytes.len().max(4).next_multiple_of(16), 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &bytes,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
    })
}

/// Uniform blocks laid out at the device's uniform-offset alignment.
struct UniformBlocks {
    bytes: Vec<u8>,
    align: u64,
}

impl UniformBlocks {
    fn new(align: u64) -> Self {
        UniformBlocks {
            bytes: Vec::new(),
            align,
        }
    }
    /// Appends a block; returns its byte offset.
    fn push<T: Pod>(&mut self, value: &T) -> u64 {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(bytemuck::bytes_of(value));
        self.bytes.resize(
            (self.bytes.len() as u64).next_multiple_of(self.align) as usize,
            0,
        );
        offset
    }
    fn upload(&self, device: &wgpu::Device) -> wgpu::Buffer {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("shapes"),
            contents: if self.bytes.is_empty() {
                &[0; 16]
            } else {
                &self.bytes
            },
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend")
            .field("device", &self.name())
            .field("mlp", &self.mlp)
            .field("step", &self.t)
            .finish_non_exhaustive()
    }
}

impl GpuBackend {
    /// Opens a device and allocates everything a run of `mlp` needs,
    /// starting from `params`. With `hardware_only`, a CPU implementation
    /// of the API (lavapipe) does not count as a GPU.
    ///
    /// # Errors
    /// [`Error::Gpu`] when there is no adapter (saying how to install
    /// one) or the device fails.
    pub fn new(
        mlp: &Mlp,
        params: Vec<f32>,
        config: &BackendConfig,
        hardware_only: bool,
    ) -> Result<GpuBackend> {
        let ctx = GpuContext::open(hardware_only)?;
        // Rows one pass holds: the batch (at least 256, for evaluation
        // chunks), but no more than the adapter's binding and buffer limits
        // allow for the widest activation, or than `max_rows_per_pass`.
        let widest = mlp
            .layers()
            .iter()
            .map(|l| l.outputs.max(l.inputs))
            .max()
            .unwrap_or(1) as u64;
        let binding_limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(config.max_binding_bytes.unwrap_or(u64::MAX));
        let limit_bytes = binding_limit.min(ctx.limits.max_buffer_size);
        let limit_rows = (limit_bytes / (4 * widest)).max(1) as usize;
        let capacity = config
            .batch_rows
            .unwrap_or(4096)
            .max(256)
            .min(limit_rows)
            .min(config.max_rows_per_pass.unwrap_or(usize::MAX))
            .max(1);
        let (optimizer, loss) = (config.optimizer, config.loss);
        let device = &ctx.device;
        let mut tiling = MatmulTiling::for_adapter(ctx.summary().is_hardware);
        if tiling.kind == MatmulKind::Texture && !Textures::fit(&ctx.limits, mlp, capacity) {
            log::info!(
                "operands exceed the texture limit of {}: using the storage-buffer matmul",
                ctx.limits.max_texture_dimension_2d
            );
            tiling = MatmulTiling::direct();
        }
        let kernels = Kernels::new(device, tiling);
        let storage_align = (ctx.limits.min_storage_buffer_offset_alignment as u64 / 4).max(1);
        let uniform_align = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let layout = ParamLayout::new(mlp, storage_align);
        let rule = optimizer.rule();
        let slots = optimizer.state_slots() as u64;
        let params_buffer = storage_init(device, "parameters", &layout.pack(mlp, &params));
        let grads = storage(device, "gradients", layout.len);
        let params_before = storage(device, "parameters before the steps", layout.len);
        let state = storage_init(
            device,
            "optimizer state",
            &vec![optimizer.initial_state() as f32; (slots * layout.len).max(1) as usize],
        );
        let state_before = storage(device, "optimizer state before the steps", state.size() / 4);
        let widths: Vec<u64> = mlp.layers().iter().map(|l| l.outputs as u64).collect();
        let rows = capacity as u64;
        let z = widths
            .iter()
            .map(|w| storage(device, "Z", rows * w))
            .collect();
        let a = widths
            .iter()
            .map(|w| storage(device, "A", rows * w))
            .collect();
        let dz = widths
            .iter()
            .map(|w| storage(device, "dZ", rows * w))
            .collect();
        let x_batch = storage(device, "x batch", rows * mlp.inputs() as u64);
        let textures = (tiling.kind == MatmulKind::Texture).then(|| {
            let layers = mlp.layers();
            let texture = |label: &str, rows: usize, cols: usize| {
                OperandTexture::new(device, label, rows, cols)
            };
            let weights: Vec<OperandTexture> = layers
                .iter()
                .map(|l| texture("W", l.outputs, l.inputs))
                .collect();
            let sources: Vec<PackSource> = layers
                .iter()
                .zip(&weights)
                .enumerate()
                .map(|(l, (layer, w))| (&params_buffer, layout.weight[l] * 4, layer.outputs, w))
                .collect();
            let (weight_packs, uniforms) = packs(&ctx, &kernels, uniform_align, &sources);
            Textures {
                x: texture("x batch", capacity, mlp.inputs()),
                a: layers[..layers.len() - 1]
                    .iter()
                    .map(|l| texture("A", capacity, l.outputs))
                    .collect(),
                dz: layers
                    .iter()
                    .map(|l| texture("dZ", capacity, l.outputs))
                    .collect(),
                weights,
                weight_packs,
                _weight_uniforms: uniforms,
            }
        });
        let y_batch = storage(device, "target batch", rows * mlp.outputs() as u64);
        let row_stats = storage(device, "row stats", rows * 2);
        let unused_read = storage(device, "unused (read)", 4);
        let unused_write = storage(device, "unused (write)", 4);
        let step_stride =
            (std::mem::size_of::<StepParams>() as u64).next_multiple_of(uniform_align);
        let step_slots = 1;
        let results = storage(device, "results", 2 * step_slots as u64);
        let steps = Self::step_buffer(device, step_stride, step_slots);
        let layers = mlp.layers().len();
        let ranges: Vec<u32> = (0..layers)
            .flat_map(|l| {
                let (w, b) = (mlp.weight_range(l).len(), mlp.bias_range(l).len());
                [
                    layout.weight[l] as u32,
                    w as u32,
                    layout.bias[l] as u32,
                    b as u32,
                ]
            })
            .collect();
        let layer_ranges = storage_init(device, "layer ranges", &ranges);
        let layer_norms_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("layer norms shape"),
            contents: bytemuck::bytes_of(&ReduceShape {
                rows: layers as u32,
                cols: 0,
                accumulate: 0,
                out_offset: 0,
            }),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let layer_norm_results = storage(device, "layer norms", (step_slots * layers * 2) as u64);
        let layer_norms_group = Self::layer_norms_group(
            device,
            &kernels.layer_norms,
            [
                &layer_norms_uniform,
                &grads,
                &layer_norm_results,
                &steps,
                &params_buffer,
                &layer_ranges,
            ],
        );
        let optimizer_shape = OptimizerShape::new(&optimizer, &config.grad_clip, layout.len);
        let clip_norm = config.grad_clip.max_norm.is_some();
        // The gradient norm for clipping: partial sums, then the norm.
        let norm_partials = storage(device, "gradient norm partials", NORM_GROUPS as u64);
        let norm = storage(device, "gradient norm", 1);
        let norm_uniform = |rows: u64, cols: u32| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("norm shape"),
                contents: bytemuck::bytes_of(&ReduceShape {
                    rows: rows as u32,
                    cols,
                    accumulate: 0,
                    out_offset: 0,
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        let (first_uniform, second_uniform) = (
            norm_uniform(layout.len, NORM_GROUPS),
            norm_uniform(NORM_GROUPS as u64, 1),
        );
        let norm_groups = [
            (&kernels.sum_squares, &first_uniform, &grads, &norm_partials),
            (&kernels.norm_finish, &second_uniform, &norm_partials, &norm),
        ]
        .map(|(kernel, uniform, input, out)| {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gradient norm"),
                layout: &kernel.layout,
                entries: &[
                    entry(0, uniform, 0, None),
                    entry(1, input, 0, None),
                    entry(2, out, 0, None),
                ],
            })
        });
        let optimizer_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("optimizer rule"),
            contents: bytemuck::bytes_of(&optimizer_shape),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let optimizer_group = Self::optimizer_group(
            device,
            &kernels.optimizer,
            &optimizer_uniform,
            &steps,
            [&params_buffer, &grads, &state, &norm],
        );
        let backend = GpuBackend {
            kernels,
            mlp: mlp.clone(),
            loss,
            rule,
            layout,
            params: params_buffer,
            params_before,
            state_before,
            grads,
            state,
            capacity,
            x_batch,
            y_batch,
            z,
            a,
            dz,
            textures,
            row_stats,
            dropout: (0..mlp.layers().len())
                .map(|l| crate::dropout::Dropout::new(config.dropout_of(l)))
                .collect(),
            dropout_seed: crate::dropout::mask_seed(config.seed),
            unused_read,
            unused_write,
            results,
            steps,
            step_stride,
            step_slots,
            optimizer_group,
            _optimizer_uniform: optimizer_uniform,
            clip_norm,
            norm_groups,
            norm,
            _norm_buffers: [norm_partials, first_uniform, second_uniform],
            norms_every: config.norms_every,
            layer_norm_results,
            layer_ranges,
            layer_norms_uniform,
            layer_norms_group,
            resident: None,
            uploads: 0,
            streamed: false,
            binding_limit,
            plans: HashMap::new(),
            t: 0,
            slots: optimizer.state_slots(),
            uniform_align,
            stop_flag: config.stop_flag.clone(),
            ctx,
        };
        backend.ctx.check()?;
        Ok(backend)
    }

    fn step_buffer(device: &wgpu::Device, stride: u64, slots: usize) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step parameters"),
            size: stride * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn optimizer_group(
        device: &wgpu::Device,
        kernel: &Kernel,
        rule: &wgpu::Buffer,
        steps: &wgpu::Buffer,
        [params, grads, state, norm]: [&wgpu::Buffer; 4],
    ) -> wgpu::BindGroup {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("optimizer"),
            layout: &kernel.layout,
            entries: &[
                entry(0, rule, 0, None),
                entry(
                    1,
                    steps,
                    0,
                    NonZeroU64::new(std::mem::size_of::<StepParams>() as u64),
                ),
                entry(2, params, 0, None),
                entry(3, grads, 0, None),
                entry(4, state, 0, None),
                entry(5, norm, 0, None),
            ],
        })
    }

    fn layer_norms_group(
        device: &wgpu::Device,
        kernel: &Kernel,
        buffers: [&wgpu::Buffer; 6],
    ) -> wgpu::BindGroup {
        let step_size = NonZeroU64::new(std::mem::size_of::<StepParams>() as u64);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| entry(i as u32, b, 0, if i == 3 { step_size } else { None }))
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("layer norms"),
            layout: &kernel.layout,
            entries: &entries,
        })
    }

    /// Makes room for `slots` per-step parameter blocks and results.
    fn ensure_step_slots(&mut self, slots: usize) {
        if slots <= self.step_slots {
            return;
        }
        let slots = slots.next_power_of_two();
        let device = &self.ctx.device;
        self.steps = Self::step_buffer(device, self.step_stride, slots);
        self.results = storage(device, "results", 2 * slots as u64);
        self.step_slots = slots;
        let layers = self.mlp.layers().len();
        self.layer_norm_results = storage(device, "layer norms", (slots * layers * 2) as u64);
        self.layer_norms_group = Self::layer_norms_group(
            device,
            &self.kernels.layer_norms,
            [
                &self.layer_norms_uniform,
                &self.grads,
                &self.layer_norm_results,
                &self.steps,
                &self.params,
                &self.layer_ranges,
            ],
        );
        self.optimizer_group = Self::optimizer_group(
            device,
            &self.kernels.optimizer,
            &self._optimizer_uniform,
            &self.steps,
            [&self.params, &self.grads, &self.state, &self.norm],
        );
        self.plans.clear();
    }

    fn plan(&mut self, key: PassKey) -> &Plan {
        if !self.plans.contains_key(&key) {
            let plan = self.build_plan(key);
            self.plans.insert(key, plan);
        }
        &self.plans[&key]
    }

    /// The packs of a pass over `rows` rows (texture matmul): each matrix a
    /// matmul reads, from its buffer into its texture.
    fn plan_packs(&self, textures: &Textures, rows: usize) -> PlanPacks {
        let layers = self.mlp.layers();
        // The last layer's activations are no operand: zip stops before them.
        let sources: Vec<PackSource> = std::iter::once((&self.x_batch, &textures.x))
            .chain(self.a.iter().zip(&textures.a))
            .chain(self.dz.iter().zip(&textures.dz))
            .map(|(buffer, texture)| (buffer, 0, rows, texture))
            .collect();
        let (packs, uniforms) = packs(&self.ctx, &self.kernels, self.uniform_align, &sources);
        let mut packs = packs.into_iter();
        let x = packs.next().expect("the input's pack");
        let a = packs.by_ref().take(layers.len() - 1).collect();
        let dz = packs.collect();
        PlanPacks {
            x,
            a,
            dz,
            _uniforms: uniforms,
        }
    }

    fn build_plan<'a>(&'a self, key: PassKey) -> Plan {
        let rows = key.rows;
        let accumulate = u32::from(key.accumulate);
        let device = &self.ctx.device;
        let mlp = &self.mlp;
        let layers = mlp.layers();
        let last = layers.len() - 1;
        let r = rows as u64;
        let mut blocks = UniformBlocks::new(self.uniform_align);
        // Record every shape first, then bind against the uploaded buffer.
        let gather_at = self.resident.as_ref().map(|d| {
            blocks.push(&GatherShape {
                rows: rows as u32,
                features: d.features as u32,
                target_width: d.target_width as u32,
                offset: key.offset as u32,
            })
        });
        let mut forward_at = Vec::new();
        let mut weight_grad_at = Vec::new();
        let mut bias_grad_at = Vec::new();
        let mut input_grad_at = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let (code, slope) = layer.activation.code();
            let dropout = |l: usize| if key.train { self.dropout[l] } else { None };
            forward_at.push(
                blocks.push(
                    &MatmulShape {
                        m: rows as u32,
                        n: layer.outputs as u32,
                        k: layer.inputs as u32,
                        activation: code,
                        slope,
                        row_offset: key.offset as u32,
                        ..Default::default()
                    }
                    .with_dropout(dropout(l), self.dropout_seed, l),
                ),
            );
            weight_grad_at.push(blocks.push(&MatmulShape {
                m: layer.outputs as u32,
                n: layer.inputs as u32,
                k: rows as u32,
                activation: 0,
                slope: 0.0,
                accumulate,
                ..Default::default()
            }));
            bias_grad_at.push(blocks.push(&ReduceShape {
                rows: rows as u32,
                cols: layer.outputs as u32,
                accumulate,
                out_offset: self.layout.bias[l] as u32,
            }));
            input_grad_at.push((l > 0).then(|| {
                let (code, slope) = layers[l - 1].activation.code();
                blocks.push(
                    &MatmulShape {
                        m: rows as u32,
                        n: layer.inputs as u32,
                        k: layer.outputs as u32,
                        activation: code,
                        slope,
                        row_offset: key.offset as u32,
                        ..Default::default()
                    }
                    .with_dropout(dropout(l - 1), self.dropout_seed, l - 1),
                )
            }));
        }
        let (out_code, out_slope) = layers[last].activation.code();
        let width = mlp.outputs();
        let inv_norm = match self.loss {
            Loss::CrossEntropy => 1.0 / key.batch as f64,
            _ => 1.0 / (key.batch * width) as f64,
        };
        let loss_at = blocks.push(&LossShape {
            rows: rows as u32,
            width: width as u32,
            loss: self.loss.code(),
            activation: out_code,
            slope: out_slope,
            inv_norm: inv_norm as f32,
        });
        let loss_sum_at = blocks.push(&ReduceShape {
            rows: rows as u32,
            cols: 2,
            accumulate,
            out_offset: 0,
        });
        let uniforms = blocks.upload(device);
        let shape =
            |offset: u64, size: usize| entry(0, &uniforms, offset, NonZeroU64::new(size as u64));
        let group =
            |kernel: &Kernel, label: &str, first: wgpu::BindGroupEntry, regions: &[Bound]| {
                let mut entries = vec![first];
                for (i, bound) in regions.iter().enumerate() {
                    let binding = i as u32 + 1;
                    entries.push(match *bound {
                        Bound::Buffer((buffer, offset, len)) => {
                            entry(binding, buffer, offset * 4, NonZeroU64::new(len * 4))
                        }
                        Bound::Texture(texture) => wgpu::BindGroupEntry {
                            binding,
                            resource: wgpu::BindingResource::TextureView(&texture.view),
                        },
                    });
                }
                if kernel.bindings == regions.len() + 2 {
                    // The matmul kernels: the step's uniform (dropout).
                    let size = NonZeroU64::new(std::mem::size_of::<StepParams>() as u64);
                    entries.push(entry(6, &self.steps, 0, size));
                }
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &kernel.layout,
                    entries: &entries,
                })
            };
        let mm = std::mem::size_of::<MatmulShape>();
        let k = &self.kernels;
        let (unused_read, unused_write) = ((&self.unused_read, 0, 4), (&self.unused_write, 0, 4));
        let gather = self.resident.as_ref().zip(gather_at).map(|(d, at)| {
            let step = entry(
                1,
                &self.steps,
                0,
                NonZeroU64::new(std::mem::size_of::<StepParams>() as u64),
            );
            let mut entries = vec![shape(at, std::mem::size_of::<GatherShape>()), step];
            for (i, buffer) in [&d.perm, &d.x, &d.targets].into_iter().enumerate() {
                entries.push(entry(i as u32 + 2, buffer, 0, None));
            }
            entries.push(entry(
                5,
                &self.x_batch,
                0,
                NonZeroU64::new(r * d.features as u64 * 4),
            ));
            entries.push(entry(
                6,
                &self.y_batch,
                0,
                NonZeroU64::new(r * d.target_width as u64 * 4),
            ));
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gather"),
                layout: &k.gather.layout,
                entries: &entries,
            })
        });
        let input_of = |l: usize| -> Region {
            if l == 0 {
                (&self.x_batch, 0, r * mlp.inputs() as u64)
            } else {
                (&self.a[l - 1], 0, r * layers[l - 1].outputs as u64)
            }
        };
        // A matmul operand: the buffer, or its texture for the texture matmul.
        let textures = self.textures.as_ref();
        let operand = |region: Region<'a>, texture: Option<&'a OperandTexture>| match texture {
            Some(texture) => Bound::Texture(texture),
            None => Bound::Buffer(region),
        };
        let buffers = |regions: &[Region<'a>]| -> Vec<Bound<'a>> {
            regions.iter().map(|&r| Bound::Buffer(r)).collect()
        };
        let mut forward = Vec::new();
        let mut weight_grad = Vec::new();
        let mut bias_grad = Vec::new();
        let mut input_grad = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let (o, i) = (layer.outputs as u64, layer.inputs as u64);
            let weight = (&self.params, self.layout.weight[l], o * i);
            let bias = (&self.params, self.layout.bias[l], o);
            let z = (&self.z[l], 0, r * o);
            let a = (&self.a[l], 0, r * o);
            let dz = (&self.dz[l], 0, r * o);
            let input = operand(input_of(l), textures.map(|t| t.input(l)));
            let weight = operand(weight, textures.map(|t| &t.weights[l]));
            let dz_operand = operand(dz, textures.map(|t| &t.dz[l]));
            forward.push(group(
                &k.matmul_forward,
                "forward",
                shape(forward_at[l], mm),
                &[
                    input,
                    weight,
                    Bound::Buffer(z),
                    Bound::Buffer(bias),
                    Bound::Buffer(a),
                ],
            ));
            weight_grad.push(group(
                &k.matmul_weight_grad,
                "weight gradient",
                shape(weight_grad_at[l], mm),
                &[
                    dz_operand,
                    input,
                    Bound::Buffer((&self.grads, self.layout.weight[l], o * i)),
                    Bound::Buffer(unused_read),
                    Bound::Buffer(unused_write),
                ],
            ));
            bias_grad.push(group(
                &k.column_sums,
                "bias gradient",
                shape(bias_grad_at[l], std::mem::size_of::<ReduceShape>()),
                &buffers(&[dz, whole(&self.grads)]),
            ));
            input_grad.push(input_grad_at[l].map(|at| {
                let prev = layers[l - 1].outputs as u64;
                let z_prev = (&self.z[l - 1], 0, r * prev);
                let dz_prev = (&self.dz[l - 1], 0, r * prev);
                group(
                    &k.matmul_input_grad,
                    "input gradient",
                    shape(at, mm),
                    &[
                        dz_operand,
                        weight,
                        Bound::Buffer(dz_prev),
                        Bound::Buffer(z_prev),
                        Bound::Buffer(unused_write),
                    ],
                )
            }));
        }
        let (w, lastl) = (width as u64, last);
        let loss = group(
            &k.loss,
            "loss",
            shape(loss_at, std::mem::size_of::<LossShape>()),
            &buffers(&[
                (&self.z[lastl], 0, r * w),
                (&self.a[lastl], 0, r * w),
                (
                    &self.y_batch,
                    0,
                    r * if self.loss.takes_classes() { 1 } else { w },
                ),
                (&self.dz[lastl], 0, r * w),
                (&self.row_stats, 0, r * 2),
            ]),
        );
        let loss_sum = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("loss sum"),
            layout: &k.loss_sum.layout,
            entries: &[
                shape(loss_sum_at, std::mem::size_of::<ReduceShape>()),
                entry(1, &self.row_stats, 0, NonZeroU64::new(r * 2 * 4)),
                entry(2, &self.results, 0, None),
                entry(
                    3,
                    &self.steps,
                    0,
                    NonZeroU64::new(std::mem::size_of::<StepParams>() as u64),
                ),
            ],
        });
        Plan {
            rows,
            gather,
            forward,
            loss,
            loss_sum,
            weight_grad,
            bias_grad,
            input_grad,
            packs: textures.map(|t| self.plan_packs(t, rows)),
            _uniforms: uniforms,
        }
    }

    /// Records the forward pass, the loss, and (with `train`) the backward
    /// pass and the update, for the step whose parameters sit in slot `slot`.
    fn record(
        &self,
        pass: &mut wgpu::ComputePass,
        plan: &Plan,
        slot: usize,
        gather: bool,
        train: bool,
    ) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = (slot as u64 * self.step_stride) as u32;
        let rows = plan.rows;
        let layers = self.mlp.layers();
        if gather && let (Some(group), Some(d)) = (&plan.gather, &self.resident) {
            pass.set_pipeline(&k.gather.pipeline);
            pass.set_bind_group(0, group, &[step_offset]);
            let (x, y) = grid((rows * (d.features + d.target_width)) as u64, 256, max);
            pass.dispatch_workgroups(x, y, 1);
        }
        self.record_forward(pass, plan, step_offset);
        pass.set_pipeline(&k.loss.pipeline);
        pass.set_bind_group(0, &plan.loss, &[]);
        let (x, y) = grid(rows as u64, 64, max);
        pass.dispatch_workgroups(x, y, 1);
        pass.set_pipeline(&k.loss_sum.pipeline);
        pass.set_bind_group(0, &plan.loss_sum, &[step_offset]);
        pass.dispatch_workgroups(1, 1, 1);
        if !train {
            return;
        }
        let packs = plan.packs.as_ref();
        if let Some(p) = packs {
            record_pack(pass, k, &p.dz[layers.len() - 1]);
        }
        for (l, layer) in layers.iter().enumerate().rev() {
            pass.set_pipeline(&k.matmul_weight_grad.pipeline);
            pass.set_bind_group(0, &plan.weight_grad[l], &[step_offset]);
            let (x, y) = self.tiles(layer.outputs, layer.inputs);
            pass.dispatch_workgroups(x, y, 1);
            pass.set_pipeline(&k.column_sums.pipeline);
            pass.set_bind_group(0, &plan.bias_grad[l], &[]);
            pass.dispatch_workgroups((layer.outputs as u32).div_ceil(16), 1, 1);
            if let Some(group) = &plan.input_grad[l] {
                pass.set_pipeline(&k.matmul_input_grad.pipeline);
                pass.set_bind_group(0, group, &[step_offset]);
                let (x, y) = self.tiles(rows, layer.inputs);
                pass.dispatch_workgroups(x, y, 1);
                if let Some(p) = packs {
                    record_pack(pass, k, &p.dz[l - 1]);
                }
            }
        }
    }

    /// Workgroups of a matmul whose product is `m` × `n`.
    fn tiles(&self, m: usize, n: usize) -> (u32, u32) {
        let tiling = self.kernels.tiling;
        (
            (n as u32).div_ceil(tiling.tile_n()),
            (m as u32).div_ceil(tiling.tile_m()),
        )
    }

    /// Records the forward pass of a plan from its input batch to the last
    /// layer's output (with the texture matmul: packing the weights, the
    /// input and each layer's output for the next).
    fn record_forward(&self, pass: &mut wgpu::ComputePass, plan: &Plan, step_offset: u32) {
        let k = &self.kernels;
        let layers = self.mlp.layers();
        if let (Some(t), Some(p)) = (&self.textures, &plan.packs) {
            for pack in t.weight_packs.iter().chain([&p.x]) {
                record_pack(pass, k, pack);
            }
        }
        for (l, layer) in layers.iter().enumerate() {
            pass.set_pipeline(&k.matmul_forward.pipeline);
            pass.set_bind_group(0, &plan.forward[l], &[step_offset]);
            let (x, y) = self.tiles(plan.rows, layer.outputs);
            pass.dispatch_workgroups(x, y, 1);
            if let Some(pack) = plan.packs.as_ref().and_then(|p| p.a.get(l)) {
                record_pack(pass, k, pack);
            }
        }
    }

    /// Records the update of the step in slot `slot`: gradient clipping by
    /// norm if set, then the optimizer over every parameter.
    fn record_update(&self, pass: &mut wgpu::ComputePass, slot: usize, sample_norms: bool) {
        let k = &self.kernels;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let step_offset = (slot as u64 * self.step_stride) as u32;
        if sample_norms {
            pass.set_pipeline(&k.layer_norms.pipeline);
            pass.set_bind_group(0, &self.layer_norms_group, &[step_offset]);
            pass.dispatch_workgroups(self.mlp.layers().len() as u32, 2, 1);
        }
        if self.clip_norm {
            pass.set_pipeline(&k.sum_squares.pipeline);
            pass.set_bind_group(0, &self.norm_groups[0], &[]);
            pass.dispatch_workgroups(NORM_GROUPS, 1, 1);
            pass.set_pipeline(&k.norm_finish.pipeline);
            pass.set_bind_group(0, &self.norm_groups[1], &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        pass.set_pipeline(&k.optimizer.pipeline);
        pass.set_bind_group(0, &self.optimizer_group, &[step_offset]);
        let (x, y) = grid(self.layout.len / 4, 256, max);
        pass.dispatch_workgroups(x, y, 1);
    }

    fn write_steps(&self, steps: &[StepParams]) {
        let mut bytes = vec![0u8; steps.len() * self.step_stride as usize];
        for (i, s) in steps.iter().enumerate() {
            let at = i * self.step_stride as usize;
            bytes[at..at + std::mem::size_of::<StepParams>()]
                .copy_from_slice(bytemuck::bytes_of(s));
        }
        self.ctx.queue.write_buffer(&self.steps, 0, &bytes);
    }

    fn read_results(&self, slots: usize) -> Result<Vec<f32>> {
        let bytes = self.ctx.read(&self.results, 0, slots as u64 * 8)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The epoch's steps with the data in host memory: each pass's rows are
    /// gathered here, written, and submitted before the next pass's.
    /// Returns the steps submitted: all, unless the stop flag, checked
    /// before each step, ends it early.
    fn stream_epoch(
        &self,
        train: &Dataset,
        order: &[u32],
        batches: &[(usize, usize)],
    ) -> Result<usize> {
        let mut scratch = Scratch::default();
        let queue = &self.ctx.queue;
        for (slot, &(start, end)) in batches.iter().enumerate() {
            if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                self.ctx.check()?;
                return Ok(slot);
            }
            let len = end - start;
            let keys: Vec<PassKey> = PassKey::training(len, len, 0, self.capacity).collect();
            for (i, key) in keys.iter().enumerate() {
                let first = start + key.offset;
                self.write_rows(train, &order[first..first + key.rows], &mut scratch);
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                if slot == 0 && i == 0 {
                    self.snapshot(&mut encoder);
                }
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.record(&mut pass, &self.plans[key], slot, false, true);
                    if i + 1 == keys.len() {
                        self.record_update(&mut pass, slot, self.samples_norms(slot));
                    }
                }
                queue.submit([encoder.finish()]);
            }
        }
        self.ctx.check()?;
        Ok(batches.len())
    }

    /// Whether the step in `slot` of the epoch being recorded (t not yet
    /// advanced) samples the per-layer norms.
    fn samples_norms(&self, slot: usize) -> bool {
        self.samples_norms_at(self.t, slot)
    }

    fn samples_norms_at(&self, t_before: u64, slot: usize) -> bool {
        self.norms_every
            .is_some_and(|n| (t_before + slot as u64 + 1).is_multiple_of(n))
    }

    /// Records copies of the parameters and optimizer state, to put back
    /// if a step diverges.
    fn snapshot(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(&self.params, 0, &self.params_before, 0, self.params.size());
        encoder.copy_buffer_to_buffer(&self.state, 0, &self.state_before, 0, self.state.size());
    }

    /// Puts back the parameters, optimizer state and step count of the
    /// last snapshot (taken at step `t`).
    fn restore(&mut self, t: u64) -> Result<()> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.params_before, 0, &self.params, 0, self.params.size());
        encoder.copy_buffer_to_buffer(&self.state_before, 0, &self.state, 0, self.state.size());
        self.ctx.queue.submit([encoder.finish()]);
        self.t = t;
        self.ctx.check()
    }

    /// Writes `rows` of `data` (gathered on the host) into the batch
    /// buffers.
    fn write_rows(&self, data: &Dataset, rows: &[u32], scratch: &mut Scratch) {
        let (x, values, labels) = scratch;
        data.gather(rows, x, values, labels);
        let queue = &self.ctx.queue;
        queue.write_buffer(&self.x_batch, 0, bytemuck::cast_slice(x));
        match data.targets() {
            Targets::Classes(_) => {
                queue.write_buffer(&self.y_batch, 0, bytemuck::cast_slice(labels))
            }
            Targets::Values { .. } => {
                queue.write_buffer(&self.y_batch, 0, bytemuck::cast_slice(values))
            }
        }
    }

    fn write_batch(&self, data: &Dataset, start: usize, end: usize) {
        let f = data.features();
        let queue = &self.ctx.queue;
        queue.write_buffer(
            &self.x_batch,
            0,
            bytemuck::cast_slice(&data.x()[start * f..end * f]),
        );
        match data.targets() {
            Targets::Classes(labels) => {
                queue.write_buffer(&self.y_batch, 0, bytemuck::cast_slice(&labels[start..end]))
            }
            Targets::Values { values, width } => queue.write_buffer(
                &self.y_batch,
                0,
                bytemuck::cast_slice(&values[start * width..end * width]),
            ),
        }
    }
}

/// Host buffers a batch is gathered into: inputs, target values, labels.
type Scratch = (Vec<f32>, Vec<f32>, Vec<u32>);

/// What a pack copies: `rows` rows of the matrix at a byte offset into a
/// buffer, into a texture.
type PackSource<'a> = (&'a wgpu::Buffer, u64, usize, &'a OperandTexture);

/// The pack dispatches of `sources`, with the buffer that holds their shapes.
fn packs(
    ctx: &GpuContext,
    kernels: &Kernels,
    uniform_align: u64,
    sources: &[PackSource],
) -> (Vec<Pack>, wgpu::Buffer) {
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    let mut blocks = UniformBlocks::new(uniform_align);
    let shapes: Vec<(u64, (u32, u32))> = sources
        .iter()
        .map(|&(_, _, rows, texture)| {
            let (shape, groups) = texture.pack_shape(rows, max);
            (blocks.push(&shape), groups)
        })
        .collect();
    let uniforms = blocks.upload(&ctx.device);
    let packs = sources
        .iter()
        .zip(shapes)
        .map(|(&(buffer, offset, rows, texture), (at, groups))| {
            let size = NonZeroU64::new(rows as u64 * texture.cols as u64 * 4);
            let source = (buffer, offset, size);
            let group = kernels.pack_group(&ctx.device, (&uniforms, at), source, texture);
            (group, groups, texture.quads())
        })
        .collect();
    (packs, uniforms)
}

/// Records one pack dispatch (texture matmul).
fn record_pack(pass: &mut wgpu::ComputePass, kernels: &Kernels, (group, (x, y), quads): &Pack) {
    pass.set_pipeline(&kernels.pack_kernel(*quads).pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(*x, *y, 1);
}

fn entry(
    binding: u32,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: Option<NonZeroU64>,
) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size,
        }),
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        let s = self.ctx.summary();
        format!("gpu: {} ({})", s.name, s.backend)
    }

    fn parameters(&mut self) -> Result<Vec<f32>> {
        let bytes = self.ctx.read(&self.params, 0, self.layout.len * 4)?;
        Ok(self.layout.unpack(&self.mlp, bytemuck::cast_slice(&bytes)))
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
        self.ctx.queue.write_buffer(
            &self.params,
            0,
            bytemuck::cast_slice(&self.layout.pack(&self.mlp, params)),
        );
        self.ctx.check()
    }

    fn optimizer_state(&mut self) -> Result<(Vec<f32>, u64)> {
        let padded = self.layout.len;
        let bytes = self
            .ctx
            .read(&self.state, 0, self.slots as u64 * padded * 4)?;
        let all: &[f32] = bytemuck::cast_slice(&bytes);
        let mut state = Vec::with_capacity(self.slots * self.mlp.parameter_count());
        for slot in 0..self.slots {
            state.extend(self.layout.unpack(
                &self.mlp,
                &all[slot * padded as usize..(slot + 1) * padded as usize],
            ));
        }
        Ok((state, self.t))
    }

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()> {
        let n = self.mlp.parameter_count();
        let mut padded = Vec::with_capacity(self.slots * self.layout.len as usize);
        for slot in 0..self.slots {
            padded.extend(
                self.layout
                    .pack(&self.mlp, &state[slot * n..(slot + 1) * n]),
            );
        }
        if !padded.is_empty() {
            self.ctx
                .queue
                .write_buffer(&self.state, 0, bytemuck::cast_slice(&padded));
        }
        self.t = step;
        self.ctx.check()
    }

    fn upload<'a>(&mut self, train: &'a Dataset) -> Result<DeviceData<'a>> {
        let device = &self.ctx.device;
        self.plans.clear();
        self.resident = None;
        self.uploads += 1;
        let handle = DeviceData::new(self.uploads, train);
        let target_words = train.rows() * train.target_width();
        let largest = (train.x().len().max(target_words) * 4) as u64;
        self.streamed = largest > self.binding_limit;
        if self.streamed {
            log::info!(
                "the training data ({largest} bytes in its largest tensor) exceeds one GPU binding ({} bytes): streaming batches from host memory",
                self.binding_limit
            );
            self.ctx.check()?;
            return Ok(handle);
        }
        let (targets, target_width) = match train.targets() {
            Targets::Classes(labels) => (storage_init(device, "targets", labels), 1),
            Targets::Values { values, width } => (storage_init(device, "targets", values), *width),
        };
        self.resident = Some(Resident {
            x: storage_init(device, "inputs", train.x()),
            targets,
            perm: storage(device, "permutation", train.rows() as u64),
            features: train.features(),
            target_width,
        });
        self.ctx.check()?;
        Ok(handle)
    }

    fn forward_backward(&mut self, data: &DeviceData<'_>, share: BatchShare<'_>) -> Result<f64> {
        data.check(Some(self.uploads))?;
        share.check()?;
        if share.rows.is_empty() {
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            encoder.clear_buffer(&self.grads, 0, None);
            self.ctx.queue.submit([encoder.finish()]);
            self.ctx.check()?;
            return Ok(0.0);
        }
        // The share's rows are gathered on the host and written pass by
        // pass: a step in phases is one submission per pass anyway.
        self.ensure_step_slots(1);
        self.write_steps(&[StepParams::new(&self.rule, self.t + 1, self.rule.lr, 0, 0)]);
        let keys: Vec<PassKey> = PassKey::training(
            share.rows.len(),
            share.batch_rows,
            share.offset,
            self.capacity,
        )
        .collect();
        for key in &keys {
            self.plan(*key);
        }
        let mut scratch = Scratch::default();
        for key in &keys {
            let first = key.offset - share.offset;
            self.write_rows(
                data.dataset(),
                &share.rows[first..first + key.rows],
                &mut scratch,
            );
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record(&mut pass, &self.plans[key], 0, false, true);
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        Ok(self.read_results(1)?[0] as f64)
    }

    fn gradients(&mut self) -> Result<Vec<f32>> {
        let bytes = self.ctx.read(&self.grads, 0, self.layout.len * 4)?;
        Ok(self.layout.unpack(&self.mlp, bytemuck::cast_slice(&bytes)))
    }

    fn set_gradients(&mut self, grads: &[f32]) -> Result<()> {
        if grads.len() != self.mlp.parameter_count() {
            return Err(Error::Shape {
                what: "gradients of the network".into(),
                expected: self.mlp.parameter_count(),
                got: grads.len(),
            });
        }
        let padded = self.layout.pack(&self.mlp, grads);
        self.ctx
            .queue
            .write_buffer(&self.grads, 0, bytemuck::cast_slice(&padded));
        self.ctx.check()
    }

    fn update(&mut self, lr: f64) -> Result<()> {
        self.ensure_step_slots(1);
        self.write_steps(&[StepParams::new(&self.rule, self.t + 1, lr, 0, 0)]);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_update(&mut pass, 0, false);
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.t += 1;
        self.ctx.check()
    }

    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsLoss> {
        data.check(Some(self.uploads))?;
        if let Some(resident) = &self.resident {
            self.ctx
                .queue
                .write_buffer(&resident.perm, 0, bytemuck::cast_slice(order));
        }
        // `order` may be the rest of an epoch (Trainer::train_steps).
        let rows = order.len();
        let batches: Vec<(usize, usize)> = (0..rows)
            .step_by(batch_size)
            .map(|start| (start, (start + batch_size).min(rows)))
            .take(max_steps.try_into().unwrap_or(usize::MAX))
            .collect();
        self.ensure_step_slots(batches.len());
        let first_t = self.t;
        let steps: Vec<StepParams> = batches
            .iter()
            .enumerate()
            .map(|(s, &(start, _))| {
                StepParams::new(
                    &self.rule,
                    first_t + s as u64 + 1,
                    lr,
                    start as u32,
                    s as u32,
                )
            })
            .collect();
        self.write_steps(&steps);
        let passes = |&(start, end): &(usize, usize), capacity| {
            PassKey::training(end - start, end - start, 0, capacity)
        };
        for batch in &batches {
            for key in passes(batch, self.capacity) {
                self.plan(key);
            }
        }
        // Steps submitted: all of them unless the stop flag, checked before
        // each submission, ends it early.
        let mut submitted = 0;
        if self.streamed {
            submitted = self.stream_epoch(data.dataset(), order, &batches)?;
        }
        for (chunk_index, chunk) in batches
            .chunks(STEPS_PER_SUBMIT)
            .enumerate()
            .filter(|_| !self.streamed)
        {
            if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                break;
            }
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            if chunk_index == 0 {
                self.snapshot(&mut encoder);
            }
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for (i, batch) in chunk.iter().enumerate() {
                    let slot = chunk_index * STEPS_PER_SUBMIT + i;
                    for key in passes(batch, self.capacity) {
                        self.record(&mut pass, &self.plans[&key], slot, true, true);
                    }
                    self.record_update(&mut pass, slot, self.samples_norms(slot));
                }
            }
            self.ctx.queue.submit([encoder.finish()]);
            submitted += chunk.len();
        }
        let stopped = submitted < batches.len();
        let batches = &batches[..submitted];
        if batches.is_empty() {
            return Ok(StepsLoss {
                stopped,
                ..StepsLoss::default()
            });
        }
        self.t += batches.len() as u64;
        let results = self.read_results(batches.len())?;
        if let Some(bad) = (0..batches.len()).find(|&s| !results[2 * s].is_finite()) {
            // Every step ran; put back the state from before them and run
            // the good ones again, so that what is kept is what the CPU
            // keeps: everything as it was before the bad step.
            self.restore(first_t)?;
            if bad > 0 {
                // The good steps run again whole, whatever the stop flag says.
                let stop_flag = self.stop_flag.take();
                let rerun = self.train_steps(data, order, batch_size, bad as u64, lr);
                self.stop_flag = stop_flag;
                rerun?;
            }
            return Err(Error::Diverged {
                step: first_t + bad as u64 + 1,
                loss: results[2 * bad] as f64,
            });
        }
        let mut epoch = StepsLoss {
            stopped,
            ..StepsLoss::default()
        };
        if (0..batches.len()).any(|s| self.samples_norms_at(first_t, s)) {
            let layers = self.mlp.layers().len();
            let bytes = self.ctx.read(
                &self.layer_norm_results,
                0,
                (batches.len() * layers * 2 * 4) as u64,
            )?;
            let norms: &[f32] = bytemuck::cast_slice(&bytes);
            for s in (0..batches.len()).filter(|&s| self.samples_norms_at(first_t, s)) {
                for layer in 0..layers {
                    let at = (s * layers + layer) * 2;
                    epoch.norms.push(LayerNorms {
                        step: first_t + s as u64 + 1,
                        layer,
                        grad_norm: norms[at] as f64,
                        weight_norm: norms[at + 1] as f64,
                    });
                }
            }
        }
        for (s, &(start, end)) in batches.iter().enumerate() {
            epoch.loss_sum += results[2 * s] as f64 * (end - start) as f64;
            epoch.rows += end - start;
            epoch.steps += 1;
        }
        Ok(epoch)
    }

    fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)> {
        let chunks: Vec<(usize, usize)> = (0..data.rows())
            .step_by(self.capacity)
            .map(|start| (start, (start + self.capacity).min(data.rows())))
            .collect();
        self.ensure_step_slots(chunks.len());
        let steps: Vec<StepParams> = (0..chunks.len())
            .map(|s| StepParams {
                slot: s as u32,
                ..Default::default()
            })
            .collect();
        self.write_steps(&steps);
        for (slot, &(start, end)) in chunks.iter().enumerate() {
            self.plan(PassKey::whole(end - start));
            self.write_batch(data, start, end);
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record(
                    &mut pass,
                    &self.plans[&PassKey::whole(end - start)],
                    slot,
                    false,
                    false,
                );
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        let results = self.read_results(chunks.len())?;
        let mut loss_sum = 0.0;
        let mut correct = 0.0;
        for (s, &(start, end)) in chunks.iter().enumerate() {
            loss_sum += results[2 * s] as f64 * (end - start) as f64;
            correct += results[2 * s + 1] as f64;
        }
        Ok((
            loss_sum,
            self.loss
                .is_classification()
                .then_some(correct.round() as usize),
        ))
    }

    fn memory_bytes(&self) -> u64 {
        let mut buffers = vec![
            &self.params,
            &self.params_before,
            &self.grads,
            &self.state,
            &self.state_before,
            &self.x_batch,
            &self.y_batch,
            &self.row_stats,
            &self.results,
            &self.steps,
        ];
        buffers.extend(self.z.iter().chain(&self.a).chain(&self.dz));
        if let Some(d) = &self.resident {
            buffers.extend([&d.x, &d.targets, &d.perm]);
        }
        buffers.iter().map(|b| b.size()).sum::<u64>()
            + self.textures.as_ref().map_or(0, Textures::bytes)
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let inputs = self.mlp.inputs();
        let outputs = self.mlp.outputs();
        let rows = x.len() / inputs;
        self.ensure_step_slots(1);
        self.write_steps(&[StepParams::default()]);
        // Chunk by chunk, each read back before the next: no buffer of all
        // the outputs on the device, whatever the number of rows.
        let last = self.mlp.layers().len() - 1;
        let mut out = Vec::with_capacity(rows * outputs);
        for start in (0..rows).step_by(self.capacity) {
            let end = (start + self.capacity).min(rows);
            self.plan(PassKey::whole(end - start));
            self.ctx.queue.write_buffer(
                &self.x_batch,
                0,
                bytemuck::cast_slice(&x[start * inputs..end * inputs]),
            );
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                let plan = &self.plans[&PassKey::whole(end - start)];
                self.record_forward(&mut pass, plan, 0);
            }
            self.ctx.queue.submit([encoder.finish()]);
            let bytes = self
                .ctx
                .read(&self.a[last], 0, ((end - start) * outputs * 4) as u64)?;
            out.extend_from_slice(bytemuck::cast_slice(&bytes));
        }
        Ok(out)
    }
}
