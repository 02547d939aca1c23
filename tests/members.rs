//! Many networks at once: member m of a run ends where a lone run with m's
//! settings, on m's rows, in m's order, with m's weights ends, bit for
//! bit, with members that differ in every per-member setting and train on
//! row counts of their own; each member's early stopping, schedule and
//! divergence act on it alone; a run cut short resumes to the same end;
//! the stop flag stops every member.

mod common;

use common::backend_tests;
use retroprop::train::{Member, MemberState, Members};
use retroprop::{
    Activation, Adam, Dataset, Device, Loss, LrSchedule, Mlp, Sgd, StopFlag, Targets, TrainConfig,
    Trainer,
};

/// 90 rows of three classes from three features.
fn data() -> Dataset {
    let x = common::random(3 * 90, -1.0, 1.0, 21);
    let labels = x
        .chunks(3)
        .map(|p| match (p[0] + p[1] > 0.3, p[2] > 0.0) {
            (true, _) => 2,
            (false, true) => 1,
            (false, false) => 0,
        })
        .collect();
    Dataset::new(x, 3, Targets::Classes(labels)).unwrap()
}

fn mlp() -> Mlp {
    Mlp::with_activations(
        &[3, 10, 7, 3],
        &[Activation::Tanh, Activation::Relu, Activation::Identity],
    )
    .unwrap()
}

fn run_config(device: Device) -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(0.01))
        .batch_size(8)
        .epochs(5)
        .seed(3)
        .device(device)
}

