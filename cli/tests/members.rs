//! `retroprop train` of many networks at once: a grid of settings, seeds
//! and folds are their lone `retroprop train` runs (bit for bit on the
//! CPU and on the GPU); the folds are the documented split, and the
//! summary's table scores each candidate as `evaluate` scores its members
//! and marks the lowest; a run cut short resumes to the unbroken run's
//! files; a resume with other members, and bad lists, are refused in one
//! line; predict, evaluate and export read a file of members as its
//! ensemble or one member.

mod support;

use prost::Message;
use retroprop::io::load_model;
use retroprop::io::members::{load_members, load_members_checkpoint};
use retroprop::io::onnx::proto::ModelProto;
use std::path::Path;
use support::{Dir, classes_csv, ok, refused, run};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Each member's parameters in a file of members.
fn members_params(path: &Path) -> Vec<Vec<f32>> {
    load_members(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .members
        .into_iter()
        .map(|m| m.params)
        .collect()
}

fn params(path: &Path) -> Vec<f32> {
    load_model(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .params
}

/// What every run of a test shares: a small network, a few epochs.
fn common(data: &Path, device: &str) -> Vec<String> {
    [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        "2,12,3",
        "--activations",
        "tanh",
        "--batch-size",
        "16",
        "--epochs",
        "4",
        "--device",
        device,
        "-q",
    ]
    .map(String::from)
    .to_vec()
}

/// `args` without `flag` and its value.
fn without(args: &[String], flag: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect("the flag");
    [&args[..at], &args[at + 2..]].concat()
}

fn with(common: &[String], more: &[&str]) -> Vec<String> {
    let mut args = common.to_vec();
    args.extend(more.iter().map(|a| a.to_string()));
    args
}

fn ok_args(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `--lr 1e-3,3e-3,1e-2 --weight-decay 0,1e-4` is six members, the first
/// list varying slowest, each the lone run with its two values; with
/// `--members 2` each is repeated over seeds 5 and 6 (`--seed 5`).
fn grid_is_its_lone_runs(device: &str) {
    let dir = Dir::new(&format!("grid-{device}"));
    let data = classes_csv(&dir);
    let common = common(&data, device);
    let all = dir.path("all.safetensors");
    let grid = [
        "--lr",
        "1e-3,3e-3,1e-2",
        "--weight-decay",
        "0,1e-4",
        "--save-all",
        all.to_str().unwrap(),
    ];
    let summary = ok_args(&with(&common, &grid));
    assert!(
        summary.contains("6 members (6 candidates)"),
        "{device}: {summary}"
    );
    let together = members_params(&all);
    let settings = load_members(&all).unwrap().settings;
    let mut m = 0;
    for lr in ["0.001", "0.003", "0.01"] {
        for decay in ["0", "0.0001"] {
            assert_eq!(settings[m], format!("lr={lr} weight_decay={decay}"));
            let lone = dir.path(&format!("lone-{m}.safetensors"));
            let args = [
                "--lr",
                lr,
                "--weight-decay",
                decay,
                "--save",
                lone.to_str().unwrap(),
            ];
            ok_args(&with(&common, &args));
            assert_eq!(
                bits(&together[m]),
                bits(&params(&lone)),
                "{device}: member {m} (lr {lr}, weight decay {decay}) differs from its lone run"
            );
            m += 1;
        }
    }

    let seeds = dir.path("seeds.safetensors");
    let args = [
        "--lr",
        "1e-3,1e-2",
        "--members",
        "2",
        "--seed",
        "5",
        "--save-all",
        seeds.to_str().unwrap(),
    ];
    ok_args(&with(&common, &args));
    let together = members_params(&seeds);
    for (m, (lr, seed)) in [("0.001", "5"), ("0.001", "6"), ("0.01", "5"), ("0.01", "6")]
        .into_iter()
        .enumerate()
    {
        let lone = dir.path(&format!("seed-{m}.safetensors"));
        let args = ["--lr", lr, "--seed", seed, "--save", lone.to_str().unwrap()];
        ok_args(&with(&common, &args));
        assert_eq!(
            bits(&together[m]),
            bits(&params(&lone)),
            "{device}: member {m} (lr {lr}, seed {seed}) differs from its lone run"
        );
    }
}

#[test]
fn a_grid_is_its_lone_runs_on_the_cpu() {
    grid_is_its_lone_runs("cpu");
}

#[test]
fn a_grid_is_its_lone_runs_on_the_gpu() {
    grid_is_its_lone_runs("gpu");
}

/// The data file's rows (without the header) and their labels.
fn rows_and_labels(data: &Path) -> (String, Vec<String>, Vec<u32>) {
    let text = std::fs::read_to_string(data).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows: Vec<String> = lines.map(String::from).collect();
    let labels = rows
        .iter()
        .map(|r| r.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    (header, rows, labels)
}

/// The folds as the README documents them: the rows shuffled by rand's
/// `shuffle` with ChaCha8 seeded by the seed, sorted by class (stably),
/// dealt out in turn; each fold ascending.
fn documented_folds(labels: &[u32], count: usize, seed: u64) -> Vec<Vec<usize>> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<u32> = (0..labels.len() as u32).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    order.sort_by_key(|&r| labels[r as usize]);
    let mut folds = vec![Vec::new(); count];
    for (i, &row) in order.iter().enumerate() {
        folds[i % count].push(row as usize);
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    folds
}

/// The table of candidates: for each row, whether it is marked best and
/// its cells by the header's names (the two `std` columns as `loss_std`
/// and `accuracy_std`).
fn candidate_rows(summary: &str) -> Vec<(bool, std::collections::HashMap<String, String>)> {
    let mut lines = summary
        .lines()
        .skip_while(|l| l.split_whitespace().next() != Some("candidate"));
    let mut header: Vec<String> = lines
        .next()
        .expect("a table of candidates")
        .split_whitespace()
        .map(String::from)
        .collect();
    for (seen, name) in header.iter_mut().filter(|n| *n == "std").enumerate() {
        *name = ["loss_std", "accuracy_std"][seen].into();
    }
    lines
        .take_while(|l| !l.starts_with("best:"))
        .map(|line| {
            let best = line.starts_with('*');
            let cells = line.trim_start_matches('*').split_whitespace();
            (
                best,
                header
                    .iter()
                    .cloned()
                    .zip(cells.map(String::from))
                    .collect(),
            )
        })
        .collect()
}

/// The loss `retroprop evaluate` prints.
fn evaluated_loss(line: &str) -> f64 {
    let after = line.split(") ").nth(1).expect("a loss");
    after.split([',', ' ']).next().unwrap().parse().unwrap()
}

/// `--folds 3`: each candidate on each fold is the lone run trained on
/// the other folds' rows and validated on the fold's (as the README
/// documents the split, stratified); the table's mean validation loss of
/// each candidate is the mean of what `evaluate` gives its members on
/// their folds, the best is the lowest, and `--save` is the ensemble of
/// the best candidate's folds.
#[test]
fn folds_are_lone_runs_on_the_documented_rows_and_the_table_marks_the_lowest() {
    let dir = Dir::new("folds");
    let data = classes_csv(&dir);
    let common = common(&data, "cpu");
    let (all, best) = (dir.path("all.safetensors"), dir.path("best.safetensors"));
    let args = [
        "--lr",
        "3e-3,3e-2",
        "--folds",
        "3",
        "--seed",
        "4",
        "--save",
        best.to_str().unwrap(),
        "--save-all",
        all.to_str().unwrap(),
    ];
    let summary = ok_args(&with(&common, &args));
    assert!(
        summary.contains("6 members (2 candidates × 3 folds)"),
        "{summary}"
    );
    let together = members_params(&all);
    let (header, rows, labels) = rows_and_labels(&data);
    let folds = documented_folds(&labels, 3, 4);
    for (f, fold) in folds.iter().enumerate() {
        for class in 0..3 {
            let counts: Vec<usize> = folds
                .iter()
                .map(|f| f.iter().filter(|&&r| labels[r] == class).count())
                .collect();
            assert!(
                counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
                "class {class} is not stratified: {counts:?}"
            );
        }
        let held: String = fold.iter().map(|&r| format!("{}\n", rows[r])).collect();
        let rest: String = (0..rows.len())
            .filter(|r| !fold.contains(r))
            .map(|r| format!("{}\n", rows[r]))
            .collect();
        let val = dir.write(&format!("val-{f}.csv"), &format!("{header}\n{held}"));
        let train = dir.write(&format!("train-{f}.csv"), &format!("{header}\n{rest}"));
        for (c, lr) in ["0.003", "0.03"].into_iter().enumerate() {
            let lone = dir.path(&format!("lone-{c}-{f}.safetensors"));
            let mut args = with(
                &common,
                &[
                    "--val",
                    val.to_str().unwrap(),
                    "--lr",
                    lr,
                    "--seed",
                    "4",
                    "--save",
                    lone.to_str().unwrap(),
                ],
            );
            args[2] = train.to_str().unwrap().into();
            ok_args(&args);
            assert_eq!(
                bits(&together[3 * c + f]),
                bits(&params(&lone)),
                "candidate {c} on fold {f} differs from its lone run on the fold's rows"
            );
        }
    }

    let table = candidate_rows(&summary);
    assert_eq!(table.len(), 2, "{summary}");
    let mut means = Vec::new();
    for (c, (_, cells)) in table.iter().enumerate() {
        let losses: Vec<f64> = (0..3)
            .map(|f| {
                let m = (3 * c + f).to_string();
                let val = dir.arg(&format!("val-{f}.csv"));
                let line = ok(&[
                    "evaluate",
                    "--model",
                    &dir.arg("all.safetensors"),
                    "--member",
                    &m,
                    "--data",
                    &val,
                    "--device",
                    "cpu",
                ]);
                evaluated_loss(&line)
            })
            .collect();
        let mean = losses.iter().sum::<f64>() / 3.0;
        let shown: f64 = cells["val_loss"].parse().unwrap();
        assert!(
            (shown - mean).abs() < 2e-6,
            "candidate {c}: the table says {shown}, evaluate's mean is {mean}\n{summary}"
        );
        means.push(mean);
    }
    let lowest = if means[0] <= means[1] { 0 } else { 1 };
    for (c, (best, _)) in table.iter().enumerate() {
        assert_eq!(*best, c == lowest, "candidate {c}'s mark\n{summary}");
    }
    assert!(
        summary.contains(&format!("best: candidate {lowest} (lr=")),
        "{summary}"
    );
    let ensemble = members_params(&best);
    assert_eq!(
        ensemble.len(),
        3,
        "--save: the best candidate's three folds"
    );
    for f in 0..3 {
        assert_eq!(bits(&ensemble[f]), bits(&together[3 * lowest + f]));
    }
    assert!(
        summary.contains("(candidate") && summary.contains("the ensemble of its 3 folds"),
        "{summary}"
    );
}

/// A metrics file of members names each line's member and candidate, in
/// CSV and in JSON lines; the plot is drawn.
#[test]
fn metrics_name_each_member_and_its_candidate() {
    let dir = Dir::new("metrics");
    let data = classes_csv(&dir);
    let common = common(&data, "cpu");
    for name in ["m.csv", "m.jsonl"] {
        let metrics = dir.path(name);
        let plot = dir.path("m.png");
        let args = [
            "--dropout",
            "0,0.1",
            "--members",
            "2",
            "--val-split",
            "0.25",
            "--metrics",
            metrics.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ];
        ok_args(&with(&common, &args));
        let text = std::fs::read_to_string(&metrics).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        if name.ends_with(".csv") {
            assert!(lines[0].starts_with("member,candidate,epoch,step,train_loss,val_loss"));
            assert_eq!(lines.len(), 1 + 4 * 4, "four members of four epochs");
            let owners: std::collections::BTreeSet<(String, String)> = lines[1..]
                .iter()
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f[0].to_string(), f[1].to_string())
                })
                .collect();
            let expected = [("0", "0"), ("1", "0"), ("2", "1"), ("3", "1")]
                .map(|(m, c)| (m.to_string(), c.to_string()));
            assert_eq!(owners, expected.into_iter().collect());
        } else {
            assert_eq!(lines.len(), 16);
            for line in lines {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let member = value["member"].as_u64().expect("a member");
                assert_eq!(value["candidate"].as_u64(), Some(member / 2), "{line}");
                assert!(value["val_loss"].is_number(), "{line}");
            }
        }
        let png = std::fs::read(&plot).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "the plot is not a PNG");
    }
}

