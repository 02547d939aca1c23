//! How a matmul is tiled, which tiling runs for which product, and the
//! source of each matmul module: shaders/matmul.wgsl with the kernel of the
//! tiling's kind (matmul_tiled.wgsl, or the unrolled matmul_direct.wgsl
//! and matmul_texture.wgsl expanded by `unroll`). The choice is made here
//! and nowhere else.

use super::context::AdapterSummary;
use super::shaders::common_source;
use super::split::{SplitK, compute_units};
use super::unroll::{Bindings, expand};
use crate::error::{Error, Result};

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
    /// Which kernel this tiling drives.
    pub kind: MatmulKind,
}

/// The matmul kernels; each is tested for parity on every adapter (`Half`
/// on every adapter with `shader-f16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKind {
    /// Tiles staged in workgroup memory (`matmul`): hardware GPUs.
    Shared,
    /// The same with tiles of vec4s, 4 × 4 blocks per thread, and two
    /// tiles of each operand alternating (`matmul_vec4`,
    /// shaders/matmul_tiled_vec4.wgsl); RM and RN multiples of 4.
    SharedVec4,
    /// Operands read straight from storage buffers, no workgroup memory and
    /// no barriers (`matmul_direct`).
    Direct,
    /// Operands packed into rgba32float textures and read by texel fetches,
    /// four values a fetch, no barriers (`matmul_texture_*`): CPU
    /// implementations of Vulkan (lavapipe), where a fetch costs a fraction
    /// of a storage-buffer load.
    Texture,
    /// [`Shared`](Self::Shared) with its tiles staged as f16
    /// (`matmul_f16`, shaders/matmul_f16.wgsl): f16 operands, f32 sums,
    /// for [`Precision::Mixed`](crate::Precision::Mixed); adapters with
    /// `shader-f16`.
    Half,
}

impl MatmulKind {
    /// Whether the kernel forms the bias gradient as the weight gradient's
    /// extra column of ones (`MatmulShape::bias_grad`): the workgroup-memory
    /// kernels, whose loads are bounds-checked one value at a time. The
    /// others take column sums.
    pub fn folds_bias(self) -> bool {
        matches!(self, MatmulKind::Shared | MatmulKind::SharedVec4)
    }
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

    /// Parses `shared`, `shared-vec4`, `direct`, `texture`, or one of them followed by
    /// `:WG_XxWG_YxRMxRNxTK` (e.g. `shared:16x16x8x8x8`), for tuning runs:
    /// at most 1024 threads a workgroup, RM, RN and TK from 1 to 64.
    pub fn parse(text: &str) -> Option<MatmulTiling> {
        let (kind, dims) = text
            .split_once(':')
            .map_or((text, None), |(k, d)| (k, Some(d)));
        let mut tiling = match kind {
            "shared" => MatmulTiling::shared(),
            "shared-vec4" => MatmulTiling::shared_vec4(),
            "direct" => MatmulTiling::direct(),
            "texture" => MatmulTiling::texture(),
            "half" => MatmulTiling::half(),
            _ => return None,
        };
        if let Some(dims) = dims {
            let n: Vec<u32> = dims
                .split('x')
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            let [wg_x, wg_y, rm, rn, tk] = n[..] else {
                return None;
            };
            // Checked: 2147483649x2 wraps to 2 threads in u32. Past 64 values
            // a thread (or a K slice), registers and workgroup memory are far
            // beyond any adapter's.
            let threads = wg_x.checked_mul(wg_y);
            let per_thread = [rm, rn, tk].iter().all(|&n| (1..=64).contains(&n));
            let valid = threads.is_some_and(|t| (1..=1024).contains(&t)) && per_thread;
            let quads = match tiling.kind {
                MatmulKind::Shared | MatmulKind::Half => true,
                MatmulKind::SharedVec4 => rn % 4 == 0 && rm % 4 == 0,
                MatmulKind::Direct => rn % 4 == 0,
                MatmulKind::Texture => rn % 4 == 0 && rm % 4 == 0,
            };
            if !valid || !quads {
                return None;
            }
            tiling = MatmulTiling {
                wg_x,
                wg_y,
                rm,
                rn,
                tk,
                kind: tiling.kind,
            };
        }
        Some(tiling)
    }

    /// The workgroup-memory kernel, for GPUs: 64×64 tiles, 4×4 per thread.
    pub fn shared() -> MatmulTiling {
        MatmulTiling {
            wg_x: 16,
            wg_y: 16,
            rm: 4,
            rn: 4,
            tk: 16,
            kind: MatmulKind::Shared,
        }
    }

