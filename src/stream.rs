//! Data read from a file a part at a time, on a thread of its own, while
//! training goes on: what `--stream` trains, validates and predicts on
//! without holding the file.
//!
//! A [`RowSource`] reads any range of a table's rows (io/parquet.rs reads
//! the row groups that hold them, io/npy.rs seeks to them; a [`Dataset`]
//! in memory is one too). [`Streamed`] is a source with the scaling its
//! rows get as they are read. An epoch is read a window at a time
//! ([`ShuffleWindow`], [`EpochWindows`]): the reader thread reads the
//! next window's chunks while the device trains on this one, and hands
//! over whole batches of the epoch's order (`EpochReader`); a pass in
//! file order (validation, prediction, the statistics of standardisation
//! and of the targets) reads ahead the same way (`Parts`). What the
//! process holds is about two windows, never the file.
//!
//! The epoch's order is [`windowed_order`](crate::data::windowed_order)'s,
//! so a run streamed and the same run held in memory take the same rows in
//! the same batches, and give the same bits.

use crate::data::{
    Dataset, EpochWindows, ShuffleWindow, Standardizer, StandardizerFit, TargetSummary, Targets,
    share_bounds,
};
use crate::error::{Error, Result};
use crate::stop::StopFlag;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// Rows of a table read a part at a time: a file too large to hold
/// (io's Parquet and `.npy` sources), or a [`Dataset`]. Implementations
/// are read from the reader thread, so they read through `&self` (a file
/// opened per read, or read at offsets).
pub trait RowSource: Send + Sync {
    /// Rows in the table.
    fn rows(&self) -> usize;
    /// Inputs a row.
    fn features(&self) -> usize;
    /// Targets a row: 1 for class labels, 0 for a source of inputs only
    /// (to predict on).
    fn target_width(&self) -> usize;
    /// Whether the targets are class labels.
    fn classes(&self) -> bool;
    /// The table in words, for errors and messages: its file.
    fn name(&self) -> String;
    /// Appends rows `rows` (in the table's order) to `out`: their inputs,
    /// and their labels or target values. Errors name the file and the
    /// place in it (a row group, a row).
    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()>;
    /// Appends only the targets of rows `rows` (the passes over the
    /// targets). By default `read`, the inputs left out.
    fn read_targets(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        let mut all = Chunk::default();
        self.read(rows, &mut all)?;
        out.labels.extend(all.labels);
        out.values.extend(all.values);
        Ok(())
    }
    /// A number that ranks reading the same file compute alike, compared
    /// before a data-parallel run trains (a hash of what describes the
    /// file: its length and layout).
    fn fingerprint(&self) -> u64;
}

/// A source shared: the Python package keeps one to train, validate and
/// predict on, and wraps it (its targets from elsewhere).
impl<T: RowSource + ?Sized> RowSource for Arc<T> {
    fn rows(&self) -> usize {
        (**self).rows()
    }
    fn features(&self) -> usize {
        (**self).features()
    }
    fn target_width(&self) -> usize {
        (**self).target_width()
    }
    fn classes(&self) -> bool {
        (**self).classes()
    }
    fn name(&self) -> String {
        (**self).name()
    }
    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        (**self).read(rows, out)
    }
    fn read_targets(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        (**self).read_targets(rows, out)
    }
    fn fingerprint(&self) -> u64 {
        (**self).fingerprint()
    }
}

/// Rows read from a [`RowSource`], row-major: inputs, and the class
/// labels or the target values (the other left empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// The inputs, `features` a row.
    pub x: Vec<f32>,
    /// Class labels, one a row.
    pub labels: Vec<u32>,
    /// Target values, `target_width` a row.
    pub values: Vec<f32>,
}

impl Chunk {
    /// Empties it, keeping the buffers.
    pub fn clear(&mut self) {
        self.x.clear();
        self.labels.clear();
        self.values.clear();
    }

    /// Appends row `row` of `other` (rows of `features` inputs and
    /// `width` target values).
    fn push_row(&mut self, other: &Chunk, row: usize, features: usize, width: usize) {
        self.x
            .extend_from_slice(&other.x[row * features..(row + 1) * features]);
        if let Some(&label) = other.labels.get(row) {
            self.labels.push(label);
        }
        if !other.values.is_empty() {
            self.values
                .extend_from_slice(&other.values[row * width..(row + 1) * width]);
        }
    }
}

