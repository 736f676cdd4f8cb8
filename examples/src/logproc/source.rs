//! [`ReadSource`]: logproc's source, the batches of a file or of the generator,
//! with a position that a checkpoint records and a restore resumes from.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Context;

use serde::{Deserialize, Serialize};
use weir::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir::operator::{Io, Operator, Step};
use weir::prelude::{ErrorClass, Failure};

use super::Generator;
use super::lines::{
    FileIdentity, GeneratedBatches, GeneratedPosition, InputError, LineBatch, LineReader,
    ReadPosition, ReadProgress, Resumed,
};

/// The version of [`ReadSource`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// What a checkpoint holds of the source: where it is, in what, and the one
/// setting that decides which lines are malformed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReadState {
    /// `--max-line-bytes`: a restore with another bound would count other lines
    /// as malformed.
    max_line_bytes: u64,
    input: InputState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum InputState {
    /// A file: the offset and line the next batch starts at, and the file's
    /// identity.
    File {
        position: ReadPosition,
        identity: FileIdentity,
    },
    /// The generator: its seed and line count, and its state before the next
    /// line.
    Generated {
        seed: u64,
        lines: u64,
        position: GeneratedPosition,
    },
}

enum Reader {
    File {
        path: PathBuf,
        reader: LineReader,
    },
    Generated {
        seed: u64,
        lines: u64,
        batches: GeneratedBatches,
    },
    /// Standard input (`--input -`): read as it comes, never replayed.
    Stdin {
        reader: LineReader,
    },
}

/// Why a checkpoint cannot cover standard input.
const STDIN_NOT_REPLAYABLE: &str = "standard input cannot be replayed: a checkpoint of a \
    pipeline reading it could not be resumed (read a file with --input FILE to checkpoint)";

/// Emits the [`LineBatch`]es of a file ([`LineReader`]) or of the [`Generator`]
/// ([`GeneratedBatches`]), only as many as downstream has room for, and records
/// its position in each checkpoint, so that a restored pipeline reads each line
/// once across a crash.
///
/// * **Position.** For a file: the byte offset of the next batch's first line
///   (the bytes read minus the incomplete line the reader holds) and that line's
///   number, with the file's [`FileIdentity`]. For the generator: its whole
///   state (it is deterministic), seed and line count.
/// * **Restore.** The file is opened again and read from the offset; the
///   generator continues from its state. The shared [`ReadProgress`] is set to
///   the lines and bytes before the position, and [`ReadProgress::resumed`] says
///   where the run resumed.
/// * **Refused restores** (a `CheckpointMismatch` when the pipeline is run,
///   naming the stage): a file shorter than the offset or whose first KiB
///   differs (another file: its lines cannot be added to the restored
///   aggregates), a checkpoint of the generator restored into a file reader or
///   the other way round, another seed or line count, another
///   `--max-line-bytes`.
/// * **Failure.** A read error fails the stage (and so the pipeline): the
///   reader's position is then unknown, and a failed pipeline writes no final
///   checkpoint, so a restart resumes from the last good one.
pub struct ReadSource {
    reader: Reader,
    max_line_bytes: usize,
    progress: Arc<ReadProgress>,
}

impl std::fmt::Debug for ReadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let input = match &self.reader {
            Reader::File { path, reader } => {
                format!("{} at {:?}", path.display(), reader.checkpoint_position())
            }
            Reader::Generated { seed, lines, .. } => {
                format!("generator ({lines} lines, seed {seed})")
            }
            Reader::Stdin { reader } => format!("stdin at {:?}", reader.checkpoint_position()),
        };
        f.debug_struct("ReadSource")
            .field("input", &input)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish_non_exhaustive()
    }
}

impl ReadSource {
    /// Reads `path` from its start (see [`LineReader::open`]).
    ///
    /// # Errors
    ///
    /// An [`InputError`]: the file cannot be a text log.
    pub fn file(
        path: &Path,
        max_line_bytes: usize,
        progress: Arc<ReadProgress>,
    ) -> Result<Self, InputError> {
        let reader = LineReader::open(path, max_line_bytes, Arc::clone(&progress))?;
        Ok(ReadSource {
            max_line_bytes: reader.max_line_bytes(),
            reader: Reader::File {
                path: path.to_owned(),
                reader,
            },
            progress,
        })
    }

