//! The parts of an exactly-once [`FileSink`](super::FileSink): their names on
//! disk, the state a checkpoint records, and the renames that commit them.
//!
//! A part is one file of the output. It is written under a hidden pending name,
//! `.<name>.pending-<k>` next to the sink's path, and becomes visible only when
//! it is renamed to its final name: the sink's path, or a rotated name
//! (`<path>.<suffix>`). Renames are made in the order the parts were written, and
//! the directory is synced after them.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_supervisor::fs::{Fs, Open};

/// The state version of an exactly-once file sink's snapshot.
pub(crate) const PARTS_VERSION: u32 = 1;

/// Where a part goes when it is committed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Target {
    /// The sink's path: the last part of a completed stream.
    Path,
    /// A rotated file: the sink's path, a dot, and this suffix.
    Rotated(String),
}

/// A part closed by a rotation, waiting for the checkpoint that covers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ClosedPart {
    /// Its pending number.
    pub(crate) k: u64,
    /// Its length (synced before it was closed).
    pub(crate) len: u64,
    pub(crate) target: Target,
}

/// What a checkpoint records of an exactly-once file sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PartsState {
    /// Parts closed before the barrier and not committed when it passed, oldest
    /// first: restoring the checkpoint commits them.
    pub(crate) closed: Vec<ClosedPart>,
    /// The part being written and its length at the barrier; `None` if the sink
    /// had written nothing yet.
    pub(crate) active: Option<(u64, u64)>,
    /// The pending number of the next part.
    pub(crate) next_part: u64,
    /// The sequence number of the next rotated name; `None` if the sink had not
    /// looked for earlier rotated files yet.
    pub(crate) next_segment: Option<u64>,
}

/// The names a sink's parts have on disk, and the renames, removals and
/// directory syncs on them (through the sink's file system).
#[derive(Debug, Clone)]
pub(crate) struct PartNames {
    path: PathBuf,
    dir: PathBuf,
    /// `.<file name>.`
    hidden: String,
    fs: Arc<dyn Fs>,
}

impl PartNames {
    pub(crate) fn new(path: &Path, fs: Arc<dyn Fs>) -> PartNames {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        PartNames {
            path: path.to_path_buf(),
            dir,
            hidden: format!(".{base}."),
            fs,
        }
    }

    /// The pending file of part `k`.
    pub(crate) fn pending(&self, k: u64) -> PathBuf {
        self.dir.join(format!("{}pending-{k}", self.hidden))
    }

    /// The commit log of the final commit, present only while it runs.
    pub(crate) fn manifest(&self) -> PathBuf {
        self.dir.join(format!("{}commit", self.hidden))
    }

    /// The commit log while it is written, before it is renamed into place: a
    /// commit log is there whole or not at all.
    fn manifest_temp(&self) -> PathBuf {
        self.dir.join(format!("{}commit.tmp", self.hidden))
    }

    /// The final name of a part.
    pub(crate) fn target(&self, target: &Target) -> PathBuf {
        match target {
            Target::Path => self.path.clone(),
            Target::Rotated(suffix) => {
                let mut name = self.path.clone().into_os_string();
                name.push(".");
                name.push(suffix);
                PathBuf::from(name)
            }
        }
    }

