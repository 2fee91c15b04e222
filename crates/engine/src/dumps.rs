//! The dump store: files named `<id>.hprof.zst`, `<id>.heapsnapshot.zst` …
//! (zstd at rest, named by their format) in the dump folder or a bucket
//! (`leakscope_blobs`), records in SQLite or PostgreSQL (`leakscope_db`), analyses computed once in the
//! background and kept with the record so no page ever parses a dump.
//!
//! Architecture invariant: a failed import or analysis leaves nothing behind
//! and touches no other dump.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use leakscope_blobs::{DumpFiles, Upload};

use leakscope_model::analysis::{Analysis, HeapSummary};
use leakscope_model::dumps::{DumpFilter, DumpInfo};
use leakscope_db::sqlx::{self, any::AnyRow, Row};
use leakscope_db::{Backend, Db, Migration};
use sha2::{Digest, Sha256};

use crate::error::EngineError;

/// The tables `leakscope migrate` copies, with their auto-numbered column (none).
pub const TABLES: &[(&str, Option<&str>)] = &[("dumps", None)];

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "
CREATE TABLE IF NOT EXISTS dumps (
    id TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    file_name TEXT NOT NULL,
    format TEXT NOT NULL,
    service TEXT NOT NULL,
    container_name TEXT,
    container_id TEXT,
    image TEXT,
    size_bytes BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    trigger TEXT NOT NULL,
    analysis_state TEXT NOT NULL,
    analysis_error TEXT,
    summary_json TEXT,
    analysis_json TEXT,
    pid BIGINT,
    runtime TEXT,
    capture_ms BIGINT,
    requested_by TEXT,
    pause_ms BIGINT,
    working_set_bytes BIGINT,
    host TEXT
);
CREATE INDEX IF NOT EXISTS dumps_by_service ON dumps(service, created_ms);
",
}];

/// Where a new dump came from.
#[derive(Clone, Debug, Default)]
pub struct NewDump {
    pub file_name: String,
    pub service: Option<String>,
    pub container_name: Option<String>,
    pub container_id: Option<String>,
    pub image: Option<String>,
    pub trigger: String,
    /// Expected size when known (uploads with Content-Length), for the free-space check.
    pub expected_bytes: Option<u64>,
    /// Captures: the process's pid in the container, its runtime (`java 17.0.15`, `node v20.20.2`), how long it took, who asked.
    pub pid: Option<u32>,
    pub runtime: Option<String>,
    pub capture_ms: Option<u64>,
    pub requested_by: Option<String>,
    /// How long the process was paused while it wrote the dump.
    pub pause_ms: Option<u64>,
    /// Captures: the container's working set when the capture started.
    pub working_set_bytes: Option<u64>,
    /// Captures: the Docker host the container runs on (its display name).
    pub host: Option<String>,
}

/// A dump written to the dump store, not yet recorded. Dropping it removes
/// the file, so a failed capture leaves nothing behind.
pub struct Staged {
    pub id: String,
    name: String,
    files: Arc<DumpFiles>,
    recorded: bool,
    /// `hprof` or `v8`, from the dump's first bytes.
    pub format: &'static str,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
}

/// Columns added after the first release; added to SQLite files from before versions on open.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("pid", "INTEGER"),
    ("runtime", "TEXT"),
    ("capture_ms", "INTEGER"),
    ("requested_by", "TEXT"),
    ("pause_ms", "INTEGER"),
    ("working_set_bytes", "INTEGER"),
    ("host", "TEXT"),
];

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.recorded {
            self.files.delete_later(&self.name);
        }
    }
}

/// Dumps' records (and their analyses), in the data folder's SQLite file or the team's PostgreSQL.
pub struct DumpStore {
    db: Db,
    files: Arc<DumpFiles>,
}

/// Keep this much free beyond the dump itself.
const FREE_SPACE_MARGIN: u64 = 64 << 20;

