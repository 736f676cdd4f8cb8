//! [`FaultFs`]: a file system on the real one that fails, or "crashes", at the
//! k-th operation that changes the disk, and can then model a power loss.
//!
//! Compiled for this crate's tests and with the `fault-injection` feature, which
//! the other weir crates turn on for their tests only.

use std::collections::HashMap;
use std::fs::{self, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Fs, FsFile, Open, RealFs, parent_dir};

/// How the fault at the armed operation behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The operation fails and does nothing; later ones work (a full disk, an
    /// `EIO` the caller survives).
    Fail,
    /// A write writes half its bytes and returns that count (a short write),
    /// and the operation after it fails (a disk filling up in the middle of a
    /// write); any other operation fails as under `Fail`.
    Torn,
    /// The process dies: a write writes half its bytes, nothing after it
    /// happens; what the kernel has stays (`kill -9`).
    Kill,
    /// As `Kill`, then (at [`FaultFs::lose_power`]) the machine loses power:
    /// data not synced is lost, and directory entries (creations, renames) not
    /// synced are undone.
    PowerLoss,
}

impl Mode {
    /// Every mode, for a test to loop over.
    pub const ALL: [Mode; 4] = [Mode::Fail, Mode::Torn, Mode::Kill, Mode::PowerLoss];

    /// Whether the process goes on after the fault.
    pub fn survives(self) -> bool {
        matches!(self, Mode::Fail | Mode::Torn)
    }
}

