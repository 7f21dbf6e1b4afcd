//! Group commit: callers hand items to one writer task, which writes whatever
//! queued up meanwhile in one go. Under load many small writes become a few
//! batched ones (SQLite has a single writer; PostgreSQL saves round trips).

use std::{future::Future, time::Duration};

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, DbErr>>;

/// What the writer task receives: an item (with a reply when someone waits
/// for it), or a request to write everything queued so far at once.
enum Msg<T, R> {
    Item(T, Option<Reply<R>>),
    Flush(oneshot::Sender<()>),
}

/// Handle on a writer task; cloning shares the task.
pub struct Batcher<T, R> {
    tx: mpsc::Sender<Msg<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<T: Clone + Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts a writer calling `write` with up to `max_batch` items at a time;
    /// `write` returns one result per item, in order. With a `linger`, the
    /// writer waits that long after the first item for more to join the batch
    /// (for writes nobody waits on), unless a [`flush`](Self::flush) is
    /// already queued. The task stops when every handle is dropped.
    pub fn spawn<F, Fut>(db: DatabaseConnection, max_batch: usize, linger: Duration, write: F) -> Self
    where
        F: Fn(DatabaseConnection, Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, DbErr>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Msg<T, R>>(4 * max_batch);
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut queued, max_batch).await > 0 {
                let flushing = |queued: &[Msg<T, R>]| queued.iter().any(|m| matches!(m, Msg::Flush(_)));
                if !linger.is_zero() && queued.len() < max_batch && !flushing(&queued) {
                    tokio::time::sleep(linger).await;
                    while queued.len() < max_batch {
                        match rx.try_recv() {
                            Ok(msg) => queued.push(msg),
                            Err(_) => break,
                        }
                    }
                }
                let (mut items, mut replies, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
                for msg in queued.drain(..) {
                    match msg {
                        Msg::Item(item, reply) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Msg::Flush(done) => flushes.push(done),
                    }
                }
                if !items.is_empty() {
                    let count = items.len();
                    let mut written = write(db.clone(), items.clone()).await;
                    if let Err(err) = &written
                        && super::database_unavailable(err)
                    {
                        // The connection was lost (the pool opens a new one):
                        // once more, rather than losing the batch.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        written = write(db.clone(), items).await;
                    }
                    match written {
                        Ok(results) => {
                            for (reply, result) in replies.into_iter().zip(results) {
                                if let Some(reply) = reply {
                                    let _ = reply.send(Ok(result));
                                }
                            }
                        }
                        Err(err) => {
                            tracing::error!(error = %err, rows = count, "batched write failed");
                            for reply in replies.into_iter().flatten() {
                                let _ = reply.send(Err(err.clone()));
                            }
                        }
                    }
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        Self { tx }
    }

    /// Writes `item` with the next batch and waits for its result.
    pub async fn submit(&self, item: T) -> Result<R, DbErr> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Msg::Item(item, Some(reply))).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues `item` for the next batch without waiting for the write.
    pub async fn enqueue(&self, item: T) -> Result<(), DbErr> {
        self.tx.send(Msg::Item(item, None)).await.map_err(|_| stopped())
    }

    /// Returns once everything queued before this call has been written (or
    /// its write has failed).
    pub async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("batch writer stopped".into())
}
