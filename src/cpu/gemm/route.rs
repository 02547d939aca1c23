//! Which GEMM runs each product ([`route`]): what `RETROPROP_BLAS` asks
//! for, and under `auto` the outcome of the product shape's trial, timed
//! here on operands of its own (the schedule and the memory of outcomes
//! are in choice.rs).

use super::builtin::gemm_builtin;
use super::choice::{self, Chooser, Engine, Shape, Trial};
use super::library::{Blas, CBLAS_TRANS, operand};
use super::{Gemm, to_library};
use crate::error::{Error, Result};
use std::sync::OnceLock;

/// Library names `auto` tries, in order.
const AUTO: [&str; 6] = [
    "libopenblas.so.0",
    "libopenblas.so",
    "libopenblas.dylib",
    "libmkl_rt.so.3",
    "libmkl_rt.so.2",
    "libmkl_rt.so",
];

/// What `RETROPROP_BLAS` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    /// `off`: the built-in GEMM alone.
    Off,
    /// Unset or `auto`: the first library of [`AUTO`] that loads, for the
    /// shapes where a trial finds it faster.
    Auto,
    /// A library name or path: that library for every product large enough.
    Named(String),
}

impl Wanted {
    /// The setting's text (unset reads as empty).
    fn parse(text: &str) -> Wanted {
        match text.trim() {
            "off" => Wanted::Off,
            "" | "auto" => Wanted::Auto,
            name => Wanted::Named(name.to_string()),
        }
    }
}

/// How products large enough for the library use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// No library loaded: none does.
    Never,
    /// The library was named: all do.
    Always,
    /// The library was found by `auto`: those whose shape's trial it won.
    Timed,
}

/// The setting `RETROPROP_BLAS` made, settled once per process.
struct Setting {
    blas: Option<Blas>,
    uses: Use,
    /// Why the library asked for could not be used.
    error: Option<Error>,
}

fn setting() -> &'static Setting {
    static SETTING: OnceLock<Setting> = OnceLock::new();
    SETTING.get_or_init(|| {
        let wanted = std::env::var("RETROPROP_BLAS").unwrap_or_default();
        let (blas, uses, error) = match Wanted::parse(&wanted) {
            Wanted::Off => (None, Use::Never, None),
            Wanted::Auto => {
                let blas = AUTO.iter().find_map(|name| Blas::load(name).ok());
                (blas, Use::Timed, None)
            }
            Wanted::Named(name) => match Blas::load(&name) {
                Ok(blas) => (Some(blas), Use::Always, None),
                Err(e) => {
                    log::warn!("{e}");
                    (None, Use::Never, Some(e))
                }
            },
        };
        let uses = if blas.is_some() { uses } else { Use::Never };
        Setting { blas, uses, error }
    })
}

/// The BLAS library the CPU backend may use, if any (see the module docs).
pub fn blas() -> Option<&'static Blas> {
    setting().blas.as_ref()
}

/// Which GEMMs this process uses, for logs and benchmark reports: the
/// BLAS library's [name](Blas::name), `built-in GEMM`, or under `auto`
/// both, the library taking the product shapes whose trial it wins.
pub fn gemm_name() -> String {
    match (blas(), setting().uses) {
        (Some(b), Use::Timed) => format!(
            "{} or built-in GEMM, the faster at each product shape",
            b.name()
        ),
        (Some(b), _) => b.name().to_string(),
        (None, _) => BUILT_IN.to_string(),
    }
}

/// The built-in GEMM, in words.
const BUILT_IN: &str = "built-in GEMM";

/// Which GEMM a product runs on, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route {
    /// Below the sizes the library gets: the built-in GEMM.
    Small,
    /// No library (`RETROPROP_BLAS=off`, or none found): the built-in GEMM.
    NoLibrary,
    /// `RETROPROP_BLAS` names the library: it takes the product.
    Named,
    /// `auto`: the GEMM the trial of the product's shape found faster.
    Trial(Trial),
}

impl Route {
    /// The GEMM that runs the product.
    pub fn engine(&self) -> Engine {
        match self {
            Route::Small | Route::NoLibrary => Engine::BuiltIn,
            Route::Named => Engine::Library,
            Route::Trial(trial) => trial.engine,
        }
    }
}

/// Which GEMM products of `shape` run on in this process: decided by the
/// setting, or under `auto` by the shape's trial, run now if this is its
/// first product (a few products of each GEMM at that shape, on this
/// thread: the CPU backend asks from its pool's). The choice is kept for
/// the process: every product of a shape runs on the same GEMM, so a run
/// gives the same bits each time within a process (docs/DESIGN.md).
pub fn route(shape: Shape) -> Route {
    // Small products never load the library (a loaded OpenBLAS starts
    // threads).
    if !to_library(shape.m, shape.k, shape.n) {
        return Route::Small;
    }
    route_by(setting().uses, shape, chooser())
}

