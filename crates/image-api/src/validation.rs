//! Validation of images and image streams (spec §3.2, §4.2, §5), with openshift's field paths
//! and messages. Spec and status tags are addressed by name (`spec.tags[latest]`), as upstream
//! validates its internal map form.

use apimachinery::field::{BadValue, FieldError, FieldPath};
use apimachinery::validation::{path_segment_name_errors, validate_object_meta};

use crate::reference::DockerImageReference;
use crate::{
    Image, ImageSignature, ImageStream, TagReference, IMPORT_MODE_LEGACY,
    IMPORT_MODE_PRESERVE_ORIGINAL, REFERENCE_POLICY_LOCAL, REFERENCE_POLICY_SOURCE,
};

const STREAM_NAME_PATTERN: &str = "[a-z0-9]+(?:[._-][a-z0-9]+)*";

/// `[a-z0-9]+(?:[._-][a-z0-9]+)*`, fully matched.
fn matches_stream_name(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && s.split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.as_bytes().iter().all(alnum))
}

/// Image stream names (and generateName prefixes, upstream's quirk kept) must be path
/// segments and match the stream-name pattern.
pub fn image_stream_name_errors(name: &str, _prefix: bool) -> Vec<String> {
    let mut errs = path_segment_name_errors(name);
    if !matches_stream_name(name) {
        errs.push(format!("must match {STREAM_NAME_PATTERN:?}"));
    }
    errs
}

/// Image names only need to be path segments (`sha256:...` and `image1` are both fine).
pub fn image_name_errors(name: &str, _prefix: bool) -> Vec<String> {
    path_segment_name_errors(name)
}

/// Whether a tag name is a valid container image tag (`[\w][\w.-]{0,127}`). Upstream does not
/// check tag names at all; we do (design.md).
pub fn is_valid_tag_name(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

pub fn validate_image_stream(stream: &ImageStream) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&stream.metadata, true, image_stream_name_errors);
    errs.extend(validate_image_stream_fields(stream));
    errs
}

/// What [`validate_image_stream`] checks beyond the generic object metadata rules.
pub fn validate_image_stream_fields(stream: &ImageStream) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = stream.metadata.namespace.as_deref().unwrap_or("");
    let name = stream.metadata.name.as_deref().unwrap_or("");
    if ns.len() + 1 + name.len() > 255 {
        errs.push(FieldError::invalid(
            &FieldPath::new("metadata").child("name"),
            name,
            "'namespace/name' cannot be longer than 255 characters",
        ));
    }
    errs.extend(validate_stream_spec_and_status(stream));
    errs
}

/// Everything but the metadata, shared by create, update and status update.
pub fn validate_stream_spec_and_status(stream: &ImageStream) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let repo = &stream.spec.docker_image_repository;
    if !repo.is_empty() {
        let path = FieldPath::new("spec").child("dockerImageRepository");
        match DockerImageReference::parse(repo) {
            Err(e) => errs.push(FieldError::invalid(&path, repo.as_str(), e.to_string())),
            Ok(r) if !r.tag.is_empty() => errs.push(FieldError::invalid(
                &path,
                repo.as_str(),
                "the repository name may not contain a tag",
            )),
            Ok(r) if !r.id.is_empty() => errs.push(FieldError::invalid(
                &path,
                repo.as_str(),
                "the repository name may not contain an ID",
            )),
            Ok(_) => {}
        }
    }
    let tags_path = FieldPath::new("spec").child("tags");
    for tag in &stream.spec.tags {
        // Paths are formatted only for errors: a stream has hundreds of valid tags.
        let path = || tags_path.key(&tag.name);
        if !is_valid_tag_name(&tag.name) {
            errs.push(FieldError::invalid(
                &path().child("name"),
                tag.name.as_str(),
                "a tag name must be 1 to 128 letters, digits, '_', '.' or '-', and must not start with '.' or '-'",
            ));
        }
        errs.extend(tag_reference_errors(tag, &path));
    }
    errs.extend(validate_status_tags(stream));
    errs
}

/// `ValidateImageStreamTagReference` (spec §5.2).
pub fn validate_tag_reference(tag: &TagReference, path: &FieldPath) -> Vec<FieldError> {
    tag_reference_errors(tag, &|| path.clone())
}

