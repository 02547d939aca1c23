//! The CPU backend's two GEMMs, the built-in one and the system BLAS, against
//! a plain triple loop in f64: every transpose, padded leading dimensions,
//! α and β, sizes that are not multiples of any kernel's block.

use retroprop::Real;
use retroprop::cpu::Gemm as _;
use retroprop::cpu::{Blas, blas, gemm_builtin};

/// A small deterministic generator, so failures repeat.
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// A rows × cols operand stored transposed or not, with `pad` unused values
/// after each stored row: its data and (row, column) strides.
fn layout(
    rows: usize,
    cols: usize,
    transposed: bool,
    pad: usize,
    seed: u64,
) -> (Vec<f64>, (isize, isize)) {
    let (stored_rows, stored_cols) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let ld = stored_cols + pad;
    let data = values(stored_rows * ld, seed);
    let strides = if transposed {
        (1, ld as isize)
    } else {
        (ld as isize, 1)
    };
    (data, strides)
}

fn at(data: &[f64], (rs, cs): (isize, isize), i: usize, j: usize) -> f64 {
    data[i * rs as usize + j * cs as usize]
}

type Gemm<T> = dyn Fn(
    usize,
    usize,
    usize,
    T,
    &[T],
    (isize, isize),
    &[T],
    (isize, isize),
    T,
    &mut [T],
    (isize, isize),
);

/// Runs `gemm` in `T` on every layout and compares with f64 arithmetic.
fn check<T: Real>(name: &str, gemm: &Gemm<T>, tolerance: f64) {
    let shapes = [
        (1, 1, 1),
        (3, 5, 2),
        (17, 33, 9),
        (64, 70, 65),
        (130, 67, 129),
        (96, 256, 100),
        // Narrow: with A not transposed and B transposed, cut into blocks
        // of rows (n ≤ 16, m·n > 256).
        (300, 40, 2),
        (129, 33, 16),
        (1000, 20, 10),
    ];
    let mut case = 0;
    for &(m, k, n) in &shapes {
        for ta in [false, true] {
            for tb in [false, true] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-1.5, 0.25)] {
                    case += 1;
                    let pad = case % 3;
                    let (a, sa) = layout(m, k, ta, pad, case as u64);
                    let (b, sb) = layout(k, n, tb, pad + 1, case as u64 + 100);
                    let ldc = n + pad;
                    let c0 = values(m * ldc, case as u64 + 200);
                    let mut want = c0.clone();
                    for i in 0..m {
                        for j in 0..n {
                            let dot: f64 =
                                (0..k).map(|p| at(&a, sa, i, p) * at(&b, sb, p, j)).sum();
                            want[i * ldc + j] = alpha * dot + beta * c0[i * ldc + j];
                        }
                    }
                    let to_t = |v: &[f64]| v.iter().map(|&x| T::of(x)).collect::<Vec<T>>();
                    let mut got = to_t(&c0);
                    if beta == 0.0 {
                        // β = 0 must not read C: NaN there may not spread.
                        for i in 0..m {
                            got[i * ldc..i * ldc + n].fill(T::nan());
                        }
                    }
                    let c_strides = (ldc as isize, 1);
                    gemm(
                        m,
                        k,
                        n,
                        T::of(alpha),
                        &to_t(&a),
                        sa,
                        &to_t(&b),
                        sb,
                        T::of(beta),
                        &mut got,
                        c_strides,
                    );
                    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                        let err = (g.f64() - w).abs();
                        assert!(
                            err <= tolerance * (1.0 + w.abs()) * (k as f64).sqrt(),
                            "{name}: {m}×{k}×{n} ta={ta} tb={tb} α={alpha} β={beta}: C[{}][{}] = {} want {w}",
                            idx / ldc,
                            idx % ldc,
                            g.f64()
                        );
                    }
                }
            }
        }
    }
}

/// The system BLAS this machine has: the tests need one.
fn system_blas() -> &'static Blas {
    blas().expect(
        "no BLAS library loaded: install OpenBLAS (Debian/Ubuntu: `apt-get install libopenblas0`) \
         and leave RETROPROP_BLAS unset, or point it at a library with cblas_sgemm",
    )
}

#[test]
fn builtin_gemm_matches_f64_reference() {
    check::<f32>("built-in f32", &gemm_builtin::<f32>, 1e-5);
    check::<f64>("built-in f64", &gemm_builtin::<f64>, 1e-13);
}

