//! OpenAPI v2 and v3 documents for one group/version (spec §1.4), built from the resources'
//! discovery information and their JSON schemas (generated from the Rust types by the caller).
//! The operations carry what kubectl reads: `x-kubernetes-group-version-kind`,
//! `x-kubernetes-action`, the PATCH content types we accept, and the `dryRun` and
//! `fieldValidation` parameters that turn on server-side validation.

use apimachinery::discovery::{ResourceInfo, SubresourceInfo};
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

/// The schema extension that marks a field the server sends as `null` (Go's pointers, maps and
/// slices without `omitempty`): `#[schemars(extend("x-nullable" = true))]` on the field.
/// Schemars calls every `Option` nullable, also those skipped when `None` and so never sent
/// as null; the v3 document says `nullable: true` for the marked fields only, so that generated
/// clients accept the nulls they will get and type every other field as never null. v2 has no
/// `nullable` (kube's v2 documents carry none), so it is dropped there.
pub const NULLABLE_MARK: &str = "x-nullable";

/// The security scheme kube-apiserver's documents declare (`securityDefinitions` in v2,
/// `components.securitySchemes` in v3).
const BEARER_TOKEN: &str = "BearerToken";

fn bearer_token_scheme() -> Value {
    json!({
        "type": "apiKey",
        "name": "authorization",
        "in": "header",
        "description": "Bearer Token authentication",
    })
}

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
        let produces = produced_types(op.stream);
        let v3_op = self.v3_operation(path_params, &op, &produces);
        entry(&mut self.v3_paths, path).insert(op.method.to_string(), v3_op);
        let v2_op = self.v2_operation(path_params, &op, &produces);
        entry(&mut self.v2_paths, path).insert(op.method.to_string(), v2_op);
    }

    fn v3_operation(&self, path_params: &[&str], op: &Op<'_>, produces: &[&str]) -> Value {
        let mut v3_op = json!({
            "tags": [self.tag],
            "description": op.description,
            "operationId": op.id,
            "parameters": v3_parameters(path_params, &op.params),
            "responses": v3_responses(&op.responses, produces),
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": op.gvk,
        });
        if let Some((schema, types)) = &op.body {
            v3_op["requestBody"] = json!({"content": v3_content(types, schema), "required": true});
        }
        v3_op
    }

    fn v2_operation(&self, path_params: &[&str], op: &Op<'_>, produces: &[&str]) -> Value {
        let consumes: Vec<&str> = match &op.body {
            Some((_, types)) => types.clone(),
            None => vec!["*/*"],
        };
        json!({
            "description": op.description,
            "consumes": consumes,
            "produces": produces,
            "schemes": ["https"],
            "tags": [self.tag],
            "operationId": op.id,
            "parameters": v2_parameters(path_params, op),
            "responses": v2_responses(&op.responses),
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": op.gvk,
        })
    }
}

/// Operations that can watch also stream watch events.
fn produced_types(stream: bool) -> Vec<&'static str> {
    if stream {
        vec![
            "application/json",
            "application/yaml",
            "application/json;stream=watch",
        ]
    } else {
        vec!["application/json", "application/yaml"]
    }
}

fn v3_parameters(path_params: &[&str], query: &[(String, String, String)]) -> Vec<Value> {
    let mut params: Vec<Value> = path_params
        .iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "description": format!("{p} of the resource"), "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    params.push(json!({"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty printed.", "schema": {"type": "string", "uniqueItems": true}}));
    for (name, ty, desc) in query {
        params.push(json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}}));
    }
    params
}

