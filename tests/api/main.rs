//! The integration suite: one binary, a module per feature. Every test starts
//! the real server on 127.0.0.1:0 with its own database (SQLite, or a fresh
//! PostgreSQL database when TEST_POSTGRES_URL is set) and its own embedded S3.

mod helpers;

mod auth;
mod authz;
mod boot;
mod bucket_setup;
mod channels;
mod client;
mod credentials;
mod embedded_s3;
mod errors;
mod faults;
mod files;
mod hardening;
mod health;
mod lifecycle;
mod logs;
mod messages;
mod metrics;
mod migrations;
mod multipart;
mod openapi;
mod outbox;
mod previews;
mod privacy;
mod quota;
mod signing;
mod sweeper;
mod uploads;
mod usecases;
mod ws;

#[path = "../support/presigned.rs"]
mod presigned;
#[path = "../support/process.rs"]
mod process;
mod soak;
#[path = "../soak/mod.rs"]
mod soak_driver;