/// [`validate_tag_reference`] with the tag's path made only when there is an error to report.
fn tag_reference_errors(tag: &TagReference, path: &dyn Fn() -> FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(from) = &tag.from {
        let from_path = || path().child("from");
        let name = from.name.as_deref().unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&from_path().child("name"), ""));
        }
        match from.kind.as_deref().unwrap_or("") {
            "DockerImage" => {
                if !name.is_empty() {
                    if let Err(e) = DockerImageReference::parse(name) {
                        errs.push(FieldError::invalid(
                            &from_path().child("name"),
                            name,
                            e.to_string(),
                        ));
                    }
                }
            }
            "ImageStreamTag" | "ImageStreamImage" => {
                if tag.import_policy.scheduled {
                    errs.push(FieldError::invalid(
                        &path().child("importPolicy").child("scheduled"),
                        true,
                        "only tags pointing to Docker repositories may be scheduled for background import",
                    ));
                }
            }
            _ => errs.push(FieldError::required(
                &from_path().child("kind"),
                "valid values are 'DockerImage', 'ImageStreamImage', 'ImageStreamTag'",
            )),
        }
    }
    let policy = tag.reference_policy.type_.as_str();
    if policy != REFERENCE_POLICY_SOURCE && policy != REFERENCE_POLICY_LOCAL {
        errs.push(FieldError::invalid(
            &path().child("referencePolicy").child("type"),
            policy,
            "valid values are \"Source\", \"Local\"",
        ));
    }
    errs.extend(validate_import_mode(&tag.import_policy.import_mode, || {
        path().child("importPolicy")
    }));
    errs
}

fn validate_status_tags(stream: &ImageStream) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let status_path = FieldPath::new("status").child("tags");
    for list in &stream.status.tags {
        for (i, item) in list.items.iter().flatten().enumerate() {
            if let Err(e) = DockerImageReference::parse(&item.docker_image_reference) {
                let path = status_path
                    .key(&list.tag)
                    .child("items")
                    .index(i)
                    .child("dockerImageReference");
                errs.push(FieldError::invalid(
                    &path,
                    item.docker_image_reference.as_str(),
                    e.to_string(),
                ));
            }
        }
    }
    errs
}

pub fn validate_image(image: &Image) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&image.metadata, false, image_name_errors);
    errs.extend(validate_image_fields(image));
    errs
}

/// What [`validate_image`] checks beyond the generic object metadata rules.
pub fn validate_image_fields(image: &Image) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = FieldPath::new("dockerImageReference");
    if image.docker_image_reference.is_empty() {
        errs.push(FieldError::required(&path, ""));
    } else if let Err(e) = DockerImageReference::parse(&image.docker_image_reference) {
        errs.push(FieldError::invalid(
            &path,
            image.docker_image_reference.as_str(),
            e.to_string(),
        ));
    }
    for (i, sig) in image.signatures.iter().enumerate() {
        errs.extend(validate_signature(
            sig,
            &FieldPath::new("signatures").index(i),
        ));
    }
    errs.extend(validate_manifests(image));
    errs
}

fn is_oci_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    let algo_ok = algo.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algo_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

fn is_media_type(m: &str) -> bool {
    let part = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= 127
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(c))
    };
    m.split_once('/').is_some_and(|(t, s)| part(t) && part(s))
}

fn validate_manifests(image: &Image) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let base = FieldPath::new("dockerImageManifests");
    for (i, m) in image.docker_image_manifests.iter().enumerate() {
        let path = base.index(i);
        if !is_oci_digest(&m.digest) {
            errs.push(FieldError::invalid(
                &path.child("digest"),
                m.digest.as_str(),
                "digest does not conform with OCI image specification",
            ));
        }
        if !is_media_type(&m.media_type) {
            errs.push(FieldError::invalid(
                &path.child("mediaType"),
                m.media_type.as_str(),
                "media type does not conform to RFC6838",
            ));
        }
        if m.architecture.is_empty() {
            errs.push(FieldError::required(&path.child("architecture"), ""));
        }
        if m.os.is_empty() {
            errs.push(FieldError::required(&path.child("os"), ""));
        }
        if m.manifest_size < 0 {
            errs.push(FieldError::invalid(
                &path.child("size"),
                m.manifest_size,
                "manifest size cannot be negative",
            ));
        }
    }
    if !image.docker_image_manifests.is_empty()
        && image
            .docker_image_layers
            .as_ref()
            .is_some_and(|l| !l.is_empty())
    {
        errs.push(FieldError::invalid(
            &FieldPath::new("dockerImageLayers"),
            BadValue::Json(serde_json::to_value(&image.docker_image_layers).unwrap_or_default()),
            "dockerImageLayers should not be set when dockerImageManifests is set",
        ));
    }
    errs
}

