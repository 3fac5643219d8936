use std::io;
use std::path::PathBuf;

/// Why the store could not do what was asked.
///
/// Callers that answer clients (the producer's ingest) map every variant to "cannot store now"
/// (HTTP 503); [`StoreError::is_storage_full`] tells the operator-facing message apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or its permissions set.
    #[error("cannot create the data directory {path}")]
    CreateDirectory {
        /// The directory that was asked for.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Store` in this one) holds the database open.
    #[error("the database at {path} is in use by another process")]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// Reading or writing the database files failed (disk full, permissions, I/O error).
    #[error("disk i/o failed while trying to {operation}")]
    Io {
        /// What the store was doing, e.g. "append to the outbox".
        operation: &'static str,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// sled found corrupt data on disk.
    #[error(
        "the database is corrupt (found while trying to {operation}); restore it from a backup or move it aside"
    )]
    Corrupt {
        /// What the store was doing.
        operation: &'static str,
    },
    /// sled reported an internal failure (a bug or unsupported use).
    #[error("the storage engine failed while trying to {operation}: {detail}")]
    Engine {
        /// What the store was doing.
        operation: &'static str,
        /// sled's own description.
        detail: String,
    },
    /// A stored record could not be decoded (written by an incompatible version).
    #[error("a stored {record} record could not be decoded")]
    Decode {
        /// Which kind of record.
        record: &'static str,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A stored key or value has the wrong length or shape.
    #[error("a stored {record} record is malformed: {detail}")]
    Malformed {
        /// Which kind of record.
        record: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A name given to the store is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidName {
        /// Which name (e.g. "outbox name").
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// True when the failure is the disk being full, so a caller can say "free disk space".
    #[must_use]
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28))
    }

    pub(crate) fn from_sled(operation: &'static str, error: sled::Error) -> StoreError {
        match error {
            sled::Error::Io(source) => StoreError::Io { operation, source },
            sled::Error::Corruption { .. } => StoreError::Corrupt { operation },
            sled::Error::CollectionNotFound(_) => StoreError::Engine {
                operation,
                detail: "a tree vanished while in use".to_owned(),
            },
            sled::Error::Unsupported(detail) | sled::Error::ReportableBug(detail) => {
                StoreError::Engine { operation, detail }
            }
        }
    }
}

/// Maps a sled error with the operation it interrupted.
pub(crate) trait SledResultExt<T> {
    fn during(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T> SledResultExt<T> for Result<T, sled::Error> {
    fn during(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::from_sled(operation, error))
    }
}
