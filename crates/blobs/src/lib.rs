//! Where the bytes of stored dumps live: a folder on this machine (the
//! default) or a bucket of an S3-compatible object store
//! (`--dump-store s3://bucket/prefix`), behind one small interface.
//!
//! The interface is synchronous on purpose: dumps are compressed, hashed and
//! unpacked on blocking threads, and every caller is one. The bucket's async
//! client is driven with the runtime's handle from there (never from a
//! runtime worker, where `block_on` would panic).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{ObjectStore, WriteMultipart};

/// Parts of a multipart upload: S3 wants at least 5 MiB but the last.
const PART_BYTES: usize = 8 << 20;
/// Parts in flight at once: enough to keep a link busy, bounded memory (4 × 8 MiB).
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0}")]
    BadUrl(String),
    #[error("{what}: the disk is full; free space in the data directory and try again")]
    NoSpace { what: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("the dump store {store} {what}: {detail}")]
    Bucket { store: String, what: String, detail: String },
    #[error("the stored file {0} is missing from the dump store")]
    Missing(String),
}

impl BlobError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            BlobError::NoSpace { what }
        } else {
            BlobError::Io { what, source }
        }
    }
}

/// The store of dump files.
pub struct DumpFiles {
    kind: Kind,
}

enum Kind {
    Folder(PathBuf),
    Bucket(Bucket),
}

struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    /// `s3://bucket/prefix`, as the user wrote it (no credentials ever appear in it).
    shown: String,
    runtime: tokio::runtime::Handle,
}

impl Bucket {
    fn key(&self, name: &str) -> Key {
        self.prefix.child(name)
    }

    fn error(&self, what: &str, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { path, .. } => BlobError::Missing(format!("{}/{path}", self.shown)),
            other => BlobError::Bucket { store: self.shown.clone(), what: what.to_string(), detail: other.to_string() },
        }
    }
}

impl DumpFiles {
    /// A folder on this machine.
    pub fn folder(dir: &Path) -> Self {
        DumpFiles { kind: Kind::Folder(dir.to_path_buf()) }
    }

