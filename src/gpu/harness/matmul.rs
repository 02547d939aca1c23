//! The kernel harness's matrix products: the plain matmul of each
//! transposition variant, its timing, and the three training matmuls with
//! their epilogues, each split into slices of K when the harness is
//! opened so (`KernelHarness::open_split`).

use super::{Bind, KernelHarness, Packed, floats, stored, stored_shape};
use crate::activation::Activation;
use crate::error::Result;
use crate::gpu::codes::Epilogue;
use crate::gpu::dispatch::{matmul_grid, split_layout};
use crate::gpu::pipelines::Kernel;
use crate::gpu::tiling::MatmulKind;
use crate::gpu::uniforms::{MatmulShape, StepUniform};
use wgpu::util::DeviceExt;

impl KernelHarness {
    /// Runs a matmul `kernel` (epilogue `epilogue`) of `shape` on `binds`
    /// (bindings 1 to 6): split into the harness's slices of K where K
    /// allows, with the finishing dispatch; returns [`run`](Self::run)'s
    /// outputs, the partials last.
    pub(super) fn run_matmul(
        &self,
        kernel: &Kernel,
        epilogue: Epilogue,
        mut shape: MatmulShape,
        binds: Vec<Bind>,
    ) -> Result<Vec<Vec<u8>>> {
        let tiling = self.kernels.tiling();
        let (m, cols) = (shape.m as usize, (shape.n + shape.bias_grad) as usize);
        // Members (the dispatch's z) run unsplit.
        let members = shape.members.max(1);
        let split = if members > 1 { 1 } else { self.slices };
        let (slices, slice_k) = split_layout(&tiling, shape.k as usize, split);
        shape.slices = slices;
        shape.slice_k = slice_k;
        let (x, y) = matmul_grid(&tiling, m, cols);
        let finish;
        let mut dispatches = vec![(kernel, (x, y, slices * members))];
        if slices > 1 {
            finish = self.kernels.matmuls[0].finish(&self.ctx.device, epilogue);
            let (fx, fy) = self.groups_1d(m * cols, 64);
            dispatches.push((finish, (fx, fy, 1)));
        }
        let mut all = vec![Bind::Uniform(bytemuck::bytes_of(&shape))];
        all.extend(binds);
        all.push(Bind::Out(m * cols * slices as usize * 4));
        // Each member's dropout: read by members runs only.
        all.push(Bind::Data(&[0; 16]));
        self.run_all(&dispatches, &all, true)
    }

    fn tiles(&self, m: usize, n: usize) -> (u32, u32) {
        let t = self.kernels.tiling();
        (
            (n as u32).div_ceil(t.tile_n()),
            (m as u32).div_ceil(t.tile_m()),
        )
    }

    /// C = op(A) · op(B) (M × N), with op(A) M × K and op(B) K × N; A and B
    /// are row-major as stored, transposed on the fly.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        a: &[f32],
        b: &[f32],
        m: usize,
        k: usize,
        n: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<Vec<f32>> {
        let shape = MatmulShape {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            k_end: k as u32,
            activation: 0,
            slope: 0.0,
            ..Default::default()
        };
        let kernel = &self.tests.matmul_plain[trans_a as usize * 2 + trans_b as usize];
        let out = self.run_matmul(
            kernel,
            Epilogue::Store,
            shape,
            vec![
                stored(a, m, k, trans_a),
                stored(b, k, n, trans_b),
                Bind::Out(m * n * 4),
                Bind::Data(&[0; 4]),
                Bind::Out(4),
                Bind::Uniform(bytemuck::bytes_of(&StepUniform::default())),
            ],
        )?;
        Ok(floats(&out[0]))
    }