/// Cut short by `--steps` mid-epoch and resumed with `--resume` and the
/// same flags, a run of members (folds, each stopping early on its own)
/// writes the unbroken run's files byte for byte and continues its
/// metrics.
#[test]
fn a_run_of_members_cut_and_resumed_writes_the_unbroken_runs_files() {
    let dir = Dir::new("resume");
    let data = classes_csv(&dir);
    let mut common = without(&common(&data, "cpu"), "--epochs");
    common.extend(["--lr", "1e-2,3e-2", "--folds", "2", "--early-stopping", "3"].map(String::from));
    let files = |tag: &str| {
        [
            "--save-all".to_string(),
            dir.arg(&format!("{tag}.safetensors")),
            "--metrics".into(),
            dir.arg(&format!("{tag}.csv")),
        ]
    };
    ok_args(
        &with(&common, &["--epochs", "9"])
            .into_iter()
            .chain(files("whole"))
            .collect::<Vec<_>>(),
    );
    let checkpoint = dir.arg("c.safetensors");
    let cut: Vec<String> = with(&common, &["--steps", "13", "--checkpoint", &checkpoint])
        .into_iter()
        .chain(files("resumed"))
        .collect();
    ok_args(&cut);
    let saved = load_members_checkpoint(&dir.path("c.safetensors"))
        .unwrap_or_else(|e| panic!("the checkpoint of the members does not load: {e}"));
    let steps: Vec<u64> = saved.checkpoints.iter().map(|c| c.step).collect();
    assert_eq!(steps, [13; 4], "each member's steps at the cut");
    let resumed: Vec<String> = with(&common, &["--epochs", "9", "--resume", &checkpoint])
        .into_iter()
        .chain(files("resumed"))
        .collect();
    ok_args(&resumed);
    assert!(
        std::fs::read(dir.path("resumed.safetensors")).unwrap()
            == std::fs::read(dir.path("whole.safetensors")).unwrap(),
        "the resumed run's members differ from the unbroken run's"
    );
    let untimed = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.path(name))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(untimed("resumed.csv"), untimed("whole.csv"), "the metrics");
}

