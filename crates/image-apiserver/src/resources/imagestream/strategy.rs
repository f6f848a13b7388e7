//! `imagestreams` and `imagestreams/status` (spec §2.5, §2.6, §5, §6): the strategy plugged into
//! the generic registry.

use std::collections::HashMap;
use std::sync::Arc;

use apimachinery::discovery::{ResourceInfo, SubresourceInfo};
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::table::{human_duration, ColumnDefinition};
use apiserver::auth::Authorizer;
use apiserver::registry::now;
use apiserver::strategy::{Strategy, StrategyContext};
use async_trait::async_trait;
use image_api::reference::{digest_or_image_matches, DockerImageReference};
use image_api::tags::{
    add_tag_event, latest_tagged_image, new_event, sort_status_tags, update_tracking_tags,
};
use image_api::validation::{image_stream_name_errors, validate_image_stream_fields};
use image_api::whitelist::stream_whitelist_errors;
use image_api::{ImageStream, TagEvent, TagReference};
use serde_json::Value;

use crate::resources::ImagePolicy;

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: "imagestreams",
        singular: "imagestream",
        kind: "ImageStream",
        namespaced: true,
        verbs: &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        short_names: &["is"],
        categories: &["all"],
        stored: true,
        subresources: vec![SubresourceInfo {
            name: "status",
            kind: "ImageStream",
            group_version: None,
            verbs: &["get", "patch", "update"],
        }],
    }
}

/// Other streams (cross-stream tag references) are read through the context's lookup.
pub struct ImageStreamStrategy {
    info: ResourceInfo,
    policy: ImagePolicy,
    /// Who may follow streams of other namespaces (`get imagestreams/layers` there); `None`
    /// allows everyone (unit tests).
    tag_access: Option<Arc<dyn Authorizer>>,
}

type Ctx<'a> = StrategyContext<'a, ImageStream>;

impl ImageStreamStrategy {
    pub fn new(policy: ImagePolicy) -> Self {
        ImageStreamStrategy {
            info: info(),
            policy,
            tag_access: None,
        }
    }

    /// Checks cross-namespace tags with `authorizer` (upstream's TagVerifier, spec §6.1b).
    pub fn with_tag_access(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.tag_access = Some(authorizer);
        self
    }

    async fn tag_access_errors(
        &self,
        ctx: &Ctx<'_>,
        new: &ImageStream,
        old: Option<&ImageStream>,
    ) -> Vec<FieldError> {
        match &self.tag_access {
            Some(authorizer) => {
                super::tag_access::tag_access_errors(authorizer.as_ref(), ctx.user, new, old).await
            }
            None => Vec::new(),
        }
    }

