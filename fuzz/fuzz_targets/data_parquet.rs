//! `Dataset::from_parquet_bytes`: the first byte picks the target columns
//! (the last 1 to 3, or the column named `label`), whether they are class
//! labels, and whether nulls are filled; the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::io::parquet::{ParquetColumns, TargetColumns};
use retroprop::{Dataset, Targets};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    // The parquet crate still panics on some malformed files, which the
    // loader turns into an error (`guarded` in io/parquet.rs); libFuzzer's
    // hook would abort on the caught panic. A panic the loader does not
    // catch still ends the run: fuzz_target! aborts on it.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let columns = ParquetColumns {
        targets: match mode & 3 {
            3 => TargetColumns::Named(vec!["label".into()]),
            n => TargetColumns::Last(usize::from(n) + 1),
        },
        fill_null: (mode & 8 != 0).then_some(0.0),
        ..ParquetColumns::default()
    };
    let classes = mode & 4 != 0;
    let path = Path::new("fuzz.parquet");
    if let Ok(set) = Dataset::from_parquet_bytes(file.to_vec(), path, &columns, classes) {
        assert_eq!(set.x().len(), set.rows() * set.features());
        assert!(set.x().iter().all(|v| v.is_finite()));
        if let Targets::Values { values, width } = set.targets() {
            assert_eq!(values.len(), set.rows() * width);
        }
    }
});
