//! The one place that owns the wgpu instance, adapter, device and queue.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which of the eligible adapters [`GpuContext::open`] takes (see
/// [`prefer_adapter`]).
static PREFERRED_ADAPTER: AtomicUsize = AtomicUsize::new(0);

/// Makes every later [`GpuContext::open`] take the `index`-th eligible
/// adapter (counting round: index mod their number) instead of the first:
/// the hardware GPUs when there are any, in the order `adapters()` lists
/// them. A data-parallel program gives each rank on a machine its own GPU
/// with its local rank.
pub fn prefer_adapter(index: usize) {
    PREFERRED_ADAPTER.store(index, Ordering::Relaxed);
}

/// The adapter to open among `hardware` (one flag an adapter, best first):
/// the `index`-th hardware one (round), or with none and software allowed,
/// the first.
fn pick_adapter(hardware: &[bool], hardware_only: bool, index: usize) -> Option<usize> {
    let real: Vec<usize> = (0..hardware.len()).filter(|&i| hardware[i]).collect();
    match (real.is_empty(), hardware_only) {
        (false, _) => Some(real[index % real.len()]),
        (true, false) => (!hardware.is_empty()).then_some(0),
        (true, true) => None,
    }
}

/// Why a search for a hardware adapter found none, once one has: device
/// `auto` does not search again in this (native) process (starting Vulkan to learn
/// it took ~35 ms a trainer with lavapipe installed, up to ~200 ms while
/// the driver's files were not yet in the page cache, more than a small
/// fit's training).
static NO_HARDWARE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether a hardware GPU may be reachable, judged from the files under
/// `root` (`/`) without starting any graphics API: on Linux a GPU driver
/// shows a device node (`dev/dri/renderD*` for Mesa's and most others,
/// `dev/nvidia*` for NVIDIA's, `dev/dxg` under WSL) or, for NVIDIA's,
/// whose nodes may appear only when a client first opens the driver, its
/// loaded module (`proc/driver/nvidia`, `sys/module/nvidia`). Without any
/// of them only a software adapter (lavapipe) can be found. Elsewhere
/// (macOS, Windows, the browser) it cannot tell, and says yes.
fn hardware_gpu_may_exist(root: &std::path::Path) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let dev = root.join("dev");
    let any_named = |dir: &std::path::Path, prefix: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
    };
    any_named(&dev.join("dri"), "renderD")
        || any_named(&dev, "nvidia")
        || dev.join("dxg").exists()
        || root.join("proc/driver/nvidia").exists()
        || root.join("sys/module/nvidia").exists()
}

/// What wgpu reports about one adapter, with the limits that matter here.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. "NVIDIA H100" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Vulkan, Metal, Dx12, Gl, …
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu, Other.
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// Largest storage buffer one binding can see, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Most workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Most threads per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Whether it is a hardware GPU (not a CPU implementation like lavapipe).
    pub is_hardware: bool,
    /// Whether shaders may compute in f16 (WebGPU's `shader-f16`): the
    /// mixed-precision matmul needs it.
    pub shader_f16: bool,
    /// Whether it offers cooperative matrices with f16 operands and f32
    /// sums, 16 × 16 × 16 (wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX`, Vulkan's
    /// `VK_KHR_cooperative_matrix`).
    pub cooperative_matrix_f16: bool,
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        // Browsers keep the adapter's name to themselves.
        name: if info.name.is_empty() {
            format!("{} adapter", info.backend)
        } else {
            info.name.clone()
        },
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        is_hardware: !matches!(info.device_type, wgpu::DeviceType::Cpu),
        shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
        cooperative_matrix_f16: has_f16_cooperative_matrix(adapter),
    }
}

/// Whether `adapter` offers a 16 × 16 × 16 cooperative matrix product of
/// f16 operands with f32 sums.
fn has_f16_cooperative_matrix(adapter: &wgpu::Adapter) -> bool {
    use wgpu::CooperativeScalarType::{F16, F32};
    adapter
        .features()
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16) && p.ab_type == F16 && p.cr_type == F32
        })
}

