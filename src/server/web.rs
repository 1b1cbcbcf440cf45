//! The demo page (`web/`), built into the binary so `voxline serve` needs no
//! files beside it; `--web-dir` serves a working copy instead (edit, reload).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::Server;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");

fn file(server: &Server, name: &str, builtin: &'static str, content_type: &'static str) -> Response {
    let body = match &server.config.web_dir {
        Some(dir) => match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => text,
            Err(e) => return (StatusCode::NOT_FOUND, format!("{}: {e}", dir.join(name).display())).into_response(),
        },
        None => builtin.to_owned(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

pub async fn index(State(server): State<Arc<Server>>) -> Response {
    file(&server, "index.html", INDEX, "text/html; charset=utf-8")
}

pub async fn app_js(State(server): State<Arc<Server>>) -> Response {
    file(&server, "app.js", APP_JS, "text/javascript; charset=utf-8")
}
