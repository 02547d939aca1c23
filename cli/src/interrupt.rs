//! SIGINT (Ctrl-C) and SIGTERM during `train`: the first asks training to
//! stop at the next step boundary, after which the program saves what it
//! has and exits with 128 + the signal's number (130, 143); a second ends
//! the process at once with that status. Files are written atomically, so
//! one cut short leaves the earlier file whole.

use retroprop::StopFlag;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The termination signals handled, with their names.
const SIGNALS: [(i32, &str); 2] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")];

/// The handlers, once installed (they stay for the rest of the process:
/// removing them would leave the signals ignored, not back to default).
pub struct Interrupts {
    /// Set by the first signal; the trainer's [`StopFlag`].
    stop: Arc<AtomicBool>,
    /// The number of the last signal received (0: none).
    signal: Arc<AtomicUsize>,
}

/// A signal that asked the program to stop.
#[derive(Debug, Clone, Copy)]
pub struct Signal {
    number: i32,
    name: &'static str,
}

impl Signal {
    /// The signal's name, `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The status a shell reports for a process ended by it: 128 + its
    /// number.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from((128 + self.number) as u8)
    }
}

impl Interrupts {
    /// Installs the handlers of SIGINT and SIGTERM.
    pub fn install() -> Result<Interrupts, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for (number, name) in SIGNALS {
            let install = || -> std::io::Result<()> {
                // First, so that it sees the flag as it was before this
                // signal: set only by an earlier one, which makes this the
                // second.
                flag::register_conditional_shutdown(number, 128 + number, Arc::clone(&stop))?;
                flag::register_usize(number, Arc::clone(&signal), number as usize)?;
                flag::register(number, Arc::clone(&stop))?;
                Ok(())
            };
            install().map_err(|e| format!("cannot install the {name} handler: {e}"))?;
        }
        Ok(Interrupts { stop, signal })
    }

    /// The flag the first signal sets, for `TrainConfig::stop_flag`.
    pub fn stop_flag(&self) -> StopFlag {
        StopFlag::from(Arc::clone(&self.stop))
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        let number = self.signal.load(Ordering::SeqCst) as i32;
        SIGNALS
            .into_iter()
            .find(|&(n, _)| n == number)
            .map(|(number, name)| Signal { number, name })
    }
}