    /// `tagsChanged` (spec §6.1c): resolves the tags of `stream` that are new or changed
    /// against `old` into tag events, then updates tracking tags.
    async fn tags_changed(
        &self,
        ctx: &Ctx<'_>,
        old: Option<&ImageStream>,
        stream: &mut ImageStream,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let namespace = stream.metadata.namespace.clone().unwrap_or_default();
        let name = stream.metadata.name.clone().unwrap_or_default();
        let old_tags = old.map(spec_tags_by_name).unwrap_or_default();
        // Only new and changed tags are copied out of the stream (resolving one writes its
        // events into the stream): in a large stream most tags are neither.
        let tags: Vec<TagReference> = stream
            .spec
            .tags
            .iter()
            .filter(|tag| tag.from.is_some())
            .filter(|tag| {
                // A tag whose generation moved (set to 0 by the client, then to the new stream
                // generation) is re-resolved too (spec §6.3).
                !old_tags.get(tag.name.as_str()).is_some_and(|o| {
                    !tag_ref_changed(o, tag, &namespace) && o.generation == tag.generation
                })
            })
            .cloned()
            .collect();
        let mut changed_tags = Vec::new();
        for tag in tags {
            let Some(from) = tag.from.clone() else {
                continue;
            };
            let path = FieldPath::new("spec")
                .child("tags")
                .key(&tag.name)
                .child("from");
            let generation = tag.generation.unwrap_or(0);
            let from_name = from.name.clone().unwrap_or_default();
            let event = match from.kind.as_deref().unwrap_or("") {
                "DockerImage" if tag.reference => {
                    Some(new_event(&from_name, "", generation, now()))
                }
                "ImageStreamTag" | "ImageStreamImage" => {
                    match self
                        .resolve(ctx, stream, &namespace, &name, &from, &path)
                        .await
                    {
                        Ok(ev) => ev.map(|mut e| {
                            e.created = Some(now());
                            e.generation = generation;
                            self.rewrite_internal_reference(
                                &mut e,
                                &from,
                                &namespace,
                                &name,
                                tag.reference,
                            );
                            e
                        }),
                        Err(e) => {
                            errs.push(e);
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(event) = event {
                if add_tag_event(stream, &tag.name, event) {
                    changed_tags.push(tag.name.clone());
                }
            }
        }
        for t in changed_tags {
            update_tracking_tags(stream, &t);
        }
        errs
    }

    /// The event an ImageStreamTag or ImageStreamImage reference resolves to.
    async fn resolve(
        &self,
        ctx: &Ctx<'_>,
        stream: &ImageStream,
        namespace: &str,
        name: &str,
        from: &k8s_openapi::api::core::v1::ObjectReference,
        path: &FieldPath,
    ) -> Result<Option<TagEvent>, FieldError> {
        let from_name = from.name.clone().unwrap_or_default();
        let is_tag = from.kind.as_deref().unwrap_or("") == "ImageStreamTag";
        let (src_name, part) =
            split_source_reference(&from_name, name, is_tag, path).map_err(|e| *e)?;
        let src_ns = from
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| namespace.to_string());
        let fetched;
        let source = if src_ns == namespace && src_name == name {
            stream
        } else {
            fetched = fetch_source_stream(ctx, &src_ns, &src_name, &from_name, path).await?;
            &fetched
        };
        if is_tag {
            return Ok(latest_tagged_image(source, &part).cloned());
        }
        image_with_id(source, &part, &from_name, path)
            .map(Some)
            .map_err(|e| *e)
    }

    /// Pulls through this stream when the source event points into the integrated registry.
    fn rewrite_internal_reference(
        &self,
        event: &mut TagEvent,
        from: &k8s_openapi::api::core::v1::ObjectReference,
        namespace: &str,
        name: &str,
        reference: bool,
    ) {
        let internal = &self.policy.internal;
        if reference || internal.is_empty() {
            return;
        }
        let Ok(mut r) = DockerImageReference::parse(&event.docker_image_reference) else {
            return;
        };
        let src_ns = from
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| namespace.to_string());
        if r.registry == *internal && r.namespace == src_ns {
            r.namespace = namespace.to_string();
            r.name = name.to_string();
            r.tag.clear();
            event.docker_image_reference = r.exact();
        }
    }
}

/// Splits `<repo>:<tag>` (or `<repo>@<id>`) into the source stream's name and the tag or id;
/// a bare tag or id is in this stream.
fn split_source_reference(
    from_name: &str,
    name: &str,
    is_tag: bool,
    path: &FieldPath,
) -> Result<(String, String), Box<FieldError>> {
    let sep = if is_tag { ':' } else { '@' };
    let (src_name, part) = match from_name.split_once(sep) {
        Some((s, p)) => (s.to_string(), p.to_string()),
        None => (name.to_string(), from_name.to_string()),
    };
    if part.contains(':') && is_tag || from_name.matches(sep).count() > 1 {
        return Err(Box::new(FieldError::invalid(
            &path.child("name"),
            from_name,
            "must be of the form <tag>, <repo>:<tag>, <id>, or <repo>@<id>",
        )));
    }
    Ok((src_name, part))
}

/// Another stream a tag references, read through the context's lookup.
async fn fetch_source_stream(
    ctx: &Ctx<'_>,
    namespace: &str,
    name: &str,
    from_name: &str,
    path: &FieldPath,
) -> Result<ImageStream, FieldError> {
    match ctx.lookup.get(Some(namespace), name).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(FieldError::not_found(&path.child("name"), from_name)),
        Err(e) => Err(FieldError::internal(
            &path.child("name"),
            format!("unable to retrieve image stream: {e}"),
        )),
    }
}

/// The one image in `source`'s history that `id` names (a digest prefix is enough).
fn image_with_id(
    source: &ImageStream,
    id: &str,
    from_name: &str,
    path: &FieldPath,
) -> Result<TagEvent, Box<FieldError>> {
    let mut matches: Vec<&TagEvent> = Vec::new();
    for list in &source.status.tags {
        for item in list.items.iter().flatten() {
            if digest_or_image_matches(&item.image, id)
                && !matches.iter().any(|m| m.image == item.image)
            {
                matches.push(item);
            }
        }
    }
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Box::new(FieldError::invalid(
            &path.child("name"),
            from_name,
            format!(
                "error generating tag event: imagestreamimage.image.openshift.io {id:?} not found"
            ),
        ))),
        many => {
            let list: Vec<&str> = many.iter().map(|m| m.image.as_str()).collect();
            Err(Box::new(FieldError::invalid(
                &path.child("name"),
                from_name,
                format!(
                    "error generating tag event: multiple images match the prefix {id:?}: {}",
                    list.join(", ")
                ),
            )))
        }
    }
}

