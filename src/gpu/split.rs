//! Split-K: how many slices of its reduction a product that leaves the
//! device's compute units idle is split into, and how many compute units an
//! adapter has (wgpu does not say). The slices' layout in K is
//! `dispatch::split_layout`, the kernels' side shaders/matmul.wgsl.

use super::context::AdapterSummary;

/// Fewest values of K a slice of a split product sums by default: below
/// it the finishing dispatch's reading of every slice's partial C costs
/// more than the slices save.
pub const MIN_SLICE_K: u32 = 256;

/// Most slices a product is split into.
pub const MAX_SLICES: u32 = 64;

/// Split-K: a product that makes fewer tiles (workgroups) than the device
/// has compute units sums its K in slices, a z-layer of workgroups each,
/// whose partial products a second dispatch adds in a fixed order (shaders/
/// matmul.wgsl), so that `tiles × slices` comes near `units`.
///
/// ```
/// use retroprop::gpu::SplitK;
/// let split = SplitK { units: 132, min_slice_k: 256 };
/// // The forward product of batch 64 on an H200: 16 tiles of 64 × 64.
/// assert_eq!(split.slices(16, 1024), 4);
/// assert_eq!(split.slices(16, 1 << 14), 8);
/// // Enough tiles already.
/// assert_eq!(split.slices(208, 1 << 14), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitK {
    /// Compute units the workgroups should fill (0: the adapter's
    /// [`compute_units`], filled in by [`MatmulChoice::for_adapter`](super::MatmulChoice::for_adapter)).
    pub units: u32,
    /// Fewest values of K a slice sums.
    pub min_slice_k: u32,
}

impl SplitK {
    /// Parses what follows `+split`: nothing, `:UNITS` or `:UNITS:MIN_K`.
    pub(crate) fn parse(text: &str) -> Option<SplitK> {
        let mut split = SplitK {
            units: 0,
            min_slice_k: MIN_SLICE_K,
        };
        if text.is_empty() {
            return Some(split);
        }
        let mut numbers = text.strip_prefix(':')?.split(':');
        let mut next = |into: &mut u32| -> Option<()> {
            if let Some(n) = numbers.next() {
                *into = n.parse().ok().filter(|&n| n > 0)?;
            }
            Some(())
        };
        next(&mut split.units)?;
        next(&mut split.min_slice_k)?;
        numbers.next().is_none().then_some(split)
    }

    /// Slices for a product of `tiles` workgroups and a reduction of `k`:
    /// as many as bring `tiles × slices` up to the units, at most one per
    /// `min_slice_k` of K, and at most [`MAX_SLICES`].
    pub fn slices(&self, tiles: u64, k: usize) -> u32 {
        let wanted = self.units as u64 / tiles.max(1);
        let by_k = k as u64 / self.min_slice_k.max(1) as u64;
        wanted.min(by_k).clamp(1, MAX_SLICES as u64) as u32
    }
}

/// Compute units known by adapter name (multiprocessors): wgpu does not
/// report them. The first name the adapter's contains wins.
const KNOWN_UNITS: &[(&str, u32)] = &[
    ("H100 PCIe", 114),
    ("H100", 132),
    ("H200", 132),
    ("H800", 132),
    ("GH200", 132),
    ("A100", 108),
    ("A800", 108),
    ("A10G", 80),
    ("A10", 72),
    ("V100", 80),
    ("L40", 142),
    ("L4", 58),
    ("T4", 40),
    ("RTX 4090", 128),
    ("RTX 3090", 82),
];

/// Compute units on a discrete GPU not in the table.
pub const DEFAULT_DISCRETE_UNITS: u32 = 64;
/// Compute units on an integrated or other GPU not in the table.
pub const DEFAULT_INTEGRATED_UNITS: u32 = 16;

/// The adapter's compute units, estimated: `RETROPROP_COMPUTE_UNITS` if
/// set to a positive number; on a CPU adapter (lavapipe) the host's
/// available parallelism; a known GPU's multiprocessors by its name (H100
/// and H200: 132); else [`DEFAULT_DISCRETE_UNITS`] for a discrete GPU and
/// [`DEFAULT_INTEGRATED_UNITS`] for the rest.
pub fn compute_units(adapter: &AdapterSummary) -> u32 {
    if let Ok(text) = std::env::var("RETROPROP_COMPUTE_UNITS") {
        match text.parse::<u32>() {
            Ok(n) if n > 0 => return n,
            _ => {
                log::warn!("RETROPROP_COMPUTE_UNITS=`{text}` is not a positive number; estimating")
            }
        }
    }
    let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    units_for(adapter, host)
}

/// [`compute_units`] without the environment, for a host of `host` threads.
fn units_for(adapter: &AdapterSummary, host: u32) -> u32 {
    if !adapter.is_hardware {
        return host;
    }
    KNOWN_UNITS
        .iter()
        .find(|(name, _)| adapter.name.contains(name))
        .map_or(
            if adapter.device_type == "DiscreteGpu" {
                DEFAULT_DISCRETE_UNITS
            } else {
                DEFAULT_INTEGRATED_UNITS
            },
            |&(_, units)| units,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_units_come_from_the_name_the_kind_or_the_host() {
        let adapter = |name: &str, device_type: &str, is_hardware| AdapterSummary {
            name: name.into(),
            backend: "Vulkan".into(),
            device_type: device_type.into(),
            driver: String::new(),
            max_storage_buffer_binding_size: 0,
            max_buffer_size: 0,
            max_compute_workgroups_per_dimension: 0,
            max_compute_invocations_per_workgroup: 0,
            max_compute_workgroup_storage_size: 0,
            is_hardware,
            shader_f16: false,
            cooperative_matrix_f16: false,
        };
        let gpu = |name: &str| units_for(&adapter(name, "DiscreteGpu", true), 2);
        assert_eq!(gpu("NVIDIA H200"), 132);
        assert_eq!(gpu("NVIDIA H100 80GB HBM3"), 132);
        assert_eq!(gpu("NVIDIA H100 PCIe"), 114);
        assert_eq!(gpu("NVIDIA A100-SXM4-80GB"), 108);
        assert_eq!(gpu("NVIDIA A10G"), 80);
        assert_eq!(gpu("NVIDIA L40S"), 142);
        assert_eq!(gpu("NVIDIA L4"), 58);
        assert_eq!(gpu("AMD Radeon Something"), DEFAULT_DISCRETE_UNITS);
        let integrated = adapter("Intel(R) Graphics", "IntegratedGpu", true);
        assert_eq!(units_for(&integrated, 2), DEFAULT_INTEGRATED_UNITS);
        let lavapipe = adapter("llvmpipe (LLVM 15.0.6, 256 bits)", "Cpu", false);
        assert_eq!(units_for(&lavapipe, 6), 6, "the host's threads");
    }
}