fn instance() -> wgpu::Instance {
    // Vulkan, Metal or DX12 unless WGPU_BACKEND says otherwise: GL offers no
    // compute worth having and complains without a display.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends();
    #[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
    if desc.backends.contains(wgpu::Backends::VULKAN)
        && !desc.backends.contains(wgpu::Backends::GL)
        && let Some(instance) = vulkan_without_window_system(&desc)
    {
        return instance;
    }
    wgpu::Instance::new(desc)
}

/// The window-system extensions wgpu enables on every Vulkan instance it
/// makes here. With one of them enabled, Mesa's implicit device-selection
/// layer (`VK_LAYER_MESA_device_select`) connects to the Wayland or X
/// display to rank adapters, and libwayland prints `error: XDG_RUNTIME_DIR
/// is invalid or not set in the environment.` on a headless machine. We
/// never present to a window, so we do not ask for them.
#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
const WINDOW_SYSTEM_EXTENSIONS: [&std::ffi::CStr; 3] = [
    c"VK_KHR_wayland_surface",
    c"VK_KHR_xcb_surface",
    c"VK_KHR_xlib_surface",
];

/// A Vulkan-only instance without [`WINDOW_SYSTEM_EXTENSIONS`], or `None`
/// when Vulkan cannot start (then wgpu's own instance reports what it
/// finds). wgpu's hal says not to remove extensions from its list; the only
/// code that uses these three creates surfaces, and checks first that its
/// extension was enabled.
#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
fn vulkan_without_window_system(desc: &wgpu::InstanceDescriptor) -> Option<wgpu::Instance> {
    use wgpu::hal;
    let hal_desc = hal::InstanceDescriptor {
        name: "retroprop",
        flags: desc.flags,
        memory_budget_thresholds: desc.memory_budget_thresholds,
        backend_options: desc.backend_options.clone(),
        telemetry: None,
        display: None,
    };
    let drop_window_system: Box<hal::vulkan::CreateInstanceCallback> = Box::new(|args| {
        args.extensions
            .retain(|name| !WINDOW_SYSTEM_EXTENSIONS.contains(name));
    });
    // SAFETY: the callback removes only extensions whose sole users (the
    // surface constructors) check that they were enabled; nothing else
    // about the instance changes.
    let hal_instance =
        unsafe { hal::vulkan::Instance::init_with_callback(&hal_desc, Some(drop_window_system)) };
    match hal_instance {
        // SAFETY: a Vulkan instance just made by wgpu-hal, owned by wgpu from here.
        Ok(hal_instance) => {
            Some(unsafe { wgpu::Instance::from_hal::<hal::api::Vulkan>(hal_instance) })
        }
        Err(e) => {
            log::debug!("Vulkan instance without window-system extensions: {e}");
            None
        }
    }
}

fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

/// Every compute-capable adapter wgpu finds, best first (hardware before
/// software, discrete before integrated).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapters() -> Vec<AdapterSummary> {
    pollster::block_on(adapters_async())
}

/// [`adapters`], awaited (in the browser: the one adapter it offers).
pub async fn adapters_async() -> Vec<AdapterSummary> {
    let mut list: Vec<AdapterSummary> = instance()
        .enumerate_adapters(wgpu::Backends::all() & backends())
        .await
        .iter()
        .map(summarize)
        .collect();
    list.sort_by_key(|a| rank(&a.device_type));
    list
}

fn rank(device_type: &str) -> u8 {
    match device_type {
        "DiscreteGpu" => 0,
        "IntegratedGpu" => 1,
        "VirtualGpu" => 2,
        "Other" => 3,
        _ => 4,
    }
}

/// An open device: adapter, device and queue, and the first uncaptured
/// error the device reported (wgpu reports validation and out-of-memory
/// errors through a callback; we turn them into `Error::Gpu`).
#[derive(Debug, Clone)]
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    summary: AdapterSummary,
    error: Arc<Mutex<Option<String>>>,
    staging: Staging,
    submissions: Arc<Mutex<Submissions>>,
}

