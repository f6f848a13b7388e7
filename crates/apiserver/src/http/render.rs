//! Encoding of responses (spec §4.4, §4.5): JSON, pretty JSON and YAML bodies, Status errors
//! in Go's field order, and objects and lists rendered as themselves, as Tables or as
//! PartialObjectMetadata.

use std::collections::HashSet;
use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::negotiate::{Encoding, IncludeObject, Negotiated, Target};
use apimachinery::options::Query;
use apimachinery::table::{partial_object_metadata, Table, TableRow, NAME_COLUMN};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};

use super::watch::watch_response;
use super::Api;
use crate::protobuf::ProtobufCodec;
use crate::resource::{Reply, Resource};

pub(super) fn json_line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

pub(super) fn wants_pretty(query: &Query, headers: &HeaderMap) -> bool {
    if query.pretty() {
        return true;
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ua.starts_with("curl") || ua.starts_with("Wget") || ua.starts_with("Mozilla/5.0")
}

/// Sorts object keys (YAML output lists keys in order, as Go's does).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

pub(super) struct Encoder {
    pub(super) encoding: Encoding,
    pub(super) pretty: bool,
    /// Present when the server speaks protobuf (negotiation offers it only then).
    pub(super) protobuf: Option<Arc<ProtobufCodec>>,
}

impl Encoder {
    /// Encodes JSON bytes (compact, from the cache) for the response.
    fn bytes(&self, json: Bytes) -> Result<Bytes, ApiError> {
        match (self.encoding, self.pretty) {
            (Encoding::Json, false) => {
                let mut out = BytesMut::with_capacity(json.len() + 1);
                out.put_slice(&json);
                out.put_u8(b'\n');
                Ok(out.freeze())
            }
            (Encoding::Protobuf, _) => self.codec()?.encode_json(&json),
            _ => match serde_json::from_slice::<Value>(&json) {
                Ok(v) => self.value(&v),
                Err(_) => Ok(json),
            },
        }
    }

    fn value(&self, v: &Value) -> Result<Bytes, ApiError> {
        Ok(match (self.encoding, self.pretty) {
            (Encoding::Yaml, _) => {
                Bytes::from(serde_norway::to_string(&sorted(v.clone())).unwrap_or_default())
            }
            (Encoding::Json, true) => {
                Bytes::from(serde_json::to_string_pretty(v).unwrap_or_default())
            }
            (Encoding::Json, false) => json_line(v),
            (Encoding::Protobuf, _) => return self.codec()?.encode_value(v),
        })
    }

    fn codec(&self) -> Result<&ProtobufCodec, ApiError> {
        self.protobuf
            .as_deref()
            .ok_or_else(|| ApiError::Internal("protobuf negotiated without a schema".into()))
    }

    /// A Status error in the negotiated encoding (kube writes errors with the serializer the
    /// client asked for; JSON when even that fails).
    pub(super) fn error(&self, err: &ApiError) -> Response {
        if self.encoding != Encoding::Protobuf {
            return error_response(err, self.pretty);
        }
        let status = status_value(err);
        match self.value(&status) {
            Ok(body) => error_headers(
                respond(err.code(), self.encoding.content_type(), body, &[]),
                err,
            ),
            Err(_) => error_response(err, self.pretty),
        }
    }
}

pub(super) fn respond(code: u16, content_type: &str, body: Bytes, warnings: &[String]) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    append_warnings(headers, warnings);
    resp
}

/// What kube's warning recorder lets through (k8s.io/apiserver's `WithWarningRecorder`):
/// `truncateAtTotalRunes` and `truncateItemRunes`.
#[derive(Clone, Copy, Debug)]
struct WarningLimits {
    total_runes: usize,
    item_runes: usize,
}

const KUBE_WARNING_LIMITS: WarningLimits = WarningLimits {
    total_runes: 4 * 1024,
    item_runes: 256,
};

/// Adds `warnings` (in order, already deduplicated by `Warnings`) as `Warning: 299 - "text"`
/// headers, cut to kube's limits so that a request with thousands of warnings (unknown fields,
/// say) cannot make a header block that clients and proxies refuse.
pub(super) fn append_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for value in limit_warnings(warnings, KUBE_WARNING_LIMITS) {
        headers.append(header::WARNING, value);
    }
}

