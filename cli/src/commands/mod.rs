//! One module per subcommand.

pub(crate) mod accounts;
pub(crate) mod aliases;
pub(crate) mod bench;
pub(crate) mod dashboard;
pub(crate) mod deletes;
pub(crate) mod dlq;
pub(crate) mod emulator;
pub(crate) mod groups;
pub(crate) mod keys;
pub(crate) mod licenses;
pub(crate) mod online_admin;
pub(crate) mod producer;
pub(crate) mod publish;
pub(crate) mod status;
pub(crate) mod up;
pub(crate) mod watch;
pub(crate) mod worker;
