//! Batch normalisation over a batch that ranks share (torch's
//! `SyncBatchNorm`): each rank normalises its share by the whole batch's
//! statistics, so N ranks train what one process trains. The kernels in
//! f64 against one whole batch (one process's BatchNorm is checked against
//! torch in tests/norms.rs), then whole runs of a residual network on 2, 3
//! and 4 ranks, with shares of one row and empty shares, against one
//! process.

mod common;

use common::random;
use retroprop::backend::BatchSums;
use retroprop::cpu::norm::{
    Norm, NormSaved, RunningStats, batch_norm_backward, batch_norm_backward_across,
    batch_norm_forward_train, batch_norm_forward_train_across,
};
use retroprop::parallel::{Collective, Threads};
use retroprop::{
    Activation, Dataset, Device, Init, Loss, Mlp, NormKind, Optimizer, Residual, Sgd, Targets,
    TrainConfig, Trainer,
};

/// A rank's collective as the kernels' sums (the library's own is private
/// to the trainer's distributed step).
struct RankSums(Threads);

impl BatchSums for RankSums {
    fn sum(&self, values: &mut [f64]) {
        self.0.all_reduce_sum_f64(values).unwrap();
    }
}

/// One share's outputs of a forward and backward pass.
struct Pass {
    y: Vec<f64>,
    dx: Vec<f64>,
    dweight: Vec<f64>,
    dbias: Vec<f64>,
    running: RunningStats<f64>,
}

const WIDTH: usize = 6;

fn norm<'a>(weight: &'a [f64], bias: &'a [f64]) -> Norm<'a, f64> {
    Norm {
        width: WIDTH,
        weight,
        bias,
        eps: 1e-5,
    }
}

/// Forward and backward of one share (`across`: the ranks' sums; `None`:
/// the share is the whole batch).
fn pass(x: &[f64], dy: &[f64], params: (&[f64], &[f64]), across: Option<&dyn BatchSums>) -> Pass {
    let norm = norm(params.0, params.1);
    let mut running = RunningStats::new(WIDTH);
    let (mut y, mut saved) = (vec![0.0; x.len()], NormSaved::default());
    match across {
        None => batch_norm_forward_train(x, norm, 0.1, &mut running, &mut y, &mut saved),
        Some(a) => {
            batch_norm_forward_train_across(x, norm, 0.1, &mut running, &mut y, &mut saved, a)
        }
    }
    .unwrap();
    let (mut dx, mut dweight, mut dbias) = (vec![0.0; x.len()], vec![0.0; WIDTH], vec![0.0; WIDTH]);
    match across {
        None => batch_norm_backward(dy, norm, &saved, &mut dx, &mut dweight, &mut dbias),
        Some(a) => {
            batch_norm_backward_across(dy, norm, &saved, &mut dx, (&mut dweight, &mut dbias), a)
        }
    }
    Pass {
        y,
        dx,
        dweight,
        dbias,
        running,
    }
}

fn assert_near(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{what}[{i}]: {g} against the whole batch's {w}"
        );
    }
}