/// A directory change not yet synced.
#[derive(Debug)]
enum DirOp {
    Create(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl DirOp {
    fn in_dir(&self, dir: &Path) -> bool {
        let path = match self {
            DirOp::Create(p) | DirOp::Rename(_, p) => p,
        };
        parent_dir(path) == dir
    }
}

#[derive(Debug, Default)]
struct Journal {
    /// The operations done since arming, by name.
    ops: Vec<String>,
    armed: bool,
    fault: Option<(usize, Mode)>,
    /// A short write came: the next operation fails.
    fail_next: bool,
    dead: bool,
    /// Files with changes not synced yet, and the length that is synced.
    unsynced: HashMap<PathBuf, u64>,
    /// Directory changes since their directory's last sync.
    dir_ops: Vec<DirOp>,
}

/// What an operation does.
enum Go {
    Do,
    /// Fail without doing anything.
    Refuse,
    /// Do part of it (half of a write), then fail.
    Tear,
    /// Do half of a write and report it.
    Short,
}

/// The error every injected fault returns.
fn injected() -> io::Error {
    io::Error::other("injected fault")
}

/// A file system on the real one that fails or crashes at the k-th operation
/// that changes the disk (counted from 0 once [armed](Self::arm) or
/// [counting](Self::count)). Durability is modelled, not done: its syncs do not
/// call `fsync` (so that a test of a thousand faults stays fast), and
/// [`lose_power`](Self::lose_power) undoes what a real power loss could.
///
/// The model is pessimistic about data (unsynced bytes are lost, a truncation
/// keeps only what was synced below it) and about creations and renames (undone
/// unless their directory was synced); it takes removals as durable at once.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use weir_supervisor::fs::{FaultFs, Fs, Mode, Open};
///
/// let dir = tempfile::tempdir()?;
/// let fs = FaultFs::default();
/// fs.arm(1, Mode::PowerLoss); // the write after the open
/// let mut file = fs.open(&dir.path().join("a"), Open::CreateNew)?;
/// assert!(file.write_all(b"lost").is_err());
/// fs.lose_power();
/// assert_eq!(fs.ops().len(), 2);
/// assert!(!dir.path().join("a").exists(), "its creation was never synced");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct FaultFs(Arc<Mutex<Journal>>);

impl FaultFs {
    fn journal(&self) -> MutexGuard<'_, Journal> {
        // A test that panicked while holding it poisoned it; the journal is
        // still what it was.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts operations from now on and faults the one at index `k` (from 0)
    /// as `mode` says.
    pub fn arm(&self, k: usize, mode: Mode) {
        let mut j = self.journal();
        j.armed = true;
        j.fault = Some((k, mode));
    }

    /// Counts operations from now on, with no fault.
    pub fn count(&self) {
        self.journal().armed = true;
    }

    /// The operations counted so far, as `<op> <path>`.
    pub fn ops(&self) -> Vec<String> {
        self.journal().ops.clone()
    }

    /// Whether a `Kill` or `PowerLoss` fault has fired: every operation fails
    /// from then on.
    pub fn is_dead(&self) -> bool {
        self.journal().dead
    }

    fn begin(&self, op: &str, path: &Path) -> Go {
        let mut j = self.journal();
        if j.dead {
            return Go::Refuse;
        }
        if !j.armed {
            return Go::Do;
        }
        let index = j.ops.len();
        j.ops.push(format!("{op} {}", path.display()));
        if std::mem::take(&mut j.fail_next) {
            return Go::Refuse;
        }
        match j.fault {
            Some((k, Mode::Fail)) if k == index => Go::Refuse,
            Some((k, Mode::Torn)) if k == index && op == "write" => {
                j.fail_next = true;
                Go::Short
            }
            Some((k, Mode::Torn)) if k == index => Go::Refuse,
            Some((k, _)) if k == index => {
                j.dead = true;
                Go::Tear
            }
            _ => Go::Do,
        }
    }

    /// What a power loss after the crash leaves on disk: unsynced data cut
    /// off, unsynced directory changes undone (newest first).
    ///
    /// # Panics
    ///
    /// If the real file system refuses to undo a rename.
    pub fn lose_power(&self) {
        let mut j = self.journal();
        for (path, synced) in j.unsynced.drain() {
            if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                let _ = file.set_len(synced);
            }
        }
        while let Some(op) = j.dir_ops.pop() {
            match op {
                DirOp::Create(path) => {
                    let _ = fs::remove_file(path);
                }
                DirOp::Rename(from, to) => {
                    if to.exists() {
                        fs::rename(to, from).expect("undo a rename");
                    }
                }
            }
        }
    }

    /// Records that `path`'s synced length is at most `len` from now on, unless
    /// it is tracked already.
    fn touch(&self, path: &Path, len: u64) {
        self.journal()
            .unsynced
            .entry(path.to_path_buf())
            .or_insert(len);
    }
}

impl Fs for FaultFs {
    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn FsFile>> {
        match self.begin("open", path) {
            Go::Do => {}
            Go::Refuse | Go::Tear | Go::Short => return Err(injected()),
        }
        let existed = path.exists();
        let file = RealFs.open(path, how)?;
        let mut j = self.journal();
        if !existed {
            j.dir_ops.push(DirOp::Create(path.to_path_buf()));
            j.unsynced.insert(path.to_path_buf(), 0);
        } else if how == Open::Truncate {
            j.unsynced.insert(path.to_path_buf(), 0);
        }
        drop(j);
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.begin("rename", to) {
            Go::Do => {}
            Go::Refuse | Go::Tear | Go::Short => return Err(injected()),
        }
        fs::rename(from, to)?;
        let mut j = self.journal();
        j.unsynced.remove(to);
        if let Some(synced) = j.unsynced.remove(from) {
            j.unsynced.insert(to.to_path_buf(), synced);
        }
        j.dir_ops
            .push(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self.begin("sync_dir", dir) {
            Go::Do => {}
            Go::Refuse | Go::Tear | Go::Short => return Err(injected()),
        }
        self.journal().dir_ops.retain(|op| !op.in_dir(dir));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match self.begin("remove", path) {
            Go::Do => {}
            Go::Refuse | Go::Tear | Go::Short => return Err(injected()),
        }
        fs::remove_file(path)?;
        self.journal().unsynced.remove(path);
        Ok(())
    }
}

/// A file of a [`FaultFs`].
struct FaultFile {
    fs: FaultFs,
    path: PathBuf,
    file: Box<dyn FsFile>,
}

impl FaultFile {
    fn sync(&mut self, op: &str) -> io::Result<()> {
        match self.fs.begin(op, &self.path) {
            Go::Do => {}
            Go::Refuse | Go::Tear | Go::Short => return Err(injected()),
        }
        // Modelled: the real fsync would only make the tests slow.
        self.fs.journal().unsynced.remove(&self.path);
        Ok(())
    }
}

impl Read for FaultFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for FaultFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl Write for FaultFile {
    /// One operation: writes all of `buf`; or half of it, and fails (killed) or
    /// returns the half's length (a short write).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let go = self.fs.begin("write", &self.path);
        let len = self.file.len()?;
        self.fs.touch(&self.path, len);
        match go {
            Go::Do => {
                self.file.write_all(buf)?;
                Ok(buf.len())
            }
            Go::Refuse => Err(injected()),
            Go::Tear => {
                self.file.write_all(&buf[..buf.len() / 2])?;
                Err(injected())
            }
            Go::Short => {
                let half = buf.len().div_ceil(2);
                self.file.write_all(&buf[..half])?;
                Ok(half)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FsFile for FaultFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync("sync")
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync("sync")
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        match self.fs.begin("set_len", &self.path) {
            Go::Do => {}
            Go::Refuse | Go::Tear | Go::Short => return Err(injected()),
        }
        let before = self.file.len()?;
        self.file.set_len(len)?;
        let mut j = self.fs.journal();
        let synced = j.unsynced.entry(self.path.clone()).or_insert(before);
        *synced = (*synced).min(len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn try_lock(&self) -> Result<(), TryLockError> {
        self.file.try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_undoes_unsynced_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let fs = FaultFs::default();
        fs.arm(6, Mode::PowerLoss);
        let mut file = fs.open(&a, Open::CreateNew).unwrap(); // 0
        file.write_all(b"kept").unwrap(); // 1
        file.sync_data().unwrap(); // 2
        fs.sync_dir(dir.path()).unwrap(); // 3
        file.write_all(b" lost").unwrap(); // 4
        fs.rename(&a, &b).unwrap(); // 5
        assert!(fs.sync_dir(dir.path()).is_err()); // 6: the crash
        assert!(fs.is_dead());
        assert!(file.write_all(b"x").is_err());
        fs.lose_power();
        assert_eq!(fs::read(&a).unwrap(), b"kept");
        assert!(!b.exists());
        assert_eq!(fs.ops().len(), 7);
    }

    #[test]
    fn a_short_write_writes_half_the_next_operation_fails_and_the_process_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        fs.arm(1, Mode::Torn);
        let mut file = fs.open(&dir.path().join("a"), Open::Append).unwrap();
        // `write_all` writes again after the short write: that one fails.
        assert!(file.write_all(b"abcd").is_err());
        file.write_all(b"ef").unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"abef");
        assert_eq!(fs.ops().len(), 4);
        assert!(!fs.is_dead());
    }
}