fn v3_responses(responses: &[(&str, &str)], produces: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for (code, schema) in responses {
        out.insert(
            code.to_string(),
            json!({"description": status_text(code), "content": v3_content(produces, schema)}),
        );
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    out
}

/// A v3 `content` map: every media type with the same schema.
fn v3_content(media_types: &[&str], schema: &str) -> Map<String, Value> {
    media_types
        .iter()
        .map(|m| {
            (
                m.to_string(),
                json!({"schema": {"$ref": format!("{V3_REF}{schema}")}}),
            )
        })
        .collect()
}

/// v2 has no request body: the body is a parameter.
fn v2_parameters(path_params: &[&str], op: &Op<'_>) -> Vec<Value> {
    let mut params: Vec<Value> = path_params
        .iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": format!("{p} of the resource")}))
        .collect();
    params.push(json!({"name": "pretty", "in": "query", "type": "string", "uniqueItems": true, "description": "If 'true', then the output is pretty printed."}));
    for (name, ty, desc) in &op.params {
        params.push(json!({"name": name, "in": "query", "type": ty, "uniqueItems": true, "description": desc}));
    }
    if let Some((schema, _)) = &op.body {
        params.push(json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": format!("{V2_REF}{schema}")}}));
    }
    params
}

fn v2_responses(responses: &[(&str, &str)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (code, schema) in responses {
        out.insert(code.to_string(), json!({"description": status_text(code), "schema": {"$ref": format!("{V2_REF}{schema}")}}));
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    out
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

/// Adds one verb's operations of a resource.
type AddOperation = fn(&ResourceOps<'_>, &mut Docs);

fn add_resource(
    docs: &mut Docs,
    group: &str,
    version: &str,
    r: &SchemaResource,
    definitions: &Map<String, Value>,
) {
    let ops = ResourceOps::new(group, version, r);
    let info = &r.info;
    // In the order kube's installer adds routes, which is the order of the documents' paths.
    let operations: [(&str, AddOperation); 8] = [
        ("list", |o, d| o.add_list(d)),
        ("create", |o, d| o.add_create(d)),
        ("deletecollection", |o, d| o.add_delete_collection(d)),
        ("get", |o, d| o.add_read(d)),
        ("update", |o, d| o.add_replace(d)),
        ("patch", |o, d| o.add_patch(d)),
        ("delete", |o, d| o.add_delete(d)),
        ("watch", |o, d| o.add_watches(d)),
    ];
    for (verb, add) in operations {
        if has(info, verb) {
            add(&ops, docs);
        }
    }
    for sub in &info.subresources {
        ops.add_subresource(docs, sub, definitions);
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn meta_schema(name: &str) -> String {
    format!("{META}.{name}")
}

fn json_body() -> Vec<&'static str> {
    vec!["*/*"]
}

fn patch_types() -> Vec<&'static str> {
    vec![JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]
}

/// A deletecollection selects like a list, but cannot watch.
fn delete_collection_params() -> Vec<(String, String, String)> {
    let mut p = delete_params();
    p.extend(
        list_params()
            .into_iter()
            .filter(|(n, _, _)| n != "watch" && n != "allowWatchBookmarks"),
    );
    p
}

/// What the operations of one resource share: its paths, its kind and the parts of their ids.
struct ResourceOps<'a> {
    r: &'a SchemaResource,
    group: &'a str,
    version: &'a str,
    kind: &'static str,
    /// The group and version as operation ids spell them (`ImageOpenshiftIo`, `V1`).
    cg: String,
    cv: String,
    /// `Namespaced` in the operation ids of namespaced resources.
    ns: &'static str,
    gvk: Value,
    /// `/apis/<group>/<version>`.
    base: String,
    collection: String,
    params: Vec<&'static str>,
    item: String,
    item_params: Vec<&'static str>,
}

impl<'a> ResourceOps<'a> {
    fn new(group: &'a str, version: &'a str, r: &'a SchemaResource) -> Self {
        let info = &r.info;
        let base = format!("/apis/{group}/{version}");
        let (collection, params): (String, Vec<&'static str>) = if info.namespaced {
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
        ResourceOps {
            r,
            group,
            version,
            kind: info.kind,
            cg: camel_group(group),
            cv: capitalized(version),
            ns: if info.namespaced { "Namespaced" } else { "" },
            gvk: json!({"group": group, "version": version, "kind": info.kind}),
            base,
            collection,
            params,
            item,
            item_params,
        }
    }

    /// `<verb><Group><Version>[Namespaced]<Kind>`.
    fn id(&self, verb: &str) -> String {
        format!("{verb}{}{}{}{}", self.cg, self.cv, self.ns, self.kind)
    }

    /// `<verb><Group><Version>[Namespaced]<Kind><Subresource>`.
    fn sub_id(&self, verb: &str, sub: &SubresourceInfo) -> String {
        format!("{}{}", self.id(verb), camel_group(sub.name))
    }

    fn add_list(&self, docs: &mut Docs) {
        let kind = self.kind;
        let list_schema = self.r.list_schema.as_str();
        docs.add(
            &self.collection,
            &self.params,
            Op {
                method: "get",
                action: "list",
                id: self.id("list"),
                description: format!("list or watch objects of kind {kind}"),
                params: list_params(),
                body: None,
                responses: vec![("200", list_schema)],
                gvk: self.gvk.clone(),
                stream: true,
            },
        );
        if self.r.info.namespaced {
            docs.add(
                &format!("{}/{}", self.base, self.r.info.resource),
                &[],
                Op {
                    method: "get",
                    action: "list",
                    id: format!("list{}{}{kind}ForAllNamespaces", self.cg, self.cv),
                    description: format!("list or watch objects of kind {kind}"),
                    params: list_params(),
                    body: None,
                    responses: vec![("200", list_schema)],
                    gvk: self.gvk.clone(),
                    stream: true,
                },
            );
        }
    }

    fn add_create(&self, docs: &mut Docs) {
        let schema = self.r.schema.as_str();
        docs.add(
            &self.collection,
            &self.params,
            Op {
                method: "post",
                action: "post",
                id: self.id("create"),
                description: format!("create {}", article(self.kind)),
                params: write_params(false, false),
                body: Some((schema, json_body())),
                responses: vec![("200", schema), ("201", schema), ("202", schema)],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_delete_collection(&self, docs: &mut Docs) {
        let status = meta_schema("Status");
        let delete_options = meta_schema("DeleteOptions");
        docs.add(
            &self.collection,
            &self.params,
            Op {
                method: "delete",
                action: "deletecollection",
                id: self.id("deletecollection"),
                description: format!("delete collection of {}", self.kind),
                params: delete_collection_params(),
                body: Some((delete_options.as_str(), json_body())),
                responses: vec![("200", status.as_str())],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_read(&self, docs: &mut Docs) {
        docs.add(
            &self.item,
            &self.item_params,
            Op {
                method: "get",
                action: "get",
                id: self.id("read"),
                description: format!("read the specified {}", self.kind),
                params: vec![],
                body: None,
                responses: vec![("200", self.r.schema.as_str())],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_replace(&self, docs: &mut Docs) {
        let schema = self.r.schema.as_str();
        docs.add(
            &self.item,
            &self.item_params,
            Op {
                method: "put",
                action: "put",
                id: self.id("replace"),
                description: format!("replace the specified {}", self.kind),
                params: write_params(false, false),
                body: Some((schema, json_body())),
                responses: vec![("200", schema), ("201", schema)],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_patch(&self, docs: &mut Docs) {
        let schema = self.r.schema.as_str();
        let patch = meta_schema("Patch");
        docs.add(
            &self.item,
            &self.item_params,
            Op {
                method: "patch",
                action: "patch",
                id: self.id("patch"),
                description: format!("partially update the specified {}", self.kind),
                params: write_params(true, true),
                body: Some((patch.as_str(), patch_types())),
                responses: vec![("200", schema), ("201", schema)],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_delete(&self, docs: &mut Docs) {
        let status = meta_schema("Status");
        let delete_options = meta_schema("DeleteOptions");
        docs.add(
            &self.item,
            &self.item_params,
            Op {
                method: "delete",
                action: "delete",
                id: self.id("delete"),
                description: format!("delete {}", article(self.kind)),
                params: delete_params(),
                body: Some((delete_options.as_str(), json_body())),
                responses: vec![("200", status.as_str()), ("202", status.as_str())],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_watches(&self, docs: &mut Docs) {
        let kind = self.kind;
        let watch_event = meta_schema("WatchEvent");
        let resource = self.r.info.resource;
        let watch_collection = if self.r.info.namespaced {
            format!("{}/watch/namespaces/{{namespace}}/{resource}", self.base)
        } else {
            format!("{}/watch/{resource}", self.base)
        };
        docs.add(
            &watch_collection,
            &self.params,
            Op {
                method: "get",
                action: "watchlist",
                id: format!("{}List", self.id("watch")),
                description: format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                params: list_params(),
                body: None,
                responses: vec![("200", watch_event.as_str())],
                gvk: self.gvk.clone(),
                stream: true,
            },
        );
        docs.add(
            &format!("{watch_collection}/{{name}}"),
            &self.item_params,
            Op {
                method: "get",
                action: "watch",
                id: self.id("watch"),
                description: format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
                params: list_params(),
                body: None,
                responses: vec![("200", watch_event.as_str())],
                gvk: self.gvk.clone(),
                stream: true,
            },
        );
    }

    fn add_subresource(
        &self,
        docs: &mut Docs,
        sub: &SubresourceInfo,
        definitions: &Map<String, Value>,
    ) {
        if sub.group_version.is_some() {
            return;
        }
        let path = format!("{}/{}", self.item, sub.name);
        if sub.kind != self.kind {
            self.add_subresource_view(docs, sub, &path, definitions);
            return;
        }
        if sub.verbs.contains(&"get") {
            let schema = self.r.schema.as_str();
            self.add_subresource_read(docs, sub, &path, schema, self.gvk.clone());
        }
        if sub.verbs.contains(&"update") {
            self.add_subresource_replace(docs, sub, &path);
        }
        if sub.verbs.contains(&"patch") {
            self.add_subresource_patch(docs, sub, &path);
        }
    }

    /// A read-only view of another kind (image streams' layers), described only when we have
    /// its schema (in the same package as the resource's).
    fn add_subresource_view(
        &self,
        docs: &mut Docs,
        sub: &SubresourceInfo,
        path: &str,
        definitions: &Map<String, Value>,
    ) {
        let Some((package, _)) = self.r.schema.rsplit_once('.') else {
            return;
        };
        let schema = format!("{package}.{}", sub.kind);
        if sub.verbs.contains(&"get") && definitions.contains_key(&schema) {
            let gvk = json!({"group": self.group, "version": self.version, "kind": sub.kind});
            self.add_subresource_read(docs, sub, path, &schema, gvk);
        }
    }

    fn add_subresource_read(
        &self,
        docs: &mut Docs,
        sub: &SubresourceInfo,
        path: &str,
        schema: &str,
        gvk: Value,
    ) {
        docs.add(
            path,
            &self.item_params,
            Op {
                method: "get",
                action: "get",
                id: self.sub_id("read", sub),
                description: format!("read {} of the specified {}", sub.name, self.kind),
                params: vec![],
                body: None,
                responses: vec![("200", schema)],
                gvk,
                stream: false,
            },
        );
    }

    fn add_subresource_replace(&self, docs: &mut Docs, sub: &SubresourceInfo, path: &str) {
        let schema = self.r.schema.as_str();
        docs.add(
            path,
            &self.item_params,
            Op {
                method: "put",
                action: "put",
                id: self.sub_id("replace", sub),
                description: format!("replace {} of the specified {}", sub.name, self.kind),
                params: write_params(false, false),
                body: Some((schema, json_body())),
                responses: vec![("200", schema), ("201", schema)],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
    }

    fn add_subresource_patch(&self, docs: &mut Docs, sub: &SubresourceInfo, path: &str) {
        let schema = self.r.schema.as_str();
        let patch = meta_schema("Patch");
        docs.add(
            path,
            &self.item_params,
            Op {
                method: "patch",
                action: "patch",
                id: self.sub_id("patch", sub),
                description: format!(
                    "partially update {} of the specified {}",
                    sub.name, self.kind
                ),
                params: write_params(true, true),
                body: Some((patch.as_str(), patch_types())),
                responses: vec![("200", schema), ("201", schema)],
                gvk: self.gvk.clone(),
                stream: false,
            },
        );
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
/// Schema meta keys. `nullable` stays only where [`NULLABLE_MARK`] says the server sends null.
fn clean(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("default");
            m.remove("$schema");
            m.remove("nullable");
            let sent_as_null = m.remove(NULLABLE_MARK) == Some(Value::Bool(true));
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
            // Next to `allOf: [{$ref}]` this is how OpenAPI 3.0 tools read a nullable reference
            // (openapi-python-client makes it `oneOf: [null, allOf]`).
            if sent_as_null {
                m.insert("nullable".into(), Value::Bool(true));
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
    // As kube declares it: the bearer token, required by every operation in v2; v3 only
    // names the scheme. Client certificates and the front proxy go undeclared there too.
    let security = json!([{BEARER_TOKEN: []}]);
    let v3 = json!({
        "openapi": "3.0.0",
        "info": info,
        "paths": Value::Object(docs.v3_paths),
        "components": {
            "schemas": Value::Object(definitions.clone()),
            "securitySchemes": {BEARER_TOKEN: bearer_token_scheme()},
        },
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
        "securityDefinitions": {BEARER_TOKEN: bearer_token_scheme()},
        "security": security,
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

    /// A schema as schemars writes it: every `Option` nullable, the marked ones marked.
    fn schemars_output() -> Value {
        let null_ref = json!({"anyOf": [{"$ref": "#/components/schemas/X"}, {"enum": [null], "nullable": true}]});
        let mut marked_ref = null_ref.clone();
        marked_ref["description"] = json!("d");
        marked_ref[NULLABLE_MARK] = json!(true);
        json!({
            "type": "object",
            "properties": {
                "map": {"type": "object", "additionalProperties": {"type": "string"}, "nullable": true, NULLABLE_MARK: true},
                "skipped": {"type": "string", "nullable": true},
                "reference": marked_ref,
                "skippedReference": null_ref,
                "plain": {"type": "integer", "default": 0},
            }
        })
    }

    #[test]
    fn nullable_stays_only_where_marked() {
        let mut schema = schemars_output();
        clean(&mut schema);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "map": {"type": "object", "additionalProperties": {"type": "string"}, "nullable": true},
                    "skipped": {"type": "string"},
                    "reference": {"allOf": [{"$ref": "#/components/schemas/X"}], "description": "d", "nullable": true},
                    "skippedReference": {"allOf": [{"$ref": "#/components/schemas/X"}]},
                    "plain": {"type": "integer"},
                }
            })
        );
        let v2 = to_v2(&schema);
        let text = v2.to_string();
        assert!(!text.contains("nullable"), "{text}");
        assert_eq!(
            v2["properties"]["reference"],
            json!({"$ref": "#/definitions/X", "description": "d"})
        );
    }

    #[test]
    fn documents_declare_bearer_token_auth_as_kube_does() {
        let mut definitions = Map::new();
        definitions.insert("X".into(), schemars_output());
        let (v2, v3) = build("example.io", "v1", &[], definitions);
        let scheme = json!({
            "type": "apiKey",
            "name": "authorization",
            "in": "header",
            "description": "Bearer Token authentication",
        });
        let schemes = json!({"BearerToken": scheme});
        let security = json!([{"BearerToken": []}]);
        assert_eq!(v2["securityDefinitions"], schemes);
        assert_eq!(v2["security"], security);
        assert_eq!(v3["components"]["securitySchemes"], schemes);
        assert!(
            v3.get("security").is_none(),
            "kube's v3 has no top-level security"
        );
        // The marker never reaches a served document.
        for doc in [&v2, &v3] {
            assert!(!doc.to_string().contains(NULLABLE_MARK));
        }
        let map = &v3["components"]["schemas"]["X"]["properties"]["map"];
        assert_eq!(map["nullable"], true);
    }

    #[test]
    fn names() {
        assert_eq!(camel_group("image.openshift.io"), "ImageOpenshiftIo");
        assert_eq!(article("Image"), "an Image");
        assert_eq!(article("ImageStream"), "an ImageStream");
    }
}