impl GpuContext {
    /// Opens the best adapter; with `hardware_only`, a software adapter
    /// (lavapipe) is refused, which is what device `auto` wants.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(hardware_only: bool) -> Result<GpuContext> {
        pollster::block_on(GpuContext::open_async(hardware_only))
    }

    /// [`open`](Self::open), awaited: adapter and device requests are
    /// asynchronous in the browser.
    pub async fn open_async(hardware_only: bool) -> Result<GpuContext> {
        if hardware_only {
            if let Some(why) = NO_HARDWARE.get() {
                return Err(Error::NoAdapter(why.clone()));
            }
            if !hardware_gpu_may_exist(std::path::Path::new("/")) {
                return Err(Error::NoAdapter(
                    "no GPU driver (no /dev/dri/renderD*, /dev/nvidia*, /dev/dxg, nor NVIDIA's module)"
                        .into(),
                ));
            }
        }
        let instance = instance();
        let mut adapters = instance
            .enumerate_adapters(wgpu::Backends::all() & backends())
            .await;
        adapters.sort_by_key(|a| rank(&format!("{:?}", a.get_info().device_type)));
        let found: Vec<String> = adapters.iter().map(|a| summarize(a).name).collect();
        let hardware: Vec<bool> = adapters.iter().map(|a| summarize(a).is_hardware).collect();
        let preferred = PREFERRED_ADAPTER.load(Ordering::Relaxed);
        let adapter = pick_adapter(&hardware, hardware_only, preferred)
            .map(|i| adapters.swap_remove(i))
            .ok_or_else(|| {
                let why = if found.is_empty() {
                    "wgpu sees no adapter at all".to_string()
                } else {
                    format!("only software adapters: {}", found.join(", "))
                };
                // Natively only: in the browser the page's adapter may come
                // and go, and a request costs little.
                if hardware_only && !cfg!(target_arch = "wasm32") {
                    let _ = NO_HARDWARE.set(why.clone());
                }
                Error::NoAdapter(why)
            })?;
        let summary = summarize(&adapter);
        // Ask for everything the adapter offers: large data sets need its
        // real binding and buffer limits, not WebGPU's defaults.
        // In the browser these are its adapter's limits, lower than a
        // native driver's; the binding splits follow them.
        let limits = adapter.limits();
        // Timestamps inside passes time each kernel of a step
        // (`Backend::start_profile`); they cost nothing unless written.
        // f16 in shaders, for the mixed-precision matmul (asked for
        // whenever offered: a module without `enable f16;` is unaffected).
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SHADER_F16;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("retroprop"),
                required_features: adapter.features() & wanted,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", summary.name)))?;
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let lost = error.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut slot = lost.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(format!("device lost ({reason:?}): {message}"));
            }
        });
        log::info!(
            "opened {} ({}, {})",
            summary.name,
            summary.backend,
            summary.device_type
        );
        Ok(GpuContext {
            device,
            queue,
            limits,
            summary,
            error,
            staging: Staging::default(),
            submissions: Arc::default(),
        })
    }

    /// What the open adapter is.
    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }

    /// The first error the device reported, if any, as `Error::Gpu`.
    pub(crate) fn check(&self) -> Result<()> {
        let slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(message) => Err(Error::Gpu(message.clone())),
            None => Ok(()),
        }
    }

    /// Blocks until the queue is idle.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.settle(None);
        self.check()
    }

    /// Copies `size` bytes from `source` at `offset` to the host, blocking
    /// until they arrive (native only: the browser cannot block).
    #[cfg(all(not(target_arch = "wasm32"), feature = "harness"))]
    pub(crate) fn read(&self, source: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_async(source, offset, size))
    }

    /// Copies `size` bytes from `source` at `offset` to the host, through a
    /// staging buffer kept from an earlier read-back when one is large
    /// enough.
    pub(crate) async fn read_async(
        &self,
        source: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.staging.take(&self.device, size);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source, offset, &staging, 0, size);
        self.submit(encoder.finish());
        let bytes = self.map_read_async(&staging, size, None).await?;
        self.staging.keep(staging);
        Ok(bytes)
    }

    /// Submits `commands`, returning what to wait for it by
    /// ([`finished`](Self::finished)). Every submission of a run goes
    /// through here, so that the count of those in flight (its test's
    /// `most_in_flight`) has them all.
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) -> Submitted {
        let number = self.lock_submissions().made();
        let index = self.queue.submit([commands]);
        #[cfg(target_arch = "wasm32")]
        {
            let _ = index;
            // Registered right after the submission: it answers once the
            // work submitted so far, this submission last, is done.
            let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
            self.queue.on_submitted_work_done(move || {
                let _ = sender.send(());
            });
            Submitted {
                number,
                done: Arc::new(receiver),
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        Submitted { number, index }
    }

    /// The most submissions that were ever in flight at once, as far as
    /// the host knows: made and not yet waited for (waiting for one
    /// settles those before it too). Since the last call: each call
    /// starts the count again from the submissions in flight now.
    #[cfg(test)]
    pub(crate) fn most_in_flight(&self) -> u64 {
        let mut submissions = self.lock_submissions();
        let most = submissions.most;
        submissions.most = submissions.made - submissions.settled;
        most
    }

    /// Notes that the submission numbered `upto` (every one when `None`)
    /// and those before it have run.
    fn settle(&self, upto: Option<u64>) {
        let mut submissions = self.lock_submissions();
        let upto = upto.unwrap_or(submissions.made);
        submissions.settled = submissions.settled.max(upto);
    }

    fn lock_submissions(&self) -> std::sync::MutexGuard<'_, Submissions> {
        self.submissions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `submitted` has run: natively by polling the device for
    /// its submission index (later submissions may still be running; the
    /// poll also answers mappings, so it runs even for a submission already
    /// waited for); in the browser on the queue's answer that the work is
    /// done, which comes once: a clone already waited for returns at once.
    pub(crate) async fn finished(&self, submitted: &Submitted) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(submitted.index.clone()),
            timeout: None,
        }) {
            // A lost device fails its submissions; its own error says why.
            self.check()?;
            return Err(Error::Gpu(match e {
                wgpu::PollError::WrongSubmissionIndex(..) => format!(
                    "the device is lost or invalid: a submission failed, so there is nothing to wait for ({e})"
                ),
                e => format!("waiting for the GPU: {e}"),
            }));
        }
        #[cfg(target_arch = "wasm32")]
        let settled = self.lock_submissions().settled;
        #[cfg(target_arch = "wasm32")]
        if submitted.number > settled && submitted.done.receive().await.is_none() {
            return Err(Error::Gpu(
                "a submission's completion never answered".into(),
            ));
        }
        self.settle(Some(submitted.number));
        self.check()
    }

    /// Reads the first `size` bytes of a MAP_READ buffer whose copies were
    /// in `submitted`, without waiting for what was submitted after it.
    pub(crate) async fn read_mapped(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        submitted: &Submitted,
    ) -> Result<Vec<u8>> {
        self.map_read_async(staging, size, Some(submitted)).await
    }

    /// Maps the first `size` bytes of a MAP_READ buffer (after its copies
    /// were submitted: in `until`, or in the latest submission) and returns
    /// them, as wgpu's hello-compute example does: the mapping's callback
    /// answers on a one-shot channel that this awaits. Natively the device
    /// is polled until that submission is done (the answer is then already
    /// there); in the browser the mapping is a promise the event loop
    /// resolves while this waits.
    async fn map_read_async(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        until: Option<&Submitted>,
    ) -> Result<Vec<u8>> {
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |mapped| {
            // Fails only when the receiver is gone, and then no one waits.
            let _ = sender.send(mapped);
        });
        #[cfg(not(target_arch = "wasm32"))]
        match until {
            Some(submitted) => self.finished(submitted).await?,
            None => self.wait()?,
        }
        #[cfg(target_arch = "wasm32")]
        let _ = until;
        match receiver.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Gpu(format!("mapping a read-back buffer: {e}"))),
            None => {
                return Err(Error::Gpu(
                    "a read-back buffer's mapping never answered".into(),
                ));
            }
        }
        // A mapping answers once the submissions before it have run.
        self.settle(until.map(|s| s.number));
        self.check()?;
        let bytes = staging
            .get_mapped_range(..size)
            .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}