/// [`route`] for a product large enough, under a given use of the library.
fn route_by(uses: Use, shape: Shape, chooser: &Chooser) -> Route {
    match uses {
        Use::Never => Route::NoLibrary,
        Use::Always => Route::Named,
        Use::Timed => Route::Trial(chooser.choose(shape)),
    }
}

/// The trials of this process, by shape (runs nothing): what `auto` has
/// chosen so far.
pub fn trials() -> Vec<(Shape, Trial)> {
    chooser().outcomes()
}

/// The process's trials: both GEMMs timed at the shape.
fn chooser() -> &'static Chooser {
    static CHOOSER: OnceLock<Chooser> = OnceLock::new();
    CHOOSER.get_or_init(|| {
        Chooser::new(|shape| match (blas(), shape.float_bytes) {
            (Some(blas), 8) => time_both::<f64>(blas, shape),
            (Some(blas), _) => time_both::<f32>(blas, shape),
            // Never asked: without a library every product is built-in.
            (None, _) => choice::trial(&mut |engine| match engine {
                Engine::BuiltIn => 0.0,
                Engine::Library => f64::INFINITY,
            }),
        })
    })
}

/// The trial of `shape` on this machine: products of both GEMMs on operands
/// of that shape and layout (constants: no subnormals, no NaN), timed.
fn time_both<T: Gemm>(blas: &Blas, shape: Shape) -> Trial {
    let Shape { m, k, n, .. } = shape;
    let a = vec![T::of(0.5); m * k];
    let b = vec![T::of(0.25); k * n];
    let mut c = vec![T::zero(); m * n];
    let a_strides = if shape.a_transposed {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let b_strides = if shape.b_transposed {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let c_strides = (n as isize, 1);
    let (one, zero) = (T::one(), T::zero());
    choice::trial(&mut |engine| {
        let start = std::time::Instant::now();
        match engine {
            Engine::BuiltIn => gemm_builtin(
                m, k, n, one, &a, a_strides, &b, b_strides, zero, &mut c, c_strides,
            ),
            Engine::Library => {
                let done = blas.gemm(
                    m, k, n, one, &a, a_strides, &b, b_strides, zero, &mut c, c_strides,
                );
                debug_assert!(done, "CBLAS declined a compact row-major product");
            }
        }
        start.elapsed().as_secs_f64()
    })
}

/// The shape class of a product with these strides, as CBLAS would be
/// asked for it; `None` where it cannot express the layout (neither stride
/// 1, C not row-major), which the built-in GEMM then computes.
pub(super) fn shape_of<T>(
    m: usize,
    k: usize,
    n: usize,
    a_strides: (isize, isize),
    b_strides: (isize, isize),
    c_strides: (isize, isize),
) -> Option<Shape> {
    let (a, _) = operand(m, k, a_strides)?;
    let (b, _) = operand(k, n, b_strides)?;
    let c_row_major = matches!(c_strides, (rs, 1) if rs >= n.max(1) as isize);
    c_row_major.then_some(Shape {
        m,
        k,
        n,
        a_transposed: a == CBLAS_TRANS,
        b_transposed: b == CBLAS_TRANS,
        float_bytes: std::mem::size_of::<T>(),
    })
}

/// The GEMMs the products of `shapes` large enough for the library run on,
/// in words: `built-in GEMM`, the library's name, or both joined by ` + `,
/// the one with the larger share of their multiply-adds first (the library
/// on a tie). Smaller
/// products always run on the built-in GEMM and are not counted: a
/// classifier's output layer would otherwise put `+ built-in GEMM` after
/// every name. Decides each shape ([`route`]): under `auto` this runs the
/// trials of those not yet tried.
pub fn gemms_of(shapes: &[Shape]) -> String {
    let (mut builtin, mut library) = (0usize, 0usize);
    for shape in shapes {
        let route = route(*shape);
        match route.engine() {
            _ if route == Route::Small => {}
            Engine::BuiltIn => builtin = builtin.saturating_add(shape.work()),
            Engine::Library => library = library.saturating_add(shape.work()),
        }
    }
    in_words(builtin, library, blas().map(Blas::name))
}

/// [`gemms_of`]'s words for `builtin` and `library` multiply-adds.
fn in_words(builtin: usize, library: usize, name: Option<&str>) -> String {
    match name {
        Some(name) if library > 0 && builtin == 0 => name.to_string(),
        Some(name) if library > 0 && library >= builtin => format!("{name} + {BUILT_IN}"),
        Some(name) if library > 0 => format!("{BUILT_IN} + {name}"),
        _ => BUILT_IN.to_string(),
    }
}

/// Fails when `RETROPROP_BLAS` names a library that cannot be used (the CPU
/// backend then runs on the built-in GEMM); programs call this at start to
/// report it rather than run slower unnoticed.
///
/// # Errors
/// [`Error::Blas`] with the library and the loader's reason.
pub fn check_env() -> Result<()> {
    match &setting().error {
        Some(Error::Blas { library, reason }) => Err(Error::Blas {
            library: library.clone(),
            reason: reason.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn large() -> Shape {
        Shape {
            m: 1024,
            k: 1024,
            n: 1024,
            a_transposed: true,
            b_transposed: false,
            float_bytes: 4,
        }
    }

    /// A chooser whose trials find `faster` faster, and the trials run.
    fn fake(faster: Engine) -> (Chooser, &'static AtomicUsize) {
        let trials: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let chooser = Chooser::new(move |_| {
            trials.fetch_add(1, Ordering::SeqCst);
            choice::trial(&mut |engine| if engine == faster { 0.001 } else { 0.002 })
        });
        (chooser, trials)
    }

    #[test]
    fn the_setting_is_read_as_off_auto_or_a_library() {
        assert_eq!(Wanted::parse("off"), Wanted::Off);
        assert_eq!(Wanted::parse(" off\n"), Wanted::Off);
        assert_eq!(Wanted::parse(""), Wanted::Auto);
        assert_eq!(Wanted::parse("auto"), Wanted::Auto);
        assert_eq!(
            Wanted::parse("/opt/lib/libblis.so"),
            Wanted::Named("/opt/lib/libblis.so".into())
        );
    }

    #[test]
    fn off_and_a_named_library_are_kept_whatever_a_trial_would_find() {
        // `off` (or no library): the built-in GEMM, though the library
        // would win, and no trial runs.
        let (chooser, trials) = fake(Engine::Library);
        let route = route_by(Use::Never, large(), &chooser);
        assert_eq!((route, route.engine()), (Route::NoLibrary, Engine::BuiltIn));
        // A library named: it runs the product, though the built-in GEMM
        // would win.
        let (chooser_builtin, trials_builtin) = fake(Engine::BuiltIn);
        let route = route_by(Use::Always, large(), &chooser_builtin);
        assert_eq!((route, route.engine()), (Route::Named, Engine::Library));
        assert_eq!(trials.load(Ordering::SeqCst), 0);
        assert_eq!(trials_builtin.load(Ordering::SeqCst), 0);
        // `auto`: the trial decides, once.
        for _ in 0..3 {
            assert_eq!(
                route_by(Use::Timed, large(), &chooser).engine(),
                Engine::Library
            );
            let route = route_by(Use::Timed, large(), &chooser_builtin);
            assert_eq!(route.engine(), Engine::BuiltIn);
        }
        assert_eq!(trials.load(Ordering::SeqCst), 1);
        assert_eq!(trials_builtin.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_small_product_never_reaches_the_library_or_a_trial() {
        let small = Shape { m: 10, ..large() };
        assert_eq!(route(small), Route::Small);
        assert!(trials().iter().all(|(shape, _)| *shape != small));
    }

    #[test]
    fn the_shape_class_is_what_cblas_would_be_asked() {
        // The forward product's layout (X·Wᵀ, W read by columns).
        let shape = shape_of::<f32>(64, 784, 1024, (784, 1), (1, 784), (1024, 1)).unwrap();
        assert_eq!(
            (shape.a_transposed, shape.b_transposed, shape.float_bytes),
            (false, true, 4)
        );
        // Padded leading dimensions are the same class.
        let padded = shape_of::<f32>(64, 784, 1024, (800, 1), (1, 790), (1030, 1)).unwrap();
        assert_eq!(padded, shape);
        let weight_grad = shape_of::<f64>(1024, 64, 784, (1, 1024), (784, 1), (784, 1)).unwrap();
        assert_eq!(
            (
                weight_grad.a_transposed,
                weight_grad.b_transposed,
                weight_grad.float_bytes
            ),
            (true, false, 8)
        );
        // What CBLAS cannot express has no class: the built-in GEMM runs it.
        assert_eq!(shape_of::<f32>(2, 2, 2, (2, 2), (2, 1), (2, 1)), None);
        assert_eq!(shape_of::<f32>(2, 2, 2, (2, 1), (2, 1), (1, 2)), None);
    }

    #[test]
    fn the_words_name_the_gemm_of_most_of_the_work() {
        let lib = Some("OpenBLAS 0.3.21, Haswell");
        // Every product large enough chose the built-in GEMM: the library
        // is loaded but runs nothing, and is not named.
        assert_eq!(in_words(5, 0, lib), "built-in GEMM");
        assert_eq!(in_words(0, 5, lib), "OpenBLAS 0.3.21, Haswell");
        assert_eq!(
            in_words(3, 5, lib),
            "OpenBLAS 0.3.21, Haswell + built-in GEMM"
        );
        assert_eq!(
            in_words(5, 3, lib),
            "built-in GEMM + OpenBLAS 0.3.21, Haswell"
        );
        assert_eq!(in_words(5, 0, None), "built-in GEMM");
    }
}
