//! The browser client, embedded in the binary and served at `/` (no build
//! step, nothing fetched from elsewhere).

use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response, Route, get,
    http::{HeaderValue, Method, header},
};

/// Scripts and styles come only from here; images and uploads may go to the
/// object store (wherever it is), events over the socket.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data: http: https:; connect-src 'self' http: https: ws: wss:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
/// The modules `app.js` imports (plain ES modules, each at `/ui/<name>`).
const MODULES: &[(&str, &str)] = &[
    ("/api.js", include_str!("ui/api.js")),
    ("/dom.js", include_str!("ui/dom.js")),
    ("/events.js", include_str!("ui/events.js")),
    ("/state.js", include_str!("ui/state.js")),
    ("/upload-state.js", include_str!("ui/upload-state.js")),
    ("/uploads.js", include_str!("ui/uploads.js")),
];
const STYLE: &str = include_str!("ui/app.css");
const ICON: &str = include_str!("ui/icon.svg");

/// Answers `GET /` with the page and passes everything else to `next` (the
/// API is nested at `/`, which would otherwise claim `/` as well).
pub async fn page_at_root<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" && req.method() == Method::GET {
        return Asset { body: INDEX, content_type: "text/html; charset=utf-8" }.call(req).await;
    }
    Ok(next.call(req).await?.into_response())
}

/// Scripts, style and icon, for nesting under `/ui`.
pub fn assets() -> Route {
    let route = Route::new()
        .at("/app.js", get(Asset { body: SCRIPT, content_type: JAVASCRIPT }))
        .at("/app.css", get(Asset { body: STYLE, content_type: "text/css; charset=utf-8" }))
        .at("/icon.svg", get(Asset { body: ICON, content_type: "image/svg+xml" }));
    MODULES.iter().fold(route, |route, &(path, body)| route.at(path, get(Asset { body, content_type: JAVASCRIPT })))
}

/// One embedded file, served with its type and the page's security headers.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

impl Endpoint for Asset {
    type Output = Response;

    async fn call(&self, _req: Request) -> poem::Result<Response> {
        let mut response = Response::builder().content_type(self.content_type).body(self.body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(response)
    }
}