    /// Reads standard input as it comes (`--input -`), in constant memory like a
    /// file. Standard input cannot be replayed: its snapshot is refused, so a
    /// checkpointed pipeline reading it fails its first checkpoint with a message
    /// saying so (logproc refuses `--input -` with `--checkpoint-dir` up front).
    ///
    /// Reads block the source's arbiter thread until input arrives, as a file's
    /// reads do; a pipe that stays quiet holds back the stages sharing that
    /// arbiter (the parser replicas run on their own).
    pub fn stdin(max_line_bytes: usize, progress: Arc<ReadProgress>) -> Self {
        let reader = LineReader::new(
            Box::new(std::io::stdin()),
            max_line_bytes,
            Arc::clone(&progress),
        );
        ReadSource {
            max_line_bytes: reader.max_line_bytes(),
            reader: Reader::Stdin { reader },
            progress,
        }
    }

    /// The [`Generator`]'s `lines` lines from `seed`.
    pub fn generated(
        seed: u64,
        lines: u64,
        max_line_bytes: usize,
        progress: Arc<ReadProgress>,
    ) -> Self {
        ReadSource {
            reader: Reader::Generated {
                seed,
                lines,
                batches: GeneratedBatches::new(Generator::new(seed, lines), Arc::clone(&progress)),
            },
            max_line_bytes: max_line_bytes.max(1),
            progress,
        }
    }

    /// The position to record; `None` for standard input, which cannot replay.
    fn state(&self) -> Option<ReadState> {
        let input = match &self.reader {
            Reader::Stdin { .. } => return None,
            Reader::File { reader, .. } => InputState::File {
                position: reader.checkpoint_position(),
                // Set by `LineReader::open` and `open_at`, the only readers made here.
                identity: reader.identity().unwrap_or(FileIdentity {
                    fingerprint_len: 0,
                    fingerprint: 0,
                }),
            },
            Reader::Generated {
                seed,
                lines,
                batches,
            } => InputState::Generated {
                seed: *seed,
                lines: *lines,
                position: batches.checkpoint_position(),
            },
        };
        Some(ReadState {
            max_line_bytes: self.max_line_bytes as u64,
            input,
        })
    }

    /// Moves the reader to `state`, or says why it cannot be this source's.
    fn resume(&mut self, state: ReadState, checkpoint: u64) -> Result<(), String> {
        if state.max_line_bytes != self.max_line_bytes as u64 {
            return Err(format!(
                "the checkpoint was taken with --max-line-bytes {}, not {}: it would count \
                 other lines as malformed",
                state.max_line_bytes, self.max_line_bytes
            ));
        }
        let progress = Arc::clone(&self.progress);
        let resumed = match (&mut self.reader, state.input) {
            (Reader::Stdin { .. }, _) => return Err(STDIN_NOT_REPLAYABLE.into()),
            (Reader::File { path, reader }, InputState::File { position, identity }) => {
                *reader =
                    LineReader::open_at(path, self.max_line_bytes, progress, position, identity)
                        .map_err(|e| {
                            format!("{e}; start with another --checkpoint-dir to read it afresh")
                        })?;
                Resumed {
                    checkpoint,
                    offset: position.offset,
                    next_line: position.next_line,
                }
            }
            (
                Reader::Generated {
                    seed,
                    lines,
                    batches,
                },
                InputState::Generated {
                    seed: was_seed,
                    lines: was_lines,
                    position,
                },
            ) => {
                if (*seed, *lines) != (was_seed, was_lines) {
                    return Err(format!(
                        "the checkpoint was taken with the generator's --seed {was_seed} \
                         --lines {was_lines}, not --seed {seed} --lines {lines}"
                    ));
                }
                let resumed = Resumed {
                    checkpoint,
                    offset: position.bytes,
                    next_line: position.next_line,
                };
                *batches = GeneratedBatches::resume(position, progress);
                resumed
            }
            (Reader::File { .. }, InputState::Generated { .. }) => {
                return Err(
                    "the checkpoint was taken of the generator's lines (no --input), \
                            not of an input file"
                        .into(),
                );
            }
            (Reader::Generated { .. }, InputState::File { .. }) => {
                return Err(
                    "the checkpoint was taken of an input file (--input), not of the \
                            generator's lines"
                        .into(),
                );
            }
        };
        if let Ok(mut slot) = self.progress.resumed.lock() {
            *slot = Some(resumed);
        }
        Ok(())
    }

