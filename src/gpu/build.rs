//! Opening a `GpuBackend`: the device, then every buffer, texture, bind
//! group and pipeline a run needs, allocated once.

use super::backend::GpuBackend;
use super::context::GpuContext;
use super::dispatch::{MAX_PASS_ROWS, check_products};
use super::pipelines::{Kernel, Kernels, NORM_GROUPS, binding, entry};
use super::plan::packs;
use super::resources::{OperandTexture, PackSource, ParamLayout, Textures, storage, storage_init};
use super::steps::WINDOW;
use super::tiling::{MatmulChoice, MatmulKind, MatmulTiling};
use super::uniforms::{OptimizerUniform, ReduceShape, StepUniform};
use crate::backend::BackendConfig;
use crate::error::Result;
use crate::model::Mlp;
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use wgpu::util::DeviceExt;

/// What only the GPU backend reads: limits on how much one pass or one
/// binding holds. The defaults follow the adapter's own limits; a
/// [`TrainConfig`](crate::TrainConfig) carries these as its `gpu` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuOptions {
    /// The most rows one pass over the network may hold. Batches larger
    /// than this, or than the adapter's binding limits allow, are split
    /// into micro-batches whose gradients accumulate before one update:
    /// the same step. `None`: as many as the limits allow.
    pub max_rows_per_pass: Option<usize>,
    /// Treat the adapter's largest storage binding as at most this many
    /// bytes. Training data larger than a binding is streamed from host
    /// memory; activations larger than one split into micro-batches. A
    /// test hook, and a way to keep device memory low.
    pub max_binding_bytes: Option<u64>,
}