#[test]
fn shares_normalised_across_ranks_equal_one_batch_in_f64() {
    let rows = 9;
    let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    let x = wide(random(rows * WIDTH, -2.0, 3.0, 1));
    let dy = wide(random(rows * WIDTH, -1.0, 1.0, 2));
    let (weight, bias) = (
        wide(random(WIDTH, 0.5, 1.5, 3)),
        wide(random(WIDTH, -0.5, 0.5, 4)),
    );
    let whole = pass(&x, &dy, (&weight, &bias), None);
    // Shares of 5, 1, 0 and 3 rows: one of a single row, one empty.
    let cuts = [0, 5, 6, 6, 9];
    let shares: Vec<Pass> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(4)
            .into_iter()
            .map(|rank| {
                let r = rank.rank();
                let span = cuts[r] * WIDTH..cuts[r + 1] * WIDTH;
                let (x, dy, weight, bias) = (&x[span.clone()], &dy[span], &weight, &bias);
                s.spawn(move || {
                    let sums = RankSums(rank);
                    pass(x, dy, (weight, bias), Some(&sums))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let joined = |f: fn(&Pass) -> &Vec<f64>| shares.iter().flat_map(f).copied().collect::<Vec<_>>();
    assert_near("y", &joined(|p| &p.y), &whole.y);
    assert_near("dx", &joined(|p| &p.dx), &whole.dx);
    let summed = |f: fn(&Pass) -> &Vec<f64>| {
        (0..WIDTH)
            .map(|j| shares.iter().map(|p| f(p)[j]).sum())
            .collect::<Vec<f64>>()
    };
    assert_near(
        "dγ summed over ranks",
        &summed(|p| &p.dweight),
        &whole.dweight,
    );
    assert_near("dβ summed over ranks", &summed(|p| &p.dbias), &whole.dbias);
    for (r, share) in shares.iter().enumerate() {
        assert_near(
            &format!("rank {r}'s running mean"),
            &share.running.mean,
            &whole.running.mean,
        );
        assert_near(
            &format!("rank {r}'s running var"),
            &share.running.var,
            &whole.running.var,
        );
    }
}

fn residual() -> Mlp {
    Mlp::residual(Residual {
        inputs: 5,
        width: 8,
        hidden: 16,
        blocks: 2,
        outputs: 3,
        norm: Some(NormKind::Batch),
        activation: Activation::Relu,
    })
    .unwrap()
}

/// 37 rows of 5 features in 3 classes.
fn data() -> Dataset {
    let x = random(37 * 5, -1.0, 1.0, 7);
    let classes = x
        .chunks(5)
        .map(|r| (r[0] + r[1] > 0.0) as u32 + (r[2] > 0.5) as u32)
        .collect();
    Dataset::new(x, 5, Targets::Classes(classes)).unwrap()
}

/// What a run ends with: parameters, buffers, and predictions in
/// evaluation mode (by the running statistics).
#[derive(PartialEq)]
struct Ended {
    params: Vec<f32>,
    buffers: Vec<f32>,
    predictions: Vec<f32>,
}

fn end(trainer: &mut Trainer, data: &Dataset) -> Ended {
    Ended {
        params: trainer.parameters().unwrap(),
        buffers: trainer.buffers().unwrap(),
        predictions: trainer.predict(data.x()).unwrap(),
    }
}

fn assert_scaled(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    let scale = want.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let gap = got.iter().zip(want).fold(0f64, |m, (&a, &b)| {
        m.max((f64::from(a) - f64::from(b)).abs())
    });
    assert!(
        gap <= tolerance * scale,
        "{what}: largest difference {gap:.2e} against one process, {:.2e} of the scale {scale:.2e}",
        gap / scale
    );
}

#[test]
fn a_batch_norm_network_on_ranks_trains_what_one_process_trains() {
    let data = data();
    let base = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        // Not Adam: a bias that only reaches the loss through batch
        // normalisation (here every block's second bias, whose shift the
        // next norm takes out) has a gradient of 0 up to rounding, and
        // Adam's g/√v turns that rounding into steps of ±lr, whichever
        // order the sums were made in (the gap to one process was 0.03 after one epoch).
        .optimizer(Optimizer::from(Sgd::default().lr(0.05).momentum(0.9)))
        .epochs(3)
        .seed(5)
        .init(Init::KaimingUniform)
        .device(Device::Cpu);
    // Batches of 5 leave one of 2 rows: shares of one row, and empty ones.
    let cases = [
        ("batches of 5", base.clone().batch_size(5)),
        ("batches of 10", base.clone().batch_size(10)),
        ("dropout", base.clone().batch_size(10).dropout(0.2)),
    ];
    for (what, config) in cases {
        let mut alone = Trainer::new(residual(), config.clone()).unwrap();
        alone.fit(&data, None).unwrap();
        let one = end(&mut alone, &data);
        for ranks in [2, 3, 4] {
            let runs: Vec<Ended> = std::thread::scope(|s| {
                let handles: Vec<_> = Threads::group(ranks)
                    .into_iter()
                    .map(|rank| {
                        let (config, data) = (&config, &data);
                        s.spawn(move || {
                            let trainer = Trainer::new(residual(), config.clone()).unwrap();
                            let mut trainer = trainer.with_collective(Box::new(rank)).unwrap();
                            trainer.fit(data, None).unwrap();
                            end(&mut trainer, data)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let what = format!("{what} on {ranks} ranks");
            assert!(
                runs.iter().all(|run| *run == runs[0]),
                "{what}: a rank ended with other bits than rank 0"
            );
            assert_scaled(
                &format!("{what}: parameters"),
                &runs[0].params,
                &one.params,
                1e-5,
            );
            assert_scaled(
                &format!("{what}: running statistics"),
                &runs[0].buffers,
                &one.buffers,
                1e-5,
            );
            assert_scaled(
                &format!("{what}: predictions"),
                &runs[0].predictions,
                &one.predictions,
                1e-4,
            );
        }
    }
}
