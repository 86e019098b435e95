//! The stylesheet and script, and the vendored charting library (uPlot), embedded at compile time (no build step, no CDN). Cached for five
//! minutes only, so a new release is picked up soon without versioned file names.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");
/// The channel editor's script (`web/template_editor.rs`), on its pages only.
const EDITOR_JS: &str = include_str!("static/template-editor.js");
/// uPlot 1.6.32 (MIT; `static/uplot/README.md`): the device page's interactive charts.
const UPLOT_JS: &str = include_str!("static/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("static/uplot/uPlot.min.css");

/// Path of the stylesheet.
pub const CSS_PATH: &str = "/static/app.css";
/// Path of the script.
pub const JS_PATH: &str = "/static/app.js";
/// Path of the charting library.
pub const UPLOT_JS_PATH: &str = "/static/uplot.min.js";
/// Path of its stylesheet.
pub const UPLOT_CSS_PATH: &str = "/static/uplot.min.css";

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        "template-editor.js" => (EDITOR_JS, "text/javascript; charset=utf-8"),
        "uplot.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uplot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}
