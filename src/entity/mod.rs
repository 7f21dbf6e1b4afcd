//! SeaORM entities, one per table created by the `migration` crate.

pub mod channel;
pub mod channel_member;
pub mod event;
pub mod file_download;
pub mod file_upload;
pub mod message;
pub mod pending_upload;
pub mod user;
