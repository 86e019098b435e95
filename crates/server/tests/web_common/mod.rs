//! Shared by the web tests: an in-process server with the web UI on 127.0.0.1:0, seeded with
//! users, sites and devices, and a small HTTP client that keeps nothing between requests (each
//! test passes cookies and headers explicitly, so what is sent is what the test says).

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use tek_proto::crypto::Key;
use tek_server::http::WebOptions;
use tek_server::router;
use tek_server::storage::{DeviceStore, NewDevice, SiteStore, UserStore};
use tek_server::{Config, Server, ServerHandle};

/// Password of every seeded user.
pub const PASSWORD: &str = "correct horse battery";

/// A running server and what was seeded.
pub struct Web {
    pub server: ServerHandle,
    pub addr: SocketAddr,
    pub _dir: tempfile::TempDir,
    /// Site A: devices 1 and 2, member alice. Site B: device 3, member bob. Device 4: no site.
    pub site_a: i64,
    pub site_b: i64,
    pub admin: i64,
    pub alice: i64,
    pub bob: i64,
    pub client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Starts a server with `opts`.
pub async fn start_with(opts: WebOptions) -> Web {
    start_configured(opts, |_| {}).await
}

/// Starts a server with `opts` and the test configuration as `configure` changes it.
pub async fn start_configured(opts: WebOptions, configure: impl FnOnce(&mut Config)) -> Web {
    let dir = tempfile::tempdir().unwrap();
    let db = tek_server::storage::sqlite::Sqlite::open_dir(dir.path()).unwrap();
    let devices: Vec<NewDevice> = (1..=4)
        .map(|id| NewDevice {
            id,
            name: format!("Pool {id}"),
            key: Key([0xA5; 16]),
        })
        .collect();
    db.add_devices(&devices, 0).unwrap();
    let hash = tek_server::http::auth::hash_password(PASSWORD).unwrap();
    let admin = db.create_user("admin@example.com", &hash, true, 0).unwrap();
    let alice = db
        .create_user("alice@example.com", &hash, false, 0)
        .unwrap();
    let bob = db.create_user("bob@example.com", &hash, false, 0).unwrap();
    let site_a = db.create_site("Site A", 0).unwrap();
    let site_b = db.create_site("Site B", 0).unwrap();
    db.assign_devices(&[1, 2], Some(site_a)).unwrap();
    db.assign_devices(&[3], Some(site_b)).unwrap();
    db.grant_site(alice, site_a).unwrap();
    db.grant_site(bob, site_b).unwrap();
    drop(db);
    let mut cfg = Config::for_tests(dir.path());
    configure(&mut cfg);
    let server = Server::start_with(cfg, None, move |api| router::router(api, opts))
        .await
        .unwrap();
    let addr = server.http_addr();
    Web {
        server,
        addr,
        _dir: dir,
        site_a,
        site_b,
        admin,
        alice,
        bob,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

/// Starts a server with the default web options.
pub async fn start() -> Web {
    start_with(WebOptions::default()).await
}

/// A signed-in browser: its cookie header and CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Web {
    /// Sends a request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = self
            .client
            .request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// GET with a session (or none).
    pub async fn get(&self, path: &str, s: Option<&Session>) -> Answer {
        match s {
            Some(s) => {
                self.send(Method::GET, path, &[("cookie", &s.cookie)], "")
                    .await
            }
            None => self.send(Method::GET, path, &[], "").await,
        }
    }

    /// A form post with a session and its CSRF token.
    pub async fn post_form(&self, path: &str, s: &Session, form: &str) -> Answer {
        let body = if form.is_empty() {
            format!("csrf={}", s.csrf)
        } else {
            format!("csrf={}&{form}", s.csrf)
        };
        self.send(
            Method::POST,
            path,
            &[
                ("cookie", &s.cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
        .await
    }

    /// A JSON API call with a session cookie and its CSRF header.
    pub async fn api(&self, method: Method, path: &str, s: &Session, json: &str) -> Answer {
        self.send(
            method,
            path,
            &[
                ("cookie", &s.cookie),
                ("x-csrf-token", &s.csrf),
                ("content-type", "application/json"),
            ],
            json,
        )
        .await
    }

    /// Logs in; panics unless it works.
    pub async fn login(&self, email: &str) -> Session {
        let r = self.try_login(email, PASSWORD).await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "login of {email}: {}",
            r.body
        );
        let set = r.header("set-cookie");
        let cookie = set.split(';').next().unwrap().to_owned();
        let page = self
            .get(
                "/dashboard",
                Some(&Session {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                }),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page
            .body
            .split("data-csrf=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(csrf.len(), 64);
        Session { cookie, csrf }
    }

    /// One login attempt.
    pub async fn try_login(&self, email: &str, password: &str) -> Answer {
        let body = format!(
            "email={}&password={}",
            email.replace('@', "%40"),
            password.replace(' ', "+")
        );
        self.send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await
    }
}
