//! How a pass of a step is shared among the CPU pool's threads: [`share`].

#[cfg(not(target_arch = "wasm32"))]
use std::sync::Mutex;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::{AtomicUsize, Ordering};

/// Fruitless looks for work spent spinning before each further one yields
/// the CPU to the operating system.
#[cfg(not(target_arch = "wasm32"))]
pub(super) const SPINS: u32 = 1000;

/// One look for work on the current pool, for a thread that waits without
/// sleeping (a share's caller, a kept-warm thread): runs a job if there is
/// one and returns `true` (and `idle` to 0); else counts the look in
/// `idle` and spins, or from [`SPINS`] looks on yields its CPU.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn look_for_work(idle: &mut u32) -> bool {
    if rayon::yield_now() == Some(rayon::Yield::Executed) {
        *idle = 0;
        return true;
    }
    *idle = idle.saturating_add(1);
    if *idle < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
    false
}

std::thread_local! {
    /// Set while this thread runs work that must not share its passes
    /// ([`serially`]).
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work` with every pass on this thread alone: no product,
/// elementwise pass or update of it is shared among threads. Members of a
/// run trained side by side, a member a thread, each run this way (their
/// threads are the sharing). The bits are those of shared passes, which
/// do not depend on the threads.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn serially<R>(work: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    work()
}

/// Whether this thread runs its passes alone ([`serially`]).
pub(crate) fn is_serial() -> bool {
    SERIAL.with(|s| s.get())
}

/// `job(item)` for each of `items`, shared with the pool's other threads;
/// the results in the items' order, whichever thread ran each.
///
/// The calling thread runs the first item and then waits for the others
/// without sleeping: it runs those no other thread has taken yet, or any
/// other work on the pool (a half of the product another thread took
/// with the second item: a layer's two gradients run side by side, each
/// shared), and spins (yielding its CPU now and then) until the rest are
/// done. Taking the other thread's work, not only its own back, brought a
/// 100-256-256-10 fit on 20 000 rows (3 epochs) from 196 to 186 ms. A
/// rayon join waits the other way, a few dozen yields and then asleep, so
/// that when the other half of a product ended a few microseconds after
/// its own (as halves of 200 × 256 × 256 did by 8 µs on average) the step's
/// thread was asleep and took ~9 µs more to be woken: ~1.5 µs here
/// (`examples/fit_timing.rs`, 2026-12-03). Outside the pool (the f64
/// reference network, a second trainer while one has the pool) it is a
/// rayon parallel iterator as before, and in the browser a loop.
pub(crate) fn share<I: Send, R: Send>(items: Vec<I>, job: impl Fn(I) -> R + Sync) -> Vec<R> {
    #[cfg(target_arch = "wasm32")]
    return items.into_iter().map(job).collect();
    #[cfg(not(target_arch = "wasm32"))]
    {
        if items.len() < 2 || rayon::current_num_threads() < 2 || is_serial() {
            return items.into_iter().map(job).collect();
        }
        if rayon::current_thread_index().is_none() {
            use rayon::prelude::*;
            return items.into_par_iter().map(&job).collect();
        }
        on_the_pool(items, job)
    }
}

/// [`share`] from a thread of the pool.
#[cfg(not(target_arch = "wasm32"))]
fn on_the_pool<I: Send, R: Send>(items: Vec<I>, job: impl Fn(I) -> R + Sync) -> Vec<R> {
    let count = items.len();
    let results: Vec<Mutex<Option<R>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let left = AtomicUsize::new(count - 1);
    /// Counts a job out however it ends: a panic in one must not leave the
    /// caller spinning (the scope then raises it).
    struct Done<'a>(&'a AtomicUsize);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Release);
        }
    }
    let mut items = items.into_iter().enumerate();
    let (_, first) = items.next().expect("two items or more");
    rayon::in_place_scope(|scope| {
        for (i, item) in items {
            let (results, job, left) = (&results, &job, &left);
            scope.spawn(move |_| {
                let _done = Done(left);
                let result = job(item);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
        let result = job(first);
        *results[0].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        let mut idle = 0;
        while left.load(Ordering::Acquire) > 0 {
            look_for_work(&mut idle);
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every job ran")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::share;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    fn two_threads() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool")
    }

    #[test]
    fn results_come_back_in_the_items_order_on_the_pool_and_off_it() {
        let items: Vec<u64> = (0..37).collect();
        let expected: Vec<u64> = items.iter().map(|i| i * i + 1).collect();
        let on_pool = two_threads().install(|| share(items.clone(), |i| i * i + 1));
        assert_eq!(on_pool, expected, "on a pool thread");
        let off_pool = share(items, |i| i * i + 1);
        assert_eq!(off_pool, expected, "outside any pool");
    }

    #[test]
    fn the_other_thread_takes_a_share() {
        // The first item waits (up to 5 s) for the second to start: it can
        // only start on the pool's other thread, the caller being busy.
        let started = AtomicBool::new(false);
        let saw = two_threads().install(|| {
            share(vec![0, 1], |i| {
                if i == 1 {
                    started.store(true, Ordering::Release);
                    return true;
                }
                let waiting = Instant::now();
                while !started.load(Ordering::Acquire) && waiting.elapsed() < Duration::from_secs(5)
                {
                    std::hint::spin_loop();
                }
                started.load(Ordering::Acquire)
            })
        });
        assert_eq!(
            saw,
            [true, true],
            "the second item did not run beside the first"
        );
    }

    #[test]
    fn a_panicking_job_reaches_the_caller_and_nothing_hangs() {
        let pool = two_threads();
        for bad in [0, 3] {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| {
                    share((0..6).collect(), |i| {
                        if i == bad {
                            panic!("job {i} failed");
                        }
                        i
                    })
                })
            }));
            assert!(result.is_err(), "job {bad}'s panic was lost");
        }
        // The pool still works afterwards.
        assert_eq!(pool.install(|| share(vec![1, 2], |i| i * 2)), [2, 4]);
    }
}
