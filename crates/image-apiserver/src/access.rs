//! Who may do what, as the flags choose: the cluster connections (a kubeconfig or the pod's
//! in-cluster configuration), the authenticators in kube's order, and the authorizers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiserver::auth::extension_config::{self, FlagOverrides};
use apiserver::auth::policy::{BasicUser, Policy};
use apiserver::auth::request_header::{RequestHeaderAuthenticator, RequestHeaderSettings};
use apiserver::auth::webhook::{SubjectAccessReviewAuthorizer, TokenReviewAuthenticator};
use apiserver::auth::x509::{CaBundle, ClientCertAuthenticator, DynamicCa};
use apiserver::auth::{
    Authentication, Authenticator, Authorization, Authorizer, TokenAuthenticator,
};
use apiserver::kube_cache::KubeCache;
use k8s_openapi::api::core::v1::ConfigMap;

use crate::cluster::ClusterReads;
use crate::config::{AuthorizationMode, ClusterFlags};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: {message}")]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

/// A client of the cluster behind `path`, or of the cluster this pod runs in when no path is
/// given; `None` when neither (standalone).
pub async fn cluster_client(path: Option<&Path>) -> Result<Option<kube::Client>, AccessError> {
    let config = match path {
        Some(path) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).map_err(|e| AccessError::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| AccessError::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => kube::Config::incluster()
            .map_err(|e| AccessError::Kubeconfig {
                path: "<in-cluster>".to_string(),
                message: e.to_string(),
            })?,
        None => return Ok(None),
    };
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| AccessError::Config(format!("cluster client: {e}")))
}

fn read_pem(flag: &'static str, path: &Path) -> Result<CaBundle, AccessError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    CaBundle::from_pem(&text).map_err(|e| AccessError::Invalid {
        flag,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// What the flags say about the front proxy and client certificates; they win over the
/// cluster's ConfigMap.
fn flag_overrides(flags: &ClusterFlags) -> Result<FlagOverrides, AccessError> {
    let client_ca = match &flags.client_ca_file {
        Some(path) => Some(read_pem("--client-ca-file", path)?.pem().to_string()),
        None => None,
    };
    let request_header = match &flags.requestheader_client_ca_file {
        Some(path) => Some(RequestHeaderSettings {
            ca: Some(Arc::new(read_pem("--requestheader-client-ca-file", path)?)),
            allowed_names: flags.requestheader_allowed_names.clone(),
            username_headers: flags.requestheader_username_headers.clone(),
            uid_headers: flags.requestheader_uid_headers.clone(),
            group_headers: flags.requestheader_group_headers.clone(),
            extra_header_prefixes: flags.requestheader_extra_headers_prefix.clone(),
        }),
        None => None,
    };
    Ok(FlagOverrides {
        client_ca,
        request_header,
    })
}

/// The authenticators in kube's order: front proxy, client certificates, the token file,
/// delegated TokenReview. With a cluster, the client CA and front-proxy settings follow the
/// extension-apiserver-authentication ConfigMap.
pub async fn authentication(
    flags: &ClusterFlags,
    tokens: TokenAuthenticator,
    cluster: Option<&kube::Client>,
) -> Result<Authentication, AccessError> {
    let overrides = flag_overrides(flags)?;
    let client_ca = DynamicCa::default();
    let request_header = RequestHeaderAuthenticator::new(RequestHeaderSettings::default());
    let (ca, settings) = extension_config::settings_from(&Default::default(), &overrides)
        .map_err(|e| AccessError::Config(format!("authentication settings: {e}")))?;
    client_ca.set(ca);
    if let Some(settings) = settings {
        request_header.update(settings);
    }
    let mut chain: Vec<Arc<dyn Authenticator>> = vec![
        Arc::new(request_header.clone()),
        Arc::new(ClientCertAuthenticator::new(client_ca.clone())),
        Arc::new(tokens),
    ];
    if let Some(client) = cluster {
        if !flags.authentication_skip_lookup {
            follow_extension_config(flags, client, &client_ca, &request_header, overrides).await?;
        }
        chain.push(Arc::new(TokenReviewAuthenticator::new(
            client.clone(),
            flags.authentication_token_webhook_cache_ttl,
        )));
    }
    Ok(Authentication::new(chain, flags.anonymous_auth))
}

/// Reads the ConfigMap once (failing start-up unless tolerated, as kube), then follows it.
async fn follow_extension_config(
    flags: &ClusterFlags,
    client: &kube::Client,
    client_ca: &DynamicCa,
    request_header: &RequestHeaderAuthenticator,
    overrides: FlagOverrides,
) -> Result<(), AccessError> {
    match extension_config::lookup_once(client).await {
        Ok(_) => {}
        Err(e) if flags.authentication_tolerate_lookup_failure => {
            tracing::warn!(error = %e, "cannot read kube-system/extension-apiserver-authentication; continuing without it");
        }
        Err(e) => {
            return Err(AccessError::Config(format!(
                "reading kube-system/extension-apiserver-authentication (--authentication-tolerate-lookup-failure to start anyway): {e}"
            )))
        }
    }
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "kube-system");
    let cache = KubeCache::start_with_fields(
        configmaps,
        "configmaps in kube-system",
        &format!("metadata.name={}", extension_config::NAME),
    );
    if !cache.wait_synced(Duration::from_secs(10)).await {
        tracing::warn!("the kube-system ConfigMap cache has not synced yet");
    }
    extension_config::follow(cache, client_ca.clone(), request_header.clone(), overrides);
    Ok(())
}