    /// The pending numbers of the parts on disk.
    pub(crate) fn list_pending(&self) -> io::Result<Vec<u64>> {
        let prefix = format!("{}pending-", self.hidden);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(k) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|k| k.parse::<u64>().ok())
            {
                found.push(k);
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Forces the directory's entries (creations, renames) to the disk.
    pub(crate) fn sync_dir(&self) -> io::Result<()> {
        self.fs.sync_dir(&self.dir)
    }

    /// Renames part `part` into place. Idempotent: a part whose pending file is
    /// gone and whose final file exists was committed before. True if it renamed.
    ///
    /// # Errors
    ///
    /// The rename's error, or `NotFound` if neither file exists.
    pub(crate) fn commit(&self, part: &ClosedPart) -> io::Result<bool> {
        let pending = self.pending(part.k);
        let target = self.target(&part.target);
        match self.fs.rename(&pending, &target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound && target.exists() => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "part {} is gone: neither {} nor {} exists",
                    part.k,
                    pending.display(),
                    target.display()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Commits `parts` in order, through a manifest that a crash leaves behind
    /// for [`finish_interrupted`](Self::finish_interrupted): the final commit of
    /// a stream, whose parts no checkpoint records.
    pub(crate) fn commit_all(&self, parts: &[ClosedPart]) -> io::Result<()> {
        let manifest = self.manifest();
        let temp = self.manifest_temp();
        let bytes = weir_runtime::checkpoint::encode(parts)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        // Written aside and renamed: a failure or crash while it is written
        // leaves no commit log that does not decode.
        let mut file = self.fs.open(&temp, Open::Truncate)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        self.fs.rename(&temp, &manifest)?;
        self.sync_dir()?;
        for part in parts {
            self.commit(part)?;
        }
        self.sync_dir()?;
        self.fs.remove(&manifest)?;
        self.sync_dir()
    }

    /// Finishes a final commit a crash interrupted, if there is one: true if
    /// there was (the stream had ended and every part is now in place).
    ///
    /// # Errors
    ///
    /// A manifest that does not decode, or a rename's error.
    pub(crate) fn finish_interrupted(&self) -> io::Result<bool> {
        let temp = self.manifest_temp();
        if temp.exists() {
            // The commit never began: no rename comes before the log is whole.
            self.fs.remove(&temp)?;
        }
        let manifest = self.manifest();
        let bytes = match std::fs::read(&manifest) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let parts: Vec<ClosedPart> = weir_runtime::checkpoint::decode(&bytes, bytes.len())
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("commit manifest {}: {e}", manifest.display()),
                )
            })?;
        for part in &parts {
            self.commit(part)?;
        }
        self.sync_dir()?;
        self.fs.remove(&manifest)?;
        self.sync_dir()?;
        Ok(true)
    }

    /// Deletes the pending files other than part `keep`'s.
    pub(crate) fn remove_pending_except(&self, keep: Option<u64>) -> io::Result<()> {
        for k in self.list_pending()? {
            if Some(k) != keep {
                self.fs.remove(&self.pending(k))?;
            }
        }
        Ok(())
    }
}

/// The closed parts each snapshot covered, until their checkpoint is committed.
#[derive(Debug, Default)]
pub(crate) struct Covered {
    /// `(checkpoint, n)`: the first `n` closed parts were closed before that
    /// checkpoint's barrier. In checkpoint order.
    taken: Vec<(u64, usize)>,
}

impl Covered {
    /// Snapshot `checkpoint` covers the first `closed` parts.
    pub(crate) fn record(&mut self, checkpoint: u64, closed: usize) {
        self.taken.retain(|&(c, _)| c < checkpoint);
        self.taken.push((checkpoint, closed));
    }

    /// Checkpoint `checkpoint` is durable: how many of the first closed parts it
    /// commits (0 if this sink gave no snapshot for it). Forgets it and the
    /// checkpoints before it, and counts the others past the committed parts.
    pub(crate) fn commit(&mut self, checkpoint: u64) -> usize {
        let Some(&(_, n)) = self.taken.iter().find(|&&(c, _)| c == checkpoint) else {
            return 0;
        };
        self.taken.retain(|&(c, _)| c > checkpoint);
        for (_, later) in &mut self.taken {
            *later = later.saturating_sub(n);
        }
        n
    }

    /// Every closed part was committed (at the end of the stream).
    pub(crate) fn clear(&mut self) {
        self.taken.clear();
    }
}

/// How a restored sink goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The checkpoint had no part open: a new part.
    Fresh,
    /// Part [`Parts::active`] goes on, cut back to `len` bytes.
    Resume { len: u64 },
    /// The stream ended and was committed whole after the checkpoint: nothing is
    /// left to write.
    Completed,
}