#[test]
fn blas_gemm_matches_f64_reference() {
    let blas = system_blas();
    let f32_gemm = |m, k, n, alpha, a: &[f32], sa, b: &[f32], sb, beta, c: &mut [f32], sc| {
        assert!(
            blas.gemm(m, k, n, alpha, a, sa, b, sb, beta, c, sc),
            "{} declined",
            blas.name()
        );
    };
    let f64_gemm = |m, k, n, alpha, a: &[f64], sa, b: &[f64], sb, beta, c: &mut [f64], sc| {
        assert!(
            blas.gemm(m, k, n, alpha, a, sa, b, sb, beta, c, sc),
            "{} declined",
            blas.name()
        );
    };
    check::<f32>(blas.name(), &f32_gemm, 1e-5);
    check::<f64>(blas.name(), &f64_gemm, 1e-13);
}

#[test]
fn real_gemm_matches_f64_reference() {
    // Whichever path each size takes (src/cpu/gemm/mod.rs: the built-in GEMM
    // for all of these; `blas_gemm_matches_f64_reference` covers BLAS).
    check::<f32>("Gemm::gemm", &f32::gemm, 1e-5);
    check::<f64>("Gemm::gemm", &f64::gemm, 1e-13);
}

#[test]
fn blas_declines_what_cblas_cannot_express_and_real_gemm_still_computes_it() {
    let blas = system_blas();
    // A 2 × 2 operand with strides (2, 2) over [1, 2, 3, 4, 5]: neither is 1.
    let a = [1.0f32, 0.0, 2.0, 0.0, 3.0];
    let b = [1.0f32, 0.0, 0.0, 1.0];
    let mut c = [0.0f32; 4];
    assert!(!blas.gemm(2, 2, 2, 1.0, &a, (2, 2), &b, (2, 1), 0.0, &mut c, (2, 1)));
    assert_eq!(c, [0.0; 4], "declined, so nothing written");
    f32::gemm(2, 2, 2, 1.0, &a, (2, 2), &b, (2, 1), 0.0, &mut c, (2, 1));
    assert_eq!(c, [1.0, 2.0, 2.0, 3.0]);
}

#[test]
fn a_library_that_cannot_be_loaded_is_named_in_the_error() {
    let err = Blas::load("/nonexistent/libnothing.so")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/libnothing.so") && err.contains("apt-get install libopenblas0"),
        "{err}"
    );
    // A library without cblas_sgemm (the C library itself).
    if cfg!(target_os = "linux") {
        let err = Blas::load("libc.so.6").unwrap_err().to_string();
        assert!(
            err.contains("libc.so.6") && err.contains("cblas_sgemm"),
            "{err}"
        );
    }
}

/// The built-in GEMM cuts large products into blocks of C's columns or rows
/// over rayon's threads; the blocks must give the bits one thread gives,
/// whatever the thread count, on every layout and at the edges of the
/// gemm crate's special paths (narrow sides, m·n near 256, K past 512).
#[test]
fn builtin_gemm_gives_the_same_bits_on_any_number_of_threads() {
    // Each large enough for the GEMM to share.
    let shapes = [
        (200, 64, 256),
        (820, 256, 10),
        (10, 205, 1024),
        (2, 4096, 256),
        (2, 3500, 300),
        (300, 20, 400),
        (1200, 3, 600),
        (4100, 256, 2),
        (40, 1320, 40),
        (70, 600, 60),
        (17, 4000, 33),
        (1, 7000, 300),
        (300, 7000, 1),
        (257, 129, 511),
        (200, 784, 256),
        (100, 1500, 120),
        // From 2²⁰ where an operand or C has 2¹⁶ elements.
        (26, 256, 256),
        (256, 26, 256),
        (17, 4096, 16),
    ];
    for &(m, k, n) in &shapes {
        let side = (m * k).max(k * n).max(m * n);
        assert!(
            m * k * n >= 1 << 21 || (m * k * n >= 1 << 20 && side >= 1 << 16),
            "{m}×{k}×{n} is too small to be shared"
        );
    }
    let pool = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
    };
    let pools: Vec<_> = [1, 2, 3, 4].into_iter().map(pool).collect();
    let mut case = 0u64;
    for &(m, k, n) in &shapes {
        for ta in [false, true] {
            for tb in [false, true] {
                for (c_column_major, beta) in [(false, 0.5), (true, 0.5), (false, 0.0)] {
                    case += 1;
                    let (a, sa) = layout(m, k, ta, (case % 2) as usize, case);
                    let (b, sb) = layout(k, n, tb, 0, case + 100);
                    let (c0, sc) = layout(m, n, c_column_major, 1, case + 200);
                    let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
                    let (a, b, c0) = (to_f32(&a), to_f32(&b), to_f32(&c0));
                    let runs: Vec<Vec<u32>> = pools
                        .iter()
                        .map(|pool| {
                            let mut c = c0.clone();
                            pool.install(|| {
                                gemm_builtin(m, k, n, 1.0, &a, sa, &b, sb, beta, &mut c, sc)
                            });
                            c.iter().map(|x| x.to_bits()).collect()
                        })
                        .collect();
                    for (threads, run) in [2, 3, 4].iter().zip(&runs[1..]) {
                        assert!(
                            run == &runs[0],
                            "{m}×{k}×{n} ta={ta} tb={tb} C column-major={c_column_major} β={beta}: \
                             {threads} threads differ from one"
                        );
                    }
                }
            }
        }
    }
}