/// A resume must give the members the checkpoint holds; each refusal is
/// one line naming what differs.
#[test]
fn a_resume_with_other_members_is_refused_naming_the_member() {
    let dir = Dir::new("refused-resume");
    let data = classes_csv(&dir);
    let common = common(&data, "cpu");
    let checkpoint = dir.arg("c.safetensors");
    let lone = dir.arg("lone.safetensors");
    ok_args(&with(
        &common,
        &[
            "--lr",
            "1e-2,2e-2",
            "--steps",
            "3",
            "--checkpoint",
            &checkpoint,
        ],
    ));
    ok_args(&with(&common, &["--steps", "3", "--checkpoint", &lone]));
    let again = |more: &[&str]| -> Vec<String> {
        let mut args = with(&common, more);
        args.retain(|a| a != "-q");
        args
    };
    let refuse = |args: Vec<String>, parts: &[&str]| {
        refused(
            &[],
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            parts,
        );
    };
    refuse(
        again(&["--lr", "1e-2,5e-2", "--resume", &checkpoint]),
        &["member 1 was `lr=0.02`", "the flags make it `lr=0.05`"],
    );
    refuse(
        again(&[
            "--lr",
            "1e-2,2e-2",
            "--members",
            "2",
            "--resume",
            &checkpoint,
        ]),
        &["holds 2 members, the flags make 4"],
    );
    refuse(
        again(&["--resume", &checkpoint]),
        &["holds 2 members, the flags make 1"],
    );
    refuse(
        again(&["--members", "2", "--resume", &lone]),
        &["holds one network's run, not members"],
    );
    refuse(
        without(
            &again(&[
                "--lr",
                "1e-2,2e-2",
                "--arch",
                "2,5,3",
                "--resume",
                &checkpoint,
            ]),
            "--arch",
        ),
        &["--arch 2,12,3, not 2,5,3"],
    );
}

