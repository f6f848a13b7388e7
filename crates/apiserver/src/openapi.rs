//! OpenAPI v2 and v3 documents for one group/version (spec §1.4), built from the resources'
//! discovery information and their JSON schemas (generated from the Rust types by the caller).
//! The operations carry what kubectl reads: `x-kubernetes-group-version-kind`,
//! `x-kubernetes-action`, the PATCH content types we accept, and the `dryRun` and
//! `fieldValidation` parameters that turn on server-side validation.

use apimachinery::discovery::ResourceInfo;
use serde_json::{json, Map, Value};

use crate::patch::{APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH};

/// A resource and the schema names of its kind and list kind.
pub struct SchemaResource {
    pub info: ResourceInfo,
    pub schema: String,
    pub list_schema: String,
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";

fn camel_group(group: &str) -> String {
    group
        .split('.')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// A query parameter: (name, type, description).
fn param(name: &str, ty: &str, description: &str) -> (String, String, String) {
    (name.to_string(), ty.to_string(), description.to_string())
}

fn list_params() -> Vec<(String, String, String)> {
    vec![
        param("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        param("continue", "string", "The continue option should be set when retrieving more results from the server."),
        param("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
        param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
        param("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        param("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        param("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        param("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`: the watch then starts with the current state."),
        param("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn write_params(apply: bool, force: bool) -> Vec<(String, String, String)> {
    let mut p = vec![
        param("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values: All."),
        param(
            "fieldManager",
            "string",
            if apply {
                "fieldManager is a name associated with the actor or entity that is making these changes. It is required for apply requests."
            } else {
                "fieldManager is a name associated with the actor or entity that is making these changes."
            },
        ),
        param("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn (the default) or Strict."),
    ];
    if force {
        p.push(param("force", "boolean", "Force is going to \"force\" Apply requests: conflicting fields are taken over. Must be unset for non-apply patch requests."));
    }
    p
}

fn delete_params() -> Vec<(String, String, String)> {
    vec![
        param("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values: All."),
        param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
        param("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
        param("propagationPolicy", "string", "Whether and how garbage collection will be performed: Orphan, Background or Foreground."),
    ]
}

/// The two documents under construction, filled in parallel.
struct Docs {
    v2_paths: Map<String, Value>,
    v3_paths: Map<String, Value>,
    tag: String,
}

struct Op<'a> {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    params: Vec<(String, String, String)>,
    body: Option<(&'a str, Vec<&'static str>)>,
    responses: Vec<(&'static str, &'a str)>,
    gvk: Value,
    stream: bool,
}

impl Docs {
    fn add(&mut self, path: &str, path_params: &[&str], op: Op<'_>) {
        let produces: Vec<&str> = if op.stream {
            vec![
                "application/json",
                "application/yaml",
                "application/json;stream=watch",
            ]
        } else {
            vec!["application/json", "application/yaml"]
        };
        // v3
        let mut v3_params: Vec<Value> = path_params
            .iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "description": format!("{p} of the resource"), "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        v3_params.push(json!({"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty printed.", "schema": {"type": "string", "uniqueItems": true}}));
        for (name, ty, desc) in &op.params {
            v3_params.push(json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}}));
        }
        let mut v3_responses = Map::new();
        for (code, schema) in &op.responses {
            let content: Map<String, Value> = produces
                .iter()
                .map(|m| {
                    (
                        m.to_string(),
                        json!({"schema": {"$ref": format!("{V3_REF}{schema}")}}),
                    )
                })
                .collect();
            v3_responses.insert(
                code.to_string(),
                json!({"description": status_text(code), "content": content}),
            );
        }
        v3_responses.insert("401".into(), json!({"description": "Unauthorized"}));
        let mut v3_op = json!({
            "tags": [self.tag],
            "description": op.description,
            "operationId": op.id,
            "parameters": v3_params,
            "responses": v3_responses,
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": op.gvk,
        });
        if let Some((schema, types)) = &op.body {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        json!({"schema": {"$ref": format!("{V3_REF}{schema}")}}),
                    )
                })
                .collect();
            v3_op["requestBody"] = json!({"content": content, "required": true});
        }
        entry(&mut self.v3_paths, path).insert(op.method.to_string(), v3_op);
        // v2
        let mut v2_params: Vec<Value> = path_params
            .iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": format!("{p} of the resource")}))
            .collect();
        v2_params.push(json!({"name": "pretty", "in": "query", "type": "string", "uniqueItems": true, "description": "If 'true', then the output is pretty printed."}));
        for (name, ty, desc) in &op.params {
            v2_params.push(json!({"name": name, "in": "query", "type": ty, "uniqueItems": true, "description": desc}));
        }
        if let Some((schema, _)) = &op.body {
            v2_params.push(json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": format!("{V2_REF}{schema}")}}));
        }
        let mut v2_responses = Map::new();
        for (code, schema) in &op.responses {
            v2_responses.insert(code.to_string(), json!({"description": status_text(code), "schema": {"$ref": format!("{V2_REF}{schema}")}}));
        }
        v2_responses.insert("401".into(), json!({"description": "Unauthorized"}));
        let consumes: Vec<&str> = match &op.body {
            Some((_, types)) => types.clone(),
            None => vec!["*/*"],
        };
        let v2_op = json!({
            "description": op.description,
            "consumes": consumes,
            "produces": produces,
            "schemes": ["https"],
            "tags": [self.tag],
            "operationId": op.id,
            "parameters": v2_params,
            "responses": v2_responses,
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": op.gvk,
        });
        entry(&mut self.v2_paths, path).insert(op.method.to_string(), v2_op);
    }
}

fn entry<'a>(paths: &'a mut Map<String, Value>, path: &str) -> &'a mut Map<String, Value> {
    let v = paths.entry(path.to_string()).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("just made an object")
}

fn status_text(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        _ => "",
    }
}

fn has(info: &ResourceInfo, verb: &str) -> bool {
    info.verbs.contains(&verb)
}

fn add_resource(
    docs: &mut Docs,
    group: &str,
    version: &str,
    r: &SchemaResource,
    definitions: &Map<String, Value>,
) {
    let info = &r.info;
    let kind = info.kind;
    let cg = camel_group(group);
    let cv = {
        let mut c = version.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let ns = if info.namespaced { "Namespaced" } else { "" };
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let base = format!("/apis/{group}/{version}");
    let (collection, params): (String, Vec<&str>) = if info.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", info.resource),
            vec!["namespace"],
        )
    } else {
        (format!("{base}/{}", info.resource), vec![])
    };
    let item = format!("{collection}/{{name}}");
    let mut item_params = params.clone();
    item_params.push("name");
    let status = format!("{META}.Status");
    let delete_options = format!("{META}.DeleteOptions");
    let patch = format!("{META}.Patch");
    let watch_event = format!("{META}.WatchEvent");
    let json_body = vec!["*/*"];
    if has(info, "list") {
        docs.add(
            &collection,
            &params,
            Op {
                method: "get",
                action: "list",
                id: format!("list{cg}{cv}{ns}{kind}"),
                description: format!("list or watch objects of kind {kind}"),
                params: list_params(),
                body: None,
                responses: vec![("200", &r.list_schema)],
                gvk: gvk.clone(),
                stream: true,
            },
        );
        if info.namespaced {
            docs.add(
                &format!("{base}/{}", info.resource),
                &[],
                Op {
                    method: "get",
                    action: "list",
                    id: format!("list{cg}{cv}{kind}ForAllNamespaces"),
                    description: format!("list or watch objects of kind {kind}"),
                    params: list_params(),
                    body: None,
                    responses: vec![("200", &r.list_schema)],
                    gvk: gvk.clone(),
                    stream: true,
                },
            );
        }
    }
    if has(info, "create") {
        docs.add(
            &collection,
            &params,
            Op {
                method: "post",
                action: "post",
                id: format!("create{cg}{cv}{ns}{kind}"),
                description: format!("create {}", article(kind)),
                params: write_params(false, false),
                body: Some((&r.schema, json_body.clone())),
                responses: vec![("200", &r.schema), ("201", &r.schema), ("202", &r.schema)],
                gvk: gvk.clone(),
                stream: false,
            },
        );
    }
    if has(info, "deletecollection") {
        let mut p = delete_params();
        p.extend(
            list_params()
                .into_iter()
                .filter(|(n, _, _)| n != "watch" && n != "allowWatchBookmarks"),
        );
        docs.add(
            &collection,
            &params,
            Op {
                method: "delete",
                action: "deletecollection",
                id: format!("deletecollection{cg}{cv}{ns}{kind}"),
                description: format!("delete collection of {kind}"),
                params: p,
                body: Some((&delete_options, json_body.clone())),
                responses: vec![("200", &status)],
                gvk: gvk.clone(),
                stream: false,
            },
        );
    }
    if has(info, "get") {
        docs.add(
            &item,
            &item_params,
            Op {
                method: "get",
                action: "get",
                id: format!("read{cg}{cv}{ns}{kind}"),
                description: format!("read the specified {kind}"),
                params: vec![],
                body: None,
                responses: vec![("200", &r.schema)],
                gvk: gvk.clone(),
                stream: false,
            },
        );
    }
    if has(info, "update") {
        docs.add(
            &item,
            &item_params,
            Op {
                method: "put",
                action: "put",
                id: format!("replace{cg}{cv}{ns}{kind}"),
                description: format!("replace the specified {kind}"),
                params: write_params(false, false),
                body: Some((&r.schema, json_body.clone())),
                responses: vec![("200", &r.schema), ("201", &r.schema)],
                gvk: gvk.clone(),
                stream: false,
            },
        );
    }
    if has(info, "patch") {
        docs.add(
            &item,
            &item_params,
            Op {
                method: "patch",
                action: "patch",
                id: format!("patch{cg}{cv}{ns}{kind}"),
                description: format!("partially update the specified {kind}"),
                params: write_params(true, true),
                body: Some((
                    &patch,
                    vec![JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH],
                )),
                responses: vec![("200", &r.schema), ("201", &r.schema)],
                gvk: gvk.clone(),
                stream: false,
            },
        );
    }
    if has(info, "delete") {
        docs.add(
            &item,
            &item_params,
            Op {
                method: "delete",
                action: "delete",
                id: format!("delete{cg}{cv}{ns}{kind}"),
                description: format!("delete {}", article(kind)),
                params: delete_params(),
                body: Some((&delete_options, json_body.clone())),
                responses: vec![("200", &status), ("202", &status)],
                gvk: gvk.clone(),
                stream: false,
            },
        );
    }
    if has(info, "watch") {
        let watch_collection = if info.namespaced {
            format!("{base}/watch/namespaces/{{namespace}}/{}", info.resource)
        } else {
            format!("{base}/watch/{}", info.resource)
        };
        docs.add(&watch_collection, &params, Op {
            method: "get", action: "watchlist", id: format!("watch{cg}{cv}{ns}{kind}List"),
            description: format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
            params: list_params(), body: None, responses: vec![("200", &watch_event)], gvk: gvk.clone(), stream: true,
        });
        docs.add(&format!("{watch_collection}/{{name}}"), &item_params, Op {
            method: "get", action: "watch", id: format!("watch{cg}{cv}{ns}{kind}"),
            description: format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
            params: list_params(), body: None, responses: vec![("200", &watch_event)], gvk: gvk.clone(), stream: true,
        });
    }
    for sub in &info.subresources {
        let path = format!("{item}/{}", sub.name);
        let cap = camel_group(sub.name);
        if sub.group_version.is_none() && sub.kind != kind {
            // A read-only view of another kind (image streams' layers), when we have its
            // schema (in the same package as the resource's).
            let schema = match r.schema.rsplit_once('.') {
                Some((package, _)) => format!("{package}.{}", sub.kind),
                None => continue,
            };
            if sub.verbs.contains(&"get") && definitions.contains_key(&schema) {
                let sub_gvk = json!({"group": group, "version": version, "kind": sub.kind});
                docs.add(
                    &path,
                    &item_params,
                    Op {
                        method: "get",
                        action: "get",
                        id: format!("read{cg}{cv}{ns}{kind}{cap}"),
                        description: format!("read {} of the specified {kind}", sub.name),
                        params: vec![],
                        body: None,
                        responses: vec![("200", &schema)],
                        gvk: sub_gvk,
                        stream: false,
                    },
                );
            }
            continue;
        }
        if sub.group_version.is_some() {
            continue;
        }
        if sub.verbs.contains(&"get") {
            docs.add(
                &path,
                &item_params,
                Op {
                    method: "get",
                    action: "get",
                    id: format!("read{cg}{cv}{ns}{kind}{cap}"),
                    description: format!("read {} of the specified {kind}", sub.name),
                    params: vec![],
                    body: None,
                    responses: vec![("200", &r.schema)],
                    gvk: gvk.clone(),
                    stream: false,
                },
            );
        }
        if sub.verbs.contains(&"update") {
            docs.add(
                &path,
                &item_params,
                Op {
                    method: "put",
                    action: "put",
                    id: format!("replace{cg}{cv}{ns}{kind}{cap}"),
                    description: format!("replace {} of the specified {kind}", sub.name),
                    params: write_params(false, false),
                    body: Some((&r.schema, json_body.clone())),
                    responses: vec![("200", &r.schema), ("201", &r.schema)],
                    gvk: gvk.clone(),
                    stream: false,
                },
            );
        }
        if sub.verbs.contains(&"patch") {
            docs.add(
                &path,
                &item_params,
                Op {
                    method: "patch",
                    action: "patch",
                    id: format!("patch{cg}{cv}{ns}{kind}{cap}"),
                    description: format!("partially update {} of the specified {kind}", sub.name),
                    params: write_params(true, true),
                    body: Some((
                        &patch,
                        vec![JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH],
                    )),
                    responses: vec![("200", &r.schema), ("201", &r.schema)],
                    gvk: gvk.clone(),
                    stream: false,
                },
            );
        }
    }
}

fn article(kind: &str) -> String {
    let vowel = kind.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// Rewrites a v3 schema (from schemars' OpenAPI 3 settings) into Swagger 2.0 form.
fn to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            // `allOf: [{$ref}]` next to a description is how v3 keeps both; v2 allows siblings.
            if let Some(Value::Array(all)) = m.get("allOf") {
                if all.len() == 1 && all[0].get("$ref").is_some() {
                    let mut out = Map::new();
                    out.insert("$ref".into(), to_v2(&all[0]["$ref"]));
                    for (k, val) in m {
                        if k != "allOf" && k != "nullable" {
                            out.insert(k.clone(), to_v2(val));
                        }
                    }
                    return Value::Object(out);
                }
            }
            Value::Object(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "nullable")
                    .map(|(k, val)| (k.clone(), to_v2(val)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v2).collect()),
        Value::String(s) if s.starts_with(V3_REF) => Value::String(s.replacen(V3_REF, V2_REF, 1)),
        other => other.clone(),
    }
}

/// Removes what Kubernetes schemas never carry: `default` values of zero fields and JSON
/// Schema meta keys.
fn clean(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("default");
            m.remove("$schema");
            m.remove("nullable");
            // An optional reference: `anyOf: [{$ref}, {null}]` becomes `allOf: [{$ref}]`.
            if let Some(Value::Array(any)) = m.get("anyOf") {
                let refs: Vec<Value> = any
                    .iter()
                    .filter(|s| s.get("$ref").is_some())
                    .cloned()
                    .collect();
                let nulls = any
                    .iter()
                    .filter(|s| s.get("enum") == Some(&json!([null])))
                    .count();
                if refs.len() == 1 && nulls == any.len() - 1 {
                    m.remove("anyOf");
                    m.insert("allOf".into(), Value::Array(refs));
                }
            }
            for val in m.values_mut() {
                clean(val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(clean),
        _ => {}
    }
}

/// Builds the Swagger 2.0 document and the OpenAPI 3.0 group-version document.
pub fn build(
    group: &str,
    version: &str,
    resources: &[SchemaResource],
    mut definitions: Map<String, Value>,
) -> (Value, Value) {
    let mut docs = Docs {
        v2_paths: Map::new(),
        v3_paths: Map::new(),
        tag: format!(
            "{}_{version}",
            camel_group(group).replace(|c: char| !c.is_alphanumeric(), "")
        ),
    };
    let mut first = docs.tag.clone();
    if let Some(c) = first.get_mut(0..1) {
        c.make_ascii_lowercase();
    }
    docs.tag = first;
    for r in resources {
        add_resource(&mut docs, group, version, r, &definitions);
    }
    for d in definitions.values_mut() {
        clean(d);
    }
    let info = json!({"title": "image-apiserver", "version": format!("{group}/{version}")});
    let v3 = json!({
        "openapi": "3.0.0",
        "info": info,
        "paths": Value::Object(docs.v3_paths),
        "components": {"schemas": Value::Object(definitions.clone())},
    });
    let v2_defs: Map<String, Value> = definitions
        .iter()
        .map(|(k, v)| (k.clone(), to_v2(v)))
        .collect();
    let v2 = json!({
        "swagger": "2.0",
        "info": info,
        "paths": Value::Object(docs.v2_paths),
        "definitions": Value::Object(v2_defs),
    });
    (v2, v3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_conversion_rewrites_refs_and_nullable() {
        let v3 = json!({"properties": {"a": {"allOf": [{"$ref": "#/components/schemas/X"}], "description": "d"}, "b": {"type": "string", "nullable": true}}});
        assert_eq!(
            to_v2(&v3),
            json!({"properties": {"a": {"$ref": "#/definitions/X", "description": "d"}, "b": {"type": "string"}}})
        );
    }

    #[test]
    fn names() {
        assert_eq!(camel_group("image.openshift.io"), "ImageOpenshiftIo");
        assert_eq!(article("Image"), "an Image");
        assert_eq!(article("ImageStream"), "an ImageStream");
    }
}
