//! The window of steps a submission holds, and what keeps at most two
//! submissions in flight (src/gpu/steps.rs runs the windows of a call).

use super::context::{GpuContext, Submitted};
use crate::error::Result;

/// Steps recorded into one submission (one window of the ring).
pub(crate) const WINDOW: usize = 64;

/// A step's batch: rows `start..end` of the call's order.
pub(crate) type Batch = (usize, usize);

/// Which step a recording is for: `slot`, its uniform block and result
/// slot (in the ring of two windows of [`WINDOW`] steps), and `t`, its number
/// (1 for the first step of a run), which the profile's marks carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepAt {
    pub(crate) slot: usize,
    pub(crate) t: u64,
}

/// At most two submissions in flight: each new one waits for the one
/// before it (natively on its submission index, in the browser on the
/// queue's answer). One `InFlight` for a whole call: a call that made a new
/// one per window let the last submission of a window, the first of the
/// next and the one after it run at once.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Option<Submitted>);

impl InFlight {
    /// Starting after `previous`, a submission a call before this one left
    /// running (`GpuBackend::unwaited`): the first push waits for it.
    pub(crate) fn after(previous: Option<Submitted>) -> InFlight {
        InFlight(previous)
    }

    /// Notes `submitted` and waits for the submission before it.
    pub(crate) async fn push(&mut self, ctx: &GpuContext, submitted: Submitted) -> Result<()> {
        if let Some(previous) = self.0.replace(submitted) {
            ctx.finished(&previous).await?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// After each push, the submission before the last has finished: at
    /// most two are ever in flight. Each submission copies 64 MiB, so that
    /// on lavapipe (which runs submissions on a thread of its own) one is
    /// still running when the next is pushed unless something waited.
    #[test]
    fn in_flight_keeps_at_most_two_submissions_running() {
        let ctx = GpuContext::open(false).unwrap_or_else(|e| {
            panic!("a wgpu adapter is needed (apt-get install mesa-vulkan-drivers): {e}")
        });
        let size = 64 << 20;
        let buffer = |label| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (from, to) = (buffer("from"), buffer("to"));
        let done: Vec<Arc<AtomicBool>> = (0..6).map(|_| Arc::default()).collect();
        let mut in_flight = InFlight::default();
        for (i, flag) in done.iter().enumerate() {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            for _ in 0..4 {
                encoder.copy_buffer_to_buffer(&from, 0, &to, 0, size);
            }
            let submitted = ctx.submit(encoder.finish());
            let flag = flag.clone();
            ctx.queue
                .on_submitted_work_done(move || flag.store(true, Ordering::SeqCst));
            pollster::block_on(in_flight.push(&ctx, submitted)).unwrap();
            if i > 0 {
                assert!(
                    done[i - 1].load(Ordering::SeqCst),
                    "submission {} still ran when submission {i} was pushed",
                    i - 1
                );
            }
        }
    }
}