    /// `None` or `file:`-less paths: the folder; `s3://bucket/prefix[?endpoint=URL&region=R]`:
    /// a bucket, with credentials, region and endpoint also taken from the
    /// usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`). Requests are path-style unless
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`, as self-hosted stores want.
    pub fn open(url: Option<&str>, folder: &Path, runtime: tokio::runtime::Handle) -> Result<Self, BlobError> {
        let Some(url) = url.filter(|u| !u.is_empty()) else { return Ok(Self::folder(folder)) };
        let bucket = parse_bucket_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket.bucket);
        if let Some(endpoint) = &bucket.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &bucket.region {
            builder = builder.with_region(region);
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint).unwrap_or_default();
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        if builder.get_config_value(&AmazonS3ConfigKey::Region).is_none() && !endpoint.is_empty() {
            // Self-hosted stores ignore the region but the signature names one.
            builder = builder.with_region("us-east-1");
        }
        let store = builder
            .build()
            .map_err(|e| BlobError::BadUrl(format!("the dump store {url} cannot be used: {e}")))?;
        let shown = format!("s3://{}/{}", bucket.bucket, bucket.prefix);
        Ok(DumpFiles {
            kind: Kind::Bucket(Bucket {
                store: Arc::new(store),
                prefix: Key::from(bucket.prefix.as_str()),
                shown: shown.trim_end_matches('/').to_string(),
                runtime,
            }),
        })
    }

    /// What the store is, for logs and the engine page (`folder /data/dumps`, `s3://bucket/prefix`).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Folder(dir) => format!("folder {}", dir.display()),
            Kind::Bucket(b) => b.shown.clone(),
        }
    }

    pub fn is_bucket(&self) -> bool {
        matches!(self.kind, Kind::Bucket(_))
    }

    /// Checks that the store answers (a bucket: that it exists and the
    /// credentials may list it), so a wrong setting fails at start, in words.
    pub async fn probe(&self) -> Result<(), BlobError> {
        match &self.kind {
            Kind::Folder(dir) => std::fs::create_dir_all(dir).map_err(|e| BlobError::io(format!("creating {}", dir.display()), e)),
            Kind::Bucket(b) => b
                .store
                .list_with_delimiter(Some(&b.prefix))
                .await
                .map(|_| ())
                .map_err(|e| b.error("cannot be listed", e)),
        }
    }

    /// Starts writing `name`. Nothing is visible under that name until
    /// [`Upload::finish`]; dropping the upload unfinished leaves nothing behind.
    /// A bucket receives the bytes in parts while they are written.
    pub fn create(&self, name: &str, spool_dir: &Path) -> Result<Upload, BlobError> {
        let inner = match &self.kind {
            Kind::Folder(dir) => {
                let tmp = tempfile::Builder::new()
                    .prefix(".incoming-")
                    .tempfile_in(spool_dir)
                    .map_err(|e| BlobError::io("creating a file in the dump folder", e))?;
                UploadInner::Folder { file: Some(std::io::BufWriter::with_capacity(1 << 20, tmp)), target: dir.join(name) }
            }
            Kind::Bucket(b) => {
                let key = b.key(name);
                let upload = b
                    .runtime
                    .block_on(b.store.put_multipart(&key))
                    .map_err(|e| b.error("refused a new upload", e))?;
                UploadInner::Bucket {
                    writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES)),
                    runtime: b.runtime.clone(),
                    shown: b.shown.clone(),
                }
            }
        };
        Ok(Upload { inner, bytes: 0 })
    }

    /// Reads a stored file from its start, streamed (a bucket's bytes are
    /// fetched as they are read, never held whole).
    pub fn open_read(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), BlobError> {
        match &self.kind {
            Kind::Folder(dir) => {
                let path = dir.join(name);
                let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => BlobError::Missing(path.display().to_string()),
                    _ => BlobError::io(format!("opening {}", path.display()), e),
                })?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok((Box::new(file), len))
            }
            Kind::Bucket(b) => {
                let got = b.runtime.block_on(b.store.get(&b.key(name))).map_err(|e| b.error("could not be read", e))?;
                let len = got.meta.size;
                Ok((
                    Box::new(StreamReader {
                        stream: got.into_stream(),
                        pending: Bytes::new(),
                        runtime: b.runtime.clone(),
                        shown: b.shown.clone(),
                    }),
                    len,
                ))
            }
        }
    }

    /// Whether `name` is stored.
    pub fn exists(&self, name: &str) -> Result<bool, BlobError> {
        match &self.kind {
            Kind::Folder(dir) => Ok(dir.join(name).exists()),
            Kind::Bucket(b) => match b.runtime.block_on(b.store.head(&b.key(name))) {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(b.error("could not be asked for a file", e)),
            },
        }
    }

    /// Removes `name` without waiting (from anywhere, a runtime worker
    /// included): what a dropped, never recorded dump leaves.
    pub fn delete_later(&self, name: &str) {
        match &self.kind {
            Kind::Folder(dir) => {
                let _ = std::fs::remove_file(dir.join(name));
            }
            Kind::Bucket(b) => {
                let (store, key, shown) = (b.store.clone(), b.key(name), b.shown.clone());
                b.runtime.spawn(async move {
                    if let Err(e) = store.delete(&key).await {
                        tracing::warn!(store = %shown, key = %key, error = %e, "removing an unrecorded dump from the dump store");
                    }
                });
            }
        }
    }

    /// Removes `name`; a file already gone is not an error.
    pub fn delete(&self, name: &str) -> Result<(), BlobError> {
        match &self.kind {
            Kind::Folder(dir) => match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BlobError::io("removing a stored dump", e)),
                _ => Ok(()),
            },
            Kind::Bucket(b) => match b.runtime.block_on(b.store.delete(&b.key(name))) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(b.error("could not delete a file", e)),
            },
        }
    }
}

/// A file being written into the store.
pub struct Upload {
    inner: UploadInner,
    bytes: u64,
}

enum UploadInner {
    Folder { file: Option<std::io::BufWriter<tempfile::NamedTempFile>>, target: PathBuf },
    Bucket { writer: Option<WriteMultipart>, runtime: tokio::runtime::Handle, shown: String },
}

impl Upload {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Makes the file visible under its name: a folder's is synced and
    /// renamed into place, a bucket's multipart upload completed.
    pub fn finish(mut self) -> Result<u64, BlobError> {
        let bytes = self.bytes;
        match &mut self.inner {
            UploadInner::Folder { file, target } => {
                let file = file.take().expect("finish runs once");
                let tmp = file.into_inner().map_err(|e| BlobError::io("storing the dump", e.into_error()))?;
                tmp.as_file().sync_all().map_err(|e| BlobError::io("syncing the dump", e))?;
                tmp.persist(&*target).map_err(|e| BlobError::io("saving the dump", e.error))?;
            }
            UploadInner::Bucket { writer, runtime, shown } => {
                let upload = writer.take().expect("finish runs once");
                runtime.block_on(upload.finish()).map_err(|e| BlobError::Bucket {
                    store: shown.clone(),
                    what: "did not take the dump".into(),
                    detail: e.to_string(),
                })?;
            }
        }
        Ok(bytes)
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            UploadInner::Folder { file, .. } => {
                let file = file.as_mut().ok_or_else(|| std::io::Error::other("the file has been stored"))?;
                let n = file.write(buf)?;
                self.bytes += n as u64;
                Ok(n)
            }
            UploadInner::Bucket { writer, runtime, shown } => {
                let writer = writer.as_mut().ok_or_else(|| std::io::Error::other("the upload has ended"))?;
                // Back-pressure: at most PARTS_IN_FLIGHT parts travel at once.
                runtime
                    .block_on(writer.wait_for_capacity(PARTS_IN_FLIGHT))
                    .map_err(|e| std::io::Error::other(format!("the dump store {shown} did not take a part: {e}")))?;
                // A full part is sent by a task spawned here: inside the runtime.
                let _inside = runtime.enter();
                writer.write(buf);
                self.bytes += buf.len() as u64;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            UploadInner::Folder { file, .. } => file.as_mut().map_or(Ok(()), |f| f.flush()),
            UploadInner::Bucket { .. } => Ok(()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A folder's temporary file removes itself; a bucket's unfinished
        // upload is aborted so its parts do not linger (and cost) in the bucket.
        if let UploadInner::Bucket { writer, runtime, .. } = &mut self.inner {
            if let Some(upload) = writer.take() {
                runtime.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(error = %e, "aborting an unfinished upload to the dump store");
                    }
                });
            }
        }
    }
}