pub(crate) fn new_id() -> Result<String, EngineError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| EngineError::Internal(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Dump ids are 24 hex characters; anything else is refused before touching the disk.
pub fn valid_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

/// What a server that stopped mid-capture left in the dump folder: staging
/// files and the folders it shared with the core-dump helper (raw cores).
/// Only when serving starts: a CLI command opening the same data must not
/// remove a running server's files.
pub(crate) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".incoming-") || name.starts_with(".unpacked-") {
            let _ = std::fs::remove_file(entry.path());
        } else if name.starts_with(".core-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Counts and hashes what passes through.
struct Tee<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(what: &str, e: std::io::Error) -> EngineError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        EngineError::NoSpace(format!("{what}: the disk is full; free space in the data directory and try again"))
    } else {
        EngineError::Internal(format!("{what}: {e}"))
    }
}

impl DumpStore {
    /// On `db`, its tables migrated first.
    pub fn on(db: Db, files: Arc<DumpFiles>) -> Result<Self, EngineError> {
        Self::migrate(&db)?;
        Ok(DumpStore { db, files })
    }

    /// Brings the tables to this version's schema (a SQLite file from before
    /// versions first gains the columns added since).
    pub fn migrate(db: &Db) -> Result<(), EngineError> {
        if db.backend() == Backend::Sqlite {
            db.run(async {
                let existing: i64 = sqlx::query("SELECT COUNT(*) FROM pragma_table_info('dumps')").fetch_one(db.pool()).await?.try_get(0)?;
                for (column, kind) in ADDED_COLUMNS.iter().filter(|_| existing > 0) {
                    let present: i64 = sqlx::query("SELECT COUNT(*) FROM pragma_table_info('dumps') WHERE name = $1")
                        .bind(*column)
                        .fetch_one(db.pool())
                        .await?
                        .try_get(0)?;
                    if present == 0 {
                        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE dumps ADD COLUMN {column} {kind}"))).execute(db.pool()).await?;
                    }
                }
                Ok(())
            })?;
        }
        db.migrate("dumps", MIGRATIONS)?;
        Ok(())
    }

    /// Where the dump's bytes are and what it holds: its stored file's name,
    /// its size and checksum (of the dump itself, not of the stored file).
    pub fn stored(&self, id: &str) -> Result<StoredDump, EngineError> {
        let row: Option<(String, i64, String)> = self.db.run(async {
            let row = sqlx::query("SELECT format, size_bytes, sha256 FROM dumps WHERE id = $1").bind(id).fetch_optional(self.db.pool()).await?;
            row.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
        })?;
        let (format, size, sha256) = row.ok_or_else(|| EngineError::UnknownDump(id.to_string()))?;
        Ok(StoredDump { id: id.to_string(), name: stored_name(id, &format), size_bytes: size as u64, sha256, files: self.files.clone() })
    }

