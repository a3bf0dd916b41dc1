//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod import;
pub mod info;
pub mod init;
pub mod pnp;
pub mod reconstruct;
pub mod train;