    /// The vec4, double-buffered workgroup-memory kernel: 64×64 tiles, 4×4
    /// per thread, K steps of 16 (two tiles of each operand: 16 KiB of
    /// workgroup memory, WebGPU's least).
    pub fn shared_vec4() -> MatmulTiling {
        MatmulTiling {
            kind: MatmulKind::SharedVec4,
            ..MatmulTiling::shared()
        }
    }

    /// The workgroup-memory kernel with 128×128 tiles, 8×8 per thread: on
    /// an H100, 40–45 % of peak on large products where 64×64 tiles reach
    /// 22–36 %, but half the speed on products too small to give every
    /// multiprocessor a tile (docs/performance.md).
    pub fn shared_large() -> MatmulTiling {
        MatmulTiling {
            rm: 8,
            rn: 8,
            ..MatmulTiling::shared()
        }
    }

    /// The mixed-precision kernel: [`shared`](Self::shared)'s 64×64 tiles,
    /// staged as f16.
    pub fn half() -> MatmulTiling {
        MatmulTiling {
            kind: MatmulKind::Half,
            ..MatmulTiling::shared()
        }
    }

    /// The barrier-free storage-buffer kernel: 16×16 per thread.
    pub fn direct() -> MatmulTiling {
        MatmulTiling {
            wg_x: 8,
            wg_y: 4,
            rm: 16,
            rn: 16,
            tk: 16,
            kind: MatmulKind::Direct,
        }
    }

    /// The texture kernel for products of a few rows (the forward and input
    /// gradients of small batches): one row of threads, 4 × 16 values
    /// each, where [`texture`](Self::texture)'s 32-row tiles leave 31 of 32
    /// rows idle at batch 1. On lavapipe 2.5–4× faster for 1 to 8 rows,
    /// slower from 16 (docs/performance.md).
    pub fn texture_short() -> MatmulTiling {
        MatmulTiling {
            wg_x: 16,
            wg_y: 1,
            rm: 4,
            rn: 16,
            tk: 4,
            kind: MatmulKind::Texture,
        }
    }

    /// The texture kernel with 16 × 16 values a thread, in workgroups of
    /// 16 × 2 threads: on lavapipe 1.15–1.45× the speed of
    /// [`texture`](Self::texture) on the standard work at batch 64 and 1024
    /// with Mesa 22.3 and 25.0, but with Mesa 22.3 its pipelines take 33 s
    /// to compile the first time, against 4.3 (with Mesa 25.0: 4.8 s and
    /// 3.2). Mesa caches them on disk for later runs.
    pub fn texture_large() -> MatmulTiling {
        MatmulTiling {
            wg_x: 16,
            wg_y: 2,
            rm: 16,
            rn: 16,
            tk: 4,
            kind: MatmulKind::Texture,
        }
    }

    /// The texture kernel, for CPU adapters: 8×8 per thread. Larger blocks
    /// run faster once compiled (16×16: 1.4× at batch 1024 on lavapipe) but
    /// take far longer to compile the first time (standard work, Mesa's
    /// cache empty: 32 s to the first step against 4.7 s);
    /// `RETROPROP_MATMUL=texture:8x4x16x16x4` chooses them for long runs.
    pub fn texture() -> MatmulTiling {
        MatmulTiling {
            wg_x: 8,
            wg_y: 4,
            rm: 8,
            rn: 8,
            tk: 4,
            kind: MatmulKind::Texture,
        }
    }

    /// The name of the entry point for a transposition variant.
    pub(crate) fn entry_point(&self, trans_a: bool, trans_b: bool) -> String {
        match self.kind {
            MatmulKind::Shared => "matmul".into(),
            MatmulKind::SharedVec4 => "matmul_vec4".into(),
            MatmulKind::Direct => "matmul_direct".into(),
            MatmulKind::Half => "matmul_f16".into(),
            MatmulKind::Texture => format!(
                "matmul_texture_{}{}",
                if trans_a { 't' } else { 'n' },
                if trans_b { 't' } else { 'n' }
            ),
        }
    }

