//! Property tests in the place of cargo-fuzz (which needs a nightly
//! toolchain): the CSV loader, the safetensors loaders, the Parquet and
//! NumPy loaders (on corrupted copies of tests/formats/) and the parsers of
//! architectures, activations, losses and schedules take arbitrary input
//! without panicking, and what they accept is valid. Failing cases that
//! proptest finds are kept in tests/fuzz.proptest-regressions and replayed
//! first.

use proptest::prelude::*;
use retroprop::io::{SavedModel, load_model, save_model};
use retroprop::{Activation, Dataset, Loss, LrSchedule, Mlp};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retroprop-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// CSV-like text: rows of numbers, words, blanks and odd separators.
fn csv_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        any::<f32>().prop_map(|v| v.to_string()),
        (-5i32..20).prop_map(|v| v.to_string()),
        "[a-z]{0,3}",
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just(String::new()),
        Just("\"1,5\"".to_string()),
    ];
    prop::collection::vec(
        prop::collection::vec(field, 0..6).prop_map(|f| f.join(",")),
        0..12,
    )
    .prop_map(|rows| rows.join("\n"))
}

fn check_dataset(data: &Dataset) {
    assert!(data.rows() > 0 && data.features() > 0);
    assert!(data.x().iter().all(|v| v.is_finite()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn csv_loader_never_panics(text in csv_text(), targets in 1usize..3, classes in any::<bool>()) {
        if let Ok(data) = Dataset::from_csv_reader(text.as_bytes(), Path::new("fuzz.csv"), targets, classes) {
            check_dataset(&data);
            prop_assert_eq!(data.target_width(), if classes { 1 } else { targets });
        }
    }

    #[test]
    fn csv_loader_takes_raw_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(data) = Dataset::from_csv_reader(&bytes[..], Path::new("fuzz.csv"), 1, false) {
            check_dataset(&data);
        }
    }

    #[test]
    fn parsers_never_panic(text in "[ -~]{0,24}") {
        if let Ok(sizes) = retroprop::model::parse_sizes(&text) {
            prop_assert!(sizes.len() >= 2 && sizes.iter().all(|&s| s >= 1));
        }
        if let Ok(a) = text.parse::<Activation>() {
            prop_assert_eq!(a.to_string().parse::<Activation>(), Ok(a));
        }
        if let Ok(l) = text.parse::<Loss>() {
            prop_assert_eq!(l.to_string(), text.trim());
        }
        if let Ok(s) = text.parse::<LrSchedule>() {
            prop_assert!(s.validate().is_ok());
        }
    }

    #[test]
    fn model_loader_survives_corruption(
        cut in 0usize..2000,
        flips in prop::collection::vec((0usize..2000, any::<u8>()), 0..4),
    ) {
        let mlp = Mlp::new(&[3, 4, 2], Activation::Tanh, Activation::Identity).unwrap();
        let good = scratch(&format!("good-{cut}.safetensors"));
        let params = mlp.init(retroprop::Init::TorchDefault, 1);
        save_model(&good, &SavedModel { mlp, params, buffers: Vec::new(), num_batches_tracked: 0, loss: Loss::Mse, standardizer: None }).unwrap();
        let mut bytes = std::fs::read(&good).unwrap();
        bytes.truncate(cut.max(1).min(bytes.len()));
        for (at, value) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = value;
            }
        }
        let bad = scratch(&format!("bad-{cut}.safetensors"));
        std::fs::write(&bad, &bytes).unwrap();
        if let Ok(model) = load_model(&bad) {
            prop_assert!(model.sizes.len() >= 2);
            let count: usize = model.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
            prop_assert_eq!(model.params.len(), count);
            prop_assert!(model.params.iter().all(|p| p.is_finite()));
        }
        let _ = Dataset::from_safetensors(&bad, true);
        let _ = Dataset::from_safetensors(&bad, false);
    }

    #[test]
    fn safetensors_loaders_take_raw_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let path = scratch("raw.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let _ = load_model(&path);
        if let Ok(data) = Dataset::from_safetensors(&path, false) {
            check_dataset(&data);
        }
    }

    #[test]
    fn parquet_and_numpy_loaders_survive_corruption(
        file in 0usize..FORMAT_FILES.len(),
        cut in prop::option::weighted(0.2, 0usize..12_000),
        flips in prop::collection::vec((0usize..12_000, any::<u8>()), 1..6),
        classes in any::<bool>(),
    ) {
        let name = FORMAT_FILES[file];
        let mut bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats").join(name)).unwrap();
        if let Some(cut) = cut {
            bytes.truncate(cut.max(1));
        }
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let path = Path::new(name);
        let loaded = if name.ends_with(".parquet") {
            let columns = retroprop::io::parquet::ParquetColumns {
                fill_null: Some(0.0),
                ..Default::default()
            };
            Dataset::from_parquet_bytes(bytes, path, &columns, classes)
        } else if name.ends_with(".npz") {
            Dataset::from_npz_bytes(&bytes, path, classes)
        } else {
            Dataset::from_npy_bytes(&bytes, path, 1, classes)
        };
        if let Ok(data) = loaded {
            check_dataset(&data);
        }
    }
}

/// The Parquet and NumPy files the corruption test starts from.
const FORMAT_FILES: [&str; 6] = [
    "table.parquet",
    "nulls.parquet",
    "table.npz",
    "table_fortran.npz",
    "int16.npz",
    "table.npy",
];