impl RowSource for Dataset {
    fn rows(&self) -> usize {
        Dataset::rows(self)
    }
    fn features(&self) -> usize {
        Dataset::features(self)
    }
    fn target_width(&self) -> usize {
        Dataset::target_width(self)
    }
    fn classes(&self) -> bool {
        matches!(self.targets(), Targets::Classes(_))
    }
    fn name(&self) -> String {
        format!("a data set of {} rows in memory", Dataset::rows(self))
    }
    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        if self.weights().is_some() {
            return Err(Error::Config(
                "rows with sample weights are trained in memory, not streamed".into(),
            ));
        }
        let f = Dataset::features(self);
        out.x
            .extend_from_slice(&self.x()[rows.start * f..rows.end * f]);
        match self.targets() {
            Targets::Classes(labels) => out.labels.extend_from_slice(&labels[rows]),
            Targets::Values { values, width } => {
                out.values
                    .extend_from_slice(&values[rows.start * width..rows.end * width]);
            }
        }
        Ok(())
    }
    fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::default();
        hash.add_f32(self.x());
        match self.targets() {
            Targets::Classes(labels) => hash.add_words(labels),
            Targets::Values { values, .. } => hash.add_f32(values),
        }
        hash.0
    }
}

/// FNV-1a over 32-bit words: what a source describes itself with for the
/// ranks' comparison.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds words, and their count.
    pub fn add_words(&mut self, words: &[u32]) {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        for &w in words {
            self.0 = (self.0 ^ w as u64).wrapping_mul(PRIME);
        }
        self.0 = (self.0 ^ words.len() as u64).wrapping_mul(PRIME);
    }
    /// Adds floats by their bits.
    pub fn add_f32(&mut self, values: &[f32]) {
        self.add_words(bytemuck::cast_slice(values));
    }
    /// Adds bytes, a word each.
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        let words: Vec<u32> = bytes.iter().map(|&b| b as u32).collect();
        self.add_words(&words);
    }
}

/// A table to stream: its [`RowSource`] and the standardisation its
/// inputs get as they are read (the same arithmetic as
/// [`Standardizer::apply`], so the same bits as the rows scaled in
/// memory). Cloning shares the source.
///
/// ```
/// use retroprop::stream::Streamed;
/// use retroprop::{Dataset, Standardizer, Targets};
/// let data = Dataset::new(vec![1., 10., 3., 10., 5., 10.], 2, Targets::Classes(vec![0, 1, 0]))?;
/// let streamed = Streamed::new(data.clone());
/// let standardizer = streamed.fit_standardizer()?;
/// assert_eq!(standardizer, Standardizer::fit(&data));
/// let scaled = streamed.with_standardizer(Some(standardizer.clone()));
/// let mut held = data.clone();
/// standardizer.apply(&mut held)?;
/// assert_eq!(scaled.read(0..3)?, held);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Clone)]
pub struct Streamed {
    source: Arc<dyn RowSource>,
    standardizer: Option<Standardizer>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("source", &self.source.name())
            .field("rows", &self.source.rows())
            .field("standardizer", &self.standardizer)
            .finish()
    }
}

/// Rows a pass in file order reads at once where nothing else decides.
pub const PART_ROWS: usize = 8192;

impl Streamed {
    /// `source`'s rows, unscaled.
    pub fn new(source: impl RowSource + 'static) -> Streamed {
        Streamed {
            source: Arc::new(source),
            standardizer: None,
        }
    }

    /// The same rows, their inputs scaled by `standardizer` as they are
    /// read (none: as they are in the file).
    pub fn with_standardizer(mut self, standardizer: Option<Standardizer>) -> Streamed {
        self.standardizer = standardizer;
        self
    }

