//! The orders an epoch visits rows in: a seeded shuffle of every row
//! ([`epoch_order`]), or within windows of chunks that a file streamed
//! holds at once ([`ShuffleWindow`], [`EpochWindows`],
//! [`windowed_order`]), the same order held in memory and streamed; and
//! the share of a batch each rank of a data-parallel run takes.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The order rows are visited in during `epoch` (0-based): a seeded shuffle,
/// the same for every backend and every run, or file order without shuffle.
/// Every row may go anywhere: [`ShuffleWindow::Full`]'s order, and that of
/// any window at least as large as the data set.
pub fn epoch_order(rows: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..rows as u32).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed(seed, epoch)));
    }
    order
}

/// One generator per epoch, derived from the seed, so that a resumed run
/// sees the same order without replaying earlier epochs.
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How far a shuffled epoch moves a row: anywhere ([`Full`](Self::Full)),
/// or within a window of rows that can be read from a file and held
/// while the next is read ([`Rows`](Self::Rows)), so that training from
/// a file larger than memory takes the order the same run held in memory
/// takes (`--shuffle-window` in the program).
///
/// With windows, each epoch takes the rows in chunks of `chunk_rows`
/// consecutive rows of the file (the last chunk may be shorter), permutes
/// the chunks (seeded by the seed and the epoch), groups them in that
/// order into windows of `rows / chunk_rows` chunks, and visits each
/// window's rows (its chunks' rows in file order) in a seeded permutation
/// of their own ([`EpochWindows`]). A data set that fits in one window is
/// shuffled whole, exactly as [`epoch_order`] does, so the default window
/// (2^20 rows in chunks of 2^13) changes nothing for smaller data sets.
/// Without shuffling the order is the file's, whatever the window.
///
/// Its text form is `full`, or `ROWS` or `ROWS:CHUNK_ROWS` (a window of
/// ROWS rows in chunks of CHUNK_ROWS, 8192 by default; ROWS a multiple of
/// CHUNK_ROWS); `Display` writes `ROWS:CHUNK_ROWS`.
///
/// ```
/// use retroprop::data::{ShuffleWindow, epoch_order, windowed_order};
/// let window: ShuffleWindow = "4:2".parse()?;
/// assert_eq!(window, ShuffleWindow::Rows { rows: 4, chunk_rows: 2 });
/// assert_eq!(window.to_string(), "4:2");
/// let order = windowed_order(10, true, 7, 0, window);
/// // Every row once; each window of 2 chunks (4 rows) visited whole.
/// let mut sorted = order.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
/// // A data set of one window is shuffled as a whole.
/// assert_eq!(windowed_order(4, true, 7, 0, window), epoch_order(4, true, 7, 0));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShuffleWindow {
    /// The whole data set is one window: any row may go anywhere.
    Full,
    /// Windows of `rows` rows (a multiple of `chunk_rows`), made of
    /// chunks of `chunk_rows` consecutive rows.
    Rows {
        /// Rows a window.
        rows: usize,
        /// Rows a chunk.
        chunk_rows: usize,
    },
}

impl ShuffleWindow {
    /// Rows a chunk when only the window's rows are given.
    pub const CHUNK_ROWS: usize = 1 << 13;

    /// Chunks of `chunk_rows` rows and windows of `chunks` of them, over
    /// a data set of `rows` rows: the whole data set one window for
    /// [`Full`](Self::Full).
    fn shape(self, rows: usize) -> (usize, usize) {
        match self {
            ShuffleWindow::Full => (rows.max(1), 1),
            ShuffleWindow::Rows { rows, chunk_rows } => {
                (chunk_rows.max(1), (rows / chunk_rows.max(1)).max(1))
            }
        }
    }

    /// The most rows a window holds (the data set's rows for
    /// [`Full`](Self::Full)).
    pub fn window_rows(self, rows: usize) -> usize {
        let (chunk_rows, chunks) = self.shape(rows);
        chunk_rows.saturating_mul(chunks).min(rows)
    }
}

impl Default for ShuffleWindow {
    /// Windows of 2^20 rows in chunks of 2^13: data sets up to 1 048 576
    /// rows are shuffled whole, as before windows existed.
    fn default() -> ShuffleWindow {
        ShuffleWindow::Rows {
            rows: 1 << 20,
            chunk_rows: ShuffleWindow::CHUNK_ROWS,
        }
    }
}

impl std::fmt::Display for ShuffleWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShuffleWindow::Full => f.write_str("full"),
            ShuffleWindow::Rows { rows, chunk_rows } => write!(f, "{rows}:{chunk_rows}"),
        }
    }
}