impl ImageStreamStrategy {
    /// Limits (spec §15.2) of the request's namespace (the stream's when the request names
    /// none): a Forbidden error at `imageStream` per exceeded resource, or one saying that the
    /// limits are still loading.
    fn limit_errors(
        &self,
        ctx: &Ctx<'_>,
        new: &ImageStream,
        old: Option<&ImageStream>,
    ) -> Vec<FieldError> {
        let namespace = ctx
            .namespace
            .filter(|n| !n.is_empty())
            .or(new.metadata.namespace.as_deref())
            .unwrap_or("");
        let path = FieldPath::new("imageStream");
        match self.policy.limits.stream_limits(namespace) {
            Ok(limits) => image_api::limits::violations(&limits, new, old)
                .into_iter()
                .map(|m| FieldError::forbidden(&path, m))
                .collect(),
            Err(e) => vec![FieldError::forbidden(&path, e.to_string())],
        }
    }
}

/// `tagRefChanged` (spec §2.6).
fn tag_ref_changed(old: &TagReference, new: &TagReference, stream_ns: &str) -> bool {
    let Some(from) = &new.from else { return false };
    if from.kind.as_deref().unwrap_or("").is_empty()
        && from.name.as_deref().unwrap_or("").is_empty()
    {
        return false;
    }
    let ns = |r: &TagReference| {
        r.from
            .as_ref()
            .and_then(|f| f.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| stream_ns.to_string())
    };
    let name = |r: &TagReference| {
        r.from
            .as_ref()
            .and_then(|f| f.name.clone())
            .unwrap_or_default()
    };
    ns(old) != ns(new)
        || name(old) != name(new)
        || old.reference != new.reference
        || old.import_policy.import_mode != new.import_policy.import_mode
        || matches!((old.generation, new.generation), (Some(o), Some(0)) if o != 0)
}

/// Spec tags: the last of duplicate names wins, output is sorted by name. O(n log n): this runs
/// on every read of a stored stream, and streams have hundreds of tags.
fn normalize_spec_tags(stream: &mut ImageStream) {
    // Stable: tags of one name keep the order they came in.
    stream.spec.tags.sort_by(|a, b| a.name.cmp(&b.name));
    // `dedup_by` keeps the first of a run; moving each later duplicate into the kept slot
    // makes the last one win.
    stream.spec.tags.dedup_by(|later, kept| {
        let duplicate = later.name == kept.name;
        if duplicate {
            std::mem::swap(later, kept);
        }
        duplicate
    });
}