/// `validateImageSignature` (spec §4.2).
pub fn validate_signature(sig: &ImageSignature, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = signature_meta_errors(sig, &path.child("metadata"));
    if sig.type_.is_empty() {
        errs.push(FieldError::required(&path.child("type"), ""));
    }
    if sig.content.0.is_empty() {
        errs.push(FieldError::required(&path.child("content"), ""));
    }
    errs.extend(signature_condition_pair_error(sig, path));
    errs.extend(unknown_signature_errors(sig, path));
    errs
}

fn signature_meta_errors(sig: &ImageSignature, meta: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = sig.metadata.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(&meta.child("name"), ""));
    } else {
        for m in path_segment_name_errors(name) {
            errs.push(FieldError::invalid(&meta.child("name"), name, m));
        }
        let parts: Vec<&str> = name.split('@').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            errs.push(FieldError::invalid(
                &meta.child("name"),
                name,
                "name must be of format <imageName>@<signatureName>",
            ));
        }
    }
    if sig.metadata.labels.as_ref().is_some_and(|l| !l.is_empty()) {
        errs.push(FieldError::forbidden(
            &meta.child("labels"),
            "signature labels cannot be set",
        ));
    }
    if sig
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        errs.push(FieldError::forbidden(
            &meta.child("annotations"),
            "signature annotations cannot be set",
        ));
    }
    errs
}

/// `Trusted` and `ForImage` conditions come as a pair.
fn signature_condition_pair_error(sig: &ImageSignature, path: &FieldPath) -> Option<FieldError> {
    let trusted = sig.conditions.iter().any(|c| c.type_ == "Trusted");
    let for_image = sig.conditions.iter().any(|c| c.type_ == "ForImage");
    let missing = match (trusted, for_image) {
        (true, false) => "missing \"ForImage\" condition type",
        (false, true) => "missing \"Trusted\" condition type",
        _ => return None,
    };
    Some(FieldError::invalid(
        &path.child("conditions"),
        BadValue::Json(serde_json::to_value(&sig.conditions).unwrap_or_default()),
        missing,
    ))
}

/// A signature not known to be trusted or untrusted carries no verification results.
fn unknown_signature_errors(sig: &ImageSignature, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let trusted = sig.conditions.iter().find(|c| c.type_ == "Trusted");
    if trusted.is_some_and(|c| c.status != "Unknown") {
        return errs;
    }
    let unset = "must be unset for unknown signature state";
    if !sig.image_identity.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("imageIdentity"),
            sig.image_identity.as_str(),
            unset,
        ));
    }
    if sig.signed_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        errs.push(FieldError::invalid(
            &path.child("signedClaims"),
            BadValue::Json(serde_json::to_value(&sig.signed_claims).unwrap_or_default()),
            unset,
        ));
    }
    if sig.issued_by.is_some() {
        errs.push(FieldError::invalid(
            &path.child("issuedBy"),
            BadValue::Json(serde_json::to_value(&sig.issued_by).unwrap_or_default()),
            unset,
        ));
    }
    if sig.issued_to.is_some() {
        errs.push(FieldError::invalid(
            &path.child("issuedTo"),
            BadValue::Json(serde_json::to_value(&sig.issued_to).unwrap_or_default()),
            unset,
        ));
    }
    errs
}

const ONLY_DOCKER_IMAGE: &str = "only DockerImage is supported";

/// `ValidateImageStreamImport` (spec §13.1).
pub fn validate_image_stream_import(isi: &crate::ImageStreamImport) -> Vec<FieldError> {
    let spec = FieldPath::new("spec");
    let images = spec.child("images");
    let mut errs = Vec::new();
    for (i, image) in isi.spec.images.iter().enumerate() {
        errs.extend(validate_image_import(image, &images.index(i)));
    }
    if let Some(repository) = &isi.spec.repository {
        errs.extend(validate_repository_import(
            repository,
            &spec.child("repository"),
        ));
    }
    if isi.spec.images.is_empty() && isi.spec.repository.is_none() {
        errs.push(FieldError::invalid(
            &images,
            "null",
            "you must specify at least one image or a repository import",
        ));
    }
    errs.extend(validate_object_meta(
        &isi.metadata,
        true,
        image_stream_name_errors,
    ));
    errs
}

