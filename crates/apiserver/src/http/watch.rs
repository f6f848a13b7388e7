//! Watch streams (spec §4.5, §5.1): one JSON event per line, frames passed through as the cache
//! encoded them, or converted to Table rows or PartialObjectMetadata; or length-prefixed
//! protobuf WatchEvents.

use std::sync::Arc;

use apimachinery::negotiate::{Encoding, IncludeObject, Negotiated, Target};
use apimachinery::table::{partial_object_metadata, Table, TableRow, NAME_COLUMN};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::render::{json_line, table_object, Encoder};
use super::Api;
use crate::protobuf::ProtobufCodec;
use crate::resource::{Resource, WatchBody, WatchEvent};

pub(super) fn watch_response(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    stream: futures::stream::BoxStream<'static, WatchEvent>,
    negotiated: Negotiated,
    include: IncludeObject,
    encoder: &Encoder,
) -> Response {
    let target = negotiated.target;
    let protobuf = match negotiated.encoding {
        Encoding::Protobuf => encoder.protobuf.clone(),
        _ => None,
    };
    let mut columns = vec![NAME_COLUMN];
    columns.extend(resource.table_columns());
    let events = api.metrics.watch_events(resource.info());
    let mut first = true;
    let body = stream.map(move |ev| {
        let bytes = match (&ev.body, target, &protobuf) {
            // The shared pre-encoded frame: nothing to expand.
            (WatchBody::Frame(frame), Target::Object, None) => frame.clone(),
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
                encode_event(ev.event_type, converted, protobuf.as_deref())
            }
        };
        events.sent(bytes.len());
        Ok::<Bytes, std::convert::Infallible>(bytes)
    });
    let content_type = match negotiated.encoding {
        Encoding::Protobuf => apimachinery::protobuf::WATCH_MEDIA_TYPE,
        _ => "application/json",
    };
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// One event on the wire: a JSON line, or a length-prefixed protobuf frame. An object the
/// schema cannot encode becomes an ERROR event, as kube reports encoding failures mid-watch.
fn encode_event(event_type: &str, object: Value, protobuf: Option<&ProtobufCodec>) -> Bytes {
    let Some(codec) = protobuf else {
        return json_line(&json!({"type": event_type, "object": object}));
    };
    codec
        .watch_frame(event_type, &object)
        .or_else(|e| {
            tracing::error!(error = %e, "watch event not encodable as protobuf");
            let mut status = serde_json::to_value(e.to_status()).unwrap_or_default();
            status["kind"] = json!("Status");
            status["apiVersion"] = json!("v1");
            codec.watch_frame("ERROR", &status)
        })
        .unwrap_or_default()
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