/// A narrow product in a dense layer's forward layout (Z = X·Wᵀ, at most
/// 16 columns) is computed in blocks of rows, each row as the same dot
/// products: a row's bits do not depend on the rows around it, so a batch
/// of one, a training batch and a prediction chunk give it alike.
#[test]
fn a_narrow_products_rows_have_the_same_bits_in_any_batch() {
    for (rows, k, n) in [(300, 256, 10), (260, 256, 2), (40, 30, 16), (9000, 64, 3)] {
        let x: Vec<f32> = values(rows * k, 7).iter().map(|&v| v as f32).collect();
        let w: Vec<f32> = values(n * k, 8).iter().map(|&v| v as f32).collect();
        let product = |x: &[f32]| {
            let m = x.len() / k;
            let mut z = vec![f32::NAN; m * n];
            let (ki, ni) = (k as isize, n as isize);
            gemm_builtin(m, k, n, 1.0, x, (ki, 1), &w, (1, ki), 0.0, &mut z, (ni, 1));
            z.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let whole = product(&x);
        for batch in [1, 7, 128] {
            let parts: Vec<u32> = x.chunks(batch * k).flat_map(product).collect();
            let first = whole.iter().zip(&parts).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "{rows}×{k}×{n} in batches of {batch}: row {} differs from the whole product's",
                first.unwrap_or(0) / n
            );
        }
    }
}

/// A trainer's CPU device names the GEMMs its steps' products run on: the
/// BLAS library only where a product chose it (under `auto`, where the
/// shape's trial found it faster), the built-in GEMM for the rest; a step
/// with no product large enough for the library does not load it.
#[test]
fn device_name_says_which_gemm_the_steps_use() {
    use retroprop::cpu::{Engine, Shape, route};
    use retroprop::{Activation, Device, Mlp, TrainConfig, Trainer};
    let name = |sizes: &[usize], batch: usize| {
        let mlp = Mlp::new(sizes, Activation::Relu, Activation::Identity).unwrap();
        let config = TrainConfig::default().batch_size(batch).device(Device::Cpu);
        Trainer::new(mlp, config).unwrap().device_name()
    };
    // 150 × 4 × 100: far below the library's 2²⁵ multiply-adds.
    assert_eq!(name(&[4, 100, 3], 150), "cpu: built-in GEMM");
    // 784-1024-10 at batch 1024: the first layer's forward product and
    // weight gradient are large enough for the library; the second layer's
    // products (a side or k of 10) are not.
    let library = system_blas().name().to_string();
    let shape = |m, k, n, a_transposed, b_transposed| Shape {
        m,
        k,
        n,
        a_transposed,
        b_transposed,
        float_bytes: 4,
    };
    let large = [
        shape(1024, 784, 1024, false, true),
        shape(1024, 1024, 784, true, false),
    ];
    let on_library: Vec<bool> = large
        .iter()
        .map(|s| route(*s).engine() == Engine::Library)
        .collect();
    // The two have the same multiply-adds (1024 · 784 · 1024): split
    // between the GEMMs, the library is named first.
    let expected = match on_library[..] {
        [true, true] => format!("cpu: {library}"),
        [false, false] => "cpu: built-in GEMM".to_string(),
        _ => format!("cpu: {library} + built-in GEMM"),
    };
    assert_eq!(
        name(&[784, 1024, 10], 1024),
        expected,
        "chosen: {on_library:?}"
    );
}