fn validate_image_import(image: &crate::ImageImportSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = image.from.kind.as_deref().unwrap_or("");
    if kind != "DockerImage" {
        errs.push(FieldError::invalid(
            &path.child("from").child("kind"),
            kind,
            ONLY_DOCKER_IMAGE,
        ));
    } else {
        if let Some(to) = &image.to {
            if to.name.is_empty() {
                errs.push(FieldError::invalid(
                    &path.child("to").child("name"),
                    "",
                    "the name of the target tag must be specified",
                ));
            }
        }
        let name_path = path.child("from").child("name");
        match image.from.name.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(&name_path, "")),
            // Upstream's legacy "import everything" marker, accepted as it is.
            "*" => {}
            name => match DockerImageReference::parse(name) {
                Err(e) => errs.push(FieldError::invalid(&name_path, name, e.to_string())),
                Ok(r) if !r.id.is_empty() && image.import_policy.scheduled => errs.push(
                    FieldError::invalid(&name_path, name, "only tags can be scheduled for import"),
                ),
                Ok(_) => {}
            },
        }
    }
    errs.extend(validate_import_mode(
        &image.import_policy.import_mode,
        || path.child("importPolicy"),
    ));
    errs
}

fn validate_repository_import(
    repository: &crate::RepositoryImportSpec,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = repository.from.kind.as_deref().unwrap_or("");
    let name_path = path.child("from").child("name");
    if kind != "DockerImage" {
        errs.push(FieldError::invalid(
            &path.child("from").child("kind"),
            kind,
            ONLY_DOCKER_IMAGE,
        ));
    } else {
        match repository.from.name.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(
                &name_path,
                "container image references require a name",
            )),
            name => match DockerImageReference::parse(name) {
                Err(e) => errs.push(FieldError::invalid(&name_path, name, e.to_string())),
                Ok(r) if !r.id.is_empty() || !r.tag.is_empty() => errs.push(FieldError::invalid(
                    &name_path,
                    name,
                    "you must specify an image repository, not a tag or ID",
                )),
                Ok(_) => {}
            },
        }
    }
    errs.extend(validate_import_mode(
        &repository.import_policy.import_mode,
        || path.child("importPolicy"),
    ));
    errs
}