/// A submission to wait for ([`GpuContext::submit`]): its number (the
/// first is 1), and natively its index; in the browser the queue's one-shot
/// answer that it is done. Clones wait for the same submission: one may be
/// waited for where a loop keeps the submissions in flight, another where
/// its results are read back ([`GpuContext::finished`] returns at once for
/// a submission already waited for).
#[derive(Debug, Clone)]
pub(crate) struct Submitted {
    number: u64,
    #[cfg(not(target_arch = "wasm32"))]
    index: wgpu::SubmissionIndex,
    #[cfg(target_arch = "wasm32")]
    done: Arc<futures_intrusive::channel::shared::OneshotReceiver<()>>,
}

/// The host's count of a device's submissions: made, settled (those known
/// to have run: the first `settled` of them), and the most ever unsettled
/// at once.
#[derive(Debug, Default)]
struct Submissions {
    made: u64,
    settled: u64,
    most: u64,
}

impl Submissions {
    /// Counts one more submission, returning its number.
    fn made(&mut self) -> u64 {
        self.made += 1;
        self.most = self.most.max(self.made - self.settled);
        self.made
    }
}

/// The staging buffers read-backs copy through, kept for the next ones
/// instead of one new buffer a read-back: at most [`Staging::KEPT`], the
/// largest, and none past [`Staging::MAX_KEPT_BYTES`] (a large model's
/// parameters are not held twice in mapped memory between read-backs).
#[derive(Debug, Clone, Default)]
struct Staging(Arc<Mutex<Vec<wgpu::Buffer>>>);