    /// The whole matmul module's source for this tiling.
    pub(crate) fn source(&self) -> String {
        // An `enable` directive must come before any declaration.
        let enable = if self.kind == MatmulKind::Half {
            "enable f16;\n"
        } else {
            ""
        };
        let mut source = format!(
            "{enable}{}{}\n{}",
            self.preamble(),
            common_source(),
            include_str!("../../shaders/matmul.wgsl")
        );
        match self.kind {
            MatmulKind::Shared => source += include_str!("../../shaders/matmul_tiled.wgsl"),
            MatmulKind::Half => {
                source += include_str!("../../shaders/matmul_tiled.wgsl");
                source += include_str!("../../shaders/matmul_f16.wgsl");
            }
            MatmulKind::SharedVec4 => {
                source += include_str!("../../shaders/matmul_tiled.wgsl");
                source += include_str!("../../shaders/matmul_tiled_vec4.wgsl");
            }
            MatmulKind::Direct => source += &self.direct_kernel(),
            MatmulKind::Texture => {
                source += "@group(0) @binding(1) var ta: texture_2d<f32>;\n";
                source += "@group(0) @binding(2) var tb: texture_2d<f32>;\n";
                for (trans_a, trans_b) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    source += &self.texture_kernel(trans_a, trans_b);
                }
            }
        }
        source
    }

    /// `matmul_direct`, expanded from its template for this block.
    fn direct_kernel(&self) -> String {
        let bindings = Bindings::default()
            .number("RM", self.rm as i64)
            .number("RN", self.rn as i64)
            .number("GROUPS", (self.rn / 4) as i64);
        expand(include_str!("../../shaders/matmul_direct.wgsl"), &bindings)
    }

    /// `matmul_texture_{n,t}{n,t}`, expanded from its template for this
    /// block.
    fn texture_kernel(&self, trans_a: bool, trans_b: bool) -> String {
        let bindings = Bindings::default()
            .number("RM", self.rm as i64)
            .number("RN", self.rn as i64)
            .flag("TRANS_A", trans_a)
            .flag("TRANS_B", trans_b);
        expand(include_str!("../../shaders/matmul_texture.wgsl"), &bindings)
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

/// Fewest 128×128 workgroups a product must make to run with them on a
/// hardware GPU (the default of `shared-by-shape`). Below it, 64×64 tiles
/// keep more of the device busy. Measured on an H200 (docs/performance.md,
/// every product of the step on one tiling): products of 64 large tiles
/// ran slower with them (784-1024-1024-10 at batch 1024: 1.85 against
/// 1.08 ms a step), of 256 as fast or faster (batch 4096: 3.41 against
/// 3.47 ms; 784-4096-4096-10 at batch 1024: 6.44 against 7.64 ms), of 1024
/// faster (784-4096-4096-10 at batch 4096: 20.2 against 27.4 ms).
pub const MIN_LARGE_WORKGROUPS: u32 = 256;

/// Most rows a product may have to run with
/// [`MatmulTiling::texture_short`] on a CPU adapter (the default of
/// `texture-by-shape`). Measured on lavapipe with the forward and input
/// gradient products of the standard work (K = 784 and 1024, N = 1024):
/// 1.0–2.7 ms against 6–8 ms for 1 to 8 rows, 4–8 against 7.5 at 16.
pub const MAX_SHORT_ROWS: u32 = 8;

/// Which tiling each product runs with. On hardware GPUs: 64×64 tiles
/// (`MatmulTiling::shared`), or 128×128 (`shared_large`) for products
/// large enough to make at least `min_workgroups` of those; on CPU
/// implementations of Vulkan (lavapipe): the texture kernel, one row of
/// threads (`texture_short`) for products of at most [`MAX_SHORT_ROWS`]
/// rows. `RETROPROP_MATMUL` overrides the choice.
///
/// ```
/// use retroprop::gpu::{MatmulChoice, MatmulTiling};
/// let choice = MatmulChoice::parse("shared-by-shape:64").unwrap();
/// let tilings = choice.tilings();
/// // B = 64: 1 × 8 large tiles, too few.
/// assert_eq!(tilings[choice.for_product(64, 1024)], MatmulTiling::shared());
/// // B = 1024: 8 × 8.
/// assert_eq!(tilings[choice.for_product(1024, 1024)], MatmulTiling::shared_large());
///
/// let choice = MatmulChoice::parse("texture-by-shape").unwrap();
/// let tilings = choice.tilings();
/// // The forward product at batch 1, and a weight gradient.
/// assert_eq!(tilings[choice.for_product(1, 1024)], MatmulTiling::texture_short());
/// assert_eq!(tilings[choice.for_product(1024, 784)], MatmulTiling::texture());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulChoice {
    /// Split-K for products of too few tiles to fill the device; `None`:
    /// every product sums its K in one workgroup a tile.
    pub split: Option<SplitK>,
    /// The tiling of every product that does not take `large`.
    pub small: MatmulTiling,
    /// Larger tiles, and the fewest workgroups of them a product must make
    /// to take them.
    pub large: Option<(MatmulTiling, u32)>,
    /// A tiling for products of few rows, and the most rows a product may
    /// have to take it.
    pub short: Option<(MatmulTiling, u32)>,
}