/// kube's recorder replayed over the warnings in the order they were added, so the outcome is
/// the same as upstream's: warnings are written whole while their texts add up to at most
/// `total_runes`; the first one that would pass it switches to truncation, which cuts every
/// warning so far and every later one to `item_runes`, and drops those that come once
/// `total_runes` is reached again.
fn limit_warnings(warnings: &[String], limits: WarningLimits) -> Vec<HeaderValue> {
    let mut recorder = WarningRecorder {
        limits,
        seen: HashSet::new(),
        ordered: Vec::new(),
        written: Vec::new(),
        runes: 0,
        truncating: false,
    };
    for text in warnings {
        recorder.add(text);
    }
    recorder.written
}

struct WarningRecorder<'a> {
    limits: WarningLimits,
    seen: HashSet<&'a str>,
    /// Every warning recorded, kept to be replayed cut when truncation starts.
    ordered: Vec<&'a str>,
    written: Vec<HeaderValue>,
    /// Runes of warning text written so far.
    runes: usize,
    truncating: bool,
}

impl<'a> WarningRecorder<'a> {
    fn add(&mut self, text: &'a str) {
        let full = self.truncating && self.runes >= self.limits.total_runes;
        if text.is_empty() || full || !self.seen.insert(text) {
            return;
        }
        self.ordered.push(text);
        let (text, runes) = if self.truncating {
            cut_runes(text, self.limits.item_runes)
        } else {
            (text, text.chars().count())
        };
        let Some(value) = warning_header(text) else {
            return;
        };
        if self.truncating || self.runes + runes <= self.limits.total_runes {
            self.runes += runes;
            self.written.push(value);
            return;
        }
        self.start_truncating();
    }

    /// Rewrites every warning recorded so far (this one included) cut to `item_runes`.
    fn start_truncating(&mut self) {
        tracing::warn!("exceeded max warning header size, truncating");
        self.truncating = true;
        self.runes = 0;
        self.written.clear();
        for text in &self.ordered {
            let (text, runes) = cut_runes(text, self.limits.item_runes);
            if let Some(value) = warning_header(text) {
                self.runes += runes;
                self.written.push(value);
            }
        }
    }
}

/// `text` cut to at most `max` characters (Go's runes), with the count it keeps.
fn cut_runes(text: &str, max: usize) -> (&str, usize) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (&text[..end], max),
        None => (text, text.chars().count()),
    }
}

/// One `Warning` header as apimachinery's `NewWarningHeader(299, "", text)` writes it: agent
/// `-`, the text quoted with only `"` and `\` escaped. A text with control characters is
/// refused there, and so not sent, here too.
fn warning_header(text: &str) -> Option<HeaderValue> {
    if text.chars().any(char::is_control) {
        return None;
    }
    let mut quoted = String::with_capacity(text.len() + 8);
    quoted.push_str("299 - \"");
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    HeaderValue::from_str(&quoted).ok()
}

