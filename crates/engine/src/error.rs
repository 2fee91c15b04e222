use std::path::Path;

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
    #[error("storage error in {path}: {source}")]
    Store { path: String, source: rusqlite::Error },
    #[error("storage error: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NoSpace(String),
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn store(path: &Path, source: rusqlite::Error) -> Self {
        EngineError::Store { path: path.display().to_string(), source }
    }
}