impl MatmulChoice {
    /// One tiling for every product.
    pub fn single(tiling: MatmulTiling) -> MatmulChoice {
        MatmulChoice {
            split: None,
            small: tiling,
            large: None,
            short: None,
        }
    }

    /// 64×64 tiles, or 128×128 for products that make at least
    /// `min_workgroups` of them.
    pub fn by_shape(min_workgroups: u32) -> MatmulChoice {
        MatmulChoice {
            split: None,
            small: MatmulTiling::shared(),
            large: Some((MatmulTiling::shared_large(), min_workgroups.max(1))),
            short: None,
        }
    }

    /// The texture kernel ([`MatmulTiling::texture`]), with one row of
    /// threads for products of at most `max_rows` rows.
    pub fn texture_by_shape(max_rows: u32) -> MatmulChoice {
        MatmulChoice {
            split: None,
            small: MatmulTiling::texture(),
            large: None,
            short: Some((MatmulTiling::texture_short(), max_rows.max(1))),
        }
    }

    /// [`texture_by_shape`](Self::texture_by_shape) with 16 × 16 values a
    /// thread ([`MatmulTiling::texture_large`]) for the products of more
    /// rows.
    pub fn texture_large_by_shape(max_rows: u32) -> MatmulChoice {
        MatmulChoice {
            small: MatmulTiling::texture_large(),
            ..MatmulChoice::texture_by_shape(max_rows)
        }
    }

    /// The choice for an adapter: by shape on hardware GPUs, the texture
    /// kernel by shape on CPU implementations (lavapipe: with 16 × 16
    /// blocks where Mesa compiles them quickly, from Mesa 23 on), split-K
    /// off (unmeasured on hardware GPUs, slower on lavapipe:
    /// docs/performance.md); `RETROPROP_MATMUL` in the environment
    /// overrides it. A split-K asked for without a number of units fills
    /// the adapter's [`compute_units`].
    pub fn for_adapter(adapter: &AdapterSummary) -> MatmulChoice {
        let default = || MatmulChoice::default_for(adapter.is_hardware, &adapter.driver);
        let choice = match MatmulChoice::from_env() {
            Ok(Some(choice)) if choice.small.kind == MatmulKind::Half => {
                log::warn!(
                    "RETROPROP_MATMUL names half, the f16 kernel of precision mixed; using the default kernel"
                );
                default()
            }
            Ok(Some(choice)) => choice,
            Ok(None) => default(),
            Err(e) => {
                log::warn!("{e}; using the default kernel");
                default()
            }
        };
        choice.on_adapter(adapter)
    }

    /// This choice with a split-K of 0 units given the adapter's
    /// [`compute_units`].
    pub fn on_adapter(mut self, adapter: &AdapterSummary) -> MatmulChoice {
        if let Some(split) = &mut self.split
            && split.units == 0
        {
            split.units = compute_units(adapter);
        }
        self
    }

    /// The choice for an adapter in [`Precision::Mixed`](crate::Precision::Mixed): every product on
    /// the f16 kernel ([`MatmulTiling::half`]), or the tiling of kind
    /// `half` that `RETROPROP_MATMUL` names (another kind there is ignored,
    /// with a warning: it would compute in f32).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the adapter when it
    /// does not offer `shader-f16`.
    pub fn mixed(adapter: &AdapterSummary) -> Result<MatmulChoice> {
        if !adapter.shader_f16 {
            return Err(Error::Config(format!(
                "--precision mixed needs an adapter with shader-f16 (f16 in shaders); {} ({}, {}) \
                 does not offer it: use --precision f32",
                adapter.name, adapter.backend, adapter.driver
            )));
        }
        match MatmulChoice::from_env() {
            Ok(Some(choice)) if choice.small.kind == MatmulKind::Half => {
                return Ok(choice.on_adapter(adapter));
            }
            Ok(Some(_)) => log::warn!(
                "RETROPROP_MATMUL names an f32 kernel; precision mixed runs the f16 kernel (half)"
            ),
            Ok(None) => {}
            Err(e) => log::warn!("{e}; using the default kernel"),
        }
        Ok(MatmulChoice::single(MatmulTiling::half()))
    }

