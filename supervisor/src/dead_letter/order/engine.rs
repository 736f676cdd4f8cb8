//! The private engine of a file written in checkpoint order: the stages'
//! epochs, the letters held back, and the cuts (see the [module](super)).

use std::collections::BTreeMap;

use super::{DlqCut, DlqPosition, RunId};
use crate::dead_letter::{DlqError, FileDlqWriter};

/// Where the engine appends: the file's writer (a log in the tests).
pub(crate) trait Appender {
    /// Appends one encoded record.
    fn append_record(&mut self, record: &[u8]) -> Result<u64, DlqError>;
    /// The position after the last record.
    fn position(&self) -> DlqPosition;
}

impl<T> Appender for FileDlqWriter<T> {
    fn append_record(&mut self, record: &[u8]) -> Result<u64, DlqError> {
        FileDlqWriter::append_record(self, record)
    }

    fn position(&self) -> DlqPosition {
        FileDlqWriter::position(self)
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A file of records, each one byte: the letter's number.
    #[derive(Default)]
    struct Log(Vec<u8>);

    impl Appender for Log {
        fn append_record(&mut self, record: &[u8]) -> Result<u64, DlqError> {
            self.0.push(record[0]);
            Ok(self.0.len() as u64 - 1)
        }
        fn position(&self) -> DlqPosition {
            DlqPosition {
                end: self.0.len() as u64,
                records: self.0.len() as u64,
                last_crc: None,
            }
        }
    }

    fn at(n: u64) -> Option<DlqCut> {
        Some(DlqCut::At(DlqPosition {
            end: n,
            records: n,
            last_crc: None,
        }))
    }

    #[test]
    fn a_letter_after_a_barrier_waits_for_the_stages_behind_it() {
        let mut log = Log::default();
        let mut order = Order::new(RunId::new(), "p", 2, 1 << 20);
        order.offer(0, vec![1], &mut log).unwrap();
        order.passed(0, 1, &mut log);
        // Stage 0 is past barrier 1, stage 1 is not: 2 waits, 3 (stage 1, before
        // its barrier) goes in at once.
        order.offer(0, vec![2], &mut log).unwrap();
        order.offer(1, vec![3], &mut log).unwrap();
        assert_eq!(log.0, [1, 3]);
        assert_eq!(order.cut(1), None, "stage 1 has not passed barrier 1");
        order.passed(1, 1, &mut log);
        assert_eq!(log.0, [1, 3, 2]);
        assert_eq!(order.cut(1), at(2));
        order.offer(1, vec![4], &mut log).unwrap();
        assert_eq!(log.0, [1, 3, 2, 4]);
    }

    #[test]
    fn overlapping_barriers_each_get_their_own_cut() {
        let mut log = Log::default();
        let mut order = Order::new(RunId::new(), "p", 2, 1 << 20);
        order.passed(0, 1, &mut log);
        order.offer(0, vec![10], &mut log).unwrap();
        order.passed(0, 2, &mut log);
        order.offer(0, vec![20], &mut log).unwrap();
        order.offer(1, vec![0], &mut log).unwrap();
        // Stage 1 passes both at once (its barriers came one after the other).
        order.passed(1, 2, &mut log);
        assert_eq!(log.0, [0, 10, 20]);
        assert_eq!(order.cut(1), at(1));
        assert_eq!(order.cut(2), at(2));
        assert_eq!(order.cut(3), None);
        order.release(2);
        assert_eq!(order.cut(1), at(2), "forgotten: the next one answers");
    }

    #[test]
    fn a_stopped_stage_holds_nothing_back() {
        let mut log = Log::default();
        let mut order = Order::new(RunId::new(), "p", 2, 1 << 20);
        order.passed(0, 5, &mut log);
        order.offer(0, vec![1], &mut log).unwrap();
        assert!(log.0.is_empty());
        order.stopped(1, &mut log);
        assert_eq!(log.0, [1]);
        assert_eq!(order.cut(5), at(0));
        order.stopped(0, &mut log);
        // The final checkpoint (any later id) holds everything.
        assert_eq!(order.cut(6), at(1));
        assert_eq!(order.cut(1_000), at(1));
    }

    #[test]
    fn past_the_hold_limit_letters_go_in_and_the_checkpoints_in_flight_get_no_cut() {
        let mut log = Log::default();
        let mut order = Order::new(RunId::new(), "p", 2, 2);
        order.passed(0, 1, &mut log);
        order.offer(0, vec![1], &mut log).unwrap();
        order.offer(0, vec![2], &mut log).unwrap();
        assert!(log.0.is_empty());
        order.offer(0, vec![3], &mut log).unwrap();
        assert_eq!(log.0, [1, 2, 3], "over the limit: appended");
        order.offer(0, vec![4], &mut log).unwrap();
        assert_eq!(log.0, [1, 2, 3, 4]);
        order.passed(1, 1, &mut log);
        assert_eq!(order.cut(1), Some(DlqCut::Unordered));
        // The next checkpoint is in order again.
        order.passed(0, 2, &mut log);
        order.offer(0, vec![5], &mut log).unwrap();
        assert_eq!(log.0.len(), 4);
        order.passed(1, 2, &mut log);
        assert_eq!(order.cut(2), at(4));
        assert_eq!(log.0, [1, 2, 3, 4, 5]);
    }

    /// One step of a run: a stage writes a letter or passes its next barrier.
    #[derive(Debug, Clone)]
    enum Event {
        Letter(usize),
        Pass(usize),
        Stop(usize),
    }

    fn events(stages: usize) -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec(
            prop_oneof![
                6 => (0..stages).prop_map(Event::Letter),
                3 => (0..stages).prop_map(Event::Pass),
                1 => (0..stages).prop_map(Event::Stop),
            ],
            0..200,
        )
    }

