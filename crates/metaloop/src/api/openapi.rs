//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' own
//! request and response types (`utoipa`) and from the same route table the router is built
//! from ([`super::routes::api_routes`]), so the two cannot drift apart.

use super::views::ErrorBody;
use serde_json::{Value, json};
use utoipa::OpenApi;

/// The document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "metaloop", description = "The meta-loop supervisor's API."),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The whole document: every route with its parameters, request and response schemas and
/// content types; every operation also answers 4xx and 5xx with the JSON error body, and
/// those under `/v1/` need a bearer token.
pub fn document() -> Value {
    let (_, api) = super::routes::api_routes().split_for_parts();
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    doc["openapi"] = json!("3.1.0");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    doc["components"]["securitySchemes"] =
        json!({ "bearer": { "type": "http", "scheme": "bearer" } });
    let error = |what: &str| {
        json!({
            "description": what,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
        })
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            for (_, op) in item.as_object_mut().into_iter().flatten() {
                let Some(responses) = op["responses"].as_object_mut() else {
                    continue;
                };
                if path.starts_with("/v1/") {
                    responses
                        .entry("401")
                        .or_insert_with(|| error("No or unknown bearer token"));
                    responses
                        .entry("403")
                        .or_insert_with(|| error("The token's principal lacks the role"));
                }
                responses
                    .entry("4XX")
                    .or_insert_with(|| error("A bad request: the JSON error names what was wrong"));
                responses.entry("5XX").or_insert_with(|| {
                    error("The server could not answer: the JSON error says why")
                });
            }
        }
    }
    doc
}
