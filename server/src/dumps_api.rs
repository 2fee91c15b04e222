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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/dumps", get(list).post(upload))
        .route("/api/v1/dumps/{id}", get(info).delete(delete))
        .route("/api/v1/dumps/{id}/analysis", get(analysis))
        .route("/api/v1/dumps/{id}/download", get(download))
        .route("/api/v1/dumps/{a}/diff/{b}", get(diff))
        .route("/api/v1/dumps/{id}/objects/{object_id}", get(object))
        .route("/dumps/upload", post(upload_form))
        .route("/dumps/{id}/delete", post(delete_form))
        .route("/dumps/{id}/download", get(download))
        // Dumps are gigabytes: no body limit on the upload routes.
        .layer(DefaultBodyLimit::disable())
}


fn forward<S, E>(mut stream: S, tx: mpsc::Sender<Result<Bytes, std::io::Error>>)
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(|e| std::io::Error::other(format!("upload interrupted: {e}")));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
}

#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    service: Option<String>,
    container: Option<String>,
}

fn clean(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `POST /api/v1/dumps?name=app.hprof[&service=..][&container=..]` with the dump as the body.
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
    forward(body.into_data_stream(), tx);
    let meta = NewDump {
        file_name: clean(q.name).unwrap_or_else(|| "upload.hprof".into()),
        service: clean(q.service),
        container_name: clean(q.container),
        trigger: "upload".into(),
        expected_bytes: expected,
        requested_by: Some(who.name.clone()),
        ..Default::default()
    };
    let info = engine.import_dump(reader, meta).await?;
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
    Err(bad("the form had no file: choose a .hprof or .hprof.gz file".into()))
}

async fn list(State(engine): State<Engine>, Query(filter): Query<DumpFilter>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dumps(filter).await?))
}

async fn info(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump(&id).await?))
}

async fn analysis(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump_analysis(&id).await?))
}

/// Any object by id: dominators, biggest children, path from a GC root.
async fn object(State(engine): State<Engine>, Path((id, object_id)): Path<(String, String)>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump_object(&id, &object_id).await?.as_ref().clone()))
}

async fn diff(State(engine): State<Engine>, Path((a, b)): Path<(String, String)>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dump_diff(&a, &b).await?))
}

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
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.hprof\"", info.id)),
            (header::CONTENT_LENGTH, info.size_bytes.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
