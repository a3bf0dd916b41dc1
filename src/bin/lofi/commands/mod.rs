//! One module per subcommand.

pub mod import;
pub mod init;
pub mod info;
pub mod reconstruct;