    proptest! {
        /// For any interleaving of letters and barrier passes of 1–5 stages, the
        /// cut of each checkpoint holds exactly the letters written before their
        /// stage passed its barrier, and every letter is in the file once at the
        /// end.
        #[test]
        fn every_cut_holds_exactly_the_letters_before_its_barrier(
            stages in 1_usize..5,
            script in events(5),
        ) {
            let mut log = Log::default();
            let mut order = Order::new(RunId::new(), "p", stages, usize::MAX);
            // Per stage: barriers passed, stopped.
            let mut epoch = vec![0_u64; stages];
            let mut stopped = vec![false; stages];
            // Per letter (its number): the epoch it was written in.
            let mut written_in: Vec<u64> = Vec::new();
            for event in script {
                match event {
                    Event::Letter(s) if s < stages && !stopped[s] => {
                        let n = written_in.len();
                        written_in.push(epoch[s]);
                        order.offer(s, vec![n as u8], &mut log).unwrap();
                    }
                    Event::Pass(s) if s < stages && !stopped[s] => {
                        epoch[s] += 1;
                        order.passed(s, epoch[s], &mut log);
                    }
                    Event::Stop(s) if s < stages && !stopped[s] => {
                        stopped[s] = true;
                        order.stopped(s, &mut log);
                    }
                    _ => {}
                }
            }
            for (s, _) in stopped.iter().enumerate().filter(|(_, stopped)| !**stopped) {
                order.stopped(s, &mut log);
            }
            let highest = epoch.iter().copied().max().unwrap_or(0);
            for n in 1..=highest + 1 {
                let Some(DlqCut::At(cut)) = order.cut(n) else {
                    return Err(TestCaseError::fail(format!("no cut for {n}")));
                };
                let mut before: Vec<u8> = log.0[..cut.end as usize].to_vec();
                before.sort_unstable();
                let want: Vec<u8> = (0..written_in.len())
                    .filter(|&i| written_in[i] < n)
                    .map(|i| i as u8)
                    .collect();
                prop_assert_eq!(before, want, "checkpoint {}", n);
            }
            let mut all = log.0.clone();
            all.sort_unstable();
            prop_assert_eq!(all, (0..written_in.len()).map(|i| i as u8).collect::<Vec<_>>());
        }
    }
}
