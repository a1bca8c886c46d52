//! detect: being written.
fn main() {}
