//! The dump store: files under `<data>/dumps/<id>.hprof.zst` or
//! `<id>.heapsnapshot.zst` (zstd at rest, named by their format),
//! records in SQLite, analyses computed once in the background and kept with
//! the record so no page ever parses a dump.
//!
//! Architecture invariant: a failed import or analysis leaves nothing behind
//! and touches no other dump.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use leakscope_model::analysis::{Analysis, HeapSummary};
use leakscope_model::dumps::{DumpFilter, DumpInfo};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::error::EngineError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dumps (
    id TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    format TEXT NOT NULL,
    service TEXT NOT NULL,
    container_name TEXT,
    container_id TEXT,
    image TEXT,
    size_bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    trigger TEXT NOT NULL,
    analysis_state TEXT NOT NULL,
    analysis_error TEXT,
    summary_json TEXT,
    analysis_json TEXT,
    pid INTEGER,
    runtime TEXT,
    capture_ms INTEGER,
    requested_by TEXT,
    pause_ms INTEGER
);
CREATE INDEX IF NOT EXISTS dumps_by_service ON dumps(service, created_ms);
";

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

/// A dump written to a temporary file in the dump folder, not yet recorded.
/// Dropping it removes the file, so a failed capture leaves nothing behind.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    /// `hprof` or `v8`, from the dump's first bytes.
    pub format: &'static str,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
}

/// Columns added after the first release; added to older databases on open.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("pid", "INTEGER"),
    ("runtime", "TEXT"),
    ("capture_ms", "INTEGER"),
    ("requested_by", "TEXT"),
    ("pause_ms", "INTEGER"),
    ("working_set_bytes", "INTEGER"),
    ("host", "TEXT"),
];

