//! DeleteOptions (spec §6.8): from the body when there is one, else from the query; with
//! preconditions, propagation policy and dry run.

use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::GroupKind;
use serde::Deserialize;
use storage::Revision;

use crate::resource::Request;
use crate::strategy::ApiObject;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub propagation: Option<Propagation>,
    pub orphan_dependents: Option<bool>,
    pub dry_run: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    grace_period_seconds: Option<i64>,
    #[serde(default)]
    preconditions: Option<Preconditions>,
    #[serde(default)]
    propagation_policy: Option<String>,
    #[serde(default)]
    orphan_dependents: Option<bool>,
    #[serde(default)]
    dry_run: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(GroupKind::new("meta.k8s.io", "DeleteOptions"), "", errors)
}

impl DeleteOptions {
    pub fn parse(req: &Request) -> Result<Self, ApiError> {
        let wire = if req.body.iter().any(|b| !b.is_ascii_whitespace()) {
            let value = crate::decode::body_value(&req.body, req.content_type.as_deref())?;
            serde_json::from_value::<Wire>(value)
                .map_err(|e| ApiError::BadRequest(format!("error decoding DeleteOptions: {e}")))?
        } else {
            let q = &req.query;
            let uid = q.get("uid").filter(|s| !s.is_empty()).map(str::to_string);
            let rv = q
                .get("resourceVersion")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            Wire {
                grace_period_seconds: q.int("gracePeriodSeconds")?,
                preconditions: (uid.is_some() || rv.is_some()).then_some(Preconditions {
                    uid,
                    resource_version: rv,
                }),
                propagation_policy: q.get("propagationPolicy").map(str::to_string),
                orphan_dependents: q
                    .get("orphanDependents")
                    .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false"))),
                dry_run: {
                    let d = q.all("dryRun");
                    (!d.is_empty()).then(|| d.into_iter().map(str::to_string).collect())
                },
            }
        };
        let mut errs = Vec::new();
        let propagation = match wire.propagation_policy.as_deref() {
            None | Some("") => None,
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(other) => {
                errs.push(FieldError::not_supported(
                    &FieldPath::new("propagationPolicy"),
                    other,
                    &["Foreground", "Background", "Orphan", "nil"],
                ));
                None
            }
        };
        if propagation.is_some() && wire.orphan_dependents.is_some() {
            errs.push(FieldError::invalid(
                &FieldPath::new("propagationPolicy"),
                wire.propagation_policy.clone().unwrap_or_default(),
                "orphanDependents and deletionPropagation cannot be both set",
            ));
        }
        let dry_run = wire.dry_run.unwrap_or_default();
        if dry_run.iter().any(|d| d != "All") {
            errs.push(FieldError::not_supported(
                &FieldPath::new("dryRun"),
                apimachinery::field::BadValue::Json(serde_json::json!(dry_run)),
                &["All"],
            ));
        }
        if !errs.is_empty() {
            return Err(invalid(errs));
        }
        let pre = wire.preconditions.unwrap_or_default();
        Ok(DeleteOptions {
            grace_period_seconds: wire.grace_period_seconds.map(|g| if g < 0 { 1 } else { g }),
            precondition_uid: pre.uid.filter(|s| !s.is_empty()),
            precondition_rv: pre.resource_version.filter(|s| !s.is_empty()),
            propagation,
            orphan_dependents: wire.orphan_dependents,
            dry_run: !dry_run.is_empty(),
        })
    }

    /// Preconditions against the stored object; mismatches are 409s naming the Kind.
    pub fn check_preconditions<O: ApiObject>(
        &self,
        gk: &GroupKind,
        name: &str,
        obj: &O,
        revision: Revision,
    ) -> Result<(), ApiError> {
        let conflict = |message: String| ApiError::Conflict {
            qualified: gk.to_string(),
            group: gk.group.clone(),
            kind: gk.kind.clone(),
            name: name.to_string(),
            message,
        };
        let uid = obj.metadata().uid.clone().unwrap_or_default();
        if let Some(want) = &self.precondition_uid {
            if *want != uid {
                return Err(conflict(format!("the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated")));
            }
        }
        if let Some(want) = &self.precondition_rv {
            let have = revision.to_string();
            if *want != have {
                return Err(conflict(format!("the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({have}). The object might have been modified")));
            }
        }
        Ok(())
    }

    /// The finalizer a Foreground or Orphan delete adds when garbage collection applies.
    pub fn finalizer_to_add(&self, gc: bool) -> Option<&'static str> {
        if !gc {
            return None;
        }
        match (self.propagation, self.orphan_dependents) {
            (Some(Propagation::Foreground), _) => Some("foregroundDeletion"),
            (Some(Propagation::Orphan), _) | (None, Some(true)) => Some("orphan"),
            _ => None,
        }
    }
}
