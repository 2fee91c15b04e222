//! Capture jobs seen by every server sharing one PostgreSQL: a job started
//! through one server is followed through any other (the page polls whichever
//! server the load balancer picks), and a second click through another server
//! joins it. The server running the capture writes the job's state (at most
//! once a second while it runs, and its end) from one task per job, so writes
//! land in order; reads of a job this server does not run come from the table.
//! With a database of its own (SQLite) nothing is written: jobs stay in memory.

use std::time::Duration;

use leakscope_db::sqlx::{self, Row};
use leakscope_db::{Backend, Db, Migration};
use leakscope_model::capture::CaptureJob;
use tokio::sync::watch;

use crate::error::EngineError;
use crate::now_ms;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "CREATE TABLE capture_jobs (job_id TEXT PRIMARY KEY, container_id TEXT NOT NULL, running BIGINT NOT NULL,
              body TEXT NOT NULL, updated_ms BIGINT NOT NULL);
          CREATE INDEX capture_jobs_running ON capture_jobs (container_id, running);",
}];
/// While a job runs its state is written at most this often.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// A running job not written for this long belongs to a server that died: not joined.
const STALE_MS: i64 = 30_000;
/// Ended jobs are kept this long for late readers.
const KEEP_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone)]
pub(crate) struct SharedJobs {
    db: Db,
}

impl SharedJobs {
    pub(crate) fn open(db: &Db) -> Result<Option<SharedJobs>, EngineError> {
        if db.backend() != Backend::Postgres {
            return Ok(None);
        }
        db.migrate("capture_jobs", MIGRATIONS)?;
        Ok(Some(SharedJobs { db: db.clone() }))
    }

    /// Follows one job from its start to its end, writing what it says; returns the sender
    /// the job's updates go to.
    pub(crate) fn follow(&self, container_id: &str, job: &CaptureJob) -> watch::Sender<CaptureJob> {
        let (tx, mut rx) = watch::channel(job.clone());
        let (this, container_id) = (self.clone(), container_id.to_string());
        tokio::spawn(async move {
            loop {
                let job = rx.borrow_and_update().clone();
                this.write(&container_id, &job).await;
                if job.state != "running" {
                    return;
                }
                // Progress waits for the next write slot; the end is written at once
                // (another server's reader, or a click there, must not see a finished
                // job as running).
                let slot = tokio::time::sleep(WRITE_EVERY);
                tokio::pin!(slot);
                let (mut slot_passed, mut pending) = (false, false);
                loop {
                    tokio::select! {
                        _ = &mut slot, if !slot_passed => {
                            slot_passed = true;
                            if pending {
                                break;
                            }
                        }
                        changed = rx.changed() => {
                            if changed.is_err() {
                                // The job's owner is gone: what it said last is written once more.
                                let last = rx.borrow().clone();
                                this.write(&container_id, &last).await;
                                return;
                            }
                            pending = true;
                            if slot_passed || rx.borrow().state != "running" {
                                break;
                            }
                        }
                    }
                }
            }
        });
        tx
    }

    async fn write(&self, container_id: &str, job: &CaptureJob) {
        let body = match serde_json::to_string(job) {
            Ok(body) => body,
            Err(e) => return tracing::warn!(error = %e, "cannot encode a capture job"),
        };
        let now = now_ms();
        let written = async {
            sqlx::query(
                "INSERT INTO capture_jobs (job_id, container_id, running, body, updated_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (job_id) DO UPDATE SET running = excluded.running, body = excluded.body, updated_ms = excluded.updated_ms",
            )
            .bind(&job.job_id)
            .bind(container_id)
            .bind(i64::from(job.state == "running"))
            .bind(&body)
            .bind(now)
            .execute(self.db.pool())
            .await?;
            if job.state != "running" {
                sqlx::query("DELETE FROM capture_jobs WHERE running = 0 AND updated_ms < $1").bind(now - KEEP_MS).execute(self.db.pool()).await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = written.await {
            tracing::warn!(job = %job.job_id, error = %e, "cannot share a capture job's state; other servers see it when the database answers");
        }
    }

    pub(crate) async fn get(&self, job_id: &str) -> Option<CaptureJob> {
        let row = sqlx::query("SELECT body FROM capture_jobs WHERE job_id = $1").bind(job_id).fetch_optional(self.db.pool()).await.ok()??;
        serde_json::from_str(&row.try_get::<String, _>(0).ok()?).ok()
    }

    /// The job another server runs for this container, if it is alive.
    pub(crate) async fn running_for(&self, container_id: &str) -> Option<String> {
        let row = sqlx::query("SELECT job_id FROM capture_jobs WHERE container_id = $1 AND running = 1 AND updated_ms > $2")
            .bind(container_id)
            .bind(now_ms() - STALE_MS)
            .fetch_optional(self.db.pool())
            .await
            .ok()??;
        row.try_get::<String, _>(0).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn job(state: &str, stage: &str) -> CaptureJob {
        CaptureJob { state: state.into(), stage: stage.into(), ..CaptureJob::starting("job-1".into(), "shop".into(), None, now_ms()) }
    }

    #[test]
    fn progress_is_written_at_most_once_a_second_and_the_end_at_once() {
        let db = Db::open(&leakscope_db::test_postgres_url()).unwrap();
        let jobs = SharedJobs::open(&db).unwrap().expect("shared on PostgreSQL");
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let seen = |stage: &'static str| {
                let jobs = jobs.clone();
                async move {
                    let from = Instant::now();
                    while jobs.get("job-1").await.map(|j| j.stage) != Some(stage.to_string()) {
                        assert!(from.elapsed() < Duration::from_secs(5), "{stage} never written");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    from.elapsed()
                }
            };
            let tx = jobs.follow("container-1", &job("running", "starting"));
            seen("starting").await;
            assert_eq!(jobs.running_for("container-1").await.as_deref(), Some("job-1"));
            // Progress right after a write waits for the next slot.
            tx.send(job("running", "dumping")).unwrap();
            assert!(seen("dumping").await > Duration::from_millis(500));
            // The end does not wait: a click through another server must not join a finished job.
            tx.send(job("running", "copying")).unwrap();
            tx.send(job("failed", "locating")).unwrap();
            let took = seen("locating").await;
            assert!(took < Duration::from_millis(500), "the end was written after {took:?}");
            assert_eq!(jobs.running_for("container-1").await, None);
        });
    }
}
