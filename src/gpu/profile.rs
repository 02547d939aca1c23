//! What a training step dispatches and where its time goes on the device:
//! every dispatch counted by the work it does, where it is recorded (on
//! every adapter), and a timestamp after each (adapters with timestamp
//! queries inside compute passes), each interval named after the kernel
//! that ran in it and summed by kernel. `Trainer::profile_steps` drives
//! it; `retroprop bench --profile` prints it. The profile it makes,
//! `StepProfile`, is a report of the seam (`crate::backend`), which every
//! backend may return.

use crate::backend::{KernelTime, StepProfile};
use std::collections::{HashMap, HashSet};

/// What ran between two timestamps: a kernel, and the layer it worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Work {
    pub(crate) kernel: &'static str,
    pub(crate) layer: Option<usize>,
}

impl Work {
    pub(crate) fn of(kernel: &'static str) -> Work {
        Work {
            kernel,
            layer: None,
        }
    }

    pub(crate) fn layer(kernel: &'static str, layer: usize) -> Work {
        Work {
            kernel,
            layer: Some(layer),
        }
    }
}

/// Timestamps the most a profile takes: wgpu's limit on a query set.
const CAPACITY: u32 = 4096;

/// The timestamps of a profile being recorded. Mark i ends interval i,
/// which `labels[i]` names; a pass's first mark (label `None`) starts its
/// intervals, so the time between submissions is not counted.
#[derive(Debug)]
pub(crate) struct Marks {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    /// Per mark: the step (its t) and what ran before the mark.
    labels: Vec<(u64, Option<Work>)>,
    /// Marks already resolved into `resolved`.
    resolved_upto: u32,
}

impl Marks {
    /// `None` unless the device was opened with timestamp queries inside
    /// passes (`GpuContext` asks for them wherever the adapter has them).
    pub(crate) fn new(device: &wgpu::Device) -> Option<Marks> {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !device.features().contains(needed) {
            return None;
        }
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: CAPACITY,
        });
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile timestamps resolved"),
            size: CAPACITY as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Marks {
            set,
            resolved,
            labels: Vec::new(),
            resolved_upto: 0,
        })
    }

    /// Writes a mark after `work` of step `t` (or, with `None`, the start
    /// of a pass). Past the query set's capacity nothing is written: the
    /// steps cut short are left out of the profile.
    pub(crate) fn mark(&mut self, pass: &mut wgpu::ComputePass, t: u64, work: Option<Work>) {
        if self.labels.len() < CAPACITY as usize {
            pass.write_timestamp(&self.set, self.labels.len() as u32);
            self.labels.push((t, work));
        }
    }

    /// Resolves the marks written since the last call (after the pass that
    /// wrote them has ended). The resolve starts at an offset the API
    /// allows (a multiple of 256 bytes), resolving again the few marks
    /// before it, which keep their values.
    pub(crate) fn resolve(&mut self, encoder: &mut wgpu::CommandEncoder) {
        let end = self.labels.len() as u32;
        let per_alignment = wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT as u32 / 8;
        let start = self.resolved_upto / per_alignment * per_alignment;
        if end > self.resolved_upto {
            encoder.resolve_query_set(&self.set, start..end, &self.resolved, start as u64 * 8);
            self.resolved_upto = end;
        }
    }

    /// The buffer holding the resolved ticks, and how many bytes of it.
    pub(crate) fn ticks(&self) -> (&wgpu::Buffer, u64) {
        (&self.resolved, self.resolved_upto as u64 * 8)
    }

    /// Each interval's milliseconds added to its work, over the steps
    /// timed whole (those whose optimizer, their last dispatch, was timed),
    /// and those steps.
    fn times(&self, ticks: &[u64], period_ns: f32) -> (HashMap<Work, f64>, u64) {
        let whole: HashSet<u64> = self
            .labels
            .iter()
            .filter(|(_, w)| w.is_some_and(|w| w.kernel == OPTIMIZER))
            .map(|&(t, _)| t)
            .collect();
        let mut times: HashMap<Work, f64> = HashMap::new();
        for (i, &(t, work)) in self.labels.iter().enumerate().skip(1) {
            let (Some(work), Some(&end)) = (work, ticks.get(i)) else {
                continue;
            };
            if whole.contains(&t) {
                let ms = end.saturating_sub(ticks[i - 1]) as f64 * period_ns as f64 / 1e6;
                *times.entry(work).or_default() += ms;
            }
        }
        (times, whole.len() as u64)
    }
}

