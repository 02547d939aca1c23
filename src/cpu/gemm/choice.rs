//! Which of the CPU backend's two GEMMs a product shape runs on under
//! `RETROPROP_BLAS=auto`: the faster of the two at that shape, measured
//! once per process by a short timed trial and then kept ([`Chooser`]).
//!
//! A library's speed is not known from its name: Debian's OpenBLAS 0.3.21
//! ran its Haswell (AVX2) kernels at half the built-in GEMM's speed on an
//! AVX-512 machine where `OPENBLAS_CORETYPE=Haswell` was set, and its
//! AVX-512 kernels faster than it on another (docs/performance.md). This
//! file holds the trial's schedule and the memory of the outcomes; route.rs
//! times the calls, so nothing here imports it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A product's shape class, what a choice is made for: C = op(A)·op(B),
/// m × k times k × n, with each operand read as stored or transposed, in
/// one float type. The layer products of a run are a few of these (a
/// dense layer's forward, weight and input gradients at the batch size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// A's columns are contiguous (it is read transposed).
    pub a_transposed: bool,
    /// B's columns are contiguous.
    pub b_transposed: bool,
    /// Bytes of the float: 4 (`f32`) or 8 (`f64`).
    pub float_bytes: usize,
}

impl Shape {
    /// Multiply-adds of one product.
    pub fn work(&self) -> usize {
        self.m.saturating_mul(self.k).saturating_mul(self.n)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |transposed| if transposed { 'T' } else { 'N' };
        write!(
            f,
            "{}x{}x{} {}{} f{}",
            self.m,
            self.k,
            self.n,
            t(self.a_transposed),
            t(self.b_transposed),
            self.float_bytes * 8
        )
    }
}

/// One of the two GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The `gemm` crate's, in blocks on the CPU backend's threads.
    BuiltIn,
    /// The loaded BLAS library's `cblas_sgemm` / `cblas_dgemm`.
    Library,
}

/// What a trial measured and chose: the fastest call of each GEMM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    /// The faster (the built-in one on a tie: it wakes no other threads).
    pub engine: Engine,
    /// Seconds of the built-in GEMM's fastest call.
    pub builtin_s: f64,
    /// Seconds of the library's fastest call.
    pub library_s: f64,
    /// Calls timed, both GEMMs together.
    pub calls: usize,
}

impl Trial {
    /// How many times faster the chosen GEMM ran than the other (≥ 1).
    pub fn margin(&self) -> f64 {
        let (fast, slow) = match self.engine {
            Engine::BuiltIn => (self.builtin_s, self.library_s),
            Engine::Library => (self.library_s, self.builtin_s),
        };
        slow / fast
    }
}

/// Timed calls are made in pairs, one of each GEMM, [`MIN_PAIRS`] at least
/// and then more while less than this has been spent (at most
/// [`MAX_PAIRS`]): the products of a batch of 64 through 1024-wide layers
/// (1–4 ms a call on two cores) get two to four pairs, 1024 × 1024 × 1024
/// (17–25 ms) two.
const BUDGET_S: f64 = 0.010;

/// Two pairs at least, in opposite orders (built-in, library, library,
/// built-in), and the fastest call of each GEMM is compared. A GEMM's
/// first call at a new shape can be slow (the gemm crate grows its packing
/// buffers, rayon's threads wake): at batch 64 it took up to twice the
/// later calls. And on a machine shared with other work any call can be
/// slowed: the faster of two is wrong only when both were.
pub const MIN_PAIRS: usize = 2;

/// At most this many pairs, however quick the product.
pub const MAX_PAIRS: usize = 4;

/// The trial of one shape: `time(engine)` runs one product on that GEMM and
/// returns its seconds. Pairs alternate which GEMM goes first, so that
/// neither always follows the other; the fastest call of each is kept.
pub fn trial(time: &mut dyn FnMut(Engine) -> f64) -> Trial {
    let mut builtin_s = f64::INFINITY;
    let mut library_s = f64::INFINITY;
    let mut spent = 0.0;
    let mut pairs = 0;
    while pairs < MIN_PAIRS || (pairs < MAX_PAIRS && spent < BUDGET_S) {
        let order = if pairs % 2 == 0 {
            [Engine::BuiltIn, Engine::Library]
        } else {
            [Engine::Library, Engine::BuiltIn]
        };
        for engine in order {
            let seconds = time(engine);
            spent += seconds;
            let best = match engine {
                Engine::BuiltIn => &mut builtin_s,
                Engine::Library => &mut library_s,
            };
            *best = best.min(seconds);
        }
        pairs += 1;
    }
    Trial {
        engine: if library_s < builtin_s {
            Engine::Library
        } else {
            Engine::BuiltIn
        },
        builtin_s,
        library_s,
        calls: 2 * pairs,
    }
}