impl std::str::FromStr for ShuffleWindow {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<ShuffleWindow, String> {
        let text = text.trim();
        if text == "full" {
            return Ok(ShuffleWindow::Full);
        }
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    format!(
                        "shuffle window `{text}`: {what} `{part}` is not a whole number ≥ 1 \
                         (expected full, ROWS or ROWS:CHUNK_ROWS)"
                    )
                })
        };
        let (rows, chunk_rows) = match text.split_once(':') {
            Some((rows, chunk)) => (number(rows, "rows")?, number(chunk, "chunk rows")?),
            None => (
                number(text, "rows")?,
                ShuffleWindow::CHUNK_ROWS.min(number(text, "rows")?),
            ),
        };
        if !rows.is_multiple_of(chunk_rows) {
            return Err(format!(
                "shuffle window `{text}`: {rows} rows are not whole chunks of {chunk_rows} rows"
            ));
        }
        if u32::try_from(rows).is_err() {
            return Err(format!(
                "shuffle window `{text}`: {rows} rows are more than a data set may hold (2^32)"
            ));
        }
        Ok(ShuffleWindow::Rows { rows, chunk_rows })
    }
}

/// The windows of one epoch ([`ShuffleWindow`]): which chunks each holds
/// and the order of its rows. The program's reader takes them one by one
/// from a file; [`windowed_order`] lays them end to end for data in
/// memory. Both visit the same rows in the same order.
#[derive(Debug, Clone)]
pub struct EpochWindows {
    rows: usize,
    chunk_rows: usize,
    /// Each window's chunks, in file order.
    windows: Vec<Vec<usize>>,
    shuffle: bool,
    seed: u64,
}

impl EpochWindows {
    /// Epoch `epoch`'s windows over `rows` rows.
    pub fn new(
        rows: usize,
        shuffle: bool,
        seed: u64,
        epoch: u64,
        window: ShuffleWindow,
    ) -> EpochWindows {
        let (chunk_rows, per_window) = window.shape(rows);
        let chunks = rows.div_ceil(chunk_rows);
        let mut order: Vec<usize> = (0..chunks).collect();
        // One window needs no chunk order (its rows are shuffled whole), so
        // a data set of one window takes `epoch_order`'s order exactly.
        if shuffle && chunks > per_window {
            let chunk_seed = epoch_seed(seed, epoch) ^ 0x2545_F491_4F6C_DD1D;
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(chunk_seed));
        }
        let windows = order
            .chunks(per_window)
            .map(|w| {
                let mut w = w.to_vec();
                w.sort_unstable();
                w
            })
            .collect();
        EpochWindows {
            rows,
            chunk_rows,
            windows,
            shuffle,
            seed: epoch_seed(seed, epoch),
        }
    }

    /// The number of windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether there are none (a data set of no rows).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Window `w`'s chunks, in file order.
    pub fn chunks(&self, w: usize) -> &[usize] {
        &self.windows[w]
    }

    /// The rows of chunk `c` of the data set.
    pub fn chunk_rows(&self, c: usize) -> std::ops::Range<usize> {
        c * self.chunk_rows..((c + 1) * self.chunk_rows).min(self.rows)
    }

    /// The rows window `w` holds.
    pub fn window_len(&self, w: usize) -> usize {
        self.windows[w]
            .iter()
            .map(|&c| self.chunk_rows(c).len())
            .sum()
    }

    /// The order window `w`'s rows are visited in, as indices into its
    /// rows (its chunks' rows one after another, in file order): a seeded
    /// permutation of their own, or file order without shuffling.
    pub fn window_order(&self, w: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.window_len(w) as u32).collect();
        if self.shuffle {
            // Window 0's generator is the epoch's, so that one window is
            // `epoch_order`.
            let seed = self.seed ^ (w as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
        order
    }

    /// The data set's row at index `i` of window `w`'s rows.
    pub fn row_of(&self, w: usize, i: usize) -> usize {
        let mut i = i;
        for &c in &self.windows[w] {
            let rows = self.chunk_rows(c);
            if i < rows.len() {
                return rows.start + i;
            }
            i -= rows.len();
        }
        panic!("index {i} is past window {w}'s rows")
    }
}

/// The order of `epoch` with windows ([`ShuffleWindow`]): every window's
/// order, one after the other, as rows of the data set. What a streamed
/// epoch visits, for data held in memory.
pub fn windowed_order(
    rows: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
    window: ShuffleWindow,
) -> Vec<u32> {
    let windows = EpochWindows::new(rows, shuffle, seed, epoch, window);
    let mut order = Vec::with_capacity(rows);
    for w in 0..windows.len() {
        // Each window's rows are its chunks' rows in file order.
        let firsts: Vec<u32> = windows
            .chunks(w)
            .iter()
            .flat_map(|&c| windows.chunk_rows(c))
            .map(|r| r as u32)
            .collect();
        order.extend(
            windows
                .window_order(w)
                .into_iter()
                .map(|i| firsts[i as usize]),
        );
    }
    order
}

/// Rank `rank` of `size`'s share of `len` rows: a contiguous range, the
/// shares in rank order, their sizes differing by at most one (what a
/// data-parallel run gives each rank of a batch; `parallel::share_bounds`).
pub fn share_bounds(len: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    len * rank / size..len * (rank + 1) / size
}
