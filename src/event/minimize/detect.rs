//! detect: being written.