    /// Seconds per matmul (variant `trans_a`, `trans_b`, plain epilogue) on
    /// device-resident buffers: `reps` dispatches in one submission, after
    /// one warm-up submission, timed to the end of the queue.
    pub fn time_matmul(
        &self,
        m: usize,
        k: usize,
        n: usize,
        trans_a: bool,
        trans_b: bool,
        reps: usize,
    ) -> Result<f64> {
        let device = &self.ctx.device;
        let shape = MatmulShape {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            k_end: k as u32,
            activation: 0,
            slope: 0.0,
            ..Default::default()
        };
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::bytes_of(&shape),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let buffer = |floats: usize| {
            let data = vec![0.5f32; floats.max(4)];
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&data),
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let buffers = [
            buffer(m * k),
            buffer(k * n),
            buffer(m * n),
            buffer(4),
            buffer(4),
        ];
        let kernel = &self.tests.matmul_plain[trans_a as usize * 2 + trans_b as usize];
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        // The texture matmul reads its operands packed (once, untimed).
        let textured = self.kernels.tiling().kind == MatmulKind::Texture;
        let packs: Vec<_> = if textured {
            let (a_rows, a_cols) = stored_shape(m, k, trans_a);
            let (b_rows, b_cols) = stored_shape(k, n, trans_b);
            vec![
                self.pack(&buffers[0], a_rows, a_cols),
                self.pack(&buffers[1], b_rows, b_cols),
            ]
        } else {
            Vec::new()
        };
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: match packs.get(i) {
                    Some(Packed { texture, .. }) => {
                        wgpu::BindingResource::TextureView(&texture.view)
                    }
                    None => b.as_entire_binding(),
                },
            });
        }
        let step = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::bytes_of(&StepUniform::default()),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        entries.push(wgpu::BindGroupEntry {
            binding: 6,
            resource: step.as_entire_binding(),
        });
        let partials = buffer(4);
        entries.push(wgpu::BindGroupEntry {
            binding: super::super::pipelines::binding::matmul::PARTIALS,
            resource: partials.as_entire_binding(),
        });
        // Each member's dropout: read by members runs only.
        let member_dropout = buffer(4);
        entries.push(wgpu::BindGroupEntry {
            binding: super::super::pipelines::binding::matmul::MEMBER_DROPOUT,
            resource: member_dropout.as_entire_binding(),
        });
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        let groups = self.tiles(m, n);
        if !packs.is_empty() {
            let mut encoder = device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record_packs(&mut pass, &packs);
            }
            self.ctx.queue.submit([encoder.finish()]);
        }
        let submit = |count: usize| {
            let mut encoder = device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&kernel.pipeline);
                pass.set_bind_group(0, &group, &[0]);
                for _ in 0..count {
                    pass.dispatch_workgroups(groups.0, groups.1, 1);
                }
            }
            self.ctx.queue.submit([encoder.finish()]);
            self.ctx.wait()
        };
        submit(1)?;
        let start = std::time::Instant::now();
        submit(reps)?;
        Ok(start.elapsed().as_secs_f64() / reps as f64)
    }

    /// The training forward kernel: Z = input · Wᵀ + b, A = f(Z).
    pub fn dense_forward(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        activation: Activation,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (outputs, inputs) = (bias.len(), weight.len() / bias.len());
        let rows = input.len() / inputs;
        let (code, slope) = activation.code();
        let shape = MatmulShape {
            m: rows as u32,
            n: outputs as u32,
            k: inputs as u32,
            k_end: inputs as u32,
            activation: code,
            slope,
            ..Default::default()
        };
        let out = self.run_matmul(
            &self.kernels.matmuls[0].forward,
            Epilogue::BiasActivation,
            shape,
            vec![
                Bind::Matrix(input, rows, inputs),
                Bind::Matrix(weight, outputs, inputs),
                Bind::Out(rows * outputs * 4),
                Bind::Data(bytemuck::cast_slice(bias)),
                Bind::Out(rows * outputs * 4),
                Bind::Uniform(bytemuck::bytes_of(&StepUniform::default())),
            ],
        )?;
        Ok((floats(&out[0]), floats(&out[1])))
    }

    /// The training weight-gradient kernel: dW (+)= dZᵀ · input.
    pub fn weight_grad(
        &self,
        grad_z: &[f32],
        input: &[f32],
        rows: usize,
        initial: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let outputs = grad_z.len() / rows;
        let bias = vec![0f32; outputs];
        let initial = initial.map(|w| (w, &bias[..]));
        Ok(self
            .weight_grad_with(grad_z, input, rows, initial, false)?
            .0)
    }

    /// The weight and bias gradients as training forms them: dW (+)= dZᵀ ·
    /// input and db (+)= Σ_rows dZ, both in the weight gradient's product
    /// with the workgroup-memory kernel (an extra column of ones), the
    /// bias gradient by `column_sums` with the others; `initial`: the
    /// gradients they add to (a step's later passes).
    pub fn weight_and_bias_grad(
        &self,
        grad_z: &[f32],
        input: &[f32],
        rows: usize,
        initial: Option<(&[f32], &[f32])>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let fold = self.kernels.tiling().kind.folds_bias();
        let (weight, bias) = self.weight_grad_with(grad_z, input, rows, initial, fold)?;
        if fold {
            return Ok((weight, bias));
        }
        let sums = self.column_sums(grad_z, rows, grad_z.len() / rows)?;
        let bias = match initial {
            Some((_, b)) => b.iter().zip(&sums).map(|(b, s)| b + s).collect(),
            None => sums,
        };
        Ok((weight, bias))
    }

    /// The weight-gradient kernel, with the bias gradient's column when
    /// `bias_grad`; the bias gradient returned is zero without it.
    fn weight_grad_with(
        &self,
        grad_z: &[f32],
        input: &[f32],
        rows: usize,
        initial: Option<(&[f32], &[f32])>,
        bias_grad: bool,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (outputs, inputs) = (grad_z.len() / rows, input.len() / rows);
        let shape = MatmulShape {
            m: outputs as u32,
            n: inputs as u32,
            k: rows as u32,
            k_end: rows as u32,
            activation: 0,
            slope: 0.0,
            bias_grad: u32::from(bias_grad),
            ..Default::default()
        };
        let zeros = (vec![0f32; outputs * inputs], vec![0f32; outputs]);
        let (weight, bias) = initial.unwrap_or((&zeros.0, &zeros.1));
        let add = initial.is_some();
        let kernel = self.kernels.matmuls[0].weight_grad(&self.ctx.device, add);
        let epilogue = if add { Epilogue::Add } else { Epilogue::Store };
        let out = self.run_matmul(
            kernel,
            epilogue,
            shape,
            vec![
                Bind::Matrix(grad_z, rows, outputs),
                Bind::Matrix(input, rows, inputs),
                Bind::InOut(bytemuck::cast_slice(weight)),
                Bind::Data(&[0; 4]),
                Bind::InOut(bytemuck::cast_slice(bias)),
                Bind::Uniform(bytemuck::bytes_of(&StepUniform::default())),
            ],
        )?;
        Ok((floats(&out[0]), floats(&out[1])))
    }

    /// The training input-gradient kernel: dZ_prev = (dZ · W) ⊙ f'(Z_prev).
    pub fn input_grad(
        &self,
        grad_z: &[f32],
        weight: &[f32],
        z_prev: &[f32],
        rows: usize,
        activation: Activation,
    ) -> Result<Vec<f32>> {
        let outputs = grad_z.len() / rows;
        let inputs = weight.len() / outputs;
        let (code, slope) = activation.code();
        let shape = MatmulShape {
            m: rows as u32,
            n: inputs as u32,
            k: outputs as u32,
            k_end: outputs as u32,
            activation: code,
            slope,
            ..Default::default()
        };
        let out = self.run_matmul(
            &self.kernels.matmuls[0].input_grad,
            Epilogue::ActivationGrad,
            shape,
            vec![
                Bind::Matrix(grad_z, rows, outputs),
                Bind::Matrix(weight, outputs, inputs),
                Bind::Out(rows * inputs * 4),
                Bind::Data(bytemuck::cast_slice(z_prev)),
                Bind::Out(4),
                Bind::Uniform(bytemuck::bytes_of(&StepUniform::default())),
            ],
        )?;
        Ok(floats(&out[0]))
    }
}
