//! Numerical-feature embeddings (src/embedding.rs, src/cpu/embedding.rs)
//! against the `rtdl_num_embeddings` package in float64: the output, every
//! parameter's gradient and one AdamW step of piecewise-linear (version B,
//! with and without ReLU), PLR, PL and PLR-lite embeddings; the bins of
//! `compute_bins`; the tensors' names and shapes; and the initialisation's
//! distributions. The expected values are the package's, made by
//! dev/embedding_fixtures.py into tests/fixtures/embeddings.safetensors.

mod common;
use common::{Fixture, assert_close_to};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use retroprop::cpu::embedding::{EmbeddingSaved, embedding_backward, embedding_forward};
use retroprop::cpu::optimizer_step;
use retroprop::embedding::{Embedding, Periodic, TensorRole, compute_bins};
use retroprop::{AdamW, Error, Optimizer};

const SCRIPT: &str = "dev/embedding_fixtures.py";

fn fixture() -> Fixture {
    Fixture::load("embeddings", SCRIPT)
}

/// Each feature's edges stored as `{prefix}.{i}`.
fn bins_of(f: &Fixture, prefix: &str, features: usize) -> Vec<Vec<f64>> {
    (0..features)
        .map(|i| f.values(&format!("{prefix}.{i}")))
        .collect()
}

/// The bins the piecewise-linear cases use (four features).
fn case_bins(f: &Fixture) -> Vec<Vec<f64>> {
    bins_of(f, "ple_bins", 4)
}

/// Forward, backward and one AdamW step of `embedding` against case
/// `name`, from the package's parameters.
fn case(name: &str, embedding: &Embedding) {
    let f = fixture();
    let get = |t: &str| f.get(&format!("{name}.{t}"));
    let close = |what: &str, ours: &[f64], theirs: &[f64]| {
        assert_close_to(&format!("{name} {what}"), ours, theirs, 1e-12)
    };
    // The tensors, by name, order and shape; buffers by value.
    let names: Vec<&str> = embedding.tensors().iter().map(|t| t.name).collect();
    assert_eq!(names.join(","), f.metadata(&format!("{name}.state_dict")));
    let mut params = Vec::new();
    for tensor in embedding.tensors() {
        let (values, shape) = get(tensor.name);
        assert_eq!(shape, tensor.shape, "{name} {}: shape", tensor.name);
        if tensor.role == TensorRole::Parameter {
            params.extend(values);
        }
    }
    assert_eq!(params.len(), embedding.parameter_count());
    check_buffers(name, embedding, &f);

    let (x, shape) = get("x");
    let rows = shape[0];
    let mut y = vec![0.0; rows * embedding.output_width()];
    let mut saved = EmbeddingSaved::default();
    embedding_forward(embedding, &params, &x, &mut y, &mut saved);
    close("y", &y, &get("y").0);

    // ((y − target)²).mean()'s gradient.
    let n = y.len() as f64;
    let target = get("target").0;
    let mut grad: Vec<f64> = y
        .iter()
        .zip(&target)
        .map(|(y, t)| 2.0 * (y - t) / n)
        .collect();
    close("dy", &grad, &get("dy").0);
    let mut gradients = vec![f64::NAN; params.len()];
    embedding_backward(embedding, &params, &x, &saved, &mut grad, &mut gradients);
    for (tensor, range) in embedding.parameter_ranges() {
        let what = format!("grad {tensor}");
        close(&what, &gradients[range], &get(&format!("grad.{tensor}")).0);
    }

    let adamw: Optimizer = AdamW::default().lr(2e-3).weight_decay(3e-4).into();
    let mut state = vec![0.0; adamw.state_slots() * params.len()];
    optimizer_step(&adamw, &mut params, &gradients, &mut state, 1, adamw.lr());
    for (tensor, range) in embedding.parameter_ranges() {
        let what = format!("AdamW step {tensor}");
        close(&what, &params[range], &get(&format!("step.{tensor}")).0);
    }
}

/// A piecewise-linear embedding's buffers (`impl.*`) as the package's.
fn check_buffers(name: &str, embedding: &Embedding, f: &Fixture) {
    let retroprop::embedding::EmbeddingKind::PiecewiseLinear(p) = embedding.kind() else {
        return;
    };
    let e = p.encoding();
    let get = |t: &str| f.values(&format!("{name}.impl.{t}"));
    assert_close_to(
        &format!("{name} impl.weight"),
        &e.weight,
        &get("weight"),
        1e-15,
    );
    assert_close_to(&format!("{name} impl.bias"), &e.bias, &get("bias"), 1e-15);
    let flags = |m: &[bool]| {
        m.iter()
            .map(|&b| f64::from(u8::from(b)))
            .collect::<Vec<_>>()
    };
    assert_eq!(flags(&e.mask), get("mask"), "{name} impl.mask");
    assert_eq!(
        flags(&e.single_bin),
        get("single_bin_mask"),
        "{name} impl.single_bin_mask"
    );
}