    /// Records a staged dump: inserts its row (its file is already in place).
    pub fn commit(&self, mut staged: Staged, meta: NewDump, now_ms: i64) -> Result<DumpInfo, EngineError> {
        let id = staged.id.clone();
        let service = meta
            .service
            .clone()
            .or_else(|| meta.image.clone())
            .or_else(|| meta.container_name.clone())
            .unwrap_or_else(|| "uploads".into());
        let runtime = meta.runtime.clone().or_else(|| Some(runtime_of(staged.format).to_string()));
        let inserted = self.db.run(async {
            sqlx::query(
                "INSERT INTO dumps (id, created_ms, file_name, format, service, container_name, container_id, image,
                    size_bytes, stored_bytes, sha256, trigger, analysis_state, pid, runtime, capture_ms, requested_by, pause_ms, working_set_bytes, host)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14, $15, $16, $17, $18, $19)",
            )
            .bind(&id)
            .bind(now_ms)
            .bind(&meta.file_name)
            .bind(staged.format)
            .bind(&service)
            .bind(&meta.container_name)
            .bind(&meta.container_id)
            .bind(&meta.image)
            .bind(staged.size_bytes as i64)
            .bind(staged.stored_bytes as i64)
            .bind(&staged.sha256)
            .bind(&meta.trigger)
            .bind(meta.pid.map(i64::from))
            .bind(&runtime)
            .bind(meta.capture_ms.map(|v| v as i64))
            .bind(&meta.requested_by)
            .bind(meta.pause_ms.map(|v| v as i64))
            .bind(meta.working_set_bytes.map(|v| v as i64))
            .bind(&meta.host)
            .execute(self.db.pool())
            .await
        });
        // An error drops `staged`, which removes its file.
        inserted?;
        staged.recorded = true;
        self.get(&id)?.ok_or_else(|| EngineError::Internal("stored dump vanished".into()))
    }

    fn row(row: &AnyRow) -> Result<DumpInfo, sqlx::Error> {
        let summary: Option<String> = row.try_get(14)?;
        let unsigned = |i: usize| -> Result<Option<u64>, sqlx::Error> { Ok(row.try_get::<Option<i64>, _>(i)?.map(|v| v as u64)) };
        Ok(DumpInfo {
            id: row.try_get(0)?,
            created_ms: row.try_get(1)?,
            file_name: row.try_get(2)?,
            format: row.try_get(3)?,
            service: row.try_get(4)?,
            container_name: row.try_get(5)?,
            container_id: row.try_get(6)?,
            image: row.try_get(7)?,
            size_bytes: row.try_get::<i64, _>(8)? as u64,
            stored_bytes: row.try_get::<i64, _>(9)? as u64,
            sha256: row.try_get(10)?,
            trigger: row.try_get(11)?,
            analysis_state: row.try_get(12)?,
            analysis_error: row.try_get(13)?,
            analysis_progress: None,
            summary: summary.and_then(|s| serde_json::from_str::<HeapSummary>(&s).ok()),
            pid: row.try_get::<Option<i64>, _>(15)?.and_then(|v| u32::try_from(v).ok()),
            runtime: row.try_get(16)?,
            capture_ms: unsigned(17)?,
            requested_by: row.try_get(18)?,
            pause_ms: unsigned(19)?,
            working_set_bytes: unsigned(20)?,
            host: row.try_get(21)?,
        })
    }

    const COLUMNS: &'static str = "id, created_ms, file_name, format, service, container_name, container_id, image,
        size_bytes, stored_bytes, sha256, trigger, analysis_state, analysis_error, summary_json, pid, runtime, capture_ms, requested_by, pause_ms, working_set_bytes, host";

    pub fn get(&self, id: &str) -> Result<Option<DumpInfo>, EngineError> {
        let sql = format!("SELECT {} FROM dumps WHERE id = $1", Self::COLUMNS);
        Ok(self.db.run(async {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await?;
            row.as_ref().map(Self::row).transpose()
        })?)
    }

    /// Newest first, narrowed by the filter.
    pub fn list(&self, filter: &DumpFilter) -> Result<Vec<DumpInfo>, EngineError> {
        let sql = format!(
            "SELECT {} FROM dumps WHERE ($1 IS NULL OR service = $1) AND ($2 IS NULL OR container_name = $2 OR container_id = $2)
               AND ($3 IS NULL OR substr(COALESCE(runtime, 'java'), 1, length($3)) = $3)
             ORDER BY created_ms DESC",
            Self::COLUMNS
        );
        Ok(self.db.run(async {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&filter.service)
                .bind(&filter.container)
                .bind(&filter.runtime)
                .fetch_all(self.db.pool())
                .await?;
            rows.iter().map(Self::row).collect::<Result<Vec<_>, _>>()
        })?)
    }

    pub fn set_state(&self, id: &str, state: &str, error: Option<&str>) -> Result<(), EngineError> {
        self.db.run(async {
            sqlx::query("UPDATE dumps SET analysis_state = $2, analysis_error = $3 WHERE id = $1").bind(id).bind(state).bind(error).execute(self.db.pool()).await
        })?;
        Ok(())
    }

    pub fn save_analysis(&self, id: &str, analysis: &Analysis) -> Result<(), EngineError> {
        let summary = serde_json::to_string(&analysis.summary).map_err(|e| EngineError::Internal(e.to_string()))?;
        let full = serde_json::to_string(analysis).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.db.run(async {
            sqlx::query("UPDATE dumps SET analysis_state = 'done', analysis_error = NULL, summary_json = $2, analysis_json = $3 WHERE id = $1")
                .bind(id)
                .bind(summary)
                .bind(full)
                .execute(self.db.pool())
                .await
        })?;
        Ok(())
    }

    pub fn analysis(&self, id: &str) -> Result<Option<Analysis>, EngineError> {
        let json: Option<String> = self.db.run(async {
            let row = sqlx::query("SELECT analysis_json FROM dumps WHERE id = $1").bind(id).fetch_optional(self.db.pool()).await?;
            Ok::<_, sqlx::Error>(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
        })?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Stored files in the dump folder with no record: what a server that
    /// stopped between storing a capture and recording it left. Serving start only.
    pub(crate) fn remove_unrecorded(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, _)) = name.split_once('.') else { continue };
            if valid_id(id) && name.ends_with(".zst") && matches!(self.stored(id), Err(EngineError::UnknownDump(_))) {
                tracing::info!(file = %name, "removing a stored dump that was never recorded");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Ids whose analysis never finished (the server stopped mid-way).
    pub fn unfinished(&self) -> Result<Vec<String>, EngineError> {
        Ok(self.db.run(async {
            let rows = sqlx::query("SELECT id FROM dumps WHERE analysis_state IN ('pending', 'running')").fetch_all(self.db.pool()).await?;
            rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()
        })?)
    }

    /// Removes the record; the caller removes the file (`StoredDump::remove`),
    /// outside the store's lock, as a bucket is a network call away.
    pub fn delete(&self, id: &str) -> Result<Option<StoredDump>, EngineError> {
        let stored = match self.stored(id) {
            Ok(s) => s,
            Err(EngineError::UnknownDump(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.db.run(async { sqlx::query("DELETE FROM dumps WHERE id = $1").bind(id).execute(self.db.pool()).await })?;
        Ok(Some(stored))
    }
}

/// What `copy_files_to` did.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: usize,
    /// Already in the target with the right content (a second run).
    pub present: usize,
    pub stored_bytes: u64,
}

impl DumpStore {
    /// Copies every recorded dump's stored file into `target` (another dump
    /// store: a folder's dumps into a bucket), then reads each copy back and
    /// checks its size and SHA-256 against the record. Files already in the
    /// target and intact are not copied again, so a run cut short is resumed
    /// by running it again. The source files are left as they are.
    pub fn copy_files_to(&self, target: &Arc<DumpFiles>, spool: &Path, progress: &dyn Fn(&str)) -> Result<CopyReport, EngineError> {
        let mut report = CopyReport::default();
        let mut ids: Vec<String> = self.list(&DumpFilter::default())?.into_iter().map(|d| d.id).collect();
        ids.reverse();
        for id in ids {
            let there = StoredDump { files: target.clone(), ..self.stored(&id)? };
            if target.exists(&there.name)? && there.verify().is_ok() {
                report.present += 1;
                progress(&format!("{id}: already in {}", target.describe()));
                continue;
            }
            let (mut raw, stored_len) = self.files.open_read(&there.name)?;
            let mut upload = target.create(&there.name, spool)?;
            std::io::copy(&mut raw, &mut upload).map_err(|e| io(&format!("copying dump {id}"), e))?;
            upload.finish()?;
            // Reading the copy back checks the source too: a damaged source
            // fails here, and its copy is not left to pass for the dump.
            if let Err(e) = there.verify() {
                let _ = there.remove();
                return Err(e);
            }
            report.copied += 1;
            report.stored_bytes += stored_len;
            progress(&format!("{id}: copied {} bytes, read back: size and SHA-256 match", stored_len));
        }
        Ok(report)
    }
}

/// A recorded dump's stored file.
pub struct StoredDump {
    pub id: String,
    pub name: String,
    pub size_bytes: u64,
    pub sha256: String,
    files: Arc<DumpFiles>,
}

impl StoredDump {
    /// The dump as it was captured, decompressed and checked against its
    /// SHA-256 as it is read: a damaged file ends in an error, never in a
    /// silently different dump. Blocking (a bucket streams over the network).
    pub fn reader(&self) -> Result<(Verified<zstd::Decoder<'static, std::io::BufReader<Box<dyn Read + Send>>>>, u64), EngineError> {
        let (raw, stored_len) = self.files.open_read(&self.name)?;
        let decoder = zstd::Decoder::new(raw).map_err(|e| io("opening the stored dump", e))?;
        Ok((Verified::new(decoder, &self.id, &self.sha256, self.size_bytes), stored_len))
    }

    /// Reads the whole dump, checking its size and SHA-256.
    pub fn verify(&self) -> Result<(), EngineError> {
        let (mut reader, _) = self.reader()?;
        match std::io::copy(&mut reader, &mut std::io::sink()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(EngineError::DumpDamaged(e.to_string())),
            Err(e) => Err(EngineError::DumpDamaged(format!("dump {}: {e}", self.id))),
        }
    }

    pub fn remove(&self) -> Result<(), EngineError> {
        Ok(self.files.delete(&self.name)?)
    }
}

/// The stored file's name for a dump of this format.
fn stored_name(id: &str, format: &str) -> String {
    format!("{id}.{}.zst", extension_of(format))
}

/// Passes bytes through, hashing them; at the end, an error if they are
/// not the dump that was recorded. The last byte is held back until the
/// check is done, so a reader that counts bytes (an HTTP client told the
/// length) never receives a whole, wrong dump.
pub struct Verified<R> {
    inner: R,
    hash: Sha256,
    read: u64,
    held: Option<u8>,
    finished: bool,
    id: String,
    expected_sha256: String,
    expected_bytes: u64,
}

impl<R: Read> Verified<R> {
    fn new(inner: R, id: &str, sha256: &str, size: u64) -> Self {
        Verified {
            inner,
            hash: Sha256::new(),
            read: 0,
            held: None,
            finished: false,
            id: id.to_string(),
            expected_sha256: sha256.to_string(),
            expected_bytes: size,
        }
    }

    fn check(&self) -> std::io::Result<()> {
        let got = format!("{:x}", self.hash.clone().finalize());
        if self.read != self.expected_bytes || got != self.expected_sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the stored file of dump {} is damaged: it holds {} bytes with SHA-256 {got}, the dump recorded was {} bytes with SHA-256 {}",
                    self.id, self.read, self.expected_bytes, self.expected_sha256
                ),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.finished {
            return Ok(0);
        }
        loop {
            let n = match self.inner.read(buf) {
                Ok(n) => n,
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("the stored file of dump {} cannot be read: {e}", self.id))),
            };
            if n == 0 {
                self.check()?;
                self.finished = true;
                return Ok(match self.held.take() {
                    Some(last) => {
                        buf[0] = last;
                        1
                    }
                    None => 0,
                });
            }
            self.hash.update(&buf[..n]);
            self.read += n as u64;
            // Hand out the byte held before and all but the last of these.
            let last = buf[n - 1];
            match self.held.replace(last) {
                Some(before) => {
                    buf.copy_within(0..n - 1, 1);
                    buf[0] = before;
                    return Ok(n);
                }
                None if n > 1 => return Ok(n - 1),
                None => continue,
            }
        }
    }
}