    /// The default for a hardware GPU, or a CPU adapter and its driver (as
    /// [`AdapterSummary::driver`] says it), whatever the environment says.
    fn default_for(is_hardware: bool, driver: &str) -> MatmulChoice {
        if is_hardware {
            MatmulChoice::by_shape(MIN_LARGE_WORKGROUPS)
        } else if mesa_major(driver).is_some_and(|major| major >= 23) {
            MatmulChoice::texture_large_by_shape(MAX_SHORT_ROWS)
        } else {
            // Mesa 22 takes 33 s to compile the large blocks' pipelines
            // the first time; other CPU adapters are unmeasured.
            MatmulChoice::texture_by_shape(MAX_SHORT_ROWS)
        }
    }

    /// The choice `RETROPROP_MATMUL` asks for, if it is set.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when it is set to something
    /// [`parse`](Self::parse) does not accept; programs call this at start
    /// (the `retroprop` program does) so that a typo is not a silent
    /// fall back to the default kernel.
    pub fn from_env() -> Result<Option<MatmulChoice>> {
        match std::env::var("RETROPROP_MATMUL") {
            Ok(text) => MatmulChoice::parse(&text).map(Some).ok_or_else(|| {
                Error::Config(format!(
                    "RETROPROP_MATMUL=`{text}` is not a matmul kernel: use shared, shared-vec4, direct, \
                     texture or half (precision mixed only), optionally with :WGxWGyxRMxRNxTK (at most 1024 threads a workgroup, RM, RN \
                     and TK from 1 to 64; RN a multiple of 4 for direct, RM and RN for texture and \
                     shared-vec4), \
                     shared-by-shape[:N], texture-by-shape[:N] or texture-large-by-shape[:N], \
                     each optionally followed by +split[:UNITS[:MIN_K]] (UNITS and MIN_K at least 1)"
                ))
            }),
            Err(_) => Ok(None),
        }
    }

    /// Parses what [`MatmulTiling::parse`] accepts (one tiling for every
    /// product), `shared-by-shape[:N]` (64×64 tiles, 128×128 for products
    /// of at least N such workgroups; N defaults to
    /// [`MIN_LARGE_WORKGROUPS`]), `texture-by-shape[:N]` (the texture
    /// kernel, one row of threads for products of at most N rows; N
    /// defaults to [`MAX_SHORT_ROWS`]) or `texture-large-by-shape[:N]`
    /// (the same with 16 × 16 blocks); any of them followed by
    /// `+split[:UNITS[:MIN_K]]` turns split-K on ([`SplitK`]: UNITS
    /// defaults to the adapter's [`compute_units`], MIN_K to
    /// [`MIN_SLICE_K`](super::MIN_SLICE_K)).
    ///
    /// ```
    /// use retroprop::gpu::{MatmulChoice, SplitK};
    /// let choice = MatmulChoice::parse("texture+split:64:16").unwrap();
    /// assert_eq!(choice.split, Some(SplitK { units: 64, min_slice_k: 16 }));
    /// ```
    pub fn parse(text: &str) -> Option<MatmulChoice> {
        if let Some((base, split)) = text.split_once("+split") {
            let mut choice = MatmulChoice::parse(base)?;
            if choice.split.is_some() {
                return None;
            }
            choice.split = Some(SplitK::parse(split)?);
            return Some(choice);
        }
        let by_shape = |rest: &str, default: u32, make: fn(u32) -> MatmulChoice| match rest {
            "" => Some(make(default)),
            rest => {
                let n: u32 = rest.strip_prefix(':')?.parse().ok()?;
                (n > 0).then(|| make(n))
            }
        };
        if let Some(rest) = text.strip_prefix("shared-by-shape") {
            by_shape(rest, MIN_LARGE_WORKGROUPS, MatmulChoice::by_shape)
        } else if let Some(rest) = text.strip_prefix("texture-by-shape") {
            by_shape(rest, MAX_SHORT_ROWS, MatmulChoice::texture_by_shape)
        } else if let Some(rest) = text.strip_prefix("texture-large-by-shape") {
            by_shape(rest, MAX_SHORT_ROWS, MatmulChoice::texture_large_by_shape)
        } else {
            MatmulTiling::parse(text).map(MatmulChoice::single)
        }
    }