/// A profile being taken: every dispatch of each step, counted where it is
/// recorded, and the timestamps where the adapter has them.
#[derive(Debug)]
pub(crate) struct Profiler {
    /// Per step (its t), the dispatches of each work, in the order each
    /// work first ran.
    counts: Vec<(u64, Work, u64)>,
    /// The steps that dispatched their optimizer (their last dispatch).
    whole: HashSet<u64>,
    marks: Option<Marks>,
}

impl Profiler {
    /// Counts dispatches; times them too where the device was opened with
    /// timestamp queries inside passes.
    pub(crate) fn new(device: &wgpu::Device) -> Profiler {
        Profiler {
            counts: Vec::new(),
            whole: HashSet::new(),
            marks: Marks::new(device),
        }
    }

    /// Counts a dispatch of `work` in step `t`, just recorded into `pass`,
    /// and marks its end.
    pub(crate) fn dispatched(&mut self, pass: &mut wgpu::ComputePass, t: u64, work: Work) {
        if work.kernel == OPTIMIZER {
            self.whole.insert(t);
        }
        match self
            .counts
            .iter_mut()
            .rev()
            .find(|(at, w, _)| (*at, *w) == (t, work))
        {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((t, work, 1)),
        }
        if let Some(marks) = &mut self.marks {
            marks.mark(pass, t, Some(work));
        }
    }

    /// Starts a pass's timestamps (before its first dispatch).
    pub(crate) fn pass_start(&mut self, pass: &mut wgpu::ComputePass, t: u64) {
        if let Some(marks) = &mut self.marks {
            marks.mark(pass, t, None);
        }
    }

    /// The timestamps, where the adapter has them.
    pub(crate) fn marks(&mut self) -> Option<&mut Marks> {
        self.marks.as_mut()
    }

    /// The profile: each work's dispatches a step, over the steps recorded
    /// whole, and its milliseconds a step from `ticks` (the resolved
    /// timestamps, `None` without them), over the steps timed whole.
    pub(crate) fn profile(&self, device: String, ticks: Option<(&[u64], f32)>) -> StepProfile {
        let steps = self.whole.len() as u64;
        let (times, timed_steps) = match (&self.marks, ticks) {
            (Some(marks), Some((ticks, period_ns))) => {
                let (times, timed) = marks.times(ticks, period_ns);
                (Some(times), timed)
            }
            _ => (None, 0),
        };
        let mut kernels: Vec<KernelTime> = Vec::new();
        for &(t, work, n) in &self.counts {
            if !self.whole.contains(&t) {
                continue;
            }
            match kernels
                .iter_mut()
                .find(|k| (k.kernel, k.layer) == (work.kernel, work.layer))
            {
                Some(k) => k.dispatches += n as f64,
                None => kernels.push(KernelTime {
                    kernel: work.kernel,
                    layer: work.layer,
                    dispatches: n as f64,
                    ms_per_step: times.as_ref().map(|times| {
                        times.get(&work).copied().unwrap_or(0.0) / timed_steps.max(1) as f64
                    }),
                }),
            }
        }
        for k in &mut kernels {
            k.dispatches /= steps.max(1) as f64;
        }
        StepProfile {
            device,
            steps,
            timed_steps,
            kernels,
        }
    }
}

/// The name of the optimizer's dispatch: the last of every step.
pub(crate) const OPTIMIZER: &str = "optimizer";