/// The parts of an exactly-once sink: the one being written, those closed by a
/// rotation and not yet committed, and which checkpoint covers which.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) names: PartNames,
    closed: Vec<ClosedPart>,
    /// The pending number of the part being written.
    pub(crate) active: u64,
    next_part: u64,
    covered: Covered,
    /// Directory entries created since the directory was last synced.
    pub(crate) dir_dirty: bool,
}

impl Parts {
    pub(crate) fn new(path: &Path, fs: Arc<dyn Fs>) -> Parts {
        Parts {
            names: PartNames::new(path, fs),
            closed: Vec::new(),
            active: 0,
            next_part: 1,
            covered: Covered::default(),
            dir_dirty: false,
        }
    }

    /// A start without a checkpoint: finishes a final commit a crash
    /// interrupted, deletes the pending parts an earlier run left, and begins
    /// with part 0.
    pub(crate) fn fresh_start(&mut self) -> io::Result<()> {
        self.names.finish_interrupted()?;
        self.names.remove_pending_except(None)?;
        self.active = 0;
        self.next_part = 1;
        self.dir_dirty = true;
        Ok(())
    }

    /// A start from a checkpoint's `state`: finishes a final commit a crash
    /// interrupted, commits the parts the checkpoint covers (again, if they
    /// were), keeps the active part and deletes the parts begun after the
    /// barrier.
    ///
    /// # Errors
    ///
    /// A part the checkpoint records is gone; an I/O error.
    pub(crate) fn recover(&mut self, state: &PartsState) -> io::Result<Recovery> {
        let finished = self.names.finish_interrupted()?;
        for part in &state.closed {
            self.names.commit(part)?;
        }
        self.next_part = state.next_part;
        let recovery = match state.active {
            None => {
                self.active = self.next_part;
                self.next_part += 1;
                Recovery::Fresh
            }
            Some((k, len)) if !finished && self.names.pending(k).exists() => {
                self.active = k;
                Recovery::Resume { len }
            }
            Some((k, _)) => {
                // The part was renamed away after the checkpoint: only the final
                // commit of a completed stream does that without a checkpoint.
                let last = self.names.target(&Target::Path);
                if !finished && !last.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "part {k} is gone: neither {} nor {} exists",
                            self.names.pending(k).display(),
                            last.display()
                        ),
                    ));
                }
                Recovery::Completed
            }
        };
        let keep = matches!(recovery, Recovery::Resume { .. }).then_some(self.active);
        self.names.remove_pending_except(keep)?;
        self.dir_dirty = true;
        Ok(recovery)
    }

    /// The active part, `len` bytes long and synced, is closed by a rotation and
    /// will be committed as `target`; a new part begins. Its number.
    pub(crate) fn close_active(&mut self, len: u64, target: Target) -> u64 {
        self.closed.push(ClosedPart {
            k: self.active,
            len,
            target,
        });
        self.active = self.next_part;
        self.next_part += 1;
        self.dir_dirty = true;
        self.active
    }

    /// The state for checkpoint `checkpoint`, the active part being `len` bytes
    /// long and synced; remembers which closed parts the checkpoint covers.
    pub(crate) fn snapshot(
        &mut self,
        checkpoint: u64,
        len: u64,
        next_segment: Option<u64>,
    ) -> PartsState {
        self.covered.record(checkpoint, self.closed.len());
        PartsState {
            closed: self.closed.clone(),
            active: Some((self.active, len)),
            next_part: self.next_part,
            next_segment,
        }
    }

    /// Checkpoint `checkpoint` is durable: renames the parts it covers. Their
    /// final names.
    ///
    /// # Errors
    ///
    /// A rename or the directory sync failed; the parts stay listed, and a
    /// restore from the checkpoint renames them.
    pub(crate) fn committed(&mut self, checkpoint: u64) -> io::Result<Vec<PathBuf>> {
        let n = self.covered.commit(checkpoint).min(self.closed.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        for part in &self.closed[..n] {
            self.names.commit(part)?;
        }
        self.names.sync_dir()?;
        Ok(self
            .closed
            .drain(..n)
            .map(|p| self.names.target(&p.target))
            .collect())
    }

    /// The stream has ended: commits every part, the active one (`len` bytes
    /// long and synced) as the sink's path. Their final names.
    ///
    /// # Errors
    ///
    /// An I/O error; the manifest left behind makes the next start finish the
    /// commit.
    pub(crate) fn finish(&mut self, len: u64) -> io::Result<Vec<PathBuf>> {
        let mut parts = std::mem::take(&mut self.closed);
        parts.push(ClosedPart {
            k: self.active,
            len,
            target: Target::Path,
        });
        self.names.commit_all(&parts)?;
        self.covered.clear();
        Ok(parts.iter().map(|p| self.names.target(&p.target)).collect())
    }
}