    /// The next batch, `None` at the end.
    fn next_batch(&mut self) -> Result<Option<LineBatch>, String> {
        match &mut self.reader {
            Reader::File { path, reader } => {
                let at = reader.checkpoint_position();
                reader.try_next().map_err(|e| {
                    format!(
                        "input {}: reading near line {}: {e}",
                        path.display(),
                        at.next_line
                    )
                })
            }
            Reader::Generated { batches, .. } => Ok(batches.next()),
            Reader::Stdin { reader } => {
                let at = reader.checkpoint_position();
                reader
                    .try_next()
                    .map_err(|e| format!("input stdin: reading near line {}: {e}", at.next_line))
            }
        }
    }
}

impl Operator for ReadSource {
    type In = Infallible;
    type Out = LineBatch;

    fn kind(&self) -> &'static str {
        "read"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, LineBatch>, _cx: &mut Context<'_>) -> Step {
        // A source's input ends when the pipeline shuts down: stop reading.
        if io.input_ended() {
            return Step::Finished;
        }
        for _ in 0..io.room() {
            match self.next_batch() {
                Ok(Some(batch)) => io.output().push(batch),
                Ok(None) => return Step::Finished,
                Err(error) => {
                    if let Ok(mut slot) = self.progress.error.lock() {
                        *slot = Some(error.clone());
                    }
                    return Step::Failed(Failure::error(ErrorClass::Permanent, error));
                }
            }
        }
        Step::Continue
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

/// The state is the position (see [`ReadSource`]).
impl Checkpointable for ReadSource {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        match self.state() {
            Some(state) => Snapshot::of(STATE_VERSION, &state),
            None => Err(StateError::Shape(STDIN_NOT_REPLAYABLE.into())),
        }
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let state: ReadState = snapshot.decode(STATE_VERSION, ctx)?;
        self.resume(state, ctx.checkpoint)
            .map_err(StateError::Shape)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::logproc::Line;

    /// Every line until the end, with its number (reads of different sizes can
    /// cut the batches elsewhere: the lines are what must match).
    fn drain(source: &mut ReadSource) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(batch) = source.next_batch().unwrap() {
            take_lines(&batch, &mut out);
        }
        out
    }

    /// Each line as the parser sees it: its text, or why the reader or the bound
    /// rejects it (a line rejected by the reader in one cut of the batches can be
    /// whole in another, and is then rejected by the bound: the same line).
    fn take_lines(batch: &LineBatch, out: &mut Vec<(u64, Vec<u8>)>) {
        for (number, line) in batch.lines(4096) {
            let seen = match line {
                Line::Text(text) => text.as_bytes().to_vec(),
                Line::Rejected(reject, sample) => format!("{reject}: {sample}").into_bytes(),
            };
            out.push((number, seen));
        }
    }