impl GpuBackend {
    /// Opens a device and allocates everything a run of `mlp` needs,
    /// starting from `params`, within `options`' limits. With
    /// `hardware_only`, a CPU implementation of the API (lavapipe) does not
    /// count as a GPU.
    ///
    /// # Errors
    /// [`Error::Gpu`](crate::Error::Gpu) when there is no adapter (saying how to install
    /// one) or the device fails.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        mlp: &Mlp,
        params: Vec<f32>,
        config: &BackendConfig,
        options: GpuOptions,
        hardware_only: bool,
    ) -> Result<GpuBackend> {
        pollster::block_on(GpuBackend::new_async(
            mlp,
            params,
            config,
            options,
            hardware_only,
        ))
    }

    /// [`new`](Self::new), awaited: in the browser the adapter and device
    /// requests are promises.
    pub async fn new_async(
        mlp: &Mlp,
        params: Vec<f32>,
        config: &BackendConfig,
        options: GpuOptions,
        hardware_only: bool,
    ) -> Result<GpuBackend> {
        let ctx = GpuContext::open_async(hardware_only).await?;
        GpuBackend::on_context(ctx, mlp, params, config, options)
    }

    /// Allocates everything a run of `mlp` needs on an open device.
    fn on_context(
        ctx: GpuContext,
        mlp: &Mlp,
        params: Vec<f32>,
        config: &BackendConfig,
        options: GpuOptions,
    ) -> Result<GpuBackend> {
        // Rows one pass holds: the batch (at least 256, for evaluation
        // chunks), but no more than the adapter's binding and buffer limits
        // allow for the widest activation, than `max_rows_per_pass`, or than
        // the dispatch limits allow (`MAX_PASS_ROWS`).
        let widest = mlp
            .layers()
            .iter()
            .map(|l| l.outputs.max(l.inputs))
            .max()
            .unwrap_or(1) as u64;
        let binding_limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(options.max_binding_bytes.unwrap_or(u64::MAX));
        let limit_bytes = binding_limit.min(ctx.limits.max_buffer_size);
        let pass_limit = (options.max_rows_per_pass.unwrap_or(usize::MAX)).clamp(1, MAX_PASS_ROWS);
        let limit_rows = ((limit_bytes / (4 * widest)) as usize).clamp(1, pass_limit);
        let capacity = config.batch_rows.unwrap_or(4096).max(256).min(limit_rows);
        let (optimizer, loss) = (config.optimizer, config.loss);
        let device = &ctx.device;
        let mut choice = MatmulChoice::for_adapter(ctx.summary());
        if choice.small.kind == MatmulKind::Texture && !Textures::fit(&ctx.limits, mlp, capacity) {
            log::info!(
                "operands exceed the texture limit of {}: using the storage-buffer matmul",
                ctx.limits.max_texture_dimension_2d
            );
            choice = MatmulChoice::single(MatmulTiling::direct());
        }
        let kernels = Kernels::new(device, choice);
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension;
        check_products(&kernels.choice, mlp, capacity, max_groups)?;
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
        let textures = (choice.small.kind == MatmulKind::Texture).then(|| {
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
                .map(|(l, (layer, texture))| PackSource {
                    buffer: &params_buffer,
                    offset: layout.weight[l] * 4,
                    rows: layer.outputs,
                    texture,
                })
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
            (std::mem::size_of::<StepUniform>() as u64).next_multiple_of(uniform_align);
        // The ring of two windows (src/gpu/steps.rs): sized once, never per call.
        let step_slots = 2 * WINDOW;
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
        let optimizer_uniform = OptimizerUniform::new(&optimizer, &config.grad_clip, layout.len);
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
                    entry(binding::SHAPE, uniform, 0, None),
                    entry(binding::reduce::INPUT, input, 0, None),
                    entry(binding::reduce::OUT, out, 0, None),
                ],
            })
        });
        let optimizer_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("optimizer rule"),
            contents: bytemuck::bytes_of(&optimizer_uniform),
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
            window_readback: [0, 1].map(|_| {
                let layers = mlp.layers().len() as u64;
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("window read-back"),
                    size: WINDOW as u64 * (2 + 2 * layers) * 4,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }),
            steps,
            step_stride,
            step_slots,
            optimizer_group,
            _optimizer_uniform: optimizer_uniform,
            clip_norm,
            norm_groups,
            _norm: norm,
            _norm_buffers: [norm_partials, first_uniform, second_uniform],
            norms_every: config.norms_every,
            layer_norm_results,
            _layer_ranges: layer_ranges,
            _layer_norms_uniform: layer_norms_uniform,
            layer_norms_group,
            resident: None,
            uploads: 0,
            streamed: false,
            binding_limit,
            plans: HashMap::new(),
            t: 0,
            state_slots: optimizer.state_slots(),
            uniform_align,
            stop_flag: config.stop_flag.clone(),
            marks: RefCell::new(None),
            ctx,
        };
        backend.ctx.check()?;
        Ok(backend)
    }

    pub(super) fn step_buffer(device: &wgpu::Device, stride: u64, slots: usize) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step parameters"),
            size: stride * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub(super) fn optimizer_group(
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
                entry(binding::optimizer::RULE, rule, 0, None),
                entry(
                    binding::optimizer::STEP,
                    steps,
                    0,
                    NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64),
                ),
                entry(binding::optimizer::PARAMS, params, 0, None),
                entry(binding::optimizer::GRADS, grads, 0, None),
                entry(binding::optimizer::STATE, state, 0, None),
                entry(binding::optimizer::CLIP, norm, 0, None),
            ],
        })
    }

    /// The `layer_norms` bind group: its shape, the gradients, the results,
    /// the step uniform, the parameters and the layers' ranges.
    pub(super) fn layer_norms_group(
        device: &wgpu::Device,
        kernel: &Kernel,
        [shape, grads, results, steps, params, ranges]: [&wgpu::Buffer; 6],
    ) -> wgpu::BindGroup {
        use binding::reduce;
        let step_size = NonZeroU64::new(std::mem::size_of::<StepUniform>() as u64);
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("layer norms"),
            layout: &kernel.layout,
            entries: &[
                entry(binding::SHAPE, shape, 0, None),
                entry(reduce::INPUT, grads, 0, None),
                entry(reduce::OUT, results, 0, None),
                entry(reduce::STEP, steps, 0, step_size),
                entry(reduce::NORM_PARAMS, params, 0, None),
                entry(reduce::NORM_RANGES, ranges, 0, None),
            ],
        })
    }
}