/// An error as kube's Status object, in Go's field order.
fn status_value(err: &ApiError) -> Value {
    let mut status = serde_json::to_value(err.to_status()).unwrap_or_default();
    if let Some(o) = status.as_object_mut() {
        o.insert("kind".into(), json!("Status"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    order_status(status)
}

/// A Status error response.
pub fn error_response(err: &ApiError, pretty: bool) -> Response {
    let status = status_value(err);
    let body = if pretty {
        Bytes::from(serde_json::to_string_pretty(&status).unwrap_or_default())
    } else {
        json_line(&status)
    };
    error_headers(respond(err.code(), "application/json", body, &[]), err)
}

fn error_headers(mut resp: Response, err: &ApiError) -> Response {
    let headers = resp.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Some(retry) = err.retry_after().filter(|r| *r > 0) {
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            headers.insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Go's field order for Status: kind, apiVersion, metadata, status, message, reason, details,
/// code.
fn order_status(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    let mut out = serde_json::Map::new();
    for k in [
        "kind",
        "apiVersion",
        "metadata",
        "status",
        "message",
        "reason",
        "details",
        "code",
    ] {
        match m.remove(k) {
            Some(val) => {
                out.insert(k.to_string(), val);
            }
            None if k == "metadata" => {
                out.insert(k.to_string(), json!({}));
            }
            None => {}
        }
    }
    out.extend(m);
    Value::Object(out)
}

pub(super) fn table_object(include: IncludeObject, object: &Value) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(object),
        IncludeObject::Object => object.clone(),
    }
}

fn table_for(
    resource: &dyn Resource,
    metadata: Value,
    objects: &[Value],
    include: IncludeObject,
    with_columns: bool,
) -> Table {
    let mut columns = vec![NAME_COLUMN];
    columns.extend(resource.table_columns());
    let rows = objects
        .iter()
        .map(|o| TableRow {
            cells: resource.table_row(o),
            object: table_object(include, o),
        })
        .collect();
    Table::new(
        metadata,
        if with_columns { columns } else { Vec::new() },
        rows,
    )
}

pub(super) fn render(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    reply: Reply,
    negotiated: Negotiated,
    include: IncludeObject,
    encoder: &Encoder,
    warnings: &[String],
) -> Response {
    let rendering = Rendering {
        resource: resource.as_ref(),
        negotiated,
        include,
        encoder,
        warnings,
    };
    match reply {
        Reply::Status { code, status } => rendering.send_value(code, &status),
        Reply::Object { code, json } => rendering.object(code, json),
        Reply::List {
            kind,
            api_version,
            metadata,
            items,
        } => rendering.list(kind, api_version, metadata, items),
        Reply::Watch(stream) => watch_response(api, resource, stream, negotiated, include, encoder),
    }
}

/// What the renderings of one non-watch reply share.
struct Rendering<'a> {
    resource: &'a dyn Resource,
    negotiated: Negotiated,
    include: IncludeObject,
    encoder: &'a Encoder,
    warnings: &'a [String],
}

impl Rendering<'_> {
    fn send(&self, code: u16, body: Result<Bytes, ApiError>) -> Response {
        match body {
            Ok(body) => {
                let ct = self.negotiated.encoding.content_type();
                respond(code, ct, body, self.warnings)
            }
            Err(e) => error_response(&e, self.encoder.pretty),
        }
    }

    fn send_value(&self, code: u16, v: &Value) -> Response {
        self.send(code, self.encoder.value(v))
    }

    fn table(&self, metadata: Value, objects: &[Value]) -> Value {
        let table = table_for(self.resource, metadata, objects, self.include, true);
        serde_json::to_value(&table).unwrap_or_default()
    }

    fn object(&self, code: u16, json: Bytes) -> Response {
        match self.negotiated.target {
            Target::Object => self.send(code, self.encoder.bytes(json)),
            Target::Table => {
                let obj: Value = serde_json::from_slice(&json).unwrap_or_default();
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                let table = self.table(json!({"resourceVersion": rv}), &[obj]);
                self.send_value(code, &table)
            }
            Target::PartialObjectMetadata | Target::PartialObjectMetadataList => {
                let obj: Value = serde_json::from_slice(&json).unwrap_or_default();
                self.send_value(code, &partial_object_metadata(&obj))
            }
        }
    }

    fn list(
        &self,
        kind: String,
        api_version: String,
        metadata: Value,
        items: Vec<Bytes>,
    ) -> Response {
        match self.negotiated.target {
            Target::Object
                if self.negotiated.encoding == Encoding::Json && !self.encoder.pretty =>
            {
                self.send(
                    200,
                    Ok(compact_json_list(&kind, &api_version, &metadata, &items)),
                )
            }
            Target::Object => {
                let items: Vec<Value> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice(i).ok())
                    .collect();
                let list = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items});
                self.send_value(200, &list)
            }
            Target::Table => {
                let objects: Vec<Value> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice(i).ok())
                    .collect();
                let table = self.table(metadata, &objects);
                self.send_value(200, &table)
            }
            Target::PartialObjectMetadata | Target::PartialObjectMetadataList => {
                let items: Vec<Value> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice::<Value>(i).ok())
                    .map(|o| partial_object_metadata(&o))
                    .collect();
                let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
                self.send_value(200, &list)
            }
        }
    }
}

/// Room for a whole compact list, commas included: a list of 500 large items is megabytes, and
/// growing the buffer would copy it again. `kind` and `apiVersion` fit in the slack.
fn compact_json_list_size(metadata: &[u8], items: &[Bytes]) -> usize {
    items.iter().map(|i| i.len() + 1).sum::<usize>() + metadata.len() + 256
}

