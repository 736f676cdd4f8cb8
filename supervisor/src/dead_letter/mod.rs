//! Dead letters (in progress).