    /// The tilings whose pipelines a device compiles: `small`, then
    /// `large` and `short` if any.
    pub fn tilings(&self) -> Vec<MatmulTiling> {
        std::iter::once(self.small)
            .chain(self.large.map(|(tiling, _)| tiling))
            .chain(self.short.map(|(tiling, _)| tiling))
            .collect()
    }

    /// Which of [`tilings`](Self::tilings) an `m × n` product runs with:
    /// the short tiling when it has at most its most rows, the large tiles
    /// when they make at least their minimum of workgroups, else the small.
    pub fn for_product(&self, m: usize, n: usize) -> usize {
        let large = usize::from(self.large.is_some());
        if let Some((_, max_rows)) = self.short
            && m <= max_rows as usize
        {
            return 1 + large;
        }
        match self.large {
            Some((tiling, min_workgroups))
                if workgroups(&tiling, m, n) >= min_workgroups as u64 =>
            {
                1
            }
            _ => 0,
        }
    }
}

impl MatmulChoice {
    /// Slices of K an `m × n` product with reduction `k` is split into
    /// (1: not split), with the tiling it runs with.
    pub fn slices(&self, m: usize, n: usize, k: usize) -> u32 {
        let tiling = self.tilings()[self.for_product(m, n)];
        self.split
            .map_or(1, |split| split.slices(workgroups(&tiling, m, n), k))
    }
}

/// The major version of Mesa in a driver description such as
/// "llvmpipe Mesa 22.3.6 (LLVM 15.0.6)".
fn mesa_major(driver: &str) -> Option<u32> {
    let (_, after) = driver.split_once("Mesa ")?;
    after.split('.').next()?.parse().ok()
}