/// Streams a dump (plain or gzipped HPROF) into the dump store, compressing
/// with zstd and hashing on the way (a bucket receives it in parts as it
/// arrives). Never holds the dump in memory and takes no lock, so the
/// history stays browsable during a long copy. `dir` is the local dump
/// folder, for the free-space check and a folder store's temporary file.
pub fn stage(files: &Arc<DumpFiles>, dir: &Path, mut source: impl Read, expected_bytes: Option<u64>) -> Result<Staged, EngineError> {
    if let (false, Some(need), Some(free)) = (files.is_bucket(), expected_bytes, free_bytes(dir)) {
        if need.saturating_add(FREE_SPACE_MARGIN) > free {
            return Err(EngineError::NoSpace(format!(
                "not enough disk space in {}: the dump needs about {} MiB, {} MiB are free",
                dir.display(),
                need >> 20,
                free >> 20
            )));
        }
    }
    let mut head = [0u8; 2];
    let got = read_fully(&mut source, &mut head).map_err(|e| io("reading the upload", e))?;
    let chained = std::io::Cursor::new(head[..got].to_vec()).chain(source);
    let mut reader: Box<dyn Read> = if got == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(chained))
    } else {
        Box::new(chained)
    };
    // Check the magic before accepting the rest.
    let mut magic = [0u8; 18];
    let m = read_fully(&mut reader, &mut magic).map_err(|e| io("reading the upload", e))?;
    let format = match leakscope_heap::formats::sniff(&magic[..m]) {
        Some(_) if m < 18 => None,
        Some(leakscope_heap::Format::Hprof) if magic.starts_with(b"JAVA PROFILE 1.0.") => Some("hprof"),
        Some(f @ (leakscope_heap::Format::V8 | leakscope_heap::Format::Python | leakscope_heap::Format::MemoryMap | leakscope_heap::Format::HeapProfile | leakscope_heap::Format::Core)) => Some(f.key()),
        _ => None,
    };
    let Some(format) = format else {
        return Err(EngineError::BadRequest(
            "not an HPROF heap dump, a V8 heap snapshot, a Leakscope Python heap snapshot or memory map, a Go heap profile \
             nor an ELF core dump (expected a .hprof or .hprof.gz that starts with 'JAVA PROFILE 1.0.', a .heapsnapshot from \
             Node.js or Chrome, a .pyheap, a .memmap, a pprof heap profile from /debug/pprof/heap, or a 64-bit core file, \
             gzipped or not)"
                .into(),
        ));
    };
    let id = new_id()?;
    let name = stored_name(&id, format);
    let upload = files.create(&name, dir)?;
    let encoder = zstd::Encoder::new(upload, 3).map_err(|e| io("starting compression", e))?;
    let mut tee = Tee { inner: encoder, hash: Sha256::new(), bytes: 0 };
    tee.write_all(&magic).map_err(|e| io("storing the dump", e))?;
    std::io::copy(&mut reader, &mut tee).map_err(|e| io("storing the dump", e))?;
    let Tee { inner, hash, bytes } = tee;
    let upload: Upload = inner.finish().map_err(|e| io("finishing compression", e))?;
    let stored_bytes = upload.finish()?;
    let sha256 = format!("{:x}", hash.finalize());
    Ok(Staged { id, name, files: files.clone(), recorded: false, format, size_bytes: bytes, stored_bytes, sha256 })
}

