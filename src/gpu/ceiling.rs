//! The adapter's arithmetic ceiling: a kernel of multiply-adds and nothing
//! else (`shaders/ceiling.wgsl`), timed on a device-resident buffer.
//! `retroprop bench --full` prints each matmul variant and the whole
//! training step as a fraction of it, so that "how fast" reads against what
//! the adapter can do at all.

use super::context::GpuContext;
use super::dispatch::grid;
use super::pipelines::{Kernel, Slot, module, pipeline};
use crate::error::Result;
use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

/// FLOPs of one invocation's iteration: eight vec4 multiply-adds.
pub const FLOPS_PER_ITERATION: f64 = 64.0;

/// Invocations of a workgroup (`@workgroup_size` in the shader).
const GROUP: u32 = 64;

/// Mirrors `CeilingShape` in shaders/ceiling.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct CeilingShape {
    iterations: u32,
    m: f32,
    c: f32,
    _pad: u32,
}

/// What one ceiling dispatch left behind.
#[derive(Debug, Clone)]
pub struct CeilingRun {
    /// Each invocation's sum of its 32 chains after the last iteration.
    pub sums: Vec<f32>,
    /// Seconds from the submission to the idle queue (the dispatch's
    /// first run, which builds nothing: the pipeline is compiled already).
    pub seconds: f64,
}

/// The ceiling kernel, compiled once for a device.
#[derive(Debug)]
pub struct Ceiling<'a> {
    ctx: &'a GpuContext,
    kernel: Kernel,
}

impl<'a> Ceiling<'a> {
    /// Compiles the kernel on `ctx`'s device.
    pub fn new(ctx: &'a GpuContext) -> Ceiling<'a> {
        let source = include_str!("../../shaders/ceiling.wgsl");
        let module = module(&ctx.device, "ceiling", source, "");
        let kernel = pipeline(
            &ctx.device,
            &module,
            "ceiling",
            &[Slot::Uniform, Slot::ReadWrite],
            &[],
        );
        Ceiling { ctx, kernel }
    }

    /// Runs `invocations` (rounded up to whole workgroups of 64), each
    /// iterating `x ← x · m + c` `iterations` times on its 32 chains, and
    /// returns their sums with the time it took.
    pub fn run(&self, invocations: usize, iterations: u32, m: f32, c: f32) -> Result<CeilingRun> {
        let device = &self.ctx.device;
        let (x, y) = grid(
            invocations as u64,
            GROUP,
            self.ctx.limits.max_compute_workgroups_per_dimension,
        );
        let threads = (x * y * GROUP) as usize;
        let shape = CeilingShape {
            iterations,
            m,
            c,
            _pad: 0,
        };
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("ceiling shape"),
            contents: bytemuck::bytes_of(&shape),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let sink = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ceiling sink"),
            size: (threads * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("ceiling"),
            layout: &self.kernel.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: sink.as_entire_binding(),
                },
            ],
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.kernel.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        let start = std::time::Instant::now();
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.wait()?;
        let seconds = start.elapsed().as_secs_f64();
        let bytes = self.ctx.read(&sink, 0, (invocations * 4) as u64)?;
        Ok(CeilingRun {
            sums: bytemuck::pod_collect_to_vec(&bytes),
            seconds,
        })
    }

    /// The adapter's multiply-add rate in GFLOP/s: enough invocations to
    /// fill it (2²² on a hardware GPU, 2¹⁴ on a CPU adapter), iterations
    /// doubled until a dispatch takes 50 ms, then the median of three.
    pub fn measure(&self) -> Result<f64> {
        let invocations = if self.ctx.summary().is_hardware {
            1 << 22
        } else {
            1 << 14
        };
        let (m, c) = (0.999, 1e-3);
        let mut iterations = 64u32;
        while iterations < 1 << 24 && self.run(invocations, iterations, m, c)?.seconds < 0.05 {
            iterations *= 2;
        }
        let mut seconds = (0..3)
            .map(|_| self.run(invocations, iterations, m, c).map(|r| r.seconds))
            .collect::<Result<Vec<f64>>>()?;
        seconds.sort_by(f64::total_cmp);
        let flops = invocations as f64 * iterations as f64 * FLOPS_PER_ITERATION;
        Ok(flops / seconds[1] / 1e9)
    }
}