/// Lists and member counts the program cannot train are refused in one
/// line naming the flag.
#[test]
fn bad_lists_and_counts_are_refused_naming_the_flag() {
    let dir = Dir::new("refused-lists");
    let data = classes_csv(&dir);
    let common = common(&data, "cpu");
    let refuse = |more: &[&str], parts: &[&str]| {
        let mut args = with(&common, more);
        args.retain(|a| a != "-q");
        refused(
            &[],
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            parts,
        );
    };
    refuse(&["--lr", "1e-2,-1"], &["--lr -1", "lr = -1"]);
    refuse(
        &["--momentum", "0.5,0.9"],
        &["--momentum does not apply to --optimizer adam"],
    );
    refuse(
        &["--members", "2", "--seed", "1,2"],
        &["--members 2", "--seed list"],
    );
    refuse(&["--members", "0"], &["--members 0"]);
    refuse(&["--folds", "1"], &["--folds 1", "at least 2"]);
    refuse(&["--folds", "500"], &["--folds 500", "only 60 rows"]);
    refuse(
        &["--optimizer", "sgd", "--momentum", "0,0.9"],
        &["member 1", "shape of the optimizer's state"],
    );
    refuse(&["--betas", "0.9/0.999,0.8"], &["betas"]);
    // Flags clap reads: its usage error, status 2.
    let usage: [(&[&str], &[&str]); 2] = [
        (
            &["--folds", "3", "--val-split", "0.2"],
            &["--folds", "--val-split"],
        ),
        (&["--lr", "1e-2,x"], &["--lr", "`x`"]),
    ];
    for (more, parts) in usage {
        let args = with(&common, more);
        let (code, _, stderr) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 2, "{more:?}: {stderr}");
        assert!(
            parts.iter().all(|p| stderr.contains(p)),
            "{more:?}: {stderr}"
        );
    }
}