/// The spec tags of `stream` by name, for per-tag lookups that would otherwise scan the list.
fn spec_tags_by_name(stream: &ImageStream) -> HashMap<&str, &TagReference> {
    stream
        .spec
        .tags
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

fn spec_equal(a: &ImageStream, b: &ImageStream) -> bool {
    a.spec == b.spec
}

#[async_trait]
impl Strategy for ImageStreamStrategy {
    type Object = ImageStream;

    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn default(&self, obj: &mut ImageStream) {
        obj.apply_defaults(&self.policy.import_mode);
        normalize_spec_tags(obj);
        sort_status_tags(obj);
    }

    fn decorate(&self, obj: &mut ImageStream) {
        let ns = obj
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let name = obj.metadata.name.clone().unwrap_or_default();
        obj.status.docker_image_repository = if self.policy.internal.is_empty() {
            obj.spec.docker_image_repository.clone()
        } else {
            format!("{}/{ns}/{name}", self.policy.internal)
        };
        obj.status.public_docker_image_repository = if self.policy.external.is_empty() {
            String::new()
        } else {
            format!("{}/{ns}/{name}", self.policy.external)
        };
    }

    /// A stored repository carrying a tag or ID is served without it.
    fn present(&self, obj: &mut ImageStream) {
        if let Ok(r) = DockerImageReference::parse(&obj.spec.docker_image_repository) {
            if !r.tag.is_empty() || !r.id.is_empty() {
                obj.spec.docker_image_repository = r.repository();
            }
        }
    }

    fn validate_name(&self, name: &str, prefix: bool) -> Vec<String> {
        // design.md: a generateName ending in `-` is accepted.
        if prefix {
            return image_stream_name_errors(name.trim_end_matches(['-', '.', '_']), prefix);
        }
        image_stream_name_errors(name, prefix)
    }

    fn prepare_for_create(&self, obj: &mut ImageStream) {
        obj.status = Default::default();
        obj.metadata.generation = Some(1);
        for t in &mut obj.spec.tags {
            t.generation = Some(1);
        }
        self.decorate(obj);
    }

    async fn validate_create(&self, ctx: &Ctx<'_>, obj: &mut ImageStream) -> Vec<FieldError> {
        let mut errs = self.tag_access_errors(ctx, obj, None).await;
        errs.extend(self.tags_changed(ctx, None, obj).await);
        errs.extend(validate_image_stream_fields(obj));
        errs.extend(self.limit_errors(ctx, obj, None));
        errs.extend(stream_whitelist_errors(&self.policy.whitelist, obj, None));
        errs
    }

    fn prepare_for_update(&self, new: &mut ImageStream, old: &ImageStream) {
        new.status = old.status.clone();
        let old_gen = old.metadata.generation.unwrap_or(0);
        let old_tags = spec_tags_by_name(old);
        for t in &mut new.spec.tags {
            if t.generation != Some(0) {
                t.generation = old_tags.get(t.name.as_str()).and_then(|o| o.generation);
            }
        }
        let spec_changed = !spec_equal(new, old) || old_gen == 0;
        let new_gen = if spec_changed { old_gen + 1 } else { old_gen };
        new.metadata.generation = Some(new_gen);
        let ns = new.metadata.namespace.clone().unwrap_or_default();
        for t in &mut new.spec.tags {
            let changed = match old_tags.get(t.name.as_str()) {
                None => true,
                Some(o) => tag_ref_changed(o, t, &ns),
            };
            if changed || t.generation.is_none_or(|g| g == 0) {
                t.generation = Some(new_gen);
            }
        }
        self.decorate(new);
    }

    fn prepare_for_internal_update(&self, new: &mut ImageStream, old: &ImageStream) {
        let status = std::mem::take(&mut new.status);
        self.prepare_for_update(new, old);
        new.status = status;
        sort_status_tags(new);
        self.decorate(new);
    }

    async fn validate_update(
        &self,
        ctx: &Ctx<'_>,
        new: &mut ImageStream,
        old: &ImageStream,
    ) -> Vec<FieldError> {
        let mut errs = self.tag_access_errors(ctx, new, Some(old)).await;
        errs.extend(self.tags_changed(ctx, Some(old), new).await);
        errs.extend(validate_image_stream_fields(new));
        errs.extend(self.limit_errors(ctx, new, Some(old)));
        errs.extend(stream_whitelist_errors(
            &self.policy.whitelist,
            new,
            Some(old),
        ));
        errs
    }

    /// Upstream's image stream strategy requires a resourceVersion on update.
    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn has_status(&self) -> bool {
        true
    }

    fn prepare_for_status_update(&self, new: &mut ImageStream, old: &ImageStream) {
        // design.md: the status endpoint changes status only.
        new.spec = old.spec.clone();
        new.metadata.labels = old.metadata.labels.clone();
        new.metadata.annotations = old.metadata.annotations.clone();
        let generation = old.metadata.generation.unwrap_or(0);
        let spec_tags = new.spec.tags.clone();
        for list in &mut new.status.tags {
            let Some(first) = list.items.as_mut().and_then(|i| i.first_mut()) else {
                continue;
            };
            if first.generation != 0 {
                continue;
            }
            let old_first = old
                .status_tag(&list.tag)
                .and_then(|l| l.items.as_ref())
                .and_then(|i| i.first());
            let unchanged = old_first.is_none_or(|o| {
                o.image == first.image
                    && o.docker_image_reference == first.docker_image_reference
                    && o.generation <= first.generation
            });
            let spec_gen = spec_tags
                .iter()
                .find(|t| t.name == list.tag)
                .and_then(|t| t.generation);
            first.generation = match (unchanged, spec_gen) {
                (true, _) | (false, None) => generation,
                (false, Some(g)) => g,
            };
        }
        sort_status_tags(new);
    }

    /// Status writes (mappings among them) are held to the limits too: the spec is the old
    /// one, so only `openshift.io/images` can grow.
    async fn validate_status_update(
        &self,
        ctx: &Ctx<'_>,
        new: &mut ImageStream,
        old: &ImageStream,
    ) -> Vec<FieldError> {
        let path = FieldPath::new("status").child("tags");
        let mut errs = self.limit_errors(ctx, new, Some(old));
        for list in &new.status.tags {
            for (i, item) in list.items.iter().flatten().enumerate() {
                let known = old
                    .status
                    .tags
                    .iter()
                    .flat_map(|l| l.items.iter().flatten())
                    .any(|o| o.docker_image_reference == item.docker_image_reference);
                if known {
                    continue;
                }
                if let Err(e) = DockerImageReference::parse(&item.docker_image_reference) {
                    errs.push(FieldError::invalid(
                        &path
                            .key(&list.tag)
                            .child("items")
                            .index(i)
                            .child("dockerImageReference"),
                        item.docker_image_reference.as_str(),
                        e.to_string(),
                    ));
                }
            }
        }
        errs
    }

    fn selectable_fields(&self, obj: &ImageStream) -> Vec<(&'static str, String)> {
        vec![
            (
                "spec.dockerImageRepository",
                obj.spec.docker_image_repository.clone(),
            ),
            (
                "status.dockerImageRepository",
                obj.status.docker_image_repository.clone(),
            ),
        ]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["spec.dockerImageRepository", "status.dockerImageRepository"]
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        vec![
            ColumnDefinition::new("Image Repository", "string", "Image repository"),
            ColumnDefinition::new(
                "Tags",
                "string",
                "Tags in the image stream, most recently updated first",
            ),
            ColumnDefinition::new("Updated", "string", "Time of the most recent tag update"),
        ]
    }

    fn table_cells(&self, obj: &ImageStream) -> Vec<Value> {
        let repo = [
            &obj.status.public_docker_image_repository,
            &obj.spec.docker_image_repository,
            &obj.status.docker_image_repository,
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
        let (tags, latest) = tags_column(obj);
        let updated = latest
            .map(|t| {
                let age = jiff::Timestamp::now().as_second() - t;
                format!("{} ago", human_duration(age))
            })
            .unwrap_or_default();
        vec![Value::from(repo), Value::from(tags), Value::from(updated)]
    }

    fn list_merge_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("spec.tags", "name"),
            ("status.tags", "tag"),
            ("metadata.ownerReferences", "uid"),
        ]
    }
}

