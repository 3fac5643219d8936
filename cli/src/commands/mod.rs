//! One module per subcommand.

pub(crate) mod emulator;
pub(crate) mod keys;
pub(crate) mod producer;
pub(crate) mod publish;
pub(crate) mod up;
pub(crate) mod worker;
