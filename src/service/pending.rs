//! Presign's one write, the `pending_uploads` row.
//!
//! On a SQLite file (the embedded default) a thread of its own writes these
//! rows through a plain SQLite connection. A presign appends its row to a
//! journal beside the database (one `write(2)`, no thread hop, no commit) and
//! answers; the thread moves journaled rows into the table in batches within
//! [`LINGER`]. A broker killed in between loses nothing: the next start
//! replays the journal. A second process on the same database (`sweep` beside
//! a serving broker) cannot lock the journal; its writes wait for the commit.
//!
//! On PostgreSQL (and an in-memory SQLite database) a group-commit writer
//! makes one multi-row insert per batch, and presign waits for it.

use std::{
    fs::File,
    io::{BufRead, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use sea_orm::{DatabaseConnection, DbErr, EntityTrait, IntoActiveModel};
use tokio::sync::oneshot;

use super::{ServiceError, batch::Batcher};
use crate::entity::pending_upload;

/// Rows written per batch at most.
const MAX_BATCH: usize = 4096;
/// How long journaled rows may wait for their commit (more rows, fewer commits).
const LINGER: Duration = Duration::from_millis(20);
/// The journal is rewritten with only the rows still queued once it grows past this.
const COMPACT_BYTES: u64 = 8 << 20;

/// Records pending uploads.
#[derive(Clone)]
pub enum PendingWriter {
    /// A SQLite file: the writer thread, and the journal when this process holds it.
    Sqlite(Arc<SqliteWriter>),
    /// PostgreSQL or in-memory SQLite: group commit through SeaORM.
    Batched(Batcher<pending_upload::Model, ()>),
}

/// The handle on the SQLite writer thread.
pub struct SqliteWriter {
    tx: mpsc::Sender<Msg>,
    /// The journal, when this process holds it. A row is sent to the thread
    /// under its lock, so the journal holds exactly the committed rows and
    /// those on their way.
    journal: Option<Arc<Mutex<Journal>>>,
    /// To wake the thread from its linger for a flush.
    thread: std::thread::Thread,
}

type Reply = oneshot::Sender<Result<(), DbErr>>;

/// What the writer thread receives.
// Rows are nearly every message: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Msg {
    /// A row; `line` is its journal line when it was journaled, `reply` waits for the commit.
    Row { row: pending_upload::Model, line: Option<Vec<u8>>, reply: Option<Reply> },
    /// Commit everything queued before this now, then answer.
    Flush(oneshot::Sender<()>),
}

impl PendingWriter {
    /// Group commit on `db` (PostgreSQL, in-memory SQLite).
    pub fn spawn(db: DatabaseConnection) -> Self {
        Self::Batched(Batcher::spawn(db, 256, Duration::ZERO, |db, rows| async move { write_batch(&db, rows).await }))
    }

    /// The writer thread for the SQLite database file at `path`; replays and
    /// keeps the journal when no other process holds it.
    pub fn sqlite(path: &Path, checkpoint_pages: &str) -> anyhow::Result<Self> {
        let mut conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint_pages)?;
        let mut journal = Journal::open(path)?;
        if let Some(journal) = &mut journal {
            let rows = journal.replay(&mut conn)?;
            if rows > 0 {
                tracing::info!(lines = rows, "presign journal replayed (rows already in the table are skipped)");
            }
        }
        let journal = journal.map(|j| Arc::new(Mutex::new(j)));
        let (tx, rx) = mpsc::channel();
        let linger = if journal.is_some() { LINGER } else { Duration::ZERO };
        let thread = WriterThread { conn, rx, linger, queued: Vec::new(), journal: journal.clone() };
        let handle = std::thread::Builder::new().name("pending-writer".into()).spawn(move || thread.run())?;
        Ok(Self::Sqlite(Arc::new(SqliteWriter { tx, journal, thread: handle.thread().clone() })))
    }

    /// Records `row`: journaled, or committed with the next batch.
    pub async fn record(&self, row: pending_upload::Model) -> Result<(), ServiceError> {
        let writer = match self {
            Self::Batched(batcher) => return Ok(batcher.submit(row).await?),
            Self::Sqlite(writer) => writer,
        };
        if let Some(journal) = &writer.journal {
            let journal_err = |e: &dyn std::fmt::Display| DbErr::Custom(format!("pending upload journal: {e}"));
            let line = Journal::line(&row).map_err(|e| journal_err(&e))?;
            let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
            journal.append(&line).map_err(|e| journal_err(&e))?;
            writer.tx.send(Msg::Row { row, line: Some(line), reply: None }).map_err(|_| stopped())?;
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        writer.tx.send(Msg::Row { row, line: None, reply: Some(reply) }).map_err(|_| stopped())?;
        Ok(answer.await.map_err(|_| stopped())??)
    }

    /// Whether a recorded row may not be in the table yet (it is journaled).
    pub fn writes_behind(&self) -> bool {
        matches!(self, Self::Sqlite(writer) if writer.journal.is_some())
    }

    /// Returns once every row recorded before this call is in the table (or its write failed).
    pub async fn flush(&self) {
        match self {
            Self::Batched(batcher) => batcher.flush().await,
            Self::Sqlite(writer) => {
                let (done, finished) = oneshot::channel();
                if writer.tx.send(Msg::Flush(done)).is_ok() {
                    writer.thread.unpark();
                    let _ = finished.await;
                }
            }
        }
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("pending upload writer stopped".into())
}

/// `<database>-presigns`: one JSON line per presigned upload not yet known to
/// be in the table, locked by the process that owns it.
struct Journal {
    path: PathBuf,
    file: File,
    bytes: u64,
    /// Held (locked) for the process's lifetime.
    _lock: File,
}

impl Journal {
    /// The journal of the database at `db`, or `None` when another process holds it.
    fn open(db: &Path) -> std::io::Result<Option<Self>> {
        let path = PathBuf::from(format!("{}-presigns", db.display()));
        let lock = File::create(format!("{}.lock", path.display()))?;
        if lock.try_lock().is_err() {
            tracing::info!("another process keeps this database's presign journal; writing pending uploads directly");
            return Ok(None);
        }
        let file = File::options().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        Ok(Some(Self { path, file, bytes, _lock: lock }))
    }

    /// `row` as a journal line.
    fn line(row: &pending_upload::Model) -> serde_json::Result<Vec<u8>> {
        let mut line = serde_json::to_vec(row)?;
        line.push(b'\n');
        Ok(line)
    }

    /// Appends `line` in one write.
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.file.write_all(line)?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Writes the journal anew with just `lines`, atomically (write, then rename).
    fn rewrite<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) -> std::io::Result<()> {
        let fresh_path = PathBuf::from(format!("{}.new", self.path.display()));
        let mut fresh = File::create(&fresh_path)?;
        let mut bytes = 0;
        for line in lines {
            fresh.write_all(line)?;
            bytes += line.len() as u64;
        }
        std::fs::rename(&fresh_path, &self.path)?;
        self.file = File::options().append(true).open(&self.path)?;
        self.bytes = bytes;
        Ok(())
    }

    /// Puts every journaled row in the table (unless it is there already, or
    /// its upload became a file), then empties the journal. A torn last line
    /// (the process died mid-write, before answering) is skipped.
    fn replay(&mut self, conn: &mut rusqlite::Connection) -> anyhow::Result<usize> {
        let lines: Vec<String> =
            std::io::BufReader::new(File::open(&self.path)?).lines().map_while(Result::ok).collect();
        let rows: Vec<pending_upload::Model> =
            lines.iter().filter_map(|line| serde_json::from_str(line).ok()).collect();
        if rows.len() < lines.len() {
            // One torn last line is expected after a kill; more means lines this version cannot read.
            tracing::warn!(unreadable = lines.len() - rows.len(), "presign journal lines skipped");
        }
        for row in &rows {
            if let Err(err) = insert(conn, &[row]) {
                tracing::warn!(error = %err, upload_id = %row.id, "journaled pending upload not replayed");
            }
        }
        self.file.set_len(0)?;
        self.bytes = 0;
        Ok(rows.len())
    }
}

/// The thread that commits queued rows.
struct WriterThread {
    conn: rusqlite::Connection,
    rx: mpsc::Receiver<Msg>,
    linger: Duration,
    /// Received, not yet committed.
    queued: Vec<Msg>,
    /// To compact; the thread ends when the writer (the sender) is gone.
    journal: Option<Arc<Mutex<Journal>>>,
}

impl WriterThread {
    fn run(mut self) {
        loop {
            if self.queued.is_empty() {
                match self.rx.recv() {
                    Ok(msg) => self.queued.push(msg),
                    Err(_) => return,
                }
            }
            self.gather();
            if self.commit().is_err() {
                // Journaled rows stay queued (and journaled) until a later commit takes them.
                std::thread::sleep(Duration::from_secs(1));
            }
            self.compact();
        }
    }

    /// Lets rows gather for the linger (sleeping: a row sent meanwhile does
    /// not wake the thread; a flush does), then takes all queued.
    fn gather(&mut self) {
        let flushing = |queued: &[Msg]| queued.iter().any(|m| matches!(m, Msg::Flush(_)));
        let deadline = Instant::now() + self.linger;
        loop {
            self.queued.extend(self.rx.try_iter().take(MAX_BATCH.saturating_sub(self.queued.len())));
            if flushing(&self.queued) || self.queued.len() >= MAX_BATCH {
                return;
            }
            match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                _ => return,
            }
        }
    }

    /// Commits the queued rows in one transaction; answers those waiting and
    /// the flushes. On failure the journaled rows stay queued; waiting callers get the error.
    fn commit(&mut self) -> Result<(), ()> {
        let rows: Vec<&pending_upload::Model> = self
            .queued
            .iter()
            .filter_map(|m| match m {
                Msg::Row { row, .. } => Some(row),
                Msg::Flush(_) => None,
            })
            .collect();
        let result = if rows.is_empty() {
            Ok(())
        } else {
            insert_all(&mut self.conn, &rows).map_err(|e| DbErr::Custom(e.to_string()))
        };
        if let Err(err) = &result {
            tracing::error!(error = %err, rows = rows.len(), "pending uploads write failed");
        }
        let failed = result.is_err();
        let mut kept = Vec::new();
        for msg in self.queued.drain(..) {
            match msg {
                Msg::Row { reply: Some(reply), .. } => {
                    let _ = reply.send(result.clone());
                }
                msg @ Msg::Row { .. } if failed => kept.push(msg),
                Msg::Row { .. } => {}
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        self.queued = kept;
        if failed { Err(()) } else { Ok(()) }
    }

    /// Once the journal is past [`COMPACT_BYTES`], rewrites it with the rows
    /// not yet committed (taken off the channel under the journal's lock, so
    /// none is missed).
    fn compact(&mut self) {
        let Some(journal) = &self.journal else { return };
        let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
        if journal.bytes < COMPACT_BYTES {
            return;
        }
        self.queued.extend(self.rx.try_iter());
        let lines = self.queued.iter().filter_map(|m| match m {
            Msg::Row { line: Some(line), .. } => Some(line.as_slice()),
            _ => None,
        });
        if let Err(err) = journal.rewrite(lines) {
            tracing::error!(error = %err, "pending upload journal not compacted");
        }
    }
}

/// Inserts `rows` in one transaction. A row that breaks a constraint (its
/// channel or message was deleted meanwhile) is dropped, as the cascade would have.
fn insert_all(conn: &mut rusqlite::Connection, rows: &[&pending_upload::Model]) -> rusqlite::Result<()> {
    match insert(conn, rows) {
        Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            for &row in rows {
                if let Err(err) = insert(conn, &[row]) {
                    if err.sqlite_error_code() != Some(rusqlite::ErrorCode::ConstraintViolation) {
                        return Err(err);
                    }
                    tracing::warn!(error = %err, upload_id = %row.id, "pending upload dropped");
                }
            }
            Ok(())
        }
        other => other,
    }
}

/// One transaction; a row already there, or whose object became a file, is
/// left alone (a replayed journal may hold either). Encodings as SeaORM's
/// SQLite driver writes them: UUIDs as 16-byte blobs, times as text.
fn insert(conn: &mut rusqlite::Connection, rows: &[&pending_upload::Model]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO pending_uploads (id, user_id, channel_id, message_id, file_name, s3_key, content_type, \
             file_size, sha256, state, file_id, multipart_upload_id, created_at, expires_at, part_size) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15 \
             WHERE NOT EXISTS (SELECT 1 FROM file_uploads WHERE s3_key = ?6)",
        )?;
        for row in rows {
            insert.execute(rusqlite::params![
                row.id.as_bytes().as_slice(),
                row.user_id,
                row.channel_id,
                row.message_id,
                row.file_name,
                row.s3_key,
                row.content_type,
                row.file_size,
                row.sha256,
                row.state,
                row.file_id,
                row.multipart_upload_id,
                row.created_at.format("%F %T%.f").to_string(),
                row.expires_at.format("%F %T%.f").to_string(),
                row.part_size,
            ])?;
        }
    }
    tx.commit()
}