/// Workgroups an `m × n` product makes with `tiling`.
fn workgroups(tiling: &MatmulTiling, m: usize, n: usize) -> u64 {
    (m as u64).div_ceil(tiling.tile_m() as u64) * (n as u64).div_ceil(tiling.tile_n() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::split::{MAX_SLICES, MIN_SLICE_K};

    #[test]
    fn large_tiles_only_for_products_that_fill_the_device() {
        let choice = MatmulChoice::by_shape(64);
        let large =
            |m, n| choice.tilings()[choice.for_product(m, n)] == MatmulTiling::shared_large();
        // The standard work at batch 64: every product is small.
        assert!(!large(64, 1024), "forward at B = 64: 8 large tiles");
        assert!(
            !large(1024, 784),
            "weight gradient 1024 × 784: 56 large tiles"
        );
        // At batch 1024: 8 × 8 = 64 large tiles, exactly the minimum.
        assert!(large(1024, 1024), "1024 × 1024");
        assert!(!large(1024, 10), "the 10-wide output layer");
        assert!(large(4096, 4096), "4096²");
        // Edges round up: 897 columns make 8 tiles along N.
        assert!(!large(1024, 896), "8 × 7 = 56 tiles");
        assert!(large(1024, 897), "8 × 8 = 64 tiles");
    }

    #[test]
    fn the_short_tiling_only_for_products_of_few_rows() {
        let choice = MatmulChoice::texture_by_shape(8);
        assert_eq!(
            choice.tilings(),
            [MatmulTiling::texture(), MatmulTiling::texture_short()]
        );
        let short =
            |m, n| choice.tilings()[choice.for_product(m, n)] == MatmulTiling::texture_short();
        // Batch 1 to 8: the forward and input-gradient products.
        assert!(short(1, 1024), "forward at B = 1");
        assert!(short(8, 784), "input gradient at B = 8");
        assert!(!short(9, 1024), "9 rows");
        assert!(!short(64, 1024), "forward at B = 64");
        // Weight gradients have a layer's outputs as rows, whatever the batch.
        assert!(!short(1024, 784), "weight gradient 1024 × 784");
        assert!(short(4, 10), "a 4-wide layer's weight gradient");
    }

    #[test]
    fn lavapipe_takes_large_blocks_from_mesa_23_on() {
        let default = |driver| MatmulChoice::default_for(false, driver);
        let small = MatmulChoice::texture_by_shape(MAX_SHORT_ROWS);
        let large = MatmulChoice::texture_large_by_shape(MAX_SHORT_ROWS);
        assert_eq!(default("llvmpipe Mesa 22.3.6 (LLVM 15.0.6)"), small);
        assert_eq!(default("llvmpipe Mesa 23.0.4 (LLVM 15.0.7)"), large);
        assert_eq!(
            default("llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)"),
            large
        );
        // Unknown CPU adapters (SwiftShader, WARP) keep the small blocks.
        assert_eq!(default("SwiftShader driver 5.0.0"), small);
        assert_eq!(default(""), small);
        assert_eq!(
            MatmulChoice::default_for(true, "NVIDIA 580.159.04"),
            MatmulChoice::by_shape(MIN_LARGE_WORKGROUPS)
        );
        // Both keep the one-row tiling for products of a few rows.
        for choice in [small, large] {
            assert_eq!(
                choice.tilings()[choice.for_product(1, 1024)],
                MatmulTiling::texture_short()
            );
        }
        assert_eq!(
            large.tilings()[large.for_product(64, 1024)],
            MatmulTiling::texture_large()
        );
    }

    #[test]
    fn one_tiling_choices_never_switch() {
        for tiling in [
            MatmulTiling::shared(),
            MatmulTiling::direct(),
            MatmulTiling::texture(),
        ] {
            let choice = MatmulChoice::single(tiling);
            assert_eq!(choice.tilings(), [tiling]);
            assert_eq!(choice.for_product(1 << 14, 1 << 14), 0);
        }
    }

    #[test]
    fn the_environment_grammar_names_each_choice() {
        assert_eq!(
            MatmulChoice::parse("shared-by-shape:2"),
            Some(MatmulChoice::by_shape(2))
        );
        assert_eq!(
            MatmulChoice::parse("shared-by-shape"),
            Some(MatmulChoice::by_shape(MIN_LARGE_WORKGROUPS))
        );
        assert_eq!(
            MatmulChoice::parse("texture"),
            Some(MatmulChoice::single(MatmulTiling::texture()))
        );
        assert_eq!(
            MatmulChoice::parse("texture-by-shape"),
            Some(MatmulChoice::texture_by_shape(MAX_SHORT_ROWS))
        );
        assert_eq!(
            MatmulChoice::parse("texture-by-shape:3"),
            Some(MatmulChoice::texture_by_shape(3))
        );
        assert_eq!(
            MatmulChoice::parse("texture-large-by-shape"),
            Some(MatmulChoice::texture_large_by_shape(MAX_SHORT_ROWS))
        );
        for bad in [
            "shared-by-shape:0",
            "shared-by-shape:",
            "shared-by-shape2",
            "shared-by-shape:x",
            "texture-by-shape:0",
            "texture-by-shape:",
            "texture-by-shape8",
        ] {
            assert_eq!(MatmulChoice::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn split_k_follows_any_choice_in_the_environment_grammar() {
        let split = |units, min_slice_k| Some(SplitK { units, min_slice_k });
        let texture = MatmulChoice::parse("texture-by-shape+split").unwrap();
        assert_eq!(texture.split, split(0, MIN_SLICE_K));
        assert_eq!(texture.small, MatmulTiling::texture());
        let shared = MatmulChoice::parse("shared-by-shape:64+split:132").unwrap();
        assert_eq!(shared.split, split(132, MIN_SLICE_K));
        assert_eq!(shared.large, MatmulChoice::by_shape(64).large);
        let tiling = MatmulChoice::parse("shared:16x16x8x8x8+split:8:32").unwrap();
        assert_eq!(tiling.split, split(8, 32));
        assert_eq!(tiling.small.rm, 8);
        for bad in [
            "texture+split:0",
            "texture+split:8:0",
            "texture+split:",
            "texture+split:8:",
            "texture+split:8:16:4",
            "texture+split8",
            "texture+split+split",
            "+split",
            "textur+split",
        ] {
            assert_eq!(MatmulChoice::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn split_k_brings_tiles_times_slices_near_the_units() {
        let split = SplitK {
            units: 132,
            min_slice_k: 256,
        };
        // The standard work at batch 64 on an H200: forward of layer 2
        // (64 × 1024, K = 1024) makes 16 tiles of 64 × 64.
        assert_eq!(split.slices(16, 1024), 4, "K allows 4 slices of 256");
        assert_eq!(split.slices(16, 4096), 8, "8 × 16 = 128 workgroups");
        assert_eq!(split.slices(1, 1 << 20), MAX_SLICES);
        assert_eq!(split.slices(132, 1 << 20), 1, "already full");
        assert_eq!(split.slices(0, 100), 1, "K shorter than a slice");
        let choice = MatmulChoice {
            split: Some(split),
            ..MatmulChoice::by_shape(MIN_LARGE_WORKGROUPS)
        };
        assert_eq!(choice.slices(64, 1024, 784), 3);
        assert_eq!(choice.slices(1024, 1024, 64), 1, "256 tiles");
        assert_eq!(MatmulChoice::by_shape(64).slices(64, 1024, 1 << 20), 1);
    }

    #[test]
    fn unrolled_kernels_expand_to_the_block_they_name() {
        for (rm, rn) in [(4, 4), (8, 8), (16, 8), (8, 16)] {
            let texture = MatmulTiling {
                rm,
                rn,
                ..MatmulTiling::texture()
            };
            let source = texture.source();
            let directive = |text: &str| text.lines().any(|l| l.trim_start().starts_with("//#"));
            assert!(!directive(&source), "a directive was left in:\n{source}");
            for name in ["nn", "nt", "tn", "tt"] {
                let header = format!("fn matmul_texture_{name}(");
                assert_eq!(source.matches(&header).count(), 1, "{header}");
            }
            // Each variant declares RM · RN accumulators and updates each
            // once a quad, with four multiply-adds.
            let last = format!("var acc{}_{} = 0.0;", rm - 1, rn - 1);
            assert_eq!(source.matches(&last).count(), 4, "{last}");
            let updates = source.matches("= fma(").count();
            assert_eq!(updates as u32, 4 * rm * rn, "updates for {rm} × {rn}");
            let fmas = source.matches("fma(").count();
            assert_eq!(
                fmas as u32,
                4 * 4 * rm * rn,
                "multiply-adds for {rm} × {rn}"
            );
            let direct = MatmulTiling {
                rm,
                rn,
                ..MatmulTiling::direct()
            }
            .source();
            assert!(!directive(&direct), "a directive was left in:\n{direct}");
            let last = format!("var acc{}_{} = vec4<f32>(0.0);", rm - 1, rn / 4 - 1);
            assert_eq!(direct.matches(&last).count(), 1, "{last}");
            assert_eq!(direct.matches("= fma(").count() as u32, rm * rn / 4);
        }
    }

    fn adapter(shader_f16: bool) -> AdapterSummary {
        AdapterSummary {
            name: "an adapter".into(),
            backend: "Vulkan".into(),
            device_type: "DiscreteGpu".into(),
            driver: "a driver".into(),
            max_storage_buffer_binding_size: 1 << 30,
            max_buffer_size: 1 << 30,
            max_compute_workgroups_per_dimension: 65535,
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_storage_size: 32768,
            is_hardware: true,
            shader_f16,
            cooperative_matrix_f16: false,
        }
    }

    #[test]
    fn mixed_precision_takes_the_f16_kernel_or_refuses_naming_the_adapter() {
        let choice = MatmulChoice::mixed(&adapter(true)).unwrap();
        assert_eq!(choice.tilings(), [MatmulTiling::half()]);
        assert_eq!(choice.small.entry_point(false, true), "matmul_f16");
        match MatmulChoice::mixed(&adapter(false)) {
            Err(Error::Config(message)) => {
                assert!(message.contains("--precision mixed needs an adapter with shader-f16"));
                assert!(
                    message.contains("an adapter (Vulkan, a driver)"),
                    "{message}"
                );
                assert!(message.contains("--precision f32"), "{message}");
            }
            other => panic!("no shader-f16: {other:?}"),
        }
        assert_eq!(
            MatmulChoice::parse("half:8x8x4x4x16"),
            Some(MatmulChoice::single(MatmulTiling {
                wg_x: 8,
                wg_y: 8,
                ..MatmulTiling::half()
            }))
        );
        // The module enables f16 before anything else, and stages f16 tiles.
        let source = MatmulTiling::half().source();
        assert!(source.starts_with("enable f16;\n"), "{}", &source[..40]);
        assert!(source.contains("var<workgroup> a_half: array<f16, TM * TK>;"));
        assert!(!MatmulTiling::shared().source().contains("enable f16;"));
    }

    #[test]
    fn large_tiles_are_the_shared_kernel_with_eight_by_eight_per_thread() {
        let large = MatmulTiling::shared_large();
        assert_eq!((large.tile_m(), large.tile_n()), (128, 128));
        assert_eq!(large.kind, MatmulKind::Shared);
        assert!(
            large.wg_x * large.wg_y <= 256,
            "a workgroup every adapter allows"
        );
    }
}
