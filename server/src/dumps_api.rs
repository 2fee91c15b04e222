//! `/api/v1/dumps`: upload, list, analysis, diff, download, delete. And the
//! HTML form endpoints the dumps pages post to (work without JavaScript).

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use leakscope_engine::channel::channel_reader;
use leakscope_engine::dumps::NewDump;
use leakscope_model::dumps::DumpFilter;
use leakscope_engine::Engine;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::web::HttpError;
use crate::web::SharedAccess;
use axum::Extension;
use leakscope_access::Principal;
use crate::web::AppState;
use leakscope_model::dumps::DumpInfo;
use leakscope_model::ApiError;
use leakscope_model::analysis::{Analysis, HeapDiff, ObjectDetail};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, upload))
        .routes(routes!(info, delete))
        .routes(routes!(analysis))
        .routes(routes!(download))
        .routes(routes!(diff))
        .routes(routes!(object))
        // Dumps are gigabytes: no body limit on the upload routes.
        .layer(DefaultBodyLimit::disable())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dumps/upload", post(upload_form))
        .route("/dumps/{id}/delete", post(delete_form))
        .route("/dumps/{id}/download", get(download))
        // Dumps are gigabytes: no body limit on the upload routes.
        .layer(DefaultBodyLimit::disable())
}


/// How long a refused upload's remaining body is still read before the error
/// is sent. Clients such as ureq or a plain HTTP/1.1 writer send the whole body
/// before they read any answer: an error sent while they still write reaches
/// them as "broken pipe", not as its message. A local or LAN upload of a few
/// hundred MB finishes within this; a slower one is cut and sees the reset.
const DRAIN_BEFORE_ERROR: std::time::Duration = std::time::Duration::from_secs(20);

/// Pumps the request body into the engine's reader. When the reader is gone
/// (the import failed early) the rest of the body is read and dropped, so the
/// client can finish sending and then read why; `finish_reading` waits for it.
fn forward<S, E>(mut stream: S, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> tokio::task::JoinHandle<()>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader_gone = false;
        while let Some(chunk) = stream.next().await {
            if reader_gone {
                continue;
            }
            let item = chunk.map_err(|e| std::io::Error::other(format!("upload interrupted: {e}")));
            let failed = item.is_err();
            if failed {
                let _ = tx.send(item).await;
                break;
            }
            reader_gone = tx.send(item).await.is_err();
        }
    })
}

/// Lets a refused upload's body finish arriving (bounded by
/// `DRAIN_BEFORE_ERROR`) so the error is read by the client, then gives the
/// result back.
async fn finish_reading<T>(pump: tokio::task::JoinHandle<()>, result: Result<T, HttpError>) -> Result<T, HttpError> {
    if result.is_err() {
        let abort = pump.abort_handle();
        if tokio::time::timeout(DRAIN_BEFORE_ERROR, pump).await.is_err() {
            abort.abort();
        }
    }
    result
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// File name to keep (default `upload.hprof`).
    name: Option<String>,
    /// Service the dump belongs to, for the history.
    service: Option<String>,
    /// Container it came from.
    container: Option<String>,
}

fn clean(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Upload a heap dump (`.hprof` or V8 `.heapsnapshot`, either gzip-compressed or not) as the request body; analysis starts at once.
#[utoipa::path(post, path = "/api/v1/dumps", tag = "dumps", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the dump, streamed"),
    responses((status = 201, body = DumpInfo), (status = 400, description = "not a heap dump, or truncated", body = ApiError),
        (status = 507, description = "the dump folder's disk is full", body = ApiError)))]
