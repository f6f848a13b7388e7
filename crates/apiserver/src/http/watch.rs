//! Watch streams (spec §4.5): one JSON event per line, frames passed through as the cache
//! encoded them, or converted to Table rows or PartialObjectMetadata.

use std::sync::Arc;

use apimachinery::negotiate::{IncludeObject, Target};
use apimachinery::table::{partial_object_metadata, Table, TableRow, NAME_COLUMN};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::render::{json_line, table_object};
use super::Api;
use crate::resource::{Resource, WatchBody, WatchEvent};

pub(super) fn watch_response(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    stream: futures::stream::BoxStream<'static, WatchEvent>,
    target: Target,
    include: IncludeObject,
) -> Response {
    let mut columns = vec![NAME_COLUMN];
    columns.extend(resource.table_columns());
    let guard = api.metrics.watch_started(resource.info().resource);
    let mut first = true;
    let body = stream.map(move |ev| {
        let _counted = &guard;
        let bytes = match (&ev.body, target) {
            (WatchBody::Frame(frame), Target::Object) => frame.clone(),
            _ => {
                let object = ev.object();
                let converted = convert_watch_object(
                    resource.as_ref(),
                    &ev,
                    object,
                    target,
                    include,
                    &columns,
                    first,
                );
                if target == Target::Table
                    && ev.event_type != "ERROR"
                    && ev.event_type != "BOOKMARK"
                {
                    first = false;
                }
                json_line(&json!({"type": ev.event_type, "object": converted}))
            }
        };
        Ok::<Bytes, std::convert::Infallible>(bytes)
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// The object of a watch event in the negotiated representation (errors and bookmarks stay
/// as they are).
fn convert_watch_object(
    resource: &dyn Resource,
    ev: &WatchEvent,
    object: Value,
    target: Target,
    include: IncludeObject,
    columns: &[apimachinery::table::ColumnDefinition],
    first: bool,
) -> Value {
    let passthrough = ev.event_type == "ERROR" || ev.event_type == "BOOKMARK";
    match target {
        Target::Table if !passthrough => {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let table = Table::new(
                json!({"resourceVersion": rv}),
                if first { columns.to_vec() } else { Vec::new() },
                vec![TableRow {
                    cells: resource.table_row(&object),
                    object: table_object(include, &object),
                }],
            );
            serde_json::to_value(&table).unwrap_or_default()
        }
        Target::PartialObjectMetadata | Target::PartialObjectMetadataList
            if ev.event_type != "ERROR" =>
        {
            partial_object_metadata(&object)
        }
        _ => object,
    }
}