    /// The scaling the rows get.
    pub fn standardizer(&self) -> Option<&Standardizer> {
        self.standardizer.as_ref()
    }

    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.source.rows()
    }
    /// Inputs a row.
    pub fn features(&self) -> usize {
        self.source.features()
    }
    /// Targets a row (1 for class labels, 0 for inputs only).
    pub fn target_width(&self) -> usize {
        self.source.target_width()
    }
    /// Whether the targets are class labels.
    pub fn classes(&self) -> bool {
        self.source.classes()
    }
    /// The table in words (its file).
    pub fn name(&self) -> String {
        self.source.name()
    }
    /// What ranks compare: rows, features, target width and the source's
    /// fingerprint.
    pub fn fingerprint(&self) -> [u64; 4] {
        [
            self.rows() as u64,
            self.features() as u64,
            self.target_width() as u64,
            self.source.fingerprint(),
        ]
    }

    /// Appends rows `rows` to `out`, scaled.
    pub fn read_into(&self, rows: Range<usize>, out: &mut Chunk) -> Result<()> {
        let first = out.x.len();
        self.source.read(rows, out)?;
        if let Some(s) = &self.standardizer {
            s.apply_rows(&mut out.x[first..])?;
        }
        Ok(())
    }

    /// Rows `rows` as a data set, scaled: inputs and targets, or (a source
    /// of inputs only) inputs and no targets, which no data set holds, so
    /// then an error.
    pub fn read(&self, rows: Range<usize>) -> Result<Dataset> {
        let mut chunk = Chunk::default();
        self.read_into(rows, &mut chunk)?;
        self.dataset(chunk)
    }

    /// `chunk`'s rows (read from this table) as a data set.
    pub fn dataset_of(&self, chunk: Chunk) -> Result<Dataset> {
        self.dataset(chunk)
    }

    /// `chunk`'s rows as a data set of this table's shape.
    pub(crate) fn dataset(&self, chunk: Chunk) -> Result<Dataset> {
        let targets = if self.classes() {
            Targets::Classes(chunk.labels)
        } else {
            Targets::Values {
                values: chunk.values,
                width: self.target_width(),
            }
        };
        Dataset::new(chunk.x, self.features(), targets)
    }

    /// The standardisation of these rows' inputs: two passes over the
    /// file in its order, the sums of [`Standardizer::fit`] (the same
    /// bits as the rows fitted in memory).
    pub fn fit_standardizer(&self) -> Result<Standardizer> {
        let unscaled = self.clone().with_standardizer(None);
        let mut fit = StandardizerFit::new(self.features());
        for pass in 0..2 {
            let parts = unscaled.parts(0..self.rows(), PART_ROWS, false);
            while let Some(part) = parts.next_part(None)? {
                match pass {
                    0 => fit.add_to_means(&part.x),
                    _ => fit.add_to_deviations(&part.x),
                }
            }
            if pass == 0 {
                fit.end_means();
            }
        }
        Ok(fit.finish())
    }

    /// What the targets say (the loss they suggest, the classes, the first
    /// value outside [0, 1]): one pass over the target columns.
    pub fn target_summary(&self) -> Result<TargetSummary> {
        let mut summary = TargetSummary::new(self.target_width(), self.rows());
        let parts = self.parts(0..self.rows(), PART_ROWS, true);
        while let Some(part) = parts.next_part(None)? {
            match self.classes() {
                true => summary.add_labels(&part.labels),
                false => summary.add_values(&part.values),
            }
        }
        Ok(summary)
    }

    /// Rows `rows` in parts of `part_rows`, read ahead on a thread of
    /// their own (only the targets with `targets_only`).
    pub(crate) fn parts(&self, rows: Range<usize>, part_rows: usize, targets_only: bool) -> Parts {
        let data = self.clone();
        let part_rows = part_rows.max(1);
        let mut next = rows.start;
        let end = rows.end;
        Parts(ReadAhead::start(&self.name(), 1, move || {
            if next >= end {
                return None;
            }
            let range = next..(next + part_rows).min(end);
            next = range.end;
            let mut chunk = Chunk::default();
            let read = match targets_only {
                true => data.source.read_targets(range, &mut chunk),
                false => data.read_into(range, &mut chunk),
            };
            Some(read.map(|()| chunk))
        }))
    }
}

/// A pass over rows in file order, a part at a time ([`Streamed::parts`]).
pub(crate) struct Parts(ReadAhead<Chunk>);

impl Parts {
    /// The next part, `None` at the end; `stop` ends the wait early
    /// (then `None` too).
    pub(crate) fn next_part(&self, stop: Option<&StopFlag>) -> Result<Option<Chunk>> {
        match self.0.next(stop) {
            Next::Item(part) => Ok(Some(part)),
            Next::End | Next::Stopped => Ok(None),
            Next::Failed(e) => Err(e),
        }
    }
}

