//! geo: being written.