/// Members that differ in every setting a member has, on rows of unequal
/// counts (one of 23 rows: 3 steps an epoch where others take 12).
fn varied() -> Vec<Member> {
    let every_other: Vec<u32> = (0..90).step_by(2).collect();
    let few: Vec<u32> = (0..90).filter(|r| r % 4 == 1).collect();
    vec![
        Member::default(),
        Member {
            seed: Some(11),
            ..Member::options(&[("lr", "0.03"), ("weight_decay", "0.001")])
        },
        Member {
            rows: Some(every_other),
            lr_schedule: Some(LrSchedule::Step {
                step_size: 2,
                gamma: 0.5,
            }),
            ..Member::options(&[("betas", "0.8/0.99"), ("eps", "1e-6")])
        },
        Member {
            seed: Some(5),
            rows: Some(few),
            dropout: Some(0.2),
            ..Member::options(&[("lr", "0.002")])
        },
    ]
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A member against its lone run on `device`: bit for bit on the CPU
/// (it is that run); on the GPU within the CPU-GPU parity tolerance (the
/// members' products run in other kernels than a lone run's).
fn same_run(device: Device, member: &[f32], alone: &[f32], what: &str) {
    if device == Device::Cpu {
        assert_eq!(bits(member), bits(alone), "{what}");
        return;
    }
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let (err, at) = common::max_rel_error(&widen(member), &widen(alone), 1e-2);
    assert!(
        err < 1e-4,
        "{what}: relative error {err:.2e} at {at} ({} against {})",
        member[at],
        alone[at]
    );
}

/// Member `m`'s lone run: its settings on its rows, with its weights.
fn lone(
    run: &TrainConfig,
    member: &Member,
    data: &Dataset,
    validation: Option<&Dataset>,
) -> Trainer {
    let config = member.config(run).unwrap();
    let mut data = match &member.weights {
        Some(w) => data.clone().with_weights(w.clone()).unwrap(),
        None => data.clone(),
    };
    if let Some(rows) = &member.rows {
        data = data.select(rows);
    }
    let validation = match (&member.validation_rows, validation) {
        (Some(rows), Some(v)) => Some(v.select(rows)),
        (_, v) => v.cloned(),
    };
    let mut trainer = common::trainer(mlp(), config.clone(), config.device);
    trainer.fit(&data, validation.as_ref()).unwrap();
    trainer
}

backend_tests! {
    /// Every member ends where its lone run ends, bit for bit: the members
    /// share a run, not their numbers.
    fn each_member_is_its_lone_run(device: Device) {
        let data = data();
        let run = run_config(device);
        let members = varied();
        let mut together = Members::new(mlp(), run.clone(), members.clone()).unwrap();
        let history = together.fit(&data, None).unwrap();
        assert!(history.states.iter().all(|s| *s == MemberState::Training));
        for (m, member) in members.iter().enumerate() {
            let mut alone = lone(&run, member, &data, None);
            same_run(
                device,
                &together.member_mut(m).parameters().unwrap(),
                &alone.parameters().unwrap(),
                &format!("{device}: member {m} against its lone run"),
            );
            assert_eq!(together.member(m).steps(), alone.steps(), "{device}: member {m}'s steps");
            assert_eq!(history.members[m].epochs.len(), 5, "{device}: member {m}'s epochs");
        }
        assert_eq!(together.member(3).steps(), 5 * 3, "{device}: 23 rows in batches of 8");
        assert_eq!(together.member(0).steps(), 5 * 12, "{device}: 90 rows in batches of 8");
    }

    /// Early stopping acts on each member alone: one that stops keeps its
    /// best epoch's parameters and takes no more steps while the others go
    /// on, each as its lone run; a plateau schedule too.
    fn each_member_stops_and_steps_its_schedule_alone(device: Device) {
        let data = data();
        let (train, validation) = data.split(0.3, 2).unwrap();
        let plateau = LrSchedule::Plateau {
            factor: 0.5,
            patience: 0,
            threshold: 0.0,
            cooldown: 0,
            min_lr: 0.0,
        };
        let run = run_config(device).early_stopping(1, 0.0).epochs(25).lr_schedule(plateau);
        let members = vec![
            Member::options(&[("lr", "0.3")]),
            Member::options(&[("lr", "0.003")]),
            Member {
                validation_rows: Some((0..27).step_by(2).collect()),
                ..Member::options(&[("lr", "0.05")])
            },
        ];
        let mut together = Members::new(mlp(), run.clone(), members.clone()).unwrap();
        let history = together.fit(&train, Some(&validation)).unwrap();
        assert!(
            history.members.iter().any(|h| h.stopped_early)
                && history.members.iter().map(|h| h.epochs.len()).collect::<std::collections::HashSet<_>>().len() > 1,
            "{device}: the test wants members that stop at different epochs: {:?}",
            history.members.iter().map(|h| (h.epochs.len(), h.stopped_early)).collect::<Vec<_>>()
        );
        for (m, member) in members.iter().enumerate() {
            let mut alone = lone(&run, member, &train, Some(&validation));
            same_run(
                device,
                &together.member_mut(m).parameters().unwrap(),
                &alone.parameters().unwrap(),
                &format!("{device}: member {m} against its lone run"),
            );
        }
    }

    /// A member that diverges keeps the parameters from before the step
    /// that diverged, and the others train on as their lone runs.
    fn a_diverging_member_stops_alone(device: Device) {
        let x: Vec<f32> = (0..40).map(|i| 50.0 + i as f32).collect();
        let y: Vec<f32> = (0..40).map(|i| (i % 3) as f32).collect();
        let data = Dataset::new(x, 1, Targets::Values { values: y, width: 1 }).unwrap();
        let net = Mlp::with_activations(&[1, 16, 1], &[Activation::Relu, Activation::Identity]).unwrap();
        let run = TrainConfig::default()
            .loss(Loss::Mse)
            .optimizer(Sgd::default().lr(1e-6))
            .batch_size(4)
            .seed(1)
            .epochs(6)
            .device(device);
        let members = vec![Member::default(), Member::options(&[("lr", "5.0")])];
        let mut together = Members::new(net.clone(), run.clone(), members.clone()).unwrap();
        let history = together.fit(&data, None).unwrap();
        let MemberState::Diverged { step, .. } = history.states[1] else {
            panic!("{device}: member 1 did not diverge: {:?}", history.states);
        };
        assert_eq!(history.states[0], MemberState::Training);
        let mut calm = common::trainer(net.clone(), members[0].config(&run).unwrap(), device);
        calm.fit(&data, None).unwrap();
        same_run(
            device,
            &together.member_mut(0).parameters().unwrap(),
            &calm.parameters().unwrap(),
            &format!("{device}: the calm member"),
        );
        let mut wild = common::trainer(net, members[1].config(&run).unwrap(), device);
        let Err(retroprop::Error::Diverged { step: alone_step, .. }) = wild.fit(&data, None) else {
            panic!("{device}: the lone wild run did not diverge");
        };
        assert_eq!(step, alone_step, "{device}: the step that diverged");
        assert_eq!(together.member(1).steps(), step - 1, "{device}: steps kept");
        same_run(
            device,
            &together.member_mut(1).parameters().unwrap(),
            &wild.parameters().unwrap(),
            &format!("{device}: the last good parameters"),
        );
    }

    /// A run cut short (the stop flag, from a callback, mid-epoch for
    /// members on fewer rows) resumes from its members' checkpoints to the
    /// end of the run never cut, bit for bit.
    fn a_run_stopped_and_resumed_is_the_run_never_stopped(device: Device) {
        let data = data();
        let run = run_config(device);
        let members = varied();
        let mut whole = Members::new(mlp(), run.clone(), members.clone()).unwrap();
        whole.fit(&data, None).unwrap();

        let stop = StopFlag::new();
        let cut_run = run.clone().stop_flag(stop.clone());
        let mut cut = Members::new(mlp(), cut_run, members.clone()).unwrap();
        let history = cut
            .fit_between_epochs(&data, None, |_, m, record| {
                if m == 0 && record.epoch == 2 {
                    stop.request();
                }
            }, 0, |_| Ok(()))
            .unwrap();
        assert!(history.interrupted, "{device}: the stop flag did not end the run");
        let saved = cut.checkpoint().unwrap();
        let states = cut.states().to_vec();
        let params = saved.iter().map(|c| c.params.clone()).collect();
        // A fit's epochs are its own: the rest of the run's.
        assert!(saved.iter().all(|c| c.epoch == 2), "{device}: members at other epochs");
        let rest = run.epochs(3);
        let mut resumed = Members::with_parameters(mlp(), rest, members.clone(), params).unwrap();
        resumed.restore(&saved, &states).unwrap();
        resumed.fit(&data, None).unwrap();
        for m in 0..members.len() {
            assert_eq!(
                bits(&resumed.member_mut(m).parameters().unwrap()),
                bits(&whole.member_mut(m).parameters().unwrap()),
                "{device}: member {m} after the resume"
            );
        }
    }
}

/// Members with weights of their own (0/1 fold masks, bootstrap counts)
/// are their lone runs on the data with those weights, bit for bit. (The
/// CPU's: the GPU refuses weights by name for now, tests/errors.rs.)
#[test]
fn members_with_weights_are_their_lone_weighted_runs() {
    let data = data();
    let run = run_config(Device::Cpu);
    let mask: Vec<f32> = (0..90)
        .map(|r| if r % 3 == 0 { 0.0 } else { 1.0 })
        .collect();
    let counts: Vec<f32> = (0..90).map(|r| ((r * 7) % 4) as f32).collect();
    let members = vec![
        Member {
            weights: Some(mask),
            ..Member::default()
        },
        Member {
            weights: Some(counts),
            rows: Some((10..70).collect()),
            ..Member::options(&[("lr", "0.02")])
        },
        Member::default(),
    ];
    let mut together = Members::new(mlp(), run.clone(), members.clone()).unwrap();
    together.fit(&data, None).unwrap();
    for (m, member) in members.iter().enumerate() {
        let mut alone = lone(&run, member, &data, None);
        assert_eq!(
            bits(&together.member_mut(m).parameters().unwrap()),
            bits(&alone.parameters().unwrap()),
            "member {m} differs from its lone weighted run"
        );
    }
}

/// A member stopped from the callback after its second epoch ends as its
/// lone run of two epochs; the others go on.
#[test]
fn a_member_stopped_between_epochs_keeps_its_last_parameters() {
    let data = data();
    let run = run_config(Device::Cpu);
    let members = Member::seeds(3);
    let mut together = Members::new(mlp(), run.clone(), members.clone()).unwrap();
    let history = together
        .fit_between_epochs(
            &data,
            None,
            |run, m, record| {
                if m == 1 && record.epoch == 2 {
                    run.stop_member(1).unwrap();
                }
            },
            0,
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(history.states[1], MemberState::Stopped);
    assert_eq!(history.members[1].epochs.len(), 2);
    assert_eq!(history.members[0].epochs.len(), 5);
    let mut two = common::trainer(
        mlp(),
        members[1].config(&run).unwrap().epochs(2),
        Device::Cpu,
    );
    two.fit(&data, None).unwrap();
    assert_eq!(
        bits(&together.member_mut(1).parameters().unwrap()),
        bits(&two.parameters().unwrap())
    );
    assert!(together.stop_member(7).is_err());
}

/// The ensemble's prediction is the mean of its members' probabilities.
#[test]
fn the_ensemble_predicts_the_mean_of_its_members_probabilities() {
    let data = data();
    let mut run = Members::new(mlp(), run_config(Device::Cpu), Member::seeds(3)).unwrap();
    run.fit(&data, None).unwrap();
    let x = &data.x()[..30];
    let members = run.predict_members(x).unwrap();
    let ensemble = run.predict_ensemble(x).unwrap();
    assert_eq!(ensemble.len(), 30);
    for row in 0..10 {
        for class in 0..3 {
            let mean: f64 = members
                .iter()
                .map(|o| retroprop::loss::softmax(&o[3 * row..3 * row + 3])[class] as f64)
                .sum::<f64>()
                / 3.0;
            assert!(
                (ensemble[3 * row + class] as f64 - mean).abs() < 1e-6,
                "row {row} class {class}: {} against {mean}",
                ensemble[3 * row + class]
            );
        }
    }
    assert!(
        members[0] != members[1],
        "seeds 0 and 1 trained the same network"
    );
}

/// A member option the run's optimizer lacks, or one that reshapes its
/// state, is refused naming the member.
#[test]
fn a_member_setting_the_run_cannot_take_is_refused_by_member() {
    let run = run_config(Device::Cpu);
    for (member, part) in [
        (Member::options(&[("momentum", "0.9")]), "member 1"),
        (
            Member::options(&[("amsgrad", "true")]),
            "shape of the optimizer's state",
        ),
        (Member::options(&[("lr", "-1")]), "lr = -1"),
    ] {
        let e = Members::new(mlp(), run.clone(), vec![Member::default(), member]).unwrap_err();
        assert!(e.to_string().contains(part), "`{part}` not in: {e}");
    }
    let e = Members::new(mlp(), run.clone(), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("members"), "{e}");
    // Validation rows without validation data: refused, not left unscored.
    let scored = Member {
        validation_rows: Some(vec![0, 1, 2]),
        ..Member::default()
    };
    let mut members = Members::new(mlp(), run, vec![Member::default(), scored]).unwrap();
    let e = members.fit(&data(), None).unwrap_err();
    assert!(e.to_string().contains("member 1: validation rows"), "{e}");
    assert_eq!(members.member(1).steps(), 0, "refused before a step");
}

/// A file of every member's checkpoint, written, read back and resumed,
/// ends the run where the run never cut ends; two runs write the same
/// bytes; the model file of every member names each member's tensors
/// under `members.{m}.` with its settings in the metadata.
#[test]
fn members_files_resume_bit_for_bit_and_repeat_their_bytes() {
    use retroprop::io::SavedModel;
    use retroprop::io::members::{
        SavedMembers, load_members, load_members_checkpoint, members_bytes, save_members_checkpoint,
    };
    let dir = std::env::temp_dir().join(format!("retroprop-members-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = data();
    let run = run_config(Device::Cpu);
    let members = varied();
    let mut whole = Members::new(mlp(), run.clone(), members.clone()).unwrap();
    whole.fit(&data, None).unwrap();

    let shared = |params: Vec<Vec<f32>>| SavedMembers {
        model: SavedModel {
            mlp: mlp(),
            params: Vec::new(),
            buffers: Vec::new(),
            num_batches_tracked: 0,
            loss: run.loss,
            standardizer: None,
        },
        params,
        settings: members.iter().map(Member::text).collect(),
    };
    let path = dir.join("c.safetensors");
    let mut cut = Members::new(mlp(), run.clone().epochs(2), members.clone()).unwrap();
    cut.fit(&data, None).unwrap();
    let checkpoints = cut.checkpoint().unwrap();
    let params: Vec<Vec<f32>> = checkpoints.iter().map(|c| c.params.clone()).collect();
    save_members_checkpoint(
        &path,
        &shared(params),
        &run.optimizer,
        &checkpoints,
        cut.states(),
    )
    .unwrap();
    let loaded = load_members_checkpoint(&path).unwrap();
    assert_eq!(
        loaded.checkpoints, checkpoints,
        "checkpoints through the file"
    );
    assert_eq!(loaded.members.settings[3], members[3].text());
    let mut resumed = Members::with_parameters(
        mlp(),
        run.clone().epochs(3),
        members.clone(),
        loaded
            .checkpoints
            .iter()
            .map(|c| c.params.clone())
            .collect(),
    )
    .unwrap();
    resumed
        .restore(&loaded.checkpoints, &loaded.states)
        .unwrap();
    resumed.fit(&data, None).unwrap();
    let mut ends = Vec::new();
    for m in 0..members.len() {
        let end = resumed.member_mut(m).parameters().unwrap();
        assert_eq!(
            bits(&end),
            bits(&whole.member_mut(m).parameters().unwrap()),
            "member {m} after resuming from the file"
        );
        ends.push(end);
    }

    let notes = retroprop::io::RunNotes::default();
    let a = members_bytes(&path, &shared(ends.clone()), &notes).unwrap();
    let b = members_bytes(&path, &shared(ends.clone()), &notes).unwrap();
    assert_eq!(a, b, "the same members wrote other bytes");
    let model_path = dir.join("m.safetensors");
    std::fs::write(&model_path, &a).unwrap();
    let read = load_members(&model_path).unwrap();
    assert_eq!(read.members.len(), 4);
    for (m, member) in read.members.iter().enumerate() {
        assert_eq!(member.params, ends[m], "member {m}'s parameters");
        assert_eq!(member.sizes, mlp().sizes());
    }
    let header_len = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&a[8..8 + header_len]).unwrap();
    for name in [
        "\"members.0.layers.0.weight\"",
        "\"members.3.layers.2.bias\"",
        "\"retroprop.member.3\"",
    ] {
        assert!(header.contains(name), "{name} not in the header: {header}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fit_epoch_by_epoch` hands each epoch's records together, in member
/// order, and a member stopped there ends as with `fit_between_epochs`.
#[test]
fn the_records_of_an_epoch_come_together_in_member_order() {
    let data = data();
    let run = run_config(Device::Cpu);
    let members = varied();
    let mut batches = Vec::new();
    let mut together = Members::new(mlp(), run.clone(), members.clone()).unwrap();
    together
        .fit_epoch_by_epoch(
            &data,
            None,
            |run, records| {
                let epochs: Vec<usize> = records.iter().map(|(_, r)| r.epoch).collect();
                batches.push((records.iter().map(|(m, _)| *m).collect::<Vec<_>>(), epochs));
                if records.iter().any(|(m, r)| *m == 2 && r.epoch == 3) {
                    run.stop_member(2).unwrap();
                }
            },
            0,
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(
        batches.len(),
        5,
        "one call an epoch of the run: {batches:?}"
    );
    for (e, (members_seen, epochs)) in batches.iter().enumerate() {
        let expected: Vec<usize> = if e < 3 {
            vec![0, 1, 2, 3]
        } else {
            vec![0, 1, 3]
        };
        assert_eq!(members_seen, &expected, "epoch {}: members reported", e + 1);
        assert!(
            epochs.iter().all(|&epoch| epoch == e + 1),
            "epoch {}: {epochs:?}",
            e + 1
        );
    }
    let mut one_by_one = Members::new(mlp(), run, members).unwrap();
    one_by_one
        .fit_between_epochs(
            &data,
            None,
            |run, m, record| {
                if m == 2 && record.epoch == 3 {
                    run.stop_member(2).unwrap();
                }
            },
            0,
            |_| Ok(()),
        )
        .unwrap();
    for m in 0..4 {
        assert_eq!(
            bits(&together.member_mut(m).parameters().unwrap()),
            bits(&one_by_one.member_mut(m).parameters().unwrap()),
            "member {m}"
        );
    }
    assert_eq!(together.states()[2], MemberState::Stopped);
}

/// A member its step bound cuts mid-epoch keeps its last step's
/// parameters, as its lone fit does (early stopping's best epoch is put
/// back only at the end of a fit that ran its course); one that stopped
/// early says which epoch it kept.
#[test]
fn a_member_cut_by_its_step_bound_keeps_its_last_step() {
    let data = data();
    let (train, validation) = data.split(0.3, 2).unwrap();
    // 63 rows in batches of 8: 8 steps an epoch, so step 30 is inside the
    // fourth epoch; a member on 20 rows takes 3 an epoch and ends one at 30.
    let run = run_config(Device::Cpu)
        .early_stopping(50, 0.0)
        .epochs(20)
        .max_steps(30);
    let members = vec![
        Member::default(),
        Member {
            rows: Some((0..20).collect()),
            ..Member::default()
        },
    ];
    let mut together = Members::new(mlp(), run.clone(), members.clone()).unwrap();
    let history = together.fit(&train, Some(&validation)).unwrap();
    assert!(history.members[0].cut_mid_epoch && !history.members[1].cut_mid_epoch);
    for (m, member) in members.iter().enumerate() {
        let mut alone = lone(&run, member, &train, Some(&validation));
        assert_eq!(
            bits(&together.member_mut(m).parameters().unwrap()),
            bits(&alone.parameters().unwrap()),
            "member {m} differs from its lone run"
        );
    }

    let stopping = run_config(Device::Cpu).early_stopping(0, 0.0).epochs(30);
    let mut stopped = Members::new(mlp(), stopping.clone(), Member::seeds(2)).unwrap();
    let history = stopped.fit(&train, Some(&validation)).unwrap();
    for (m, member) in Member::seeds(2).iter().enumerate() {
        let config = member.config(&stopping).unwrap();
        let mut alone = common::trainer(mlp(), config, Device::Cpu);
        let lone_history = alone.fit(&train, Some(&validation)).unwrap();
        assert!(
            lone_history.stopped_early,
            "member {m}'s lone run ran its course"
        );
        assert_eq!(
            history.members[m].best_epoch, lone_history.best_epoch,
            "member {m}'s kept epoch"
        );
        assert!(history.members[m].stopped_early);
    }
}

/// The ensemble is scored on its mean probabilities: cross-entropy as
/// torch's NLLLoss of their log, accuracy by their largest; a regression
/// ensemble by the squared error of its mean output.
#[test]
fn the_ensemble_is_scored_on_its_mean_probabilities() {
    let data = data();
    let mut run = Members::new(mlp(), run_config(Device::Cpu), Member::seeds(3)).unwrap();
    run.fit(&data, None).unwrap();
    let members = run.predict_members(data.x()).unwrap();
    let Targets::Classes(labels) = data.targets() else {
        unreachable!()
    };
    let (mut nll, mut right) = (0.0f64, 0usize);
    for (row, &label) in labels.iter().enumerate() {
        let mean: Vec<f64> = (0..3)
            .map(|class| {
                members
                    .iter()
                    .map(|o| retroprop::loss::softmax(&o[3 * row..3 * row + 3])[class] as f64)
                    .sum::<f64>()
                    / 3.0
            })
            .collect();
        nll -= mean[label as usize].ln();
        right += usize::from(retroprop::loss::argmax(&mean) == label as usize);
    }
    let scored = run.evaluate_ensemble(&data).unwrap();
    let expected = nll / labels.len() as f64;
    assert!(
        (scored.loss - expected).abs() < 1e-6 * expected,
        "loss {} against {expected}",
        scored.loss
    );
    assert_eq!(scored.accuracy, Some(right as f64 / labels.len() as f64));

    let x: Vec<f32> = common::random(2 * 50, -1.0, 1.0, 8);
    let y: Vec<f32> = x.chunks(2).map(|p| p[0] * p[1]).collect();
    let values = Dataset::new(
        x,
        2,
        Targets::Values {
            values: y.clone(),
            width: 1,
        },
    )
    .unwrap();
    let net = Mlp::new(&[2, 6, 1], Activation::Tanh, Activation::Identity).unwrap();
    let config = run_config(Device::Cpu).loss(Loss::HalfMse);
    let mut run = Members::new(net, config, Member::seeds(2)).unwrap();
    run.fit(&values, None).unwrap();
    let members = run.predict_members(values.x()).unwrap();
    let half_mse = y
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let mean = (members[0][i] as f64 + members[1][i] as f64) / 2.0;
            0.5 * (mean - t as f64).powi(2)
        })
        .sum::<f64>()
        / y.len() as f64;
    let scored = run.evaluate_ensemble(&values).unwrap();
    assert!(
        (scored.loss - half_mse).abs() < 1e-6 * half_mse,
        "loss {} against {half_mse}",
        scored.loss
    );
    assert_eq!(scored.accuracy, None);
}

/// Members that a checkpoint holds at different epochs (one cut short by
/// its step bound epochs before the other) resume to where the run never
/// cut ends: the run's epochs count from its furthest member, and the one
/// behind runs the epochs it lacks.
#[test]
fn members_at_different_epochs_resume_to_the_run_never_cut() {
    let data = data();
    // Batches of 8: 3 steps an epoch on 20 rows, 12 on 90. At 20 steps
    // the first stands after epoch 6, the second after epoch 1.
    let members = vec![
        Member {
            rows: Some((0..20).collect()),
            ..Member::default()
        },
        Member::options(&[("lr", "0.02")]),
    ];
    let run = run_config(Device::Cpu).epochs(8).max_steps(40);
    let mut whole = Members::new(mlp(), run.clone(), members.clone()).unwrap();
    whole.fit(&data, None).unwrap();
    let mut cut = Members::new(mlp(), run.clone().max_steps(20), members.clone()).unwrap();
    cut.fit(&data, None).unwrap();
    let saved = cut.checkpoint().unwrap();
    let epochs: Vec<u64> = saved.iter().map(|c| c.epoch).collect();
    assert_eq!(epochs, [6, 1], "the members' epochs at the cut");
    let params = saved.iter().map(|c| c.params.clone()).collect();
    let mut resumed =
        Members::with_parameters(mlp(), run.clone().epochs(8 - 6), members.clone(), params)
            .unwrap();
    resumed.restore(&saved, cut.states()).unwrap();
    resumed.fit(&data, None).unwrap();
    for m in 0..members.len() {
        assert_eq!(
            resumed.member(m).steps(),
            whole.member(m).steps(),
            "member {m}'s steps"
        );
        assert_eq!(
            bits(&resumed.member_mut(m).parameters().unwrap()),
            bits(&whole.member_mut(m).parameters().unwrap()),
            "member {m} after the resume"
        );
    }
}
