//! `LrSchedule::from_str` (`--lr-schedule`), then a valid schedule stepped
//! through a few hundred epochs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retroprop::{LrSchedule, Scheduler};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = text.parse::<LrSchedule>() else {
        return;
    };
    if schedule.validate().is_err() {
        return;
    }
    let mut scheduler = Scheduler::new(schedule, 0.1);
    for epoch in 0..300 {
        let lr = scheduler.lr();
        // Infinite is allowed (a growing gamma); training then diverges
        // with an error. NaN or negative would be a bug.
        assert!(lr >= 0.0, "{text}: epoch {epoch} lr {lr}");
        scheduler.step(epoch, 1.0 / (epoch as f64 + 1.0));
    }
});
