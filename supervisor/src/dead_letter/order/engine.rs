//! The private engine of a file written in checkpoint order: the stages'
//! epochs, the letters held back, and the cuts (see the [module](super)).
//!
//! Every call comes from a stage's thread under the lock of the file's
//! [`SharedFileDlq`](crate::dead_letter::SharedFileDlq). This file depends on
//! nothing but the types `super` names, so that the loom model in
//! `models/tests/dlq_order.rs` compiles it beside them and checks it under
//! every interleaving of the stages' calls; its unit tests are in
//! `engine_tests.rs`.

use std::collections::BTreeMap;

use super::{DlqCut, DlqError, DlqPosition, RunId};

/// Where the engine appends: the file's writer (a log in the tests).
pub(crate) trait Appender {
    /// Appends one encoded record.
    fn append_record(&mut self, record: &[u8]) -> Result<u64, DlqError>;
    /// The position after the last record.
    fn position(&self) -> DlqPosition;
}

/// The order of one file's letters with the checkpoints of the run attached to
/// it.
#[derive(Debug)]
pub(crate) struct Order {
    pub(crate) run: RunId,
    /// The pipeline's name, for errors.
    pub(crate) pipeline: String,
    /// Per stage of the pipeline: the last barrier it passed (`u64::MAX` once it
    /// stopped).
    epochs: Vec<u64>,
    /// The lowest epoch.
    min: u64,
    /// Letters of stages in an epoch up to this one are appended at once, even
    /// ahead of `min`: the hold limit was reached, and the checkpoints up to it
    /// get no cut.
    unordered_until: u64,
    /// The letters held back, encoded, by epoch, in the order they came.
    held: BTreeMap<u64, Vec<Vec<u8>>>,
    held_bytes: usize,
    limit: usize,
    /// `(upto, cut)`, ascending: the cut of every checkpoint after the previous
    /// entry's `upto` and up to this one's.
    cuts: Vec<(u64, DlqCut)>,
    /// Every checkpoint up to this one has its cut.
    cut_upto: u64,
    /// Held letters that could not be appended: the order is lost, nothing more
    /// is taken and no later checkpoint may complete.
    broken: Option<String>,
}

impl Order {
    pub(crate) fn new(run: RunId, pipeline: &str, stages: usize, limit: usize) -> Self {
        Order {
            run,
            pipeline: pipeline.to_owned(),
            epochs: vec![0; stages],
            min: 0,
            unordered_until: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            limit,
            cuts: Vec::new(),
            cut_upto: 0,
            broken: None,
        }
    }

    /// Whether `stage` is one of the pipeline's.
    pub(crate) fn has_stage(&self, stage: usize) -> bool {
        stage < self.epochs.len()
    }

    /// Why nothing more can be taken, if so.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Stage `stage` wrote `record`: appends it, or holds it while a stage is
    /// behind it.
    pub(crate) fn offer(
        &mut self,
        stage: usize,
        record: Vec<u8>,
        file: &mut dyn Appender,
    ) -> Result<(), DlqError> {
        if let Some(why) = &self.broken {
            return Err(DlqError::Io(std::io::Error::other(why.clone())));
        }
        let epoch = self.epochs[stage];
        if epoch <= self.min.max(self.unordered_until) {
            return file.append_record(&record).map(drop);
        }
        self.held_bytes += record.len();
        self.held.entry(epoch).or_default().push(record);
        if self.held_bytes > self.limit {
            // No cut for the checkpoints in flight: append everything now.
            self.unordered_until = self.unordered_until.max(epoch).max(self.newest_held());
            self.flush_held(u64::MAX, file);
        }
        Ok(())
    }

    fn newest_held(&self) -> u64 {
        self.held.keys().next_back().copied().unwrap_or(0)
    }

    /// Stage `stage` passed barrier `checkpoint`.
    pub(crate) fn passed(&mut self, stage: usize, checkpoint: u64, file: &mut dyn Appender) {
        if let Some(epoch) = self.epochs.get_mut(stage) {
            *epoch = (*epoch).max(checkpoint);
        }
        self.advance(file);
    }

    /// Stage `stage` stopped: it writes nothing more.
    pub(crate) fn stopped(&mut self, stage: usize, file: &mut dyn Appender) {
        if let Some(epoch) = self.epochs.get_mut(stage) {
            *epoch = u64::MAX;
        }
        self.advance(file);
    }

    /// The lowest epoch rose: records the cuts of the checkpoints every stage has
    /// now passed, appending the letters held for each in between.
    fn advance(&mut self, file: &mut dyn Appender) {
        let min = self.epochs.iter().copied().min().unwrap_or(u64::MAX);
        if min <= self.min {
            return;
        }
        while let Some((&epoch, _)) = self.held.first_key_value() {
            if epoch > min {
                break;
            }
            // Checkpoints up to `epoch`: every letter of an earlier epoch is in
            // the file, none of this one or a later one.
            self.record_cut(epoch, file.position());
            self.flush_held(epoch, file);
        }
        self.record_cut(min, file.position());
        self.min = min;
    }

    fn record_cut(&mut self, upto: u64, at: DlqPosition) {
        if upto <= self.cut_upto {
            return;
        }
        if self.unordered_until > self.cut_upto {
            let end = self.unordered_until.min(upto);
            self.cuts.push((end, DlqCut::Unordered));
            self.cut_upto = end;
            if upto <= end {
                return;
            }
        }
        self.cuts.push((upto, DlqCut::At(at)));
        self.cut_upto = upto;
    }

    /// Appends the held letters of every epoch up to `upto`, in epoch order.
    fn flush_held(&mut self, upto: u64, file: &mut dyn Appender) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > upto {
                break;
            }
            for record in entry.remove() {
                self.held_bytes -= record.len();
                self.append_held(&record, file);
            }
        }
    }

    fn append_held(&mut self, record: &[u8], file: &mut dyn Appender) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = file.append_record(record) {
            self.broken = Some(format!(
                "a dead letter held for checkpoint order could not be appended: {e}"
            ));
        }
    }

    /// The cut of checkpoint `checkpoint`, once every stage has passed its
    /// barrier (or stopped).
    pub(crate) fn cut(&self, checkpoint: u64) -> Option<DlqCut> {
        self.cuts
            .iter()
            .find(|(upto, _)| *upto >= checkpoint)
            .map(|(_, cut)| *cut)
    }

    /// Forgets the cuts of the checkpoints before `checkpoint`.
    pub(crate) fn release(&mut self, checkpoint: u64) {
        let keep = self
            .cuts
            .iter()
            .position(|(upto, _)| *upto >= checkpoint)
            .unwrap_or(self.cuts.len());
        self.cuts.drain(..keep);
    }

    /// The run is over: appends every letter still held.
    pub(crate) fn finish(&mut self, file: &mut dyn Appender) {
        self.flush_held(u64::MAX, file);
    }
}