/// The TAGS column of `oc get is` (spec §6.6) and the newest update time.
fn tags_column(obj: &ImageStream) -> (String, Option<i64>) {
    let mut tags: Vec<(i64, &str)> = obj
        .status
        .tags
        .iter()
        .filter_map(|l| {
            let first = l.items.as_ref()?.first()?;
            let t = first.created.as_ref().map(|c| c.0.as_second()).unwrap_or(0);
            Some((t, l.tag.as_str()))
        })
        .collect();
    tags.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let latest = tags.first().map(|(t, _)| *t);
    const WIDTH: usize = 40;
    let mut shown: Vec<&str> = Vec::new();
    let mut used = 0usize;
    for (i, (_, tag)) in tags.iter().enumerate() {
        let cost = tag.len() + 1;
        let remaining = WIDTH.saturating_sub(used);
        let fits = used + cost <= WIDTH;
        let margin_ok = remaining * 4 > WIDTH && used + cost <= WIDTH * 5 / 4;
        if i == 0 || fits || margin_ok {
            shown.push(tag);
            used += cost;
        } else {
            break;
        }
    }
    let hidden = tags.len() - shown.len();
    let mut out = shown.join(",");
    if hidden > 0 {
        out = format!("{out} + {hidden} more...");
    }
    (out, latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{LimitSource, LimitsError};
    use image_api::limits::{StorageLimit, StreamLimits};
    use image_api::NamedTagEventList;
    use std::sync::Arc;

    fn stream_with_tags(tags: &[(&str, i64)]) -> ImageStream {
        let mut s = ImageStream::default();
        for (t, created) in tags {
            s.status.tags.push(NamedTagEventList {
                tag: t.to_string(),
                items: Some(vec![TagEvent {
                    created: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::from_second(*created).expect("ts"),
                    )),
                    docker_image_reference: "r".into(),
                    image: "i".into(),
                    generation: 1,
                }]),
                conditions: vec![],
            });
        }
        s
    }

    #[test]
    fn spec_tags_are_sorted_and_the_last_duplicate_wins() {
        let tag = |name: &str, from: &str| TagReference {
            name: name.to_string(),
            from: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("DockerImage".into()),
                name: Some(from.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut s = ImageStream::default();
        s.spec.tags = vec![
            tag("b", "b1"),
            tag("a", "a1"),
            tag("b", "b2"),
            tag("c", "c1"),
            tag("a", "a2"),
            tag("b", "b3"),
        ];
        normalize_spec_tags(&mut s);
        let seen: Vec<(&str, &str)> = s
            .spec
            .tags
            .iter()
            .map(|t| {
                let from = t.from.as_ref().and_then(|f| f.name.as_deref());
                (t.name.as_str(), from.unwrap_or(""))
            })
            .collect();
        assert_eq!(seen, [("a", "a2"), ("b", "b3"), ("c", "c1")]);
    }

    #[test]
    fn tags_column_orders_newest_first_and_summarizes() {
        let s = stream_with_tags(&[("a", 10), ("b", 30), ("c", 20)]);
        assert_eq!(tags_column(&s), ("b,c,a".to_string(), Some(30)));
        let many: Vec<(String, i64)> = (0..20)
            .map(|i| (format!("tag-number-{i:02}"), 100 - i))
            .collect();
        let refs: Vec<(&str, i64)> = many.iter().map(|(t, c)| (t.as_str(), *c)).collect();
        let (col, _) = tags_column(&stream_with_tags(&refs));
        assert!(
            col.starts_with("tag-number-00,tag-number-01,tag-number-02"),
            "{col}"
        );
        assert!(col.ends_with(" + 17 more..."), "{col}");
    }

    #[test]
    fn tag_ref_changes() {
        let t = |name: &str, gen: Option<i64>| TagReference {
            name: "t".into(),
            from: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("DockerImage".into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            generation: gen,
            ..Default::default()
        };
        assert!(!tag_ref_changed(&t("a", Some(1)), &t("a", Some(1)), "ns"));
        assert!(tag_ref_changed(&t("a", Some(1)), &t("b", Some(1)), "ns"));
        assert!(tag_ref_changed(&t("a", Some(1)), &t("a", Some(0)), "ns"));
    }

    /// The other streams a strategy may read, in memory.
    struct FakeStreams(Vec<ImageStream>);

    #[async_trait]
    impl apiserver::strategy::Lookup<ImageStream> for FakeStreams {
        async fn get(
            &self,
            namespace: Option<&str>,
            name: &str,
        ) -> Result<Option<ImageStream>, apimachinery::errors::ApiError> {
            Ok(self
                .0
                .iter()
                .find(|s| {
                    s.metadata.namespace.as_deref() == namespace
                        && s.metadata.name.as_deref() == Some(name)
                })
                .cloned())
        }
    }

    fn named(namespace: &str, name: &str) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.namespace = Some(namespace.into());
        s.metadata.name = Some(name.into());
        s
    }

    /// A digest of 64 hex characters starting with `start`.
    fn digest(start: &str) -> String {
        format!("sha256:{start}{}", "0".repeat(64 - start.len()))
    }

    fn tagged(namespace: &str, name: &str, tag: &str, image: &str) -> ImageStream {
        let mut s = named(namespace, name);
        add_tag_event(
            &mut s,
            tag,
            new_event(&format!("quay.io/x/y@{image}"), image, 1, now()),
        );
        s
    }

    fn tag_from(kind: &str, name: &str) -> TagReference {
        TagReference {
            name: "t".into(),
            from: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some(kind.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn create_with(
        lookup: &FakeStreams,
        tag: TagReference,
    ) -> (ImageStream, Vec<FieldError>) {
        let strategy = ImageStreamStrategy::new(ImagePolicy::default());
        let user = apiserver::resource::UserInfo::default();
        let ctx = StrategyContext {
            user: &user,
            namespace: Some("ns"),
            lookup,
        };
        let mut stream = named("ns", "mine");
        stream.spec.tags.push(tag);
        strategy.default(&mut stream);
        strategy.prepare_for_create(&mut stream);
        let errs = strategy.validate_create(&ctx, &mut stream).await;
        (stream, errs)
    }

    #[tokio::test]
    async fn tags_resolve_across_streams_through_the_lookup() {
        let others = FakeStreams(vec![tagged("ns", "other", "v1", &digest("aaa"))]);
        let (stream, errs) = create_with(&others, tag_from("ImageStreamTag", "other:v1")).await;
        assert!(errs.is_empty(), "{errs:?}");
        let event = latest_tagged_image(&stream, "t").expect("resolved");
        assert_eq!(event.image, digest("aaa"));
        let (_, errs) = create_with(&others, tag_from("ImageStreamTag", "missing:v1")).await;
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "spec.tags[t].from.name: Not found: \"missing:v1\""
        );
    }

    #[tokio::test]
    async fn image_references_must_name_exactly_one_image() {
        let (one, two) = (digest("abc1"), digest("abc2"));
        let mut other = tagged("ns", "other", "v1", &one);
        add_tag_event(
            &mut other,
            "v2",
            new_event(&format!("quay.io/x/y@{two}"), &two, 1, now()),
        );
        let others = FakeStreams(vec![other]);
        let (stream, errs) = create_with(
            &others,
            tag_from("ImageStreamImage", &format!("other@{one}")),
        )
        .await;
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            latest_tagged_image(&stream, "t").map(|e| e.image.as_str()),
            Some(one.as_str())
        );
        let (_, errs) =
            create_with(&others, tag_from("ImageStreamImage", "other@sha256:abc")).await;
        assert!(
            errs[0]
                .to_string()
                .contains("multiple images match the prefix"),
            "{errs:?}"
        );
    }

    /// Stream limits in one namespace only, or not loaded yet.
    #[derive(Debug)]
    struct NamespaceLimits {
        namespace: &'static str,
        limits: StreamLimits,
        loaded: bool,
    }

    impl LimitSource for NamespaceLimits {
        fn stream_limits(&self, namespace: &str) -> Result<StreamLimits, LimitsError> {
            if !self.loaded {
                return Err(LimitsError::StillLoading);
            }
            Ok(if namespace == self.namespace {
                self.limits
            } else {
                StreamLimits::default()
            })
        }

        fn image_storage_limit(&self, _namespace: &str) -> Option<StorageLimit> {
            None
        }
    }

    fn strategy_with(limits: NamespaceLimits) -> ImageStreamStrategy {
        ImageStreamStrategy::new(ImagePolicy {
            limits: Arc::new(limits),
            ..ImagePolicy::default()
        })
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    /// Creates a stream in `namespace` whose spec tags follow `refs`; the validation errors.
    async fn create_in(
        strategy: &ImageStreamStrategy,
        namespace: &str,
        refs: &[&str],
    ) -> Vec<FieldError> {
        let lookup = FakeStreams(vec![]);
        let user = apiserver::resource::UserInfo::default();
        let ctx = StrategyContext {
            user: &user,
            namespace: Some(namespace),
            lookup: &lookup,
        };
        let mut stream = named(namespace, "mine");
        for (i, reference) in refs.iter().enumerate() {
            let mut tag = tag_from("DockerImage", reference);
            tag.name = format!("t{i}");
            stream.spec.tags.push(tag);
        }
        strategy.default(&mut stream);
        strategy.prepare_for_create(&mut stream);
        strategy.validate_create(&ctx, &mut stream).await
    }

    #[tokio::test]
    async fn stream_limits_are_the_request_namespaces() {
        let strategy = strategy_with(NamespaceLimits {
            namespace: "limited",
            limits: StreamLimits {
                image_tags: Some(1),
                images: None,
            },
            loaded: true,
        });
        let two = ["quay.io/a/b:1", "quay.io/a/c:1"];
        assert_eq!(
            messages(&create_in(&strategy, "limited", &two).await),
            vec!["imageStream: Forbidden: requested usage of openshift.io/image-tags exceeds the maximum limit per openshift.io/ImageStream (2 > 1)"]
        );
        let errs = create_in(&strategy, "free", &two).await;
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[tokio::test]
    async fn limits_still_loading_fail_the_write() {
        let strategy = strategy_with(NamespaceLimits {
            namespace: "ns",
            limits: StreamLimits::default(),
            loaded: false,
        });
        assert_eq!(
            messages(&create_in(&strategy, "ns", &[]).await),
            vec!["imageStream: Forbidden: limitranges is forbidden: the server is still loading limit information"]
        );
    }

    #[tokio::test]
    async fn status_writes_are_held_to_the_image_limit() {
        let strategy = strategy_with(NamespaceLimits {
            namespace: "ns",
            limits: StreamLimits {
                image_tags: None,
                images: Some(1),
            },
            loaded: true,
        });
        let lookup = FakeStreams(vec![]);
        let user = apiserver::resource::UserInfo::default();
        let ctx = StrategyContext {
            user: &user,
            namespace: Some("ns"),
            lookup: &lookup,
        };
        let old = tagged("ns", "mine", "v1", &digest("aaa"));
        let mut unchanged = old.clone();
        let errs = strategy
            .validate_status_update(&ctx, &mut unchanged, &old)
            .await;
        assert!(
            errs.is_empty(),
            "an existing stream within the limit: {errs:?}"
        );
        let second = digest("bbb");
        let mut grown = old.clone();
        add_tag_event(
            &mut grown,
            "v2",
            new_event(&format!("quay.io/x/y@{second}"), &second, 1, now()),
        );
        assert_eq!(
            messages(&strategy.validate_status_update(&ctx, &mut grown, &old).await),
            vec!["imageStream: Forbidden: requested usage of openshift.io/images exceeds the maximum limit per openshift.io/ImageStream (2 > 1)"]
        );
    }
}