async fn write_batch(db: &DatabaseConnection, rows: Vec<pending_upload::Model>) -> Result<Vec<()>, DbErr> {
    let count = rows.len();
    pending_upload::Entity::insert_many(rows.into_iter().map(IntoActiveModel::into_active_model))
        .exec_without_returning(db)
        .await?;
    Ok(vec![(); count])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u32) -> pending_upload::Model {
        let created = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap().and_hms_opt(12, 0, n).unwrap();
        pending_upload::Model {
            id: uuid::Uuid::now_v7(),
            user_id: 1,
            channel_id: 2,
            message_id: None,
            file_name: format!("f{n}.png"),
            s3_key: format!("uploads/2/{n}/f{n}.png"),
            content_type: "image/png".into(),
            file_size: 10,
            sha256: None,
            state: "pending".into(),
            file_id: None,
            multipart_upload_id: None,
            created_at: created,
            expires_at: created,
            part_size: None,
        }
    }

    fn journaled(journal: &Journal) -> Vec<pending_upload::Model> {
        let text = std::fs::read_to_string(&journal.path).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn a_compacted_journal_keeps_the_given_rows_and_takes_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("db")).unwrap().unwrap();
        let rows: Vec<_> = (1..=4).map(row).collect();
        let lines: Vec<Vec<u8>> = rows[..3].iter().map(|r| Journal::line(r).unwrap()).collect();
        lines.iter().for_each(|line| journal.append(line).unwrap());
        assert_eq!(journaled(&journal), rows[..3]);

        journal.rewrite(lines[1..].iter().map(Vec::as_slice)).unwrap();
        journal.append(&Journal::line(&rows[3]).unwrap()).unwrap();
        assert_eq!(journaled(&journal), rows[1..]);
        assert_eq!(journal.bytes, std::fs::metadata(&journal.path).unwrap().len());
    }

    #[test]
    fn a_second_process_does_not_get_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let first = Journal::open(&dir.path().join("db")).unwrap();
        assert!(first.is_some());
        // Another open file description conflicts like another process would.
        assert!(Journal::open(&dir.path().join("db")).unwrap().is_none());
        drop(first);
        assert!(Journal::open(&dir.path().join("db")).unwrap().is_some());
    }
}