#[test]
fn piecewise_linear_embeddings_are_the_packages() {
    let f = fixture();
    let e = Embedding::piecewise_linear(case_bins(&f), 5, false).unwrap();
    case("ple", &e);
}

#[test]
fn piecewise_linear_embeddings_with_relu_are_the_packages() {
    let f = fixture();
    let e = Embedding::piecewise_linear(case_bins(&f), 5, true).unwrap();
    case("ple_relu", &e);
}

#[test]
fn plr_embeddings_are_the_packages() {
    let p = Periodic::default()
        .n_frequencies(5)
        .frequency_init_scale(0.5);
    case("plr", &Embedding::periodic(4, 6, p).unwrap());
}

#[test]
fn pl_embeddings_without_activation_are_the_packages() {
    let p = Periodic::default()
        .n_frequencies(7)
        .frequency_init_scale(0.2)
        .activation(false);
    case("pl", &Embedding::periodic(4, 3, p).unwrap());
}

#[test]
fn plr_lite_embeddings_are_the_packages() {
    let p = Periodic::default()
        .n_frequencies(5)
        .frequency_init_scale(2.0)
        .lite(true);
    case("plr_lite", &Embedding::periodic(4, 6, p).unwrap());
}

/// The diabetes data, `[442, 10]`.
fn diabetes(f: &Fixture) -> Vec<f64> {
    f.values("bins.x")
}

/// Edges equal bit for bit, feature by feature.
fn assert_same_bins(what: &str, ours: &[Vec<f64>], theirs: &[Vec<f64>]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: features");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            a.len(),
            b.len(),
            "{what}: feature {i}'s edges {a:?} against {b:?}"
        );
        for (j, (a, b)) in a.iter().zip(b).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{what}: feature {i} edge {j}: ours {a}, package {b}"
            );
        }
    }
}

#[test]
fn compute_bins_gives_the_packages_edges() {
    let f = fixture();
    let x = diabetes(&f);
    for n_bins in [2, 7, 8, 48, 49, 147, 441] {
        let ours = compute_bins(&x, 10, n_bins).unwrap();
        let theirs = bins_of(&f, &format!("bins{n_bins}"), 10);
        assert_same_bins(&format!("n_bins {n_bins}"), &ours, &theirs);
    }
}

#[test]
fn compute_bins_in_float32_gives_the_packages_edges() {
    let f = fixture();
    let x: Vec<f32> = diabetes(&f).iter().map(|&v| v as f32).collect();
    let ours = compute_bins(&x, 10, 48).unwrap();
    assert_same_bins("float32", &ours, &bins_of(&f, "bins48_f32", 10));
}

#[test]
fn the_cases_bins_are_compute_bins_of_their_training_rows() {
    let f = fixture();
    let x = diabetes(&f);
    let train: Vec<f64> = x
        .chunks_exact(10)
        .take(400)
        .flat_map(|row| [row[0], row[1], row[2], row[7]])
        .collect();
    let ours = compute_bins(&train, 4, 8).unwrap();
    assert_same_bins("the cases' bins", &ours, &case_bins(&f));
}

