//! Subcommands too long to live in `main.rs`; each file is one family of commands.

pub mod bench;
pub mod quantize;
pub mod serve;
pub mod sources;
pub mod train;
