//! An in-memory file for the engine's tests and its loom model
//! (`models/tests/dlq_order.rs` includes this file too).

use super::engine::Appender;
use super::{DlqError, DlqPosition};

/// A file of records, each one byte: the letter's number.
#[derive(Debug, Default)]
pub(crate) struct Log(pub(crate) Vec<u8>);

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
