//! chatgenius-files: the file service of the ChatGenius chat app, a
//! presigned-URL direct-upload broker.

/// Request logging that never prints query strings.
pub mod access_log;
/// HTTP handlers (poem-openapi), one module per resource.
pub mod api;
/// Bearer JWTs and the authenticated caller.
pub mod auth;
/// `bucket-setup`: the bucket configuration the service expects.
pub mod bucket_setup;
/// Settings from the environment, validated at boot.
pub mod config;
/// Newtypes that parse client input at the edge.
pub mod domain;
/// The in-process S3 endpoint of the embedded default.
pub mod embedded_s3;
/// SeaORM entities.
pub mod entity;
/// The one JSON error body and its statuses.
pub mod error;
/// Channel events and the in-process hub.
pub mod events;
/// Body limits and HTTP conformance around every request.
pub mod guard;
/// Prometheus metrics.
pub mod metrics;
/// TCP listener settings.
pub mod net;
/// The event outbox: events written with their change, delivered in order.
pub mod outbox;
/// Photo privacy: metadata removed from image files, pixels untouched.
pub mod photo_metadata;
/// Per-user rate limits.
pub mod ratelimit;
/// The route table: metric labels and `Allow` headers.
pub mod routes;
/// Use cases, free of HTTP types.
pub mod service;
/// Wiring: builds the state and the routes, then serves.
pub mod startup;
/// What every handler can reach.
pub mod state;
/// The S3 facade and presigned URLs.
pub mod storage;
/// The embedded browser client.
pub mod ui;
/// JSON shapes shared by HTTP responses and WebSocket events.
pub mod wire;
/// The WebSocket endpoint delivering channel events.
pub mod ws;