/// The modes in order; by default Webhook with a cluster, Policy with a policy file.
fn modes(flags: &ClusterFlags, cluster: bool) -> Vec<AuthorizationMode> {
    if !flags.authorization_mode.is_empty() {
        return flags.authorization_mode.clone();
    }
    let mut modes = Vec::new();
    if cluster {
        modes.push(AuthorizationMode::Webhook);
    }
    if flags.authorization_policy_file.is_some() {
        modes.push(AuthorizationMode::Policy);
    }
    modes
}

/// `system:masters` and the always-allowed paths, then the chosen modes. Standalone (no
/// Webhook) the grants kube's default RBAC gives every authenticated user come first.
pub fn authorization(
    flags: &ClusterFlags,
    cluster: Option<&kube::Client>,
) -> Result<Arc<dyn Authorizer>, AccessError> {
    let modes = modes(flags, cluster.is_some());
    let mut chain: Vec<Arc<dyn Authorizer>> = Vec::new();
    if !modes.contains(&AuthorizationMode::Webhook) {
        chain.push(Arc::new(BasicUser));
    }
    for mode in modes {
        chain.push(match mode {
            AuthorizationMode::AlwaysAllow => Arc::new(apiserver::auth::authz::AlwaysAllow),
            AuthorizationMode::Policy => {
                let Some(path) = &flags.authorization_policy_file else {
                    return Err(AccessError::Config(
                        "--authorization-mode=Policy needs --authorization-policy-file".into(),
                    ));
                };
                Arc::new(Policy::from_file(path).map_err(|e| AccessError::Invalid {
                    flag: "--authorization-policy-file",
                    path: path.clone(),
                    message: e.to_string(),
                })?)
            }
            AuthorizationMode::Webhook => {
                let Some(client) = cluster else {
                    return Err(AccessError::Config(
                        "--authorization-mode=Webhook needs --authorization-kubeconfig or a pod's in-cluster configuration".into(),
                    ));
                };
                Arc::new(SubjectAccessReviewAuthorizer::new(
                    client.clone(),
                    flags.authorization_webhook_cache_authorized_ttl,
                    flags.authorization_webhook_cache_unauthorized_ttl,
                ))
            }
        });
    }
    Ok(Arc::new(Authorization::new(
        flags.authorization_always_allow_paths.clone(),
        chain,
    )))
}

/// The cluster connections, each `None` standalone: who reviews tokens, who decides, and
/// where Secrets, LimitRanges, Namespaces and the Lease are read.
pub struct Clients {
    pub authentication: Option<kube::Client>,
    pub authorization: Option<kube::Client>,
    pub reads: Option<kube::Client>,
}

impl Clients {
    pub async fn connect(flags: &ClusterFlags) -> Result<Clients, AccessError> {
        Ok(Clients {
            authentication: cluster_client(flags.authentication_kubeconfig.as_deref()).await?,
            authorization: cluster_client(flags.authorization_kubeconfig.as_deref()).await?,
            reads: cluster_client(flags.kubeconfig.as_deref()).await?,
        })
    }
}

/// Who may do what, and the cluster reads that come with a cluster.
pub struct Access {
    pub authentication: Authentication,
    pub authorizer: Arc<dyn Authorizer>,
    pub cluster: Option<Arc<ClusterReads>>,
}

impl Access {
    /// Serving before the cluster's objects are known would refuse creates and pull secrets
    /// that exist; `/readyz` keeps waiting past this bound.
    pub async fn wait_for_cluster(&self) {
        let Some(cluster) = &self.cluster else { return };
        if !cluster.wait_synced(Duration::from_secs(30)).await {
            tracing::warn!(
                "secrets, limitranges and namespaces have not synced yet; /readyz waits for them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> ClusterFlags {
        let mut all = vec!["image-apiserver"];
        all.extend(args);
        crate::config::ServerConfig::parse_from(all).cluster
    }

    #[test]
    fn default_modes_follow_what_is_configured() {
        assert!(modes(&flags(&[]), false).is_empty());
        assert_eq!(modes(&flags(&[]), true), [AuthorizationMode::Webhook]);
        assert_eq!(
            modes(&flags(&["--authorization-policy-file=/p"]), false),
            [AuthorizationMode::Policy]
        );
        assert_eq!(
            modes(&flags(&["--authorization-mode=Policy,AlwaysAllow"]), true),
            [AuthorizationMode::Policy, AuthorizationMode::AlwaysAllow]
        );
    }
}