impl Staging {
    const KEPT: usize = 2;
    const MAX_KEPT_BYTES: u64 = 64 << 20;

    /// A kept buffer of at least `size` bytes (the smallest such), or a new
    /// one.
    fn take(&self, device: &wgpu::Device, size: u64) -> wgpu::Buffer {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let fits = (0..kept.len())
            .filter(|&i| kept[i].size() >= size)
            .min_by_key(|&i| kept[i].size());
        match fits {
            Some(i) => kept.swap_remove(i),
            None => device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size: size.next_multiple_of(256),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// Keeps `buffer` (unmapped) for a later read-back, in place of the
    /// smallest kept one when [`KEPT`](Self::KEPT) are kept already.
    fn keep(&self, buffer: wgpu::Buffer) {
        if buffer.size() > Staging::MAX_KEPT_BYTES {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.push(buffer);
        if kept.len() > Staging::KEPT {
            let smallest = (0..kept.len()).min_by_key(|&i| kept[i].size()).unwrap_or(0);
            kept.swap_remove(smallest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{hardware_gpu_may_exist, pick_adapter};

    #[test]
    #[cfg(target_os = "linux")]
    fn a_hardware_gpu_is_looked_for_only_beside_a_gpu_driver() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dev = root.join("dev");
        std::fs::create_dir_all(dev.join("dri")).unwrap();
        assert!(!hardware_gpu_may_exist(root), "an empty /dev");
        std::fs::write(dev.join("dri/card0"), "").unwrap();
        std::fs::write(dev.join("nvme0"), "").unwrap();
        assert!(!hardware_gpu_may_exist(root), "a display card and a disk");
        let each = [
            ("dev/dri/renderD128", "Mesa's render node"),
            ("dev/nvidiactl", "NVIDIA's device node"),
            ("dev/dxg", "WSL's GPU"),
            (
                "proc/driver/nvidia",
                "NVIDIA's driver, its nodes not made yet",
            ),
            ("sys/module/nvidia", "NVIDIA's module"),
        ];
        for (path, what) in each {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
            assert!(hardware_gpu_may_exist(root), "{what}");
            std::fs::remove_file(&path).unwrap();
            assert!(!hardware_gpu_may_exist(root), "{what} removed");
        }
    }

    #[test]
    fn ranks_take_the_hardware_gpus_in_turn_and_never_a_software_one_beside_them() {
        // Two GPUs and lavapipe: ranks 0..4 take GPU 0, 1, 0, 1.
        let picks: Vec<_> = (0..4)
            .map(|r| pick_adapter(&[true, true, false], false, r))
            .collect();
        assert_eq!(picks, [Some(0), Some(1), Some(0), Some(1)]);
        // Only lavapipe: every rank shares it, unless hardware is required.
        assert_eq!(pick_adapter(&[false], false, 3), Some(0));
        assert_eq!(pick_adapter(&[false], true, 0), None);
        assert_eq!(pick_adapter(&[], false, 0), None);
    }
}