/// The outcome of each shape's trial, made once and then kept: the first
/// caller of a shape runs its trial, any other caller of that shape
/// meanwhile waits for the outcome (so every product of a shape, on any
/// thread, runs on the GEMM its one trial chose), and callers of other
/// shapes go on.
pub struct Chooser {
    outcomes: Mutex<HashMap<Shape, Arc<OnceLock<Trial>>>>,
    /// Runs the trial of a shape (times both GEMMs at it).
    run: Box<dyn Fn(Shape) -> Trial + Send + Sync>,
}

impl std::fmt::Debug for Chooser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chooser")
            .field("outcomes", &self.outcomes())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The shapes whose trial this thread is running (see [`Chooser::choose`]).
    static IN_TRIAL: RefCell<Vec<Shape>> = const { RefCell::new(Vec::new()) };
}

impl Chooser {
    /// A chooser whose trials `run` runs.
    pub fn new(run: impl Fn(Shape) -> Trial + Send + Sync + 'static) -> Chooser {
        Chooser {
            outcomes: Mutex::new(HashMap::new()),
            run: Box::new(run),
        }
    }

    /// The trial of `shape`: run now if this is the shape's first call,
    /// else the one already run (or under way on another thread, which
    /// this call waits for).
    ///
    /// A thread waiting inside a trial's built-in GEMM may run other work
    /// from a rayon pool (a user's own `par_iter` of trainers); should that
    /// work reach a product of the very shape under trial lower on the same
    /// thread, it cannot wait for the outcome (the trial can only finish
    /// after it returns): that product runs on the built-in GEMM, unkept.
    pub fn choose(&self, shape: Shape) -> Trial {
        let outcome = {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
            outcomes.entry(shape).or_default().clone()
        };
        if let Some(trial) = outcome.get() {
            return *trial;
        }
        if IN_TRIAL.with(|shapes| shapes.borrow().contains(&shape)) {
            return Trial {
                engine: Engine::BuiltIn,
                builtin_s: f64::NAN,
                library_s: f64::NAN,
                calls: 0,
            };
        }
        *outcome.get_or_init(|| {
            /// Takes the shape off this thread's list however the trial ends.
            struct Leave;
            impl Drop for Leave {
                fn drop(&mut self) {
                    IN_TRIAL.with(|shapes| shapes.borrow_mut().pop());
                }
            }
            IN_TRIAL.with(|shapes| shapes.borrow_mut().push(shape));
            let _leave = Leave;
            let trial = (self.run)(shape);
            log::debug!(
                "GEMM trial at {shape}: built-in {:.0} µs, library {:.0} µs: {:?}",
                trial.builtin_s * 1e6,
                trial.library_s * 1e6,
                trial.engine
            );
            trial
        })
    }

    /// Every trial run so far, by shape.
    pub fn outcomes(&self) -> Vec<(Shape, Trial)> {
        let outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(Shape, Trial)> = outcomes
            .iter()
            .filter_map(|(shape, o)| o.get().map(|t| (*shape, *t)))
            .collect();
        all.sort_by_key(|(s, _)| (s.float_bytes, s.m, s.k, s.n, s.a_transposed, s.b_transposed));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn shape(m: usize) -> Shape {
        Shape {
            m,
            k: 1024,
            n: 1024,
            a_transposed: false,
            b_transposed: true,
            float_bytes: 4,
        }
    }

    #[test]
    fn the_faster_gemm_is_chosen_by_its_fastest_call() {
        // The library twice as fast, but its first call slow (cold): the
        // fastest call of each decides.
        let mut library_calls = 0;
        let t = trial(&mut |engine| match engine {
            Engine::BuiltIn => 0.020,
            Engine::Library => {
                library_calls += 1;
                if library_calls == 1 { 0.050 } else { 0.010 }
            }
        });
        assert_eq!(t.engine, Engine::Library, "{t:?}");
        assert_eq!((t.builtin_s, t.library_s), (0.020, 0.010));
        assert_eq!(t.margin(), 2.0);
        // The built-in one faster.
        let t = trial(&mut |engine| match engine {
            Engine::BuiltIn => 0.004,
            Engine::Library => 0.009,
        });
        assert_eq!(t.engine, Engine::BuiltIn, "{t:?}");
        // A tie keeps the built-in one.
        let t = trial(&mut |_| 0.003);
        assert_eq!(t.engine, Engine::BuiltIn, "{t:?}");
    }

    #[test]
    fn a_trial_alternates_the_order_and_stops_at_its_budget() {
        use Engine::{BuiltIn, Library};
        // Quick products: pairs, built-in first then library first, until
        // the most pairs.
        let mut order = Vec::new();
        let t = trial(&mut |engine| {
            order.push(engine);
            0.0001
        });
        assert_eq!(
            order,
            [
                BuiltIn, Library, Library, BuiltIn, BuiltIn, Library, Library, BuiltIn
            ]
        );
        assert_eq!((t.calls, MAX_PAIRS), (8, 4));
        // 2 ms a call: the budget is spent after three pairs.
        assert_eq!(trial(&mut |_| 0.002).calls, 6);
        // A slow product: the two pairs.
        assert_eq!(trial(&mut |_| 0.020).calls, 2 * MIN_PAIRS);
    }

    /// A chooser whose trials count themselves, take `pause`, and find the
    /// library faster for shapes with m ≥ 512.
    fn counting(pause: std::time::Duration) -> (Chooser, Arc<AtomicUsize>) {
        let trials = Arc::new(AtomicUsize::new(0));
        let counted = trials.clone();
        let chooser = Chooser::new(move |shape| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(pause);
            trial(&mut |engine| match (engine, shape.m >= 512) {
                (Engine::Library, true) | (Engine::BuiltIn, false) => 0.001,
                _ => 0.002,
            })
        });
        (chooser, trials)
    }

