//! Database schema of chatgenius-files: one module per change, applied in order
//! by [`Migrator`] on SQLite and PostgreSQL alike.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_chat_tables;
mod m20261128_000002_create_file_uploads;
mod m20261128_000003_create_pending_uploads;
mod m20261128_000004_create_file_downloads;
mod m20261128_000005_create_event_relay;
mod m20261128_000006_add_pending_part_size;
mod m20261202_000007_upload_state_machine;
mod m20261203_000008_create_events;
mod m20261203_000009_quota_indexes;
mod m20261203_000010_file_previews;

/// Applies every migration of the service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_chat_tables::Migration),
            Box::new(m20261128_000002_create_file_uploads::Migration),
            Box::new(m20261128_000003_create_pending_uploads::Migration),
            Box::new(m20261128_000004_create_file_downloads::Migration),
            Box::new(m20261128_000005_create_event_relay::Migration),
            Box::new(m20261128_000006_add_pending_part_size::Migration),
            Box::new(m20261202_000007_upload_state_machine::Migration),
            Box::new(m20261203_000008_create_events::Migration),
            Box::new(m20261203_000009_quota_indexes::Migration),
            Box::new(m20261203_000010_file_previews::Migration),
        ]
    }
}