    /// The first place two line lists differ, for a short failure message.
    fn same_lines(got: &[(u64, Vec<u8>)], want: &[(u64, Vec<u8>)], what: &str) {
        let differ = got.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            differ.is_none() && got.len() == want.len(),
            "{what}: {} lines, want {}; first difference at {differ:?}: {:?}",
            got.len(),
            want.len(),
            differ.map(|i| (got[i].0, want[i].0))
        );
    }

    fn restored(make: impl Fn() -> ReadSource, snapshot: &Snapshot) -> ReadSource {
        let mut source = make();
        let ctx = RestoreContext {
            checkpoint: 7,
            ..RestoreContext::default()
        };
        source.restore(snapshot, &ctx).unwrap();
        source
    }

    /// Snapshotted after every batch, a restored source gives exactly the batches
    /// the first one gave after that point, and the progress before it.
    fn resumes_after_every_batch(make: impl Fn() -> ReadSource) {
        let mut reference = make();
        let whole = drain(&mut reference);
        let total_bytes = reference.progress.bytes.load(Ordering::Relaxed);
        let mut first = make();
        let mut given = Vec::new();
        let mut batches = 0;
        loop {
            let snapshot = first.snapshot(1).unwrap();
            let mut second = restored(&make, &snapshot);
            let resumed = second.progress.resumed.lock().unwrap().unwrap();
            assert_eq!(resumed.checkpoint, 7);
            assert_eq!(resumed.next_line, given.len() as u64 + 1);
            assert_eq!(
                second.progress.lines.load(Ordering::Relaxed),
                given.len() as u64
            );
            assert_eq!(
                second.progress.bytes.load(Ordering::Relaxed),
                resumed.offset
            );
            let rest = drain(&mut second);
            let what = format!("resumed after {batches} batches");
            same_lines(&rest, &whole[given.len()..], &what);
            assert_eq!(
                second.progress.lines.load(Ordering::Relaxed),
                whole.len() as u64,
                "{what}"
            );
            assert_eq!(
                second.progress.bytes.load(Ordering::Relaxed),
                total_bytes,
                "{what}"
            );
            match first.next_batch().unwrap() {
                Some(batch) => take_lines(&batch, &mut given),
                None => break,
            }
            batches += 1;
        }
        same_lines(&given, &whole, "the first source");
        assert!(batches > 3, "{batches} batches");
    }

    #[test]
    fn a_file_source_resumes_at_its_offset_with_long_and_unterminated_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut text = String::new();
        for i in 0..20_000 {
            if i % 997 == 0 {
                // Longer than the bound and than a read: skipped by the reader.
                text.push_str(&"L".repeat(70_000));
            } else {
                text.push_str(&format!("line {i} {}", "x".repeat(i % 150)));
            }
            text.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        }
        text.push_str("last line without a newline");
        std::fs::write(&path, &text).unwrap();
        resumes_after_every_batch(|| {
            ReadSource::file(&path, 4096, Arc::new(ReadProgress::default())).unwrap()
        });
    }

    #[test]
    fn the_generator_resumes_from_its_state() {
        resumes_after_every_batch(|| {
            ReadSource::generated(3, 5_000, 65_536, Arc::new(ReadProgress::default()))
        });
    }

    #[test]
    fn a_restore_into_another_file_or_other_settings_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        Generator::write_file(1, 5_000, &path).unwrap();
        let progress = || Arc::new(ReadProgress::default());
        let mut first = ReadSource::file(&path, 4096, progress()).unwrap();
        first.next_batch().unwrap().unwrap();
        let snapshot = first.snapshot(1).unwrap();
        let refused = |mut source: ReadSource| {
            source
                .restore(&snapshot, &RestoreContext::default())
                .unwrap_err()
                .to_string()
        };

        let err = refused(ReadSource::file(&path, 1000, progress()).unwrap());
        assert!(err.contains("--max-line-bytes 4096, not 1000"), "{err}");
        let err = refused(ReadSource::generated(1, 5_000, 4096, progress()));
        assert!(err.contains("of an input file"), "{err}");

        // Shorter than the offset.
        let short = dir.path().join("short.log");
        std::fs::write(&short, &std::fs::read(&path).unwrap()[..5_000]).unwrap();
        let err = refused(ReadSource::file(&short, 4096, progress()).unwrap());
        assert!(
            err.contains("shorter than the checkpointed offset"),
            "{err}"
        );
        // Another file, as long.
        let other = dir.path().join("other.log");
        Generator::write_file(2, 5_000, &other).unwrap();
        let err = refused(ReadSource::file(&other, 4096, progress()).unwrap());
        assert!(err.contains("first 1024 bytes differ"), "{err}");
        assert!(err.contains("another --checkpoint-dir"), "{err}");

        // The same file, moved and grown: accepted, read on to its new end.
        let moved = dir.path().join("moved.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"one more line\n");
        std::fs::write(&moved, bytes).unwrap();
        let mut source = ReadSource::file(&moved, 4096, progress()).unwrap();
        source
            .restore(&snapshot, &RestoreContext::default())
            .unwrap();
        let rest = drain(&mut source);
        assert_eq!(rest.last().unwrap().1, b"one more line".to_vec());
        assert_eq!(rest.last().unwrap().0, 5_001);

        // The generator with another seed.
        let mut generated = ReadSource::generated(1, 5_000, 4096, progress());
        generated.next_batch().unwrap().unwrap();
        let snapshot = generated.snapshot(1).unwrap();
        let err = ReadSource::generated(2, 5_000, 4096, progress())
            .restore(&snapshot, &RestoreContext::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--seed 1 --lines 5000, not --seed 2"), "{err}");
    }
}