/// The file extension a dump of this format is downloaded (and stored) with.
pub fn extension_of(format: &str) -> &'static str {
    leakscope_heap::Format::from_key(format).unwrap_or(leakscope_heap::Format::Hprof).extension()
}

fn runtime_of(format: &str) -> &'static str {
    leakscope_heap::Format::from_key(format).unwrap_or(leakscope_heap::Format::Hprof).runtime()
}

fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Unpacks a stored dump into a temporary file in `dir` (for mmap analysis).
pub fn unpack(stored: &StoredDump, dir: &Path) -> Result<tempfile::NamedTempFile, EngineError> {
    unpack_with_progress(stored, dir, &|_, _| {})
}

/// As `unpack`, telling `report` how many bytes of the dump it has
/// written, and how many there are.
pub fn unpack_with_progress(stored: &StoredDump, dir: &Path, report: &dyn Fn(u64, u64)) -> Result<tempfile::NamedTempFile, EngineError> {
    let (mut reader, _) = stored.reader()?;
    let mut tmp = tempfile::Builder::new().prefix(".unpacked-").tempfile_in(dir).map_err(|e| io("unpacking the dump", e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(EngineError::DumpDamaged(e.to_string())),
            Err(e) => return Err(io("unpacking the dump", e)),
        };
        out.write_all(&buf[..n]).map_err(|e| io("unpacking the dump", e))?;
        written += n as u64;
        report(written, stored.size_bytes);
    }
    out.flush().map_err(|e| io("unpacking the dump", e))?;
    drop(out);
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_file_from_before_versions_keeps_its_dumps_and_gains_the_later_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leakscope.db");
        {
            // The table as the first release made it, with one dump.
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE dumps (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, file_name TEXT NOT NULL, format TEXT NOT NULL,
                    service TEXT NOT NULL, container_name TEXT, container_id TEXT, image TEXT, size_bytes INTEGER NOT NULL,
                    stored_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, trigger TEXT NOT NULL, analysis_state TEXT NOT NULL,
                    analysis_error TEXT, summary_json TEXT, analysis_json TEXT);
                 INSERT INTO dumps VALUES ('abc', 5, 'app.hprof', 'hprof', 'orders', 'orders-1', NULL, NULL, 10, 4, 'ff', 'upload', 'done', NULL, NULL, NULL);",
            )
            .unwrap();
        }
        let files = Arc::new(DumpFiles::folder(&dir.path().join("dumps")));
        let store = DumpStore::on(Db::open_sqlite(&path).unwrap(), files).unwrap();
        let dump = store.get("abc").unwrap().expect("the old dump is still there");
        assert_eq!((dump.service.as_str(), dump.size_bytes, dump.pid, dump.host), ("orders", 10, None, None));
        let listed = store.list(&DumpFilter { service: Some("orders".into()), runtime: Some("java".into()), ..Default::default() }).unwrap();
        assert_eq!(listed.len(), 1, "an old record without a runtime counts as Java");
        assert_eq!(store.db.schema_version("dumps").unwrap(), 1);
        assert!(store.delete("abc").unwrap().is_some());
        assert!(store.get("abc").unwrap().is_none());
    }

    #[test]
    fn records_filter_update_and_delete_on_postgresql() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(DumpFiles::folder(&dir.path().join("dumps")));
        let store = DumpStore::on(Db::open(&leakscope_db::test_postgres_url()).unwrap(), files).unwrap();
        store
            .db
            .run(async {
                sqlx::query(
                    "INSERT INTO dumps (id, created_ms, file_name, format, service, container_name, size_bytes, stored_bytes, sha256, trigger, analysis_state, runtime, pid)
                     VALUES ('n1', 7, 'a.heapsnapshot', 'v8', 'web', 'web-1', 5000000000, 9, 'ee', 'capture', 'pending', 'node v20', 4000000000)",
                )
                .execute(store.db.pool())
                .await
            })
            .unwrap();
        let only = |service: Option<&str>, container: Option<&str>, runtime: Option<&str>| {
            let filter = DumpFilter { service: service.map(Into::into), container: container.map(Into::into), runtime: runtime.map(Into::into) };
            store.list(&filter).unwrap().len()
        };
        assert_eq!((only(None, None, None), only(Some("web"), Some("web-1"), Some("node")), only(None, None, Some("java"))), (1, 1, 0));
        let dump = store.get("n1").unwrap().unwrap();
        assert_eq!((dump.size_bytes, dump.pid), (5_000_000_000, Some(4_000_000_000)), "sizes beyond 32 bits survive");
        assert_eq!(store.unfinished().unwrap(), vec!["n1".to_string()]);
        store.set_state("n1", "failed", Some("truncated")).unwrap();
        assert_eq!(store.get("n1").unwrap().unwrap().analysis_error.as_deref(), Some("truncated"));
        assert!(store.unfinished().unwrap().is_empty() && store.analysis("n1").unwrap().is_none());
        assert!(store.delete("n1").unwrap().is_some() && store.delete("n1").unwrap().is_none());
    }

    fn sha(data: &[u8]) -> String {
        format!("{:x}", Sha256::digest(data))
    }

    /// Reads with buffers of `step` bytes; the bytes handed out before the end or the error.
    fn read_all(data: &[u8], recorded: &[u8], step: usize) -> (Vec<u8>, Option<std::io::Error>) {
        let mut v = Verified::new(data, "d", &sha(recorded), recorded.len() as u64);
        let (mut out, mut buf) = (Vec::new(), vec![0u8; step]);
        loop {
            match v.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn verified_reads_pass_intact_data_and_never_all_of_damaged_data() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for step in [1, 2, 3, 64, 4096, 20_000] {
            let (out, err) = read_all(&data, &data, step);
            assert!(err.is_none() && out == data, "intact, step {step}");
            let mut damaged = data.clone();
            damaged[5_000] ^= 1;
            let (out, err) = read_all(&damaged, &data, step);
            assert_eq!(err.expect("damaged data ends in an error").kind(), std::io::ErrorKind::InvalidData);
            assert!(out.len() < data.len(), "step {step}: the last byte is held back");
            let (out, err) = read_all(&data[..9_000], &data, step);
            assert!(err.is_some() && out.len() < 9_000, "cut, step {step}");
        }
        let (out, err) = read_all(b"", b"", 8);
        assert!(out.is_empty() && err.is_none());
    }
}
