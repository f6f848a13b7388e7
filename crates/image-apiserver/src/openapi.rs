//! The OpenAPI documents served at /openapi/v2 and /openapi/v3.

use apiserver::http::OpenApi;

pub fn documents() -> OpenApi {
    OpenApi::default()
}