pub struct DumpStore {
    conn: Connection,
    dir: PathBuf,
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
        if name.starts_with(".incoming-") {
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
    pub fn open(db: &Path, dir: &Path) -> Result<Self, EngineError> {
        let conn = crate::store::open_sqlite(db, SCHEMA)?;
        for (column, kind) in ADDED_COLUMNS {
            let present: bool = conn
                .query_row("SELECT COUNT(*) FROM pragma_table_info('dumps') WHERE name = ?1", [column], |r| r.get::<_, i64>(0))
                .map(|n| n > 0)?;
            if !present {
                conn.execute(&format!("ALTER TABLE dumps ADD COLUMN {column} {kind}"), [])?;
            }
        }
        Ok(DumpStore { conn, dir: dir.to_path_buf() })
    }

    /// The stored file of a dump, whichever format it holds.
    pub fn file_of(&self, id: &str) -> PathBuf {
        leakscope_heap::Format::ALL
            .into_iter()
            .map(|f| self.file_for(id, f.key()))
            .find(|p| p.exists())
            .unwrap_or_else(|| self.file_for(id, "hprof"))
    }

    fn file_for(&self, id: &str, format: &str) -> PathBuf {
        self.dir.join(format!("{id}.{}.zst", extension_of(format)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stage and record in one go (uploads).
    pub fn import(&self, source: impl Read, meta: NewDump, now_ms: i64) -> Result<DumpInfo, EngineError> {
        let staged = stage(&self.dir, source, meta.expected_bytes)?;
        self.commit(staged, meta, now_ms)
    }

    /// Records a staged dump: renames it into place and inserts its row.
    pub fn commit(&self, staged: Staged, meta: NewDump, now_ms: i64) -> Result<DumpInfo, EngineError> {
        let id = new_id()?;
        let target = self.file_for(&id, staged.format);
        staged.tmp.persist(&target).map_err(|e| io("saving the dump", e.error))?;
        let service = meta
            .service
            .clone()
            .or_else(|| meta.image.clone())
            .or_else(|| meta.container_name.clone())
            .unwrap_or_else(|| "uploads".into());
        let inserted = self.conn.execute(
            "INSERT INTO dumps (id, created_ms, file_name, format, service, container_name, container_id, image,
                size_bytes, stored_bytes, sha256, trigger, analysis_state, pid, runtime, capture_ms, requested_by, pause_ms, working_set_bytes, host)
             VALUES (?1, ?2, ?3, ?16, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?12, ?13, ?14, ?15, ?17, ?18, ?19)",
            params![id, now_ms, meta.file_name, service, meta.container_name, meta.container_id, meta.image,
                staged.size_bytes as i64, staged.stored_bytes as i64, staged.sha256, meta.trigger,
                meta.pid, meta.runtime.clone().or_else(|| Some(runtime_of(staged.format).to_string())),
                meta.capture_ms.map(|v| v as i64), meta.requested_by, staged.format, meta.pause_ms.map(|v| v as i64),
                meta.working_set_bytes.map(|v| v as i64), meta.host],
        );
        if let Err(e) = inserted {
            let _ = std::fs::remove_file(&target);
            return Err(e.into());
        }
        self.get(&id)?.ok_or_else(|| EngineError::Internal("stored dump vanished".into()))
    }

    fn row(row: &rusqlite::Row) -> rusqlite::Result<DumpInfo> {
        let summary: Option<String> = row.get(14)?;
        Ok(DumpInfo {
            id: row.get(0)?,
            created_ms: row.get(1)?,
            file_name: row.get(2)?,
            format: row.get(3)?,
            service: row.get(4)?,
            container_name: row.get(5)?,
            container_id: row.get(6)?,
            image: row.get(7)?,
            size_bytes: row.get::<_, i64>(8)? as u64,
            stored_bytes: row.get::<_, i64>(9)? as u64,
            sha256: row.get(10)?,
            trigger: row.get(11)?,
            analysis_state: row.get(12)?,
            analysis_error: row.get(13)?,
            analysis_progress: None,
            summary: summary.and_then(|s| serde_json::from_str::<HeapSummary>(&s).ok()),
            pid: row.get(15)?,
            runtime: row.get(16)?,
            capture_ms: row.get::<_, Option<i64>>(17)?.map(|v| v as u64),
            requested_by: row.get(18)?,
            pause_ms: row.get::<_, Option<i64>>(19)?.map(|v| v as u64),
            working_set_bytes: row.get::<_, Option<i64>>(20)?.map(|v| v as u64),
            host: row.get(21)?,
        })
    }

    const COLUMNS: &'static str = "id, created_ms, file_name, format, service, container_name, container_id, image,
        size_bytes, stored_bytes, sha256, trigger, analysis_state, analysis_error, summary_json, pid, runtime, capture_ms, requested_by, pause_ms, working_set_bytes, host";

    pub fn get(&self, id: &str) -> Result<Option<DumpInfo>, EngineError> {
        let sql = format!("SELECT {} FROM dumps WHERE id = ?1", Self::COLUMNS);
        Ok(self.conn.query_row(&sql, [id], Self::row).optional()?)
    }

    /// Newest first, narrowed by the filter.
    pub fn list(&self, filter: &DumpFilter) -> Result<Vec<DumpInfo>, EngineError> {
        let sql = format!(
            "SELECT {} FROM dumps WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR container_name = ?2 OR container_id = ?2)
               AND (?3 IS NULL OR substr(COALESCE(runtime, 'java'), 1, length(?3)) = ?3)
             ORDER BY created_ms DESC",
            Self::COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![filter.service, filter.container, filter.runtime], Self::row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_state(&self, id: &str, state: &str, error: Option<&str>) -> Result<(), EngineError> {
        self.conn.execute("UPDATE dumps SET analysis_state = ?2, analysis_error = ?3 WHERE id = ?1", params![id, state, error])?;
        Ok(())
    }

    pub fn save_analysis(&self, id: &str, analysis: &Analysis) -> Result<(), EngineError> {
        let summary = serde_json::to_string(&analysis.summary).map_err(|e| EngineError::Internal(e.to_string()))?;
        let full = serde_json::to_string(analysis).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.conn.execute(
            "UPDATE dumps SET analysis_state = 'done', analysis_error = NULL, summary_json = ?2, analysis_json = ?3 WHERE id = ?1",
            params![id, summary, full],
        )?;
        Ok(())
    }

    pub fn analysis(&self, id: &str) -> Result<Option<Analysis>, EngineError> {
        let json: Option<Option<String>> =
            self.conn.query_row("SELECT analysis_json FROM dumps WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(json.flatten().and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Ids whose analysis never finished (the server stopped mid-way).
    pub fn unfinished(&self) -> Result<Vec<String>, EngineError> {
        let mut stmt = self.conn.prepare("SELECT id FROM dumps WHERE analysis_state IN ('pending', 'running')")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete(&self, id: &str) -> Result<bool, EngineError> {
        let n = self.conn.execute("DELETE FROM dumps WHERE id = ?1", [id])?;
        let _ = std::fs::remove_file(self.file_of(id));
        Ok(n > 0)
    }
}


/// Streams a dump (plain or gzipped HPROF) into a temporary file in `dir`,
/// compressing with zstd and hashing on the way. Never holds the dump in memory
/// and takes no lock, so the history stays browsable during a long copy.
pub fn stage(dir: &Path, mut source: impl Read, expected_bytes: Option<u64>) -> Result<Staged, EngineError> {
    if let (Some(need), Some(free)) = (expected_bytes, free_bytes(dir)) {
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
    let tmp = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempfile_in(dir)
        .map_err(|e| io("creating a file in the dump folder", e))?;
    let encoder = zstd::Encoder::new(tmp.as_file(), 3).map_err(|e| io("starting compression", e))?;
    let mut tee = Tee { inner: encoder, hash: Sha256::new(), bytes: 0 };
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
    tee.write_all(&magic).map_err(|e| io("storing the dump", e))?;
    std::io::copy(&mut reader, &mut tee).map_err(|e| io("storing the dump", e))?;
    let Tee { inner, hash, bytes } = tee;
    inner.finish().map_err(|e| io("finishing compression", e))?;
    let stored_bytes = tmp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    tmp.as_file().sync_all().map_err(|e| io("syncing the dump", e))?;
    let sha256 = format!("{:x}", hash.finalize());
    Ok(Staged { tmp, format, size_bytes: bytes, stored_bytes, sha256 })
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

/// Unpacks a stored dump into a temporary file beside it (for mmap analysis).
pub fn unpack(stored: &Path, dir: &Path) -> Result<tempfile::NamedTempFile, EngineError> {
    unpack_with_progress(stored, dir, &|_| {})
}

/// Counts the compressed bytes the decoder has read.
struct Counting<'p, R> {
    inner: R,
    read: u64,
    report: &'p dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.report)(self.read);
        Ok(n)
    }
}

/// As `unpack`, telling `report` how many bytes of the stored file it has read.
pub fn unpack_with_progress(stored: &Path, dir: &Path, report: &dyn Fn(u64)) -> Result<tempfile::NamedTempFile, EngineError> {
    let file = std::fs::File::open(stored).map_err(|e| io("opening the stored dump", e))?;
    let counting = std::io::BufReader::new(Counting { inner: file, read: 0, report });
    let mut decoder = zstd::Decoder::with_buffer(counting).map_err(|e| io("opening the stored dump", e))?;
    let mut tmp = tempfile::Builder::new().prefix(".unpacked-").tempfile_in(dir).map_err(|e| io("unpacking the dump", e))?;
    std::io::copy(&mut decoder, tmp.as_file_mut()).map_err(|e| io("unpacking the dump", e))?;
    Ok(tmp)
}
