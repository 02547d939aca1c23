//! Opening a `GpuBackend`: the device, then every buffer, texture, bind
//! group and pipeline a run needs, allocated once.

use super::backend::GpuBackend;
use super::context::GpuContext;
use super::dispatch::{MAX_PASS_ROWS, MAX_TABM_PASS_ROWS, check_products};
use super::ensemble::Ensemble;
use super::pipelines::Kernels;
use super::plan::packs;
use super::resources::{OperandTexture, PackSource, ParamLayout, Textures, storage, storage_init};
use super::sequence::Sequence;
use super::tiling::{MatmulChoice, MatmulKind, MatmulTiling};
use super::uniforms::StepUniform;
use super::update::{UpdateBuffers, UpdateGroups, UpdatePlan};
use super::window::WINDOW;
use crate::backend::BackendConfig;
use crate::error::Result;
use crate::model::Mlp;
use crate::real::Precision;
use std::cell::RefCell;
use std::collections::HashMap;

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
    /// The matmul kernels, instead of the adapter's default or what
    /// `RETROPROP_MATMUL` says ([`MatmulChoice::for_adapter`]); a split-K
    /// of 0 units still fills the adapter's
    /// [`compute_units`](super::compute_units).
    pub matmul: Option<MatmulChoice>,
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
        refuse_tabm(mlp, config)?;
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
        // A TabM pass holds every member's rows of each batch row.
        let members = mlp.members();
        let widest = mlp
            .layers()
            .iter()
            .map(|l| l.outputs.max(l.inputs))
            .max()
            .unwrap_or(1) as u64
            * members as u64;
        let binding_limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(options.max_binding_bytes.unwrap_or(u64::MAX));
        let limit_bytes = binding_limit.min(ctx.limits.max_buffer_size);
        let most_rows = match mlp.tabm_spec() {
            Some(_) => MAX_TABM_PASS_ROWS / members,
            None => MAX_PASS_ROWS,
        };
        let pass_limit =
            (options.max_rows_per_pass.unwrap_or(usize::MAX)).clamp(1, most_rows.max(1));
        let limit_rows = ((limit_bytes / (4 * widest)) as usize).clamp(1, pass_limit);
        let capacity = config.batch_rows.unwrap_or(4096).max(256).min(limit_rows);
        let (optimizer, loss) = (config.optimizer, config.loss);
        let device = &ctx.device;
        let mut choice = match (config.precision, options.matmul) {
            (Precision::Mixed, _) => MatmulChoice::mixed(ctx.summary())?,
            (Precision::F32, Some(choice)) => choice.on_adapter(ctx.summary()),
            (Precision::F32, None) => MatmulChoice::for_adapter(ctx.summary()),
        };
        // The texture matmul packs each layer's input from the layer before
        // it; a network that is not plain reads its dense layers' inputs
        // from other steps' buffers, which the storage-buffer matmul binds
        // as they are.
        let textures_fit = Textures::fit(&ctx.limits, mlp, capacity);
        if choice.small.kind == MatmulKind::Texture && (!textures_fit || !mlp.is_plain()) {
            log::info!(
                "{}: using the storage-buffer matmul",
                if textures_fit {
                    "a network that is not plain".to_string()
                } else {
                    format!(
                        "operands exceed the texture limit of {}",
                        ctx.limits.max_texture_dimension_2d
                    )
                }
            );
            choice = MatmulChoice {
                split: choice.split,
                ..MatmulChoice::single(MatmulTiling::direct())
            };
        }
        // TabM's products with the member as their z run on the kernels
        // that read operands through the members' bases.
        if mlp.tabm_spec().is_some()
            && (choice.tilings().iter())
                .any(|t| !matches!(t.kind, MatmulKind::Shared | MatmulKind::Direct))
        {
            let tiling = match choice.small.kind {
                MatmulKind::Texture | MatmulKind::Direct => MatmulTiling::direct(),
                _ => MatmulTiling::shared(),
            };
            choice = MatmulChoice {
                split: choice.split,
                ..MatmulChoice::single(tiling)
            };
        }
        let kernels = Kernels::new(device, choice);
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension;
        check_products(&kernels.choice, mlp, capacity, max_groups)?;
        let uniform_align = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let layout = ParamLayout::new(mlp, ctx.limits.min_storage_buffer_offset_alignment);
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
        let batch_rows = capacity as u64;
        // Activations hold every member's rows.
        let rows = batch_rows * members as u64;
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
        let x_batch = storage(device, "x batch", batch_rows * mlp.inputs() as u64);
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
        let y_batch = storage(device, "target batch", batch_rows * mlp.outputs() as u64);
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
        let layer_norm_results = storage(device, "layer norms", (step_slots * layers * 2) as u64);
        let clip_norm = config.grad_clip.max_norm.is_some();
        // The update, the gradient norm and the layer norms read the flat
        // buffers piece by piece, each piece within one binding.
        let pieces = layout.pieces(mlp, binding_limit / 4)?;
        let unused_state = [0, 1, 2].map(|_| storage(device, "unused optimizer state", 4));
        let update = UpdateGroups::new(
            device,
            &kernels,
            &UpdatePlan {
                mlp,
                layout: &layout,
                pieces: &pieces,
                optimizer: &optimizer,
                clip: &config.grad_clip,
                uniform_align,
            },
            &UpdateBuffers {
                params: &params_buffer,
                grads: &grads,
                state: &state,
                steps: &steps,
                layer_norm_results: &layer_norm_results,
                unused_state: unused_state.each_ref(),
            },
        );
        // Dropout as the CPU network applies it: never on the output
        // layer, nor on a residual network's input layer.
        let layers = mlp.layers().len();
        let first = usize::from(mlp.residual_spec().is_some());
        let dropout: Vec<_> = (0..layers)
            .map(|l| {
                let dropped = mlp.is_plain() || (l >= first && l + 1 < layers);
                dropped
                    .then(|| crate::dropout::Dropout::new(config.dropout_of(l)))
                    .flatten()
            })
            .collect();
        let sequence = Sequence::new(
            device,
            mlp,
            capacity,
            &dropout,
            ctx.limits.min_storage_buffer_offset_alignment,
        );
        let ensemble = Ensemble::new(device, mlp, capacity);
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
            dropout,
            sequence,
            ensemble,
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
            clip_norm,
            update,
            norms_every: config.norms_every,
            layer_norm_results,
            resident: None,
            uploads: 0,
            streamed: false,
            binding_limit,
            plans: HashMap::new(),
            t: 0,
            state_slots: optimizer.state_slots(),
            uniform_align,
            unwaited: None,
            stop_flag: config.stop_flag.clone(),
            profiler: RefCell::new(None),
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
}

/// What TabM does not have on the GPU yet, refused by name before a
/// device opens: mixed precision (its products are f32).
fn refuse_tabm(mlp: &Mlp, config: &BackendConfig) -> Result<()> {
    match (mlp.tabm_spec(), config.precision) {
        (Some(spec), _) if spec.embedding.is_some() => Err(crate::error::Error::Config(format!(
            "TabM ({} members, {}) with numerical embeddings trains on the CPU only, so far: the embedding has no GPU kernels yet; use device cpu",
            spec.k, spec.arch
        ))),
        (Some(spec), Precision::Mixed) => Err(crate::error::Error::Config(format!(
            "TabM ({} members, {}) trains in f32 on the GPU, not in mixed precision, so far: use precision f32 or device cpu",
            spec.k, spec.arch
        ))),
        _ => Ok(()),
    }
}
