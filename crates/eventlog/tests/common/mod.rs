//! Starts the real embedded server on a free loopback port, in process, with
//! its own data directory, and gives clients for it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use eventlog::server::{Auth, Server, ServerConfig};
use eventlog::{HttpEventStore, HttpEventStoreConfig};
use serde_json::Value;
use tokio::sync::oneshot;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "changeit";

pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let mut s = Self::start_in(&path, Auth::default()).await;
        s._dir = Some(dir);
        s
    }

    pub async fn start_in(data_dir: &Path, auth: Auth) -> TestServer {
        let server = Server::bind(ServerConfig {
            data_dir: data_dir.to_owned(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            auth,
        })
        .await
        .expect("server binds");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            addr,
            url: format!("http://{addr}"),
            data_dir: data_dir.to_owned(),
            _dir: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits until its writer released the data directory.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        self._dir.take()
    }

    pub fn client(&self) -> HttpEventStore {
        HttpEventStore::new(HttpEventStoreConfig::new(&self.url).with_credentials(USER, PASSWORD))
            .expect("client")
    }

    pub fn raw(&self) -> Raw {
        Raw {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            base: self.url.clone(),
            auth: true,
        }
    }
}

/// Plain HTTP for protocol-level checks.
#[derive(Clone)]
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: bool,
}

impl Raw {
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        if self.auth { r.basic_auth(USER, Some(PASSWORD)) } else { r }
    }

    pub async fn post_batch(
        &self,
        stream: &str,
        expected: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut r = self
            .req(reqwest::Method::POST, &format!("/streams/{stream}"))
            .header("Content-Type", "application/vnd.eventstore.events+json")
            .body(body.to_string());
        if let Some(e) = expected {
            r = r.header("ES-ExpectedVersion", e);
        }
        r.send().await.expect("post")
    }

    pub async fn get_json(
        &self,
        path: &str,
    ) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = self
            .req(reqwest::Method::GET, path)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("get");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json body")
        };
        (status, headers, value)
    }
}

pub fn event(id: &str, event_type: &str, data: Value) -> Value {
    serde_json::json!({ "eventId": id, "eventType": event_type, "data": data })
}

pub fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

pub fn link<'a>(feed: &'a Value, relation: &str) -> Option<&'a str> {
    feed["links"].as_array()?.iter().find(|l| l["relation"] == relation)?["uri"].as_str()
}

pub fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
