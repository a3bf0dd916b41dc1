//! One module per subcommand.

pub mod bench;
pub mod eval;
pub mod import;
pub mod init;
pub mod info;
pub mod reconstruct;
pub mod train;
