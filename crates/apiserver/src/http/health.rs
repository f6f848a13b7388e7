//! Health and metrics endpoints (spec §7): `/healthz`, `/livez`, `/readyz` with their
//! per-check forms, and the Prometheus `/metrics` text.

use std::sync::Arc;
use std::time::Instant;

use apimachinery::options::Query;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::response::Response;
use bytes::Bytes;

use super::render::respond;
use super::Api;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Healthz,
    Livez,
    Readyz,
}

async fn run_checks(api: &Api, probe: Probe) -> Vec<(&'static str, bool)> {
    let storage = api.config.health.storage_ok().await;
    let mut checks = vec![("ping", true), ("log", true), ("etcd", storage)];
    if probe == Probe::Readyz {
        checks.push(("etcd-readiness", storage));
        checks.push(("informer-sync", api.config.health.caches_ready()));
        checks.push(("shutdown", !api.shutting_down()));
    }
    checks
}

async fn probe(api: &Api, probe: Probe, query: Option<&str>, only: Option<&str>) -> Response {
    let name = match probe {
        Probe::Healthz => "healthz",
        Probe::Livez => "livez",
        Probe::Readyz => "readyz",
    };
    // ping and log need nothing: they answer at once (the cheapest authenticated handler).
    if matches!(only, Some("ping" | "log")) {
        return respond(200, "text/plain; charset=utf-8", Bytes::from("ok"), &[]);
    }
    let q = Query::parse(query);
    let verbose = q.get("verbose").is_some();
    let excluded = q.all("exclude");
    let checks = run_checks(api, probe).await;
    if let Some(only) = only {
        return match checks.iter().find(|(c, _)| *c == only) {
            Some((_, true)) => respond(200, "text/plain; charset=utf-8", Bytes::from("ok"), &[]),
            Some((_, false)) => respond(
                500,
                "text/plain; charset=utf-8",
                Bytes::from(format!("internal server error: {only} failed\n")),
                &[],
            ),
            None => respond(
                404,
                "text/plain; charset=utf-8",
                Bytes::from("404 page not found\n"),
                &[],
            ),
        };
    }
    let mut lines = Vec::new();
    let mut ok = true;
    for (check, passed) in &checks {
        if excluded.contains(check) {
            lines.push(format!("[+]{check} excluded: ok"));
        } else if *passed {
            lines.push(format!("[+]{check} ok"));
        } else {
            ok = false;
            lines.push(format!("[-]{check} failed: reason withheld"));
        }
    }
    if ok && !verbose {
        return respond(200, "text/plain; charset=utf-8", Bytes::from("ok"), &[]);
    }
    let tail = if ok {
        format!("{name} check passed")
    } else {
        format!("{name} check failed")
    };
    lines.push(tail);
    respond(
        if ok { 200 } else { 500 },
        "text/plain; charset=utf-8",
        Bytes::from(lines.join("\n") + "\n"),
        &[],
    )
}

/// A root check, counted in the request metrics by its path as kube instruments its root
/// health handlers (the per-check paths are not).
async fn root_probe(api: &Api, which: Probe, path: &'static str, req: HttpRequest) -> Response {
    let started = Instant::now();
    let resp = probe(api, which, req.uri().query(), None).await;
    api.metrics
        .observe_path(&req, path, resp.status().as_u16(), started.elapsed());
    resp
}

pub(super) async fn healthz(State(api): State<Arc<Api>>, req: HttpRequest) -> Response {
    root_probe(&api, Probe::Healthz, "/healthz", req).await
}
pub(super) async fn livez(State(api): State<Arc<Api>>, req: HttpRequest) -> Response {
    root_probe(&api, Probe::Livez, "/livez", req).await
}
pub(super) async fn readyz(State(api): State<Arc<Api>>, req: HttpRequest) -> Response {
    root_probe(&api, Probe::Readyz, "/readyz", req).await
}
pub(super) async fn healthz_one(
    State(api): State<Arc<Api>>,
    Path(check): Path<String>,
) -> Response {
    probe(&api, Probe::Healthz, None, Some(&check)).await
}
pub(super) async fn livez_one(State(api): State<Arc<Api>>, Path(check): Path<String>) -> Response {
    probe(&api, Probe::Livez, None, Some(&check)).await
}
pub(super) async fn readyz_one(State(api): State<Arc<Api>>, Path(check): Path<String>) -> Response {
    probe(&api, Probe::Readyz, None, Some(&check)).await
}

pub(super) async fn metrics(State(api): State<Arc<Api>>) -> Response {
    respond(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(api.metrics.render()),
        &[],
    )
}
