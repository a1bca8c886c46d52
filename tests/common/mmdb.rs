//! mmdb writer: being written.