async fn upload(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, HttpError> {
    let expected = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (tx, reader) = channel_reader();
    let pump = forward(body.into_data_stream(), tx);
    let meta = NewDump {
        file_name: clean(q.name).unwrap_or_else(|| "upload.hprof".into()),
        service: clean(q.service),
        container_name: clean(q.container),
        trigger: "upload".into(),
        expected_bytes: expected,
        requested_by: Some(who.name.clone()),
        ..Default::default()
    };
    let info = finish_reading(pump, engine.import_dump(reader, meta).await.map_err(HttpError::from)).await?;
    access.audit(&who.name, "uploaded heap dump", &info.id, Some(info.file_name.clone())).await;
    Ok((StatusCode::CREATED, Json(info)))
}

/// The `/dumps` page's upload form (multipart), then on to the new dump's page.
async fn upload_form(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    mut form: Multipart,
) -> Result<Response, HttpError> {
    let bad = |m: String| HttpError(StatusCode::BAD_REQUEST, m);
    let mut service = None;
    while let Some(field) = form.next_field().await.map_err(|e| bad(e.to_string()))? {
        match field.name() {
            Some("service") => service = clean(field.text().await.ok()),
            Some("file") => {
                let file_name = field.file_name().map(str::to_string).unwrap_or_else(|| "upload.hprof".into());
                let (tx, reader) = channel_reader();
                let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Bytes, String>>(16);
                // Multipart fields are borrowed from the form; pump them here while the engine reads.
                let meta = NewDump {
                    file_name,
                    service: service.clone(),
                    trigger: "upload".into(),
                    requested_by: Some(who.name.clone()),
                    ..Default::default()
                };
                let import = tokio::spawn({
                    let engine = engine.clone();
                    async move { engine.import_dump(reader, meta).await }
                });
                tokio::spawn(async move {
                    while let Some(item) = chunk_rx.recv().await {
                        let item = item.map_err(std::io::Error::other);
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                });
                let mut field = field;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if chunk_tx.send(Ok(chunk)).await.is_err() {
                                // The import failed: let the browser finish sending so it shows why.
                                let rest = async { while let Ok(Some(_)) = field.chunk().await {} };
                                let _ = tokio::time::timeout(DRAIN_BEFORE_ERROR, rest).await;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = chunk_tx.send(Err(e.to_string())).await;
                            break;
                        }
                    }
                }
                drop(chunk_tx);
                let info = import.await.map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
                access.audit(&who.name, "uploaded heap dump", &info.id, Some(info.file_name.clone())).await;
                return Ok(Redirect::to(&format!("/dumps/{}", info.id)).into_response());
            }
            _ => {}
        }
    }
    Err(bad("the form had no file: choose a .hprof, .heapsnapshot or gzipped file".into()))
}

/// The dump history, newest first, optionally narrowed.
#[utoipa::path(get, path = "/api/v1/dumps", tag = "dumps", params(DumpFilter), responses((status = 200, body = Vec<DumpInfo>)))]
async fn list(State(engine): State<Engine>, Query(filter): Query<DumpFilter>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dumps(filter).await?))
}

/// One dump's record: where it came from, its size, analysis state and summary.
#[utoipa::path(get, path = "/api/v1/dumps/{id}", tag = "dumps", params(("id" = String, Path, description = "dump id")),
    responses((status = 200, body = DumpInfo), (status = 404, body = ApiError)))]
async fn info(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump(&id).await?))
}

/// The analysis: summary, histogram, dominator tree, leak suspects.
#[utoipa::path(get, path = "/api/v1/dumps/{id}/analysis", tag = "dumps", params(("id" = String, Path, description = "dump id")),
    responses((status = 200, body = Analysis), (status = 202, description = "still being analysed", body = ApiError),
        (status = 404, body = ApiError), (status = 422, description = "the analysis failed; the error says why", body = ApiError)))]
async fn analysis(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump_analysis(&id).await?))
}

/// Any object by id: dominators, biggest children, path from a GC root.
#[utoipa::path(get, path = "/api/v1/dumps/{id}/objects/{object_id}", tag = "dumps",
    params(("id" = String, Path, description = "dump id"), ("object_id" = String, Path, description = "object id, `0x` followed by hex digits")),
    responses((status = 200, body = ObjectDetail), (status = 202, body = ApiError), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
async fn object(State(engine): State<Engine>, Path((id, object_id)): Path<(String, String)>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump_object(&id, &object_id).await?.as_ref().clone()))
}

/// What grew between two dumps: classes and suspects by retained size.
#[utoipa::path(get, path = "/api/v1/dumps/{a}/diff/{b}", tag = "dumps",
    params(("a" = String, Path, description = "the earlier dump"), ("b" = String, Path, description = "the later dump")),
    responses((status = 200, body = HeapDiff), (status = 202, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
async fn diff(State(engine): State<Engine>, Path((a, b)): Path<(String, String)>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump_diff(&a, &b).await?))
}

/// Delete a dump and its analysis (audited).
#[utoipa::path(delete, path = "/api/v1/dumps/{id}", tag = "dumps", params(("id" = String, Path, description = "dump id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ApiError)))]
async fn delete(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    engine.delete_dump(&id).await?;
    access.audit(&who.name, "deleted heap dump", &id, None).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_form(
    state: State<Engine>,
    access: State<SharedAccess>,
    who: Extension<Principal>,
    id: Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    delete(state, access, who, id).await?;
    Ok(Redirect::to("/dumps"))
}

/// The original `.hprof`, decompressed on the fly. Heap dumps hold secrets:
/// never cached, always a download.
#[utoipa::path(get, path = "/api/v1/dumps/{id}/download", tag = "dumps", params(("id" = String, Path, description = "dump id")),
    responses((status = 200, description = "the dump (audited; `Cache-Control: no-store`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = ApiError)))]
async fn download(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let info = engine.dump(&id).await?;
    let mut reader = engine.dump_reader(&id).await?;
    access.audit(&who.name, "downloaded heap dump", &id, Some(format!("{} bytes", info.size_bytes))).await;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // The client sees a cut transfer; the reason is here.
                    tracing::error!(error = %e, "a dump download ended early");
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", leakscope_engine::Engine::download_name(&info))),
            (header::CONTENT_LENGTH, info.size_bytes.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