    /// The outcome of `shape`'s trial, if it has been run.
    fn chosen(chooser: &Chooser, shape: Shape) -> Option<Trial> {
        let outcomes = chooser.outcomes();
        outcomes.iter().find(|(s, _)| *s == shape).map(|(_, t)| *t)
    }

    #[test]
    fn each_shape_is_tried_once_and_its_choice_kept() {
        let (chooser, trials) = counting(std::time::Duration::ZERO);
        assert_eq!(chosen(&chooser, shape(1024)), None);
        let first = chooser.choose(shape(1024));
        assert_eq!(first.engine, Engine::Library);
        assert_eq!(chooser.choose(shape(1024)), first);
        assert_eq!(
            trials.load(Ordering::SeqCst),
            1,
            "the second call tried again"
        );
        assert_eq!(chooser.choose(shape(64)).engine, Engine::BuiltIn);
        // Another transposition or float type is another class.
        let other = Shape {
            b_transposed: false,
            ..shape(1024)
        };
        chooser.choose(other);
        chooser.choose(Shape {
            float_bytes: 8,
            ..shape(1024)
        });
        assert_eq!(trials.load(Ordering::SeqCst), 4);
        assert_eq!(chosen(&chooser, shape(1024)), Some(first));
        assert_eq!(chooser.outcomes().len(), 4);
    }

    #[test]
    fn threads_asking_at_once_share_one_trial_and_one_choice() {
        // The trial takes 50 ms, so all eight threads arrive during it.
        let (chooser, trials) = counting(std::time::Duration::from_millis(50));
        let start = std::sync::Barrier::new(8);
        let choices: Vec<Trial> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (chooser, start) = (&chooser, &start);
                    scope.spawn(move || {
                        start.wait();
                        // Two shapes, four threads each.
                        chooser.choose(shape(if i % 2 == 0 { 1024 } else { 64 }))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(trials.load(Ordering::SeqCst), 2, "one trial a shape");
        for (i, choice) in choices.iter().enumerate() {
            assert_eq!(*choice, choices[i % 2], "thread {i} got another outcome");
        }
        assert_eq!(choices[0].engine, Engine::Library);
        assert_eq!(choices[1].engine, Engine::BuiltIn);
    }

    #[test]
    fn a_product_of_the_shape_under_trial_on_the_same_thread_does_not_wait() {
        // The trial of a shape reaches a product of that shape on its own
        // thread (as work taken from a pool while it waits could): that
        // product gets the built-in GEMM at once, and the trial's outcome
        // is kept.
        let inner: Arc<Mutex<Option<Trial>>> = Arc::default();
        let seen = inner.clone();
        let chooser: Arc<OnceLock<Chooser>> = Arc::new(OnceLock::new());
        let again = chooser.clone();
        chooser.get_or_init(|| {
            Chooser::new(move |shape| {
                let nested = again.get().expect("set").choose(shape);
                *seen.lock().unwrap() = Some(nested);
                trial(&mut |engine| match engine {
                    Engine::Library => 0.001,
                    Engine::BuiltIn => 0.002,
                })
            })
        });
        let chooser = chooser.get().unwrap();
        assert_eq!(chooser.choose(shape(1024)).engine, Engine::Library);
        let nested = inner.lock().unwrap().expect("the nested product ran");
        assert_eq!((nested.engine, nested.calls), (Engine::BuiltIn, 0));
        assert_eq!(
            chosen(chooser, shape(1024)).unwrap().engine,
            Engine::Library
        );
    }
}
