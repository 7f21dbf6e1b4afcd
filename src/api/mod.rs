//! The HTTP API: poem-openapi handlers by resource. Handlers only translate
//! HTTP to a use-case call and back.

mod auth;
mod channels;
mod common;
mod config;
mod events;
mod files;
mod health;
mod messages;
mod multipart;
mod serde_json_body;

use poem_openapi::OpenApiService;

/// Declares the tuple of every API (in spec order) once, as a type and a value.
macro_rules! apis {
    ($($api:path),* $(,)?) => {
        /// Every API of the service, in spec order.
        pub type Apis = ($($api,)*);

        fn apis() -> Apis {
            ($($api,)*)
        }
    };
}

apis!(
    health::HealthApi,
    config::ConfigApi,
    auth::AuthApi,
    channels::ChannelsApi,
    messages::MessagesApi,
    files::FilesApi,
    multipart::MultipartApi,
    events::EventsApi,
);

/// The OpenAPI service (spec, Swagger UI and routes).
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(), "ChatGenius Files", env!("CARGO_PKG_VERSION"))
        .summary("File service of the ChatGenius chat app")
        .description(
            "Presigned-URL direct-upload broker: clients upload straight to S3, the broker verifies, \
         records and announces files. Every error is `{\"error\":{\"code\",\"message\"}}`.",
        )
}

/// The spec as committed in `openapi/openapi.json` and served at
/// `/openapi.json`: poem-openapi's, plus the links that say which response
/// feeds which operation (generated clients and stateful fuzzers follow them
/// from a presign to its confirm, from a channel to its messages).
pub fn spec_json() -> String {
    let mut spec: serde_json::Value = serde_json::from_str(&service().spec()).expect("poem-openapi writes JSON");
    let operations: Vec<(String, String)> = spec["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, ops)| {
            ops.as_object().into_iter().flatten().map(move |(method, op)| {
                (op["operationId"].as_str().unwrap_or_default().to_owned(), format!("{path} {method}"))
            })
        })
        .collect();
    for (from, status, field, parameter, targets) in LINKS {
        let Some((_, at)) = operations.iter().find(|(id, _)| id == from) else { continue };
        let (path, method) = at.split_once(' ').expect("path and method");
        let links: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|target| {
                let link = serde_json::json!({
                    "operationId": target,
                    "parameters": { *parameter: format!("$response.body#/{field}") },
                });
                ((*target).to_owned(), link)
            })
            .collect();
        spec["paths"][path][method]["responses"][status]["links"] = links.into();
    }
    serde_json::to_string_pretty(&spec).expect("JSON")
}

/// [`spec_json`], made once per process (served, and read by the route table).
pub fn spec() -> &'static str {
    static SPEC: std::sync::LazyLock<String> = std::sync::LazyLock::new(spec_json);
    SPEC.as_str()
}

/// Response links: (operation, status, response field, parameter, operations it feeds).
const LINKS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "create_channel",
        "201",
        "id",
        "channel_id",
        &["get_channel", "list_channel_members", "add_channel_member", "post_message", "list_messages"],
    ),
    ("presign_upload", "201", "upload_id", "upload_id", &["confirm_upload", "abort_upload"]),
    (
        "start_multipart_upload",
        "201",
        "upload_id",
        "upload_id",
        &["get_multipart_parts", "complete_multipart_upload", "abort_upload"],
    ),
    ("confirm_upload", "201", "id", "file_id", &["get_file", "download_file", "delete_file"]),
    ("upload_file", "201", "id", "file_id", &["get_file", "download_file", "delete_file"]),
];