#[cfg(test)]
mod tests {
    use weir_supervisor::fs::RealFs;

    use super::*;

    #[test]
    fn names_sit_next_to_the_path_hidden() {
        let names = PartNames::new(Path::new("/data/out.log"), Arc::new(RealFs));
        assert_eq!(names.pending(3), Path::new("/data/.out.log.pending-3"));
        assert_eq!(names.manifest(), Path::new("/data/.out.log.commit"));
        assert_eq!(names.target(&Target::Path), Path::new("/data/out.log"));
        assert_eq!(
            names.target(&Target::Rotated("2".into())),
            Path::new("/data/out.log.2")
        );
        let bare = PartNames::new(Path::new("out"), Arc::new(RealFs));
        assert_eq!(bare.pending(0), Path::new("./.out.pending-0"));
    }

    #[test]
    fn a_commit_covers_a_prefix_and_later_ones_move_up() {
        let mut c = Covered::default();
        c.record(1, 2);
        c.record(2, 2);
        c.record(3, 5);
        // 2 fails (never durable); 3 commits what 1 and 2 covered and more.
        assert_eq!(c.commit(1), 2);
        assert_eq!(c.commit(3), 3);
        assert_eq!(c.commit(2), 0);
        assert_eq!(c.commit(3), 0, "at most once");
    }

    #[test]
    fn commits_are_idempotent_and_a_lost_part_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let names = PartNames::new(&dir.path().join("out"), Arc::new(RealFs));
        let part = ClosedPart {
            k: 0,
            len: 2,
            target: Target::Rotated("1".into()),
        };
        std::fs::write(names.pending(0), "a\n").unwrap();
        assert!(names.commit(&part).unwrap());
        assert!(!names.commit(&part).unwrap());
        assert_eq!(std::fs::read(dir.path().join("out.1")).unwrap(), b"a\n");
        std::fs::remove_file(dir.path().join("out.1")).unwrap();
        let err = names.commit(&part).unwrap_err();
        assert!(err.to_string().contains("part 0 is gone"), "{err}");
    }

    #[test]
    fn an_interrupted_final_commit_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let names = PartNames::new(&dir.path().join("out"), Arc::new(RealFs));
        let parts = [
            ClosedPart {
                k: 4,
                len: 2,
                target: Target::Rotated("1".into()),
            },
            ClosedPart {
                k: 5,
                len: 2,
                target: Target::Path,
            },
        ];
        std::fs::write(names.pending(4), "a\n").unwrap();
        std::fs::write(names.pending(5), "b\n").unwrap();
        // The crash came after the manifest and the first rename.
        let bytes = weir_runtime::checkpoint::encode(&parts[..]).unwrap();
        std::fs::write(names.manifest(), bytes).unwrap();
        names.commit(&parts[0]).unwrap();
        assert!(names.finish_interrupted().unwrap());
        assert!(!names.finish_interrupted().unwrap());
        assert_eq!(std::fs::read(dir.path().join("out.1")).unwrap(), b"a\n");
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"b\n");
        assert!(names.list_pending().unwrap().is_empty());
    }
}
