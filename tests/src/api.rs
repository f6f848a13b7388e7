//! A small HTTP client for the API: requests with JSON bodies, responses with status, headers
//! and body, and watch streams read one JSON line at a time.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

pub const IS: &str = "/apis/image.openshift.io/v1/namespaces";
pub const IMAGES: &str = "/apis/image.openshift.io/v1/images";

/// The collection path of image streams in `ns`.
pub fn streams(ns: &str) -> String {
    format!("{IS}/{ns}/imagestreams")
}

pub fn stream(ns: &str, name: &str) -> String {
    format!("{IS}/{ns}/imagestreams/{name}")
}

/// The history of `tag` in a stream's status (empty when the tag has none).
pub fn tag_items(stream: &Value, tag: &str) -> Vec<Value> {
    stream["status"]["tags"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["tag"] == tag))
        .and_then(|t| t["items"].as_array().cloned())
        .unwrap_or_default()
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The `message` of a Status body.
    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or("").to_string()
    }
}

impl Client {
    pub fn new(base: &str, http: reqwest::Client) -> Self {
        Client {
            base: base.to_string(),
            http,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body");
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], None).await
    }

    pub async fn get_accept(&self, path: &str, accept: &str) -> Resp {
        self.request(Method::GET, path, &[("accept", accept)], None)
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.request(
            Method::PUT,
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &str) -> Resp {
        self.request(
            Method::PATCH,
            path,
            &[("content-type", content_type)],
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, &[], None).await
    }

    pub async fn delete_with(&self, path: &str, options: &Value) -> Resp {
        self.request(
            Method::DELETE,
            path,
            &[("content-type", "application/json")],
            Some(options.to_string().into_bytes()),
        )
        .await
    }

    /// Starts a watch (the path carries the query) and returns the open stream.
    pub async fn watch(&self, path: &str, accept: Option<&str>) -> Watch {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = req.send().await.expect("watch request");
        assert_eq!(resp.status().as_u16(), 200, "watch {path} failed");
        Watch {
            resp,
            buf: Vec::new(),
            ended: false,
        }
    }
}

/// An open watch stream.
pub struct Watch {
    resp: reqwest::Response,
    buf: Vec<u8>,
    ended: bool,
}

impl Watch {
    /// The next event, or `None` when the stream ended or nothing came within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let line = self.next_line(timeout).await?;
        Some(serde_json::from_slice(&line).expect("watch line is JSON"))
    }

    /// The next event's line as sent, for callers that decode only part of it.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                return Some(self.buf.drain(..=pos).collect());
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// Waits for the stream to end (true) within `timeout`, discarding events.
    pub async fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self
                .next(deadline - tokio::time::Instant::now())
                .await
                .is_none()
            {
                return self.ended;
            }
        }
        false
    }
}