/// Every product of a shape runs on the GEMM `RETROPROP_BLAS` gives it:
/// under `auto` (or unset) the one its trial chose, the first product as
/// the later ones (the trial runs on operands of its own); under `off` the
/// built-in one; under a library's name that library, whatever a trial
/// would find. The same bits each call, those of that GEMM, in every
/// layout a dense layer uses. The setting is read once per process:
/// [`every_setting_gives_the_products_its_gemm`] runs this in a process of
/// each.
#[test]
fn products_run_on_the_gemm_their_setting_gives_them() {
    use retroprop::cpu::{Engine, Route, Shape, route};
    let setting = std::env::var("RETROPROP_BLAS").unwrap_or_default();
    // The library to compare with: the process's own, or under `off`
    // (which loads none) the one `auto` would find.
    let loaded;
    let blas = match blas() {
        Some(blas) => blas,
        None if setting.trim() == "off" => {
            loaded = Blas::load("libopenblas.so.0").expect("OpenBLAS (libopenblas0)");
            &loaded
        }
        None => system_blas(),
    };
    // 256 × 512 × 256 = 2²⁵ multiply-adds: just large enough for the library.
    let (m, k, n) = (256, 512, 256);
    for (a_transposed, b_transposed) in [(false, true), (true, false), (false, false)] {
        let a: Vec<f32> = values(m * k, 1).iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = values(k * n, 2).iter().map(|&v| v as f32).collect();
        let sa = if a_transposed {
            (1, m as isize)
        } else {
            (k as isize, 1)
        };
        let sb = if b_transposed {
            (1, k as isize)
        } else {
            (n as isize, 1)
        };
        let sc = (n as isize, 1);
        let product = |gemm: &dyn Fn(&mut [f32])| {
            let mut c = vec![f32::NAN; m * n];
            gemm(&mut c);
            c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let first = product(&|c| f32::gemm(m, k, n, 1.0, &a, sa, &b, sb, 0.0, c, sc));
        let again = product(&|c| f32::gemm(m, k, n, 1.0, &a, sa, &b, sb, 0.0, c, sc));
        let builtin = product(&|c| gemm_builtin(m, k, n, 1.0, &a, sa, &b, sb, 0.0, c, sc));
        let library = product(&|c| {
            assert!(blas.gemm(m, k, n, 1.0, &a, sa, &b, sb, 0.0, c, sc));
        });
        let layout = format!(
            "RETROPROP_BLAS={setting:?}, A transposed {a_transposed}, B transposed {b_transposed}"
        );
        assert_ne!(
            builtin, library,
            "{layout}: both GEMMs gave the same bits, so this test cannot tell them apart"
        );
        let shape = Shape {
            m,
            k,
            n,
            a_transposed,
            b_transposed,
            float_bytes: 4,
        };
        let route = route(shape);
        let expected_route = match setting.trim() {
            "" | "auto" => matches!(route, Route::Trial(_)),
            "off" => route == Route::NoLibrary,
            _ => route == Route::Named,
        };
        assert!(expected_route, "{layout}: routed {route:?}");
        let expected = match route.engine() {
            Engine::BuiltIn => &builtin,
            Engine::Library => &library,
        };
        assert!(
            first == *expected,
            "{layout}: the first product did not run on {route:?}"
        );
        assert!(
            again == *expected,
            "{layout}: a later product did not run on {route:?}"
        );
    }
}

/// [`products_run_on_the_gemm_their_setting_gives_them`] in a process of
/// each setting: `auto`, `off` and the library's name.
#[test]
fn every_setting_gives_the_products_its_gemm() {
    let test = "products_run_on_the_gemm_their_setting_gives_them";
    for setting in ["auto", "off", "libopenblas.so.0"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--test-threads", "1"])
            .env("RETROPROP_BLAS", setting)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "RETROPROP_BLAS={setting}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Under `auto` a training run repeated in the same process gives the same
/// bits (docs/DESIGN.md): each shape's trial chose once, and the first
/// run's products, those the trials began with included, ran on the GEMMs
/// the second run's did.
#[test]
fn a_run_repeated_in_a_process_gives_the_same_bits() {
    use retroprop::{Activation, Adam, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};
    // Sizes no other test of this binary uses, so that their shapes are
    // tried during the first run: batch 96 through 333- and 1031-wide
    // layers (96 × 333 × 1031 = 2^25.0 multiply-adds, large enough for the
    // library).
    let sizes = [333, 1031, 1031, 7];
    let rows = 96;
    let x: Vec<f32> = values(2 * rows * sizes[0], 3)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let labels = (0..2 * rows).map(|i| (i % sizes[3]) as u32).collect();
    let data = Dataset::new(x, sizes[0], Targets::Classes(labels)).unwrap();
    let fit = || {
        let mlp = Mlp::new(&sizes, Activation::Relu, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(1e-3))
            .batch_size(rows)
            .epochs(2)
            .device(Device::Cpu);
        let mut trainer = Trainer::new(mlp, config).unwrap();
        trainer.fit(&data, None).unwrap();
        let bits: Vec<u32> = trainer
            .parameters()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        bits
    };
    let first = fit();
    assert!(first == fit(), "the second run's bits differ");
}
