//! Group commit: callers hand items to one writer task, which writes whatever
//! queued up meanwhile in one go. Under load many small writes become a few
//! batched ones (SQLite has a single writer; PostgreSQL saves round trips).

use std::{future::Future, time::Duration};

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, DbErr>>;

/// Handle on a writer task; cloning shares the task.
pub struct Batcher<T, R> {
    tx: mpsc::Sender<(T, Option<Reply<R>>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts a writer calling `write` with up to `max_batch` items at a time;
    /// `write` returns one result per item, in order. With a `linger`, the
    /// writer waits that long after the first item for more to join the batch
    /// (for writes nobody waits on). The task stops when every handle is dropped.
    pub fn spawn<F, Fut>(db: DatabaseConnection, max_batch: usize, linger: Duration, write: F) -> Self
    where
        F: Fn(DatabaseConnection, Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, DbErr>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(T, Option<Reply<R>>)>(4 * max_batch);
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut queued, max_batch).await > 0 {
                if !linger.is_zero() && queued.len() < max_batch {
                    tokio::time::sleep(linger).await;
                    while queued.len() < max_batch {
                        match rx.try_recv() {
                            Ok(item) => queued.push(item),
                            Err(_) => break,
                        }
                    }
                }
                let (items, replies): (Vec<T>, Vec<Option<Reply<R>>>) = queued.drain(..).unzip();
                match write(db.clone(), items).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            if let Some(reply) = reply {
                                let _ = reply.send(Ok(result));
                            }
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "batched write failed");
                        for reply in replies.into_iter().flatten() {
                            let _ = reply.send(Err(err.clone()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Writes `item` with the next batch and waits for its result.
    pub async fn submit(&self, item: T) -> Result<R, DbErr> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, Some(reply))).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues `item` for the next batch without waiting for the write.
    pub async fn enqueue(&self, item: T) -> Result<(), DbErr> {
        self.tx.send((item, None)).await.map_err(|_| stopped())
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("batch writer stopped".into())
}