/// What a read-ahead thread hands over next.
pub(crate) enum Next<T> {
    /// The next item.
    Item(T),
    /// There are no more.
    End,
    /// The stop flag was requested while waiting.
    Stopped,
    /// Reading failed: the error names the file and the place.
    Failed(Error),
}

/// What travels from the reader thread.
enum Message<T> {
    Item(Result<T>),
    End,
}

/// Items made one after another on a thread of their own, at most
/// `depth` of them waiting (0: the next one is made while this one is
/// used, and waits to be taken). Dropping it stops the thread: the
/// thread's next hand-over fails, and it ends.
pub(crate) struct ReadAhead<T> {
    items: Option<Receiver<Message<T>>>,
    cancel: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The file, for the error of a reader that ended without a word.
    name: String,
    ended: std::cell::Cell<bool>,
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Runs `next` on a new thread until it returns `None` or an error.
    pub(crate) fn start(
        name: &str,
        depth: usize,
        mut next: impl FnMut() -> Option<Result<T>> + Send + 'static,
    ) -> ReadAhead<T> {
        let (sender, items): (SyncSender<Message<T>>, _) = sync_channel(depth);
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("retroprop-reader".into())
            .spawn(move || {
                while !cancelled.load(Ordering::Relaxed) {
                    let Some(item) = next() else {
                        let _ = sender.send(Message::End);
                        return;
                    };
                    let failed = item.is_err();
                    if sender.send(Message::Item(item)).is_err() || failed {
                        return;
                    }
                }
            });
        let (thread, items) = match thread {
            Ok(thread) => (Some(thread), Some(items)),
            Err(e) => {
                let (sender, items) = sync_channel(1);
                let _ = sender.send(Message::Item(Err(Error::Config(format!(
                    "cannot start the thread that reads {name}: {e}"
                )))));
                (None, Some(items))
            }
        };
        ReadAhead {
            items,
            cancel,
            thread,
            name: name.to_string(),
            ended: std::cell::Cell::new(false),
        }
    }