/// A bucket's object as a `Read`, fetched chunk by chunk.
struct StreamReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    pending: Bytes,
    runtime: tokio::runtime::Handle,
    shown: String,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(format!("reading from the dump store {}: {e}", self.shown))),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// The store URL one level down: `s3://b/p?endpoint=…` + `hosts/x` →
/// `s3://b/p/hosts/x?endpoint=…`.
pub fn child_url(url: &str, sub: &str) -> String {
    let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
    let path = format!("{}/{}", path.trim_end_matches('/'), sub.trim_matches('/'));
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct BucketUrl {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
}

/// `s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1`.
fn parse_bucket_url(url: &str) -> Result<BucketUrl, BlobError> {
    let bad = |why: &str| BlobError::BadUrl(format!("--dump-store {url}: {why} (expected s3://bucket/prefix, optionally ?endpoint=URL&region=NAME)"));
    let rest = url.strip_prefix("s3://").ok_or_else(|| bad("only s3:// stores are supported besides the local folder"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.contains('@') || query.contains("secret") || query.contains("key") {
        // Not echoed: the URL holds a secret.
        return Err(BlobError::BadUrl(
            "--dump-store: credentials belong in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL".into(),
        ));
    }
    if bucket.is_empty() || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        return Err(bad("the bucket name is missing or not a bucket name"));
    }
    let (mut endpoint, mut region) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("endpoint", v)) if v.starts_with("http://") || v.starts_with("https://") => endpoint = Some(v.to_string()),
            Some(("region", v)) if !v.is_empty() => region = Some(v.to_string()),
            _ => return Err(bad(&format!("'{pair}' is not a setting of the store"))),
        }
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == ".." || p == ".") {
        return Err(bad("the prefix may not contain . or .."));
    }
    Ok(BucketUrl { bucket: bucket.to_string(), prefix: prefix.to_string(), endpoint, region })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        let u = parse_bucket_url("s3://dumps/team/a?endpoint=http://127.0.0.1:9000&region=eu-west-1").unwrap();
        assert_eq!(u.bucket, "dumps");
        assert_eq!(u.prefix, "team/a");
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(u.region.as_deref(), Some("eu-west-1"));
        assert_eq!(parse_bucket_url("s3://dumps").unwrap().prefix, "");
        assert_eq!(child_url("s3://d/p?endpoint=http://h:1", "hosts/x"), "s3://d/p/hosts/x?endpoint=http://h:1");
        assert_eq!(parse_bucket_url(&child_url("s3://d", "hosts/x")).unwrap().prefix, "hosts/x");
        for bad in ["dumps", "s3://", "s3://a b/x", "s3://key:secret@dumps/x", "s3://d/x?color=red", "s3://d/../x", "gs://d/x"] {
            assert!(parse_bucket_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folder_round_trip_and_nothing_left_by_an_unfinished_write() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = DumpFiles::open(None, dir.path(), rt.handle().clone()).unwrap();
        let mut up = files.create("a.zst", dir.path()).unwrap();
        up.write_all(b"hello").unwrap();
        drop(up);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut up = files.create("a.zst", dir.path()).unwrap();
        up.write_all(b"hello").unwrap();
        assert_eq!(up.finish().unwrap(), 5);
        let (mut r, len) = files.open_read("a.zst").unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), len), ("hello", 5));
        assert!(files.exists("a.zst").unwrap());
        files.delete("a.zst").unwrap();
        files.delete("a.zst").unwrap();
        assert!(matches!(files.open_read("a.zst"), Err(BlobError::Missing(_))));
    }
}
