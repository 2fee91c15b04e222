/// What can go wrong in the engine, each with words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no container named or with id '{0}' is known to Leakscope")]
    UnknownContainer(String),
    #[error("no heap dump with id '{0}'")]
    UnknownDump(String),
    #[error("no report {0}")]
    UnknownReport(String),
    #[error("dump {dump} holds no object with id {object}")]
    UnknownObject { dump: String, object: String },
    #[error("the analysis of dump {id} failed: {reason}")]
    AnalysisFailed { id: String, reason: String },
    #[error("the analysis of dump {0} is not ready yet; try again in a few seconds")]
    AnalysisPending(String),
    #[error("the Docker engine at {address} is unreachable: {reason}")]
    EngineUnreachable { address: String, reason: String },
    #[error("{0}")]
    Database(#[from] leakscope_db::DbError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NoSpace(String),
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
    /// The dump store (a bucket) did not answer or refused: worth a retry.
    #[error("{0}")]
    DumpStoreUnavailable(String),
    /// A stored dump is missing or does not match its checksum.
    #[error("{0}")]
    DumpDamaged(String),
}

impl From<leakscope_blobs::BlobError> for EngineError {
    fn from(e: leakscope_blobs::BlobError) -> Self {
        use leakscope_blobs::BlobError;
        match e {
            BlobError::NoSpace { .. } => EngineError::NoSpace(e.to_string()),
            BlobError::Bucket { .. } => EngineError::DumpStoreUnavailable(e.to_string()),
            BlobError::Missing(_) => EngineError::DumpDamaged(e.to_string()),
            BlobError::BadUrl(_) => EngineError::BadRequest(e.to_string()),
            BlobError::Io { .. } => EngineError::Internal(e.to_string()),
        }
    }
}