/// `--betas` takes one pair as `B1,B2` or `B1/B2`, and a list of pairs as
/// `B1/B2,B1/B2`.
#[test]
fn betas_take_a_pair_or_a_list_of_slashed_pairs() {
    let dir = Dir::new("betas");
    let data = classes_csv(&dir);
    let common = common(&data, "cpu");
    let (one, slashed, all) = (
        dir.path("one.safetensors"),
        dir.path("slashed.safetensors"),
        dir.path("all.safetensors"),
    );
    ok_args(&with(
        &common,
        &["--betas", "0.8,0.99", "--save", one.to_str().unwrap()],
    ));
    ok_args(&with(
        &common,
        &["--betas", "0.8/0.99", "--save", slashed.to_str().unwrap()],
    ));
    assert_eq!(bits(&params(&one)), bits(&params(&slashed)));
    let summary = ok_args(&with(
        &common,
        &[
            "--betas",
            "0.9/0.999,0.8/0.99",
            "--save-all",
            all.to_str().unwrap(),
        ],
    ));
    assert!(summary.contains("2 members (2 candidates)"), "{summary}");
    assert_eq!(bits(&members_params(&all)[1]), bits(&params(&one)));
}

/// The CSV predict writes: a header, then rows of numbers after the
/// first column (the class).
fn probabilities(csv: &str) -> Vec<Vec<f64>> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect()
}