    /// The next item, waiting for it; a requested `stop` ends the wait.
    pub(crate) fn next(&self, stop: Option<&StopFlag>) -> Next<T> {
        let Some(items) = self.items.as_ref().filter(|_| !self.ended.get()) else {
            return Next::End;
        };
        loop {
            if stop.is_some_and(StopFlag::is_requested) {
                return Next::Stopped;
            }
            match items.recv_timeout(Duration::from_millis(20)) {
                Ok(Message::Item(Ok(item))) => return Next::Item(item),
                Ok(Message::Item(Err(e))) => {
                    self.ended.set(true);
                    return Next::Failed(e);
                }
                Ok(Message::End) => {
                    self.ended.set(true);
                    return Next::End;
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    // The thread ended without its last word: it panicked.
                    self.ended.set(true);
                    return Next::Failed(Error::Config(format!(
                        "the thread reading {} ended without finishing (it panicked)",
                        self.name
                    )));
                }
            }
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        // Its next hand-over fails once nobody receives.
        drop(self.items.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whole batches of an epoch's order, with the rows they read: what a
/// streamed epoch trains on next ([`EpochReader`]).
pub(crate) struct Segment {
    /// The rows the batches read (this rank's, on a data-parallel run).
    pub data: Dataset,
    /// The batches' rows, as rows of `data`, in the epoch's order (this
    /// rank's share of each batch, one after another, on a data-parallel
    /// run).
    pub order: Vec<u32>,
    /// Rows of the epoch's order the batches cover (every rank's).
    pub positions: usize,
}

/// Which rows of an epoch a reader reads, and how they are batched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EpochSpec {
    /// Whether the order is shuffled, its seed and window.
    pub shuffle: bool,
    pub seed: u64,
    pub window: ShuffleWindow,
    /// The epoch (from 0).
    pub epoch: u64,
    /// Rows of the epoch's order done before (a resumed epoch).
    pub start: usize,
    /// Rows a batch, from `start`.
    pub batch_rows: usize,
    /// (rank, ranks) of a data-parallel run: the reader keeps the rank's
    /// share of each batch only.
    pub share: Option<(usize, usize)>,
}

/// The reader of one epoch: on its own thread, window after window, it
/// reads the chunks of the next window while the trainer trains on this
/// one, and hands over whole batches (the rows a batch that straddles two
/// windows takes from the first wait for the second). At its end the
/// last, shorter batch.
pub(crate) struct EpochReader(ReadAhead<Segment>);

impl EpochReader {
    /// Starts reading `spec`'s epoch of `data`.
    pub(crate) fn start(data: &Streamed, spec: EpochSpec) -> EpochReader {
        let mut maker = SegmentMaker::new(data.clone(), spec);
        EpochReader(ReadAhead::start(&data.name(), 0, move || maker.next()))
    }

    /// The next segment ([`ReadAhead::next`]).
    pub(crate) fn next(&self, stop: Option<&StopFlag>) -> Next<Segment> {
        self.0.next(stop)
    }
}

/// A row of a window this rank does not read.
const NOT_READ: u32 = u32::MAX;
/// A row of a window to read (before it has its place among the rows read).
const WANTED: u32 = u32::MAX - 1;

/// The reader thread's work for an epoch (see [`EpochReader`]).
struct SegmentMaker {
    data: Streamed,
    spec: EpochSpec,
    windows: EpochWindows,
    /// The window to read next, and the position its rows start at.
    window: usize,
    window_start: usize,
    /// Rows of the epoch's order read but not yet handed over (fewer
    /// than a batch, unless a window is): positions `carry_start..` and
    /// the rows (this rank's) they read.
    carry_start: usize,
    carry_positions: usize,
    carry: Chunk,
    done: bool,
}

impl SegmentMaker {
    fn new(data: Streamed, spec: EpochSpec) -> SegmentMaker {
        let windows = EpochWindows::new(
            data.rows(),
            spec.shuffle,
            spec.seed,
            spec.epoch,
            spec.window,
        );
        SegmentMaker {
            data,
            spec,
            windows,
            window: 0,
            window_start: 0,
            carry_start: spec.start,
            carry_positions: 0,
            carry: Chunk::default(),
            done: false,
        }
    }

    /// Whether this rank trains on position `p` of the epoch's order: every
    /// position on one rank, else those of its share of their batch.
    fn owns(&self, p: usize) -> bool {
        let Some((rank, ranks)) = self.spec.share else {
            return true;
        };
        let (start, batch, rows) = (self.spec.start, self.spec.batch_rows, self.data.rows());
        let k = (p - start) / batch;
        let first = start + k * batch;
        let len = batch.min(rows - first);
        share_bounds(len, rank, ranks).contains(&(p - first))
    }

    fn next(&mut self) -> Option<Result<Segment>> {
        while !self.done {
            match self.step() {
                Ok(Some(segment)) => return Some(Ok(segment)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Reads the next window and hands over the whole batches it
    /// completes (`None`: it completed none, and the carry grew).
    fn step(&mut self) -> Result<Option<Segment>> {
        if self.window == self.windows.len() {
            self.done = true;
            if self.carry_positions == 0 {
                return Ok(None);
            }
            // The epoch's last, shorter batch.
            let carry = std::mem::take(&mut self.carry);
            let order = (0..self.row_count(&carry) as u32).collect();
            return Ok(Some(Segment {
                data: self.segment_data(carry)?,
                order,
                positions: std::mem::take(&mut self.carry_positions),
            }));
        }
        let (w, ws) = (self.window, self.window_start);
        let wn = self.windows.window_len(w);
        self.window += 1;
        self.window_start += wn;
        let next_position = self.carry_start + self.carry_positions;
        if ws + wn <= next_position {
            return Ok(None); // before where the epoch resumes
        }
        let first = next_position.max(ws) - ws;
        // Whole batches from the carry's start, or (the epoch's end) all.
        let end = match self.window == self.windows.len() {
            true => ws + wn,
            false => {
                let batch = self.spec.batch_rows;
                self.carry_start + (ws + wn - self.carry_start) / batch * batch
            }
        };
        let order = self.windows.window_order(w);
        // Each of the window's rows: not read (NOT_READ), to read (WANTED),
        // then its place among the rows read.
        let mut place = vec![NOT_READ; wn];
        for (i, &local) in order.iter().enumerate().skip(first) {
            if self.owns(ws + i) {
                place[local as usize] = WANTED;
            }
        }
        let mut read = std::mem::take(&mut self.carry);
        let carried = self.row_count(&read);
        self.read_window(w, &mut place, carried, &mut read)?;
        let (features, width) = (self.data.features(), self.data.target_width());
        let in_position_order = order[first..]
            .iter()
            .enumerate()
            .map(|(i, &local)| (ws + first + i, place[local as usize]))
            .filter(|&(_, at)| at != NOT_READ);
        if end == self.carry_start {
            // No whole batch yet (a batch larger than a window): every row
            // read waits for the next window, in the epoch's order.
            let mut kept = Chunk::default();
            for i in 0..carried {
                kept.push_row(&read, i, features, width);
            }
            for (_, at) in in_position_order {
                kept.push_row(&read, at as usize, features, width);
            }
            self.carry = kept;
            self.carry_positions = ws + wn - self.carry_start;
            return Ok(None);
        }
        // The batches' rows: the carry's, then the window's in its order;
        // the rest wait for the next window.
        let mut batch_order: Vec<u32> = (0..carried as u32).collect();
        let mut carry = Chunk::default();
        for (p, at) in in_position_order {
            if p < end {
                batch_order.push(at);
            } else {
                carry.push_row(&read, at as usize, features, width);
            }
        }
        let positions = end - self.carry_start;
        self.carry_start = end;
        self.carry_positions = ws + wn - end;
        self.carry = carry;
        Ok(Some(Segment {
            data: self.segment_data(read)?,
            order: batch_order,
            positions,
        }))
    }

    fn row_count(&self, chunk: &Chunk) -> usize {
        chunk.x.len() / self.data.features().max(1)
    }

    /// Reads the rows of window `w` marked [`WANTED`] in `place` after
    /// the `carried` rows `out` holds, and sets each one's place in `out`.
    /// A chunk with no wanted row is not read at all; runs of wanted
    /// chunks are read in one go.
    fn read_window(
        &self,
        w: usize,
        place: &mut [u32],
        carried: usize,
        out: &mut Chunk,
    ) -> Result<()> {
        let (features, width) = (self.data.features(), self.data.target_width());
        let chunks = self.windows.chunks(w);
        let mut local = 0; // index of the chunk's first row in the window
        let mut at = carried as u32;
        let mut scratch = Chunk::default();
        let mut c = 0;
        while c < chunks.len() {
            let len = self.windows.chunk_rows(chunks[c]).len();
            let wanted = |local: usize, len: usize, place: &[u32]| {
                place[local..local + len]
                    .iter()
                    .filter(|&&p| p == WANTED)
                    .count()
            };
            if wanted(local, len, place) == 0 {
                local += len;
                c += 1;
                continue;
            }
            // A run of chunks next to each other in the file, each wanted
            // whole (every row of it): one read.
            let mut run_end = c + 1;
            let mut run_len = len;
            let whole = wanted(local, len, place) == len;
            if whole {
                while run_end < chunks.len() && chunks[run_end] == chunks[run_end - 1] + 1 {
                    let next_len = self.windows.chunk_rows(chunks[run_end]).len();
                    if wanted(local + run_len, next_len, place) != next_len {
                        break;
                    }
                    run_len += next_len;
                    run_end += 1;
                }
            }
            let rows = self.windows.chunk_rows(chunks[c]).start
                ..self.windows.chunk_rows(chunks[run_end - 1]).end;
            if whole {
                self.data.read_into(rows, out)?;
                for p in &mut place[local..local + run_len] {
                    *p = at;
                    at += 1;
                }
            } else {
                scratch.clear();
                self.data.read_into(rows, &mut scratch)?;
                for (i, p) in place[local..local + run_len].iter_mut().enumerate() {
                    if *p == WANTED {
                        out.push_row(&scratch, i, features, width);
                        *p = at;
                        at += 1;
                    }
                }
            }
            local += run_len;
            c = run_end;
        }
        Ok(())
    }

    /// The rows of a segment as a data set: one row of zeros where this
    /// rank reads none (a short batch's empty share), which nothing reads.
    fn segment_data(&self, chunk: Chunk) -> Result<Dataset> {
        if chunk.x.is_empty() {
            let (f, width) = (self.data.features(), self.data.target_width());
            let placeholder = Chunk {
                x: vec![0.0; f],
                labels: if self.data.classes() {
                    vec![0]
                } else {
                    Vec::new()
                },
                values: if self.data.classes() {
                    Vec::new()
                } else {
                    vec![0.0; width]
                },
            };
            return self.data.dataset(placeholder);
        }
        self.data.dataset(chunk)
    }
}