/// The common case, compact JSON, splices the items' cached bytes instead of parsing them.
fn compact_json_list(kind: &str, api_version: &str, metadata: &Value, items: &[Bytes]) -> Bytes {
    let metadata = serde_json::to_vec(&metadata).unwrap_or_default();
    let mut out = BytesMut::with_capacity(compact_json_list_size(&metadata, items));
    out.put_slice(b"{\"kind\":");
    out.put_slice(&serde_json::to_vec(&kind).unwrap_or_default());
    out.put_slice(b",\"apiVersion\":");
    out.put_slice(&serde_json::to_vec(&api_version).unwrap_or_default());
    out.put_slice(b",\"metadata\":");
    out.put_slice(&metadata);
    out.put_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(item);
    }
    out.put_slice(b"]}\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_list_fits_the_room_made_for_it() {
        let items: Vec<Bytes> = (0..600)
            .map(|i| Bytes::from(format!("{{\"n\":{i}}}")))
            .collect();
        let metadata = json!({"resourceVersion": "12345", "continue": "x".repeat(300)});
        for count in [0, 1, 257, 600] {
            let list = compact_json_list(
                "ImageStreamList",
                "image.openshift.io/v1",
                &metadata,
                &items[..count],
            );
            let room = compact_json_list_size(
                &serde_json::to_vec(&metadata).expect("json"),
                &items[..count],
            );
            assert!(
                list.len() <= room,
                "{count} items: {} bytes in {room}",
                list.len()
            );
            let parsed: Value = serde_json::from_slice(&list).expect("a list is JSON");
            assert_eq!(parsed["items"].as_array().map(Vec::len), Some(count));
        }
    }

    #[test]
    fn statuses_keep_go_field_order() {
        let v = order_status(
            json!({"code": 404, "message": "m", "kind": "Status", "apiVersion": "v1", "status": "Failure"}),
        );
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            vec![
                "kind",
                "apiVersion",
                "metadata",
                "status",
                "message",
                "code"
            ]
        );
    }

    fn texts(values: &[HeaderValue]) -> Vec<&str> {
        values
            .iter()
            .map(|v| v.to_str().expect("ASCII in these tests"))
            .collect()
    }

    fn owned(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn warnings_are_quoted_as_kube_quotes_them() {
        let values = limit_warnings(
            &owned(&[r#"say "hi" \ there"#, "two\nlines", "plain"]),
            KUBE_WARNING_LIMITS,
        );
        // The text with a control character is not sent, as NewWarningHeader refuses it.
        assert_eq!(
            texts(&values),
            vec![r#"299 - "say \"hi\" \\ there""#, r#"299 - "plain""#]
        );
    }

    #[test]
    fn warnings_past_the_total_are_cut_then_dropped() {
        let limits = WarningLimits {
            total_runes: 20,
            item_runes: 4,
        };
        // 8 + 2 + 6 = 16 runes fit; 5 more would pass 20, so every warning is cut to 4
        // (14 runes), the next ones are cut as they come (18, then 20) and a duplicate is
        // ignored; once 20 is reached again the rest are dropped.
        let added = owned(&[
            "abcdefgh", "xy", "pqrstu", "klmno", "zzzzzz", "xy", "mm", "n",
        ]);
        let values = limit_warnings(&added, limits);
        assert_eq!(
            texts(&values),
            vec![
                r#"299 - "abcd""#,
                r#"299 - "xy""#,
                r#"299 - "pqrs""#,
                r#"299 - "klmn""#,
                r#"299 - "zzzz""#,
                r#"299 - "mm""#,
            ]
        );
        let untouched = limit_warnings(&added[..3], limits);
        assert_eq!(
            texts(&untouched),
            vec![r#"299 - "abcdefgh""#, r#"299 - "xy""#, r#"299 - "pqrstu""#]
        );
    }

    #[test]
    fn warnings_are_cut_on_character_boundaries() {
        assert_eq!(cut_runes("ñandú", 3), ("ñan", 3));
        assert_eq!(cut_runes("ñandú", 5), ("ñandú", 5));
        assert_eq!(cut_runes("ñandú", 9), ("ñandú", 5));
    }

    #[test]
    fn kube_limits_keep_sixteen_long_warnings_of_256_runes() {
        // 13 warnings of 300 runes fit in 4,096; the 14th starts truncation (14 × 256), the
        // 15th and 16th are cut and bring the total to 4,096, and the 17th is dropped.
        let warnings: Vec<String> = (0..17)
            .map(|i| format!("{i:03}{}", "w".repeat(297)))
            .collect();
        let values = limit_warnings(&warnings, KUBE_WARNING_LIMITS);
        assert_eq!(values.len(), 16);
        for (value, text) in values.iter().zip(&warnings) {
            let expected = format!("299 - \"{}\"", &text[..256]);
            assert_eq!(value.to_str().expect("ASCII"), expected);
        }
        let mut headers = HeaderMap::new();
        append_warnings(&mut headers, &warnings[..13]);
        assert_eq!(headers.get_all(header::WARNING).iter().count(), 13);
    }
}
