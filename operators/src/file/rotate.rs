//! [`Naming`]: the names of a file sink's rotated files.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How a [`FileSink`](super::FileSink) names the files it rotates. The active
/// file is always the sink's path; a closed file is renamed next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `<path>.1`, `<path>.2`, … in the order they were written (oldest first),
    /// continuing after the highest number already there, so a restarted sink
    /// never overwrites an earlier file. Reading `<path>.1`, `<path>.2`, …, then
    /// `<path>` gives the stream in order.
    Numbered,
    /// `<path>.<UTC time>.<n>`, e.g. `out.log.20261123T012345Z.000001`: the UTC
    /// second of the rotation and a 6-digit sequence number, so names sort in
    /// the order written.
    Timestamped,
}

/// The rotated files' names, as a sink hands them out.
#[derive(Debug)]
pub(crate) struct Segments {
    path: PathBuf,
    naming: Naming,
    next: u64,
}

impl Segments {
    /// Looks for the numbered files already next to `path`, to continue after them.
    pub(crate) fn scan(path: &Path, naming: Naming) -> std::io::Result<Segments> {
        let mut next = 1;
        if naming == Naming::Numbered {
            let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) => dir.to_path_buf(),
                None => PathBuf::from("."),
            };
            let base = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let prefix = format!("{}.", base.unwrap_or_default());
            for entry in std::fs::read_dir(dir)? {
                let name = entry?.file_name();
                let name = name.to_string_lossy();
                if let Some(n) = name
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.parse::<u64>().ok())
                {
                    next = next.max(n + 1);
                }
            }
        }
        Ok(Segments {
            path: path.to_path_buf(),
            naming,
            next,
        })
    }

    /// Names continuing at sequence number `next` (as recorded by a checkpoint).
    pub(crate) fn resume(path: &Path, naming: Naming, next: u64) -> Segments {
        Segments {
            path: path.to_path_buf(),
            naming,
            next,
        }
    }

    /// The sequence number the next rotated file gets.
    pub(crate) fn next_number(&self) -> u64 {
        self.next
    }

    /// What the next rotated file's name adds after the path and a dot.
    pub(crate) fn next_suffix(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        match self.naming {
            Naming::Numbered => n.to_string(),
            Naming::Timestamped => format!("{}.{n:06}", utc_stamp(SystemTime::now())),
        }
    }

    /// The name of the next rotated file.
    pub(crate) fn next_name(&mut self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".");
        name.push(self.next_suffix());
        PathBuf::from(name)
    }
}

/// `YYYYMMDDTHHMMSSZ` for `t` (UTC).
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_known_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(utc_stamp(t), "20240229T123456Z");
    }

    #[test]
    fn numbering_continues_after_existing_files() {
        let dir = std::env::temp_dir().join(format!("weir-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.log");
        std::fs::write(dir.join("out.log.7"), "").unwrap();
        std::fs::write(dir.join("out.log.x"), "").unwrap();
        let mut s = Segments::scan(&path, Naming::Numbered).unwrap();
        assert_eq!(s.next_name(), dir.join("out.log.8"));
        assert_eq!(s.next_name(), dir.join("out.log.9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