/// A file of members predicts, evaluates and exports as its ensemble (the
/// mean of its members' probabilities) or, with `--member`, as one.
#[test]
fn predict_evaluate_and_export_read_a_file_of_members() {
    let dir = Dir::new("ensemble");
    let data = classes_csv(&dir);
    let common = common(&data, "cpu");
    let ensemble = dir.path("ensemble.safetensors");
    let summary = ok_args(&with(
        &common,
        &[
            "--members",
            "3",
            "--standardize",
            "--save",
            ensemble.to_str().unwrap(),
        ],
    ));
    assert!(
        summary.contains("the ensemble of its 3 members"),
        "--members 3 --save writes the ensemble: {summary}"
    );
    let model = ensemble.to_str().unwrap();
    let data = data.to_str().unwrap();
    let predict = |member: Option<&str>| {
        let mut args = vec![
            "predict", "--model", model, "--data", data, "--device", "cpu",
        ];
        if let Some(m) = member {
            args.extend(["--member", m]);
        }
        ok(&args)
    };
    let mean = probabilities(&predict(None));
    let each: Vec<Vec<Vec<f64>>> = ["0", "1", "2"]
        .iter()
        .map(|m| probabilities(&predict(Some(m))))
        .collect();
    assert_eq!(mean.len(), 60);
    for (row, p) in mean.iter().enumerate() {
        for class in 0..3 {
            let members = each.iter().map(|e| e[row][class]).sum::<f64>() / 3.0;
            assert!(
                (p[class] - members).abs() < 1e-6,
                "row {row} class {class}: ensemble {} against the members' mean {members}",
                p[class]
            );
        }
    }
    assert_ne!(each[0], each[1], "two seeds trained the same network");

    // Evaluated: −ln of the mean probability of each row's class.
    let (_, _, labels) = rows_and_labels(Path::new(data));
    let nll = mean
        .iter()
        .zip(&labels)
        .map(|(p, &label)| -p[label as usize].ln())
        .sum::<f64>()
        / labels.len() as f64;
    let line = ok(&[
        "evaluate", "--model", model, "--data", data, "--device", "cpu",
    ]);
    assert!(line.contains("(the ensemble of 3 members)"), "{line}");
    let loss = evaluated_loss(&line);
    assert!(
        (loss - nll).abs() < 1e-5 * nll,
        "evaluate says {loss}, the predictions' NLL is {nll}"
    );

    let onnx = dir.arg("ensemble.onnx");
    ok(&["export", "--model", model, "--onnx", &onnx]);
    let graph = ModelProto::decode(&std::fs::read(&onnx).unwrap()[..])
        .unwrap()
        .graph
        .unwrap();
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        ops.iter().filter(|&&o| o == "Softmax").count(),
        3,
        "{ops:?}"
    );
    assert_eq!(ops.last(), Some(&"Mean"), "{ops:?}");
    assert_eq!(graph.output[0].name, "probabilities");
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"members.2.layers.1.weight"), "{names:?}");

    let one = dir.arg("one.onnx");
    ok(&["export", "--model", model, "--member", "1", "--onnx", &one]);
    let graph = ModelProto::decode(&std::fs::read(&one).unwrap()[..])
        .unwrap()
        .graph
        .unwrap();
    assert_eq!(graph.output[0].name, "logits");
    refused(
        &[],
        &["predict", "--model", model, "--data", data, "--member", "3"],
        &["--member 3", "holds 3 members"],
    );
}

/// A member that diverges stops alone, its candidate shown `diverged` and
/// never the best; when every candidate has one, `--save` is not written
/// and the run fails saying so (the summary and `--save-all` still come).
#[test]
fn diverged_candidates_are_never_the_best() {
    let dir = Dir::new("diverged");
    let text: String = (0..40).map(|i| format!("{},{}\n", 50 + i, i % 3)).collect();
    let data = dir.write("far.csv", &text);
    let (best, all) = (dir.path("best.safetensors"), dir.path("all.safetensors"));
    let (data, best_arg, all_arg) = (
        data.to_str().unwrap().to_string(),
        best.to_str().unwrap().to_string(),
        all.to_str().unwrap().to_string(),
    );
    let args = |lrs: &'static str| -> Vec<String> {
        [
            "train",
            "--data",
            &data,
            "--loss",
            "mse",
            "--arch",
            "1,16,1",
            "--optimizer",
            "sgd",
            "--lr",
            lrs,
            "--batch-size",
            "4",
            "--epochs",
            "6",
            "--seed",
            "1",
            "--device",
            "cpu",
            "-q",
            "--save",
            &best_arg,
            "--save-all",
            &all_arg,
        ]
        .map(String::from)
        .to_vec()
    };
    let summary = ok_args(&args("1e-6,5"));
    let table = candidate_rows(&summary);
    assert!(
        table[0].0 && !table[1].0,
        "the calm candidate is the best:\n{summary}"
    );
    assert_eq!(table[1].1["train_loss"], "diverged", "{summary}");
    assert!(summary.contains("diverged at step"), "{summary}");
    assert!(best.exists() && all.exists());

    std::fs::remove_file(&best).unwrap();
    let strict = args("5,6");
    let (code, stdout, stderr) = run(&strict.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "every candidate diverged, yet: {stderr}");
    assert!(
        stderr.contains("--save") && stderr.contains("not written"),
        "{stderr}"
    );
    assert!(stdout.contains("best: none"), "{stdout}");
    assert!(!best.exists(), "--save was written");
}