#[test]
fn compute_bins_refuses_what_the_package_refuses() {
    let message = |r: Result<Vec<Vec<f64>>, Error>| r.unwrap_err().to_string();
    // Column 1 constant.
    let x = [0.0, 5.0, 1.0, 5.0, 2.0, 5.0];
    assert_eq!(
        message(compute_bins(&x, 2, 2)),
        "invalid configuration: compute_bins: column 1 holds one value (5) in all 3 rows; \
         every column needs at least two distinct values"
    );
    let x = [0.0, 1.0, 2.0, 3.0];
    assert_eq!(
        message(compute_bins(&x, 1, 1)),
        "n_bins: compute_bins needs more than 1 bin and fewer bins than rows (4), got 1"
    );
    assert_eq!(
        message(compute_bins(&x, 1, 4)),
        "n_bins: compute_bins needs more than 1 bin and fewer bins than rows (4), got 4"
    );
    let x = [0.0, 1.0, 2.0, f64::NAN, 4.0, 5.0];
    assert_eq!(
        message(compute_bins(&x, 2, 2)),
        "compute_bins input row 1, column 1 is not finite (NaN)"
    );
    assert_eq!(
        message(compute_bins(&[1.0, 2.0], 2, 2)),
        "invalid configuration: compute_bins needs at least two rows, got 1"
    );
    assert!(matches!(
        compute_bins(&[1.0, 2.0, 3.0], 2, 2),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn embeddings_refuse_bins_and_settings_the_package_refuses() {
    let message = |r: Result<Embedding, Error>| r.unwrap_err().to_string();
    let ple = |bins: Vec<Vec<f64>>| message(Embedding::piecewise_linear(bins, 4, false));
    assert_eq!(
        ple(vec![vec![0.0, 1.0], vec![2.0]]),
        "bins: feature 1 has 1 bin edges; every feature needs at least two"
    );
    assert_eq!(
        ple(vec![vec![0.0, 2.0, 1.0]]),
        "bins: feature 0's bin edges are not strictly increasing: edge 1 is 2, edge 2 is 1"
    );
    assert_eq!(
        ple(vec![vec![0.0, f64::INFINITY]]),
        "bins: feature 0 has a bin edge that is not finite (inf)"
    );
    assert_eq!(ple(vec![]), "bins: the list of bins must not be empty");
    let lite = Periodic::default().lite(true).activation(false);
    assert_eq!(
        message(Embedding::periodic(3, 4, lite)),
        "invalid configuration: periodic embeddings: lite is allowed only with activation"
    );
    let sigma = Periodic::default().frequency_init_scale(0.0);
    assert!(message(Embedding::periodic(3, 4, sigma)).contains("frequency_init_scale = 0"));
    assert!(message(Embedding::periodic(0, 4, Periodic::default())).contains("n_features"));
}

/// Mean, standard deviation (n − 1) and largest magnitude.
fn moments(v: &[f64]) -> [f64; 3] {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    [mean, var.sqrt(), v.iter().fold(0.0, |m, x| m.max(x.abs()))]
}

#[test]
fn initialisation_draws_from_the_packages_distributions() {
    let f = fixture();
    let bins = compute_bins(&diabetes(&f), 10, 48).unwrap();
    let wide = Periodic::default()
        .n_frequencies(48)
        .frequency_init_scale(0.3);
    let embeddings = [
        (
            "ple",
            Embedding::piecewise_linear(bins, 256, false).unwrap(),
        ),
        ("plr", Embedding::periodic(64, 32, wide).unwrap()),
        (
            "plr_lite",
            Embedding::periodic(64, 32, wide.lite(true)).unwrap(),
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (name, embedding) in embeddings {
        let params: Vec<f64> = embedding.init(&mut rng);
        for (tensor, range) in embedding.parameter_ranges() {
            let [mean, std, max] = moments(&params[range]);
            let [p_mean, p_std, p_max] = f.values(&format!("init_stats.{name}.{tensor}"))[..]
            else {
                panic!("three moments")
            };
            let what = format!(
                "{name} {tensor}: ours (mean {mean}, std {std}, max {max}), package (mean {p_mean}, std {p_std}, max {p_max})"
            );
            if p_max == 0.0 {
                assert_eq!(max, 0.0, "{what}");
                continue;
            }
            // About five standard errors of two samples of n.
            let n = params_len(&embedding, tensor) as f64;
            assert!(
                (mean - p_mean).abs() <= 5.0 * p_std * (2.0 / n).sqrt(),
                "{what}"
            );
            assert!((std / p_std - 1.0).abs() <= 5.0 / n.sqrt(), "{what}");
            assert!((max / p_max - 1.0).abs() <= 0.1, "{what}");
        }
    }
}

fn params_len(embedding: &Embedding, tensor: &str) -> usize {
    let ranges = embedding.parameter_ranges();
    let (_, range) = ranges.iter().find(|(name, _)| *name == tensor).unwrap();
    range.len()
}

/// The passes in f32 (what the network trains in) within float32's
/// precision of the package's float64.
#[test]
fn float32_passes_agree_with_the_package_to_float32_precision() {
    let f = fixture();
    let plr = Periodic::default()
        .n_frequencies(5)
        .frequency_init_scale(0.5);
    let cases = [
        (
            "ple_relu",
            Embedding::piecewise_linear(case_bins(&f), 5, true).unwrap(),
        ),
        ("plr", Embedding::periodic(4, 6, plr).unwrap()),
        (
            "plr_lite",
            Embedding::periodic(4, 6, plr.frequency_init_scale(2.0).lite(true)).unwrap(),
        ),
    ];
    let narrow = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let widen = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    for (name, embedding) in cases {
        let get = |t: &str| f.values(&format!("{name}.{t}"));
        let params: Vec<f32> = embedding
            .parameter_ranges()
            .iter()
            .flat_map(|(tensor, _)| narrow(&get(tensor)))
            .collect();
        let x = narrow(&get("x"));
        let mut y = vec![0.0f32; x.len() / embedding.n_features() * embedding.output_width()];
        let mut saved = EmbeddingSaved::default();
        embedding_forward(&embedding, &params, &x, &mut y, &mut saved);
        assert_close_to(&format!("{name} f32 y"), &widen(&y), &get("y"), 1e-5);
        let mut grad = narrow(&get("dy"));
        let mut gradients = vec![0.0f32; params.len()];
        embedding_backward(&embedding, &params, &x, &saved, &mut grad, &mut gradients);
        for (tensor, range) in embedding.parameter_ranges() {
            let what = format!("{name} f32 grad {tensor}");
            assert_close_to(
                &what,
                &widen(&gradients[range]),
                &get(&format!("grad.{tensor}")),
                1e-4,
            );
        }
    }
}
