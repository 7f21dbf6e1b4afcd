//! Migrations go up, down and up again on the database under test.

use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm::Database;

use crate::helpers::fresh_database_url;

const TABLES: [&str; 8] =
    ["users", "channels", "channel_members", "messages", "file_uploads", "pending_uploads", "file_downloads", "events"];

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(fresh_database_url(dir.path()).await).await.unwrap();
    let manager = SchemaManager::new(&db);

    Migrator::up(&db, None).await.unwrap();
    for table in TABLES {
        assert!(manager.has_table(table).await.unwrap(), "{table} after up");
    }
    for index in ["idx_file_uploads_message_id", "idx_file_uploads_uploaded_by", "idx_file_uploads_uploaded_at"] {
        assert!(manager.has_index("file_uploads", index).await.unwrap(), "{index}");
    }
    for column in [
        "id",
        "message_id",
        "file_name",
        "s3_key",
        "content_type",
        "file_size",
        "uploaded_at",
        "uploaded_by",
        "is_deleted",
    ] {
        assert!(manager.has_column("file_uploads", column).await.unwrap(), "spec column {column}");
    }

    Migrator::down(&db, None).await.unwrap();
    for table in TABLES {
        assert!(!manager.has_table(table).await.unwrap(), "{table} after down");
    }

    Migrator::up(&db, None).await.unwrap();
    for table in TABLES {
        assert!(manager.has_table(table).await.unwrap(), "{table} after up again");
    }
    assert!(Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
}

/// Instances started together on a new PostgreSQL database (or a new version
/// with a new migration) take turns migrating: every one of them boots.
#[tokio::test]
async fn instances_migrating_one_database_at_once_all_succeed() {
    if std::env::var("TEST_POSTGRES_URL").is_err() {
        eprintln!("PostgreSQL only (TEST_POSTGRES_URL): a SQLite file serves one instance");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let runs = (0..4).map(|i| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatgenius-files"));
        cmd.args(["migrate", "up"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &url)
            .env("DATA_DIR", dir.path().join(format!("d{i}")))
            .env("RUST_LOG", "error");
        cmd.output()
    });
    for out in futures_util::future::join_all(runs).await {
        let out = out.unwrap();
        assert!(out.status.success(), "a concurrent migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let db = Database::connect(&url).await.unwrap();
    assert!(Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
}
