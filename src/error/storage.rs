//! Errors of the storage root: resolving a location, and the startup check.

use std::fmt;

/// A storage location could not be resolved or reached.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A location could not be resolved or reached.
    #[error(
        "storage error at {}: {}",
        crate::redact::redact(location),
        crate::redact::redact(message)
    )]
    Location {
        /// The table or root URL.
        location: String,
        /// What went wrong.
        message: String,
    },

    /// The startup storage check failed: unreachable, access denied, missing
    /// bucket or container (see `StorageRoot::check`).
    #[error("storage check failed for {location}: {problem}: {detail}")]
    Check {
        /// The root, as `StorageRoot::describe` shows it.
        location: String,
        /// What is wrong, with what to do about it.
        problem: StorageProblem,
        /// The server's answer, redacted.
        detail: String,
    },
}

/// Why the storage check failed, with what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// Nothing answers at the endpoint (connection refused, DNS, timeout).
    Unreachable,
    /// The server refused the credentials (403, bad key or signature).
    AccessDenied,
    /// The bucket or container does not exist.
    MissingBucket,
    /// The probe was written but could not be read back intact.
    NotReadable,
    /// The store overwrote an existing object despite `If-None-Match: *`:
    /// Delta commits rely on that conditional write, so two writers could
    /// silently lose a commit.
    NoConditionalWrites,
    /// Anything else the server answered.
    Other,
}

impl fmt::Display for StorageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageProblem::Unreachable => {
                "storage endpoint unreachable (check aws_endpoint_url / AWS_ENDPOINT_URL, the Azure endpoint or AZURITE_BLOB_STORAGE_URL, and that the server runs)"
            }
            StorageProblem::AccessDenied => {
                "access denied: bad credentials (check the access key and secret, account key, SAS token or service principal)"
            }
            StorageProblem::MissingBucket => {
                "the bucket or container does not exist (create it first)"
            }
            StorageProblem::NotReadable => "the probe object could not be read back intact",
            StorageProblem::NoConditionalWrites => {
                "the store ignores conditional writes (If-None-Match: *), so concurrent Delta commits could be lost; use a store that honours them (AWS S3, MinIO, SeaweedFS, Azure) and do not set aws_conditional_put=disabled"
            }
            StorageProblem::Other => "the storage rejected the request",
        })
    }
}