/// The import mode's error, if any; the policy's path (`path`) is made only for it.
fn validate_import_mode(mode: &str, path: impl FnOnce() -> FieldPath) -> Vec<FieldError> {
    if mode.is_empty() || mode == IMPORT_MODE_LEGACY || mode == IMPORT_MODE_PRESERVE_ORIGINAL {
        return Vec::new();
    }
    vec![FieldError::invalid(
        &path().child("importMode"),
        mode,
        "invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn stream(name: &str) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn stream_names() {
        for ok in ["a", "a.b", "a_b-c", "foo1"] {
            assert!(image_stream_name_errors(ok, false).is_empty(), "{ok}");
        }
        for bad in ["A", "a..b", "-a", "a-", "a/b", ""] {
            assert!(!image_stream_name_errors(bad, false).is_empty(), "{bad}");
        }
        assert_eq!(
            messages(&validate_image_stream(&stream("Bad"))),
            vec!["metadata.name: Invalid value: \"Bad\": must match \"[a-z0-9]+(?:[._-][a-z0-9]+)*\""]
        );
        let long = "a".repeat(253);
        assert_eq!(
            messages(&validate_image_stream(&stream(&long)))[0],
            format!("metadata.name: Invalid value: \"{long}\": 'namespace/name' cannot be longer than 255 characters")
        );
    }

    #[test]
    fn tag_references() {
        let mut s = stream("is");
        s.spec.tags = vec![
            TagReference {
                name: "a".into(),
                from: Some(ObjectReference {
                    kind: Some("Bogus".into()),
                    name: Some("x".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            TagReference {
                name: "b".into(),
                from: Some(ObjectReference {
                    kind: Some("DockerImage".into()),
                    name: Some("Bad Ref".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        for t in &mut s.spec.tags {
            crate::default_tag_reference(t, IMPORT_MODE_LEGACY);
        }
        s.spec.tags[1].import_policy.import_mode = "Foo".into();
        assert_eq!(
            messages(&validate_image_stream(&s)),
            vec![
                "spec.tags[a].from.kind: Required value: valid values are 'DockerImage', 'ImageStreamImage', 'ImageStreamTag'",
                "spec.tags[b].from.name: Invalid value: \"Bad Ref\": invalid reference format",
                "spec.tags[b].importPolicy.importMode: Invalid value: \"Foo\": invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'",
            ]
        );
    }

    #[test]
    fn repository_and_status() {
        let mut s = stream("is");
        s.spec.docker_image_repository = "quay.io/a/b:tag".into();
        s.status.tags = vec![crate::NamedTagEventList {
            tag: "t".into(),
            items: Some(vec![crate::TagEvent {
                created: None,
                docker_image_reference: String::new(),
                image: String::new(),
                generation: 1,
            }]),
            conditions: vec![],
        }];
        assert_eq!(
            messages(&validate_image_stream(&s)),
            vec![
                "spec.dockerImageRepository: Invalid value: \"quay.io/a/b:tag\": the repository name may not contain a tag",
                "status.tags[t].items[0].dockerImageReference: Invalid value: \"\": repository name must have at least one component",
            ]
        );
    }

    #[test]
    fn images_and_signatures() {
        let mut img = Image::default();
        img.metadata.name = Some("a/b".into());
        let msgs = messages(&validate_image(&img));
        assert_eq!(
            msgs,
            vec![
                "metadata.name: Invalid value: \"a/b\": may not contain '/'",
                "dockerImageReference: Required value",
            ]
        );
        let sig = ImageSignature {
            metadata: apimachinery::meta::ObjectMeta {
                name: Some("nosep".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let msgs = messages(&validate_signature(
            &sig,
            &FieldPath::new("signatures").index(0),
        ));
        assert_eq!(
            msgs,
            vec![
                "signatures[0].metadata.name: Invalid value: \"nosep\": name must be of format <imageName>@<signatureName>",
                "signatures[0].type: Required value",
                "signatures[0].content: Required value",
            ]
        );
    }

    #[test]
    fn tag_names() {
        assert!(is_valid_tag_name("latest"));
        assert!(is_valid_tag_name("v1.2_3-x"));
        assert!(!is_valid_tag_name(""));
        assert!(!is_valid_tag_name(".x"));
        assert!(!is_valid_tag_name("a b"));
        assert!(!is_valid_tag_name(&"a".repeat(129)));
    }

    fn isi(images: Vec<crate::ImageImportSpec>) -> crate::ImageStreamImport {
        let mut isi = crate::ImageStreamImport::default();
        isi.metadata.name = Some("app".into());
        isi.metadata.namespace = Some("ns".into());
        isi.spec.images = images;
        isi
    }

    fn docker(name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("DockerImage".into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn image_stream_import_needs_something_to_import() {
        let errs = validate_image_stream_import(&isi(vec![]));
        assert_eq!(
            messages(&errs),
            ["spec.images: Invalid value: \"null\": you must specify at least one image or a repository import"]
        );
    }

    #[test]
    fn image_stream_import_images() {
        let ok = crate::ImageImportSpec {
            from: docker("quay.io/a/b:1"),
            ..Default::default()
        };
        assert!(validate_image_stream_import(&isi(vec![ok.clone()])).is_empty());
        let star = crate::ImageImportSpec {
            from: docker("*"),
            ..Default::default()
        };
        assert!(validate_image_stream_import(&isi(vec![star])).is_empty());
        let mut kind = ok.clone();
        kind.from.kind = Some("ImageStreamTag".into());
        let mut empty_to = ok.clone();
        empty_to.to = Some(k8s_openapi::api::core::v1::LocalObjectReference {
            name: String::new(),
        });
        let mut scheduled_digest = ok.clone();
        scheduled_digest.from = docker(
            "quay.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        scheduled_digest.import_policy.scheduled = true;
        let mut mode = ok.clone();
        mode.import_policy.import_mode = "Foo".into();
        let errs = validate_image_stream_import(&isi(vec![kind, empty_to, scheduled_digest, mode]));
        assert_eq!(
            messages(&errs),
            [
                "spec.images[0].from.kind: Invalid value: \"ImageStreamTag\": only DockerImage is supported",
                "spec.images[1].to.name: Invalid value: \"\": the name of the target tag must be specified",
                "spec.images[2].from.name: Invalid value: \"quay.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000\": only tags can be scheduled for import",
                "spec.images[3].importPolicy.importMode: Invalid value: \"Foo\": invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'",
            ]
        );
    }

    #[test]
    fn image_stream_import_repository() {
        let mut with_tag = isi(vec![]);
        with_tag.spec.repository = Some(crate::RepositoryImportSpec {
            from: docker("quay.io/a/b:1"),
            ..Default::default()
        });
        assert_eq!(
            messages(&validate_image_stream_import(&with_tag)),
            ["spec.repository.from.name: Invalid value: \"quay.io/a/b:1\": you must specify an image repository, not a tag or ID"]
        );
        let mut unnamed = with_tag.clone();
        if let Some(r) = unnamed.spec.repository.as_mut() {
            r.from.name = None;
        }
        assert_eq!(
            messages(&validate_image_stream_import(&unnamed)),
            ["spec.repository.from.name: Required value: container image references require a name"]
        );
    }
}
