//! The HTTP endpoint server both binaries run for `/metrics`, `/healthz` and `/readyz`.
//!
//! The binary routes each request with a pure function `(method, path) -> Reply`; this module
//! is only the I/O edge: a hyper HTTP/1 server on a TCP listener, one task per connection,
//! `HEAD` answered like `GET` without a body, a slow or stuck client cut off after
//! [`CONNECTION_TIMEOUT`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Longest life of one connection.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Content type of `/metrics` (OpenMetrics text, as `prometheus-client` encodes it).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the plain-text answers.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A response before it becomes an HTTP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// A plain-text answer.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: TEXT,
            body: body.to_owned(),
        }
    }

    /// `200` with metrics in OpenMetrics text.
    pub fn metrics(body: String) -> Self {
        Self {
            status: 200,
            content_type: OPENMETRICS,
            body,
        }
    }
}

/// The answer to a method other than `GET` and `HEAD` (routers call this first).
pub fn refuse_method(method: &str) -> Option<Reply> {
    (method != "GET" && method != "HEAD").then(|| Reply::text(405, "method not allowed\n"))
}

/// Serves `listener` with `route(method, path)` until the returned task is aborted. Accept
/// errors are logged and retried after a short pause.
pub fn spawn<F>(listener: TcpListener, route: F) -> JoinHandle<()>
where
    F: Fn(&str, &str) -> Reply + Send + Sync + 'static,
{
    let route = Arc::new(route);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "HTTP endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let route = Arc::clone(&route);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let reply = route(request.method().as_str(), request.uri().path());
                    let head_only = request.method() == Method::HEAD;
                    async move { Ok::<_, Infallible>(to_response(reply, head_only)) }
                });
                let connection =
                    http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                // A slow or stuck client is cut off; the result is of no interest.
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            });
        }
    })
}

fn to_response(reply: Reply, head_only: bool) -> Response<Full<Bytes>> {
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(reply.body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(reply.content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn raw(address: SocketAddr, request: &str) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok(reply)
    }

    #[tokio::test]
    async fn the_route_answers_over_tcp_and_head_gets_no_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let task = spawn(listener, |method, path| {
            refuse_method(method).unwrap_or_else(|| match path {
                "/healthz" => Reply::text(200, "ok\n"),
                _ => Reply::text(404, "not found\n"),
            })
        });
        let get = |path: &str, method: &str| {
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        };
        let ok = raw(address, &get("/healthz", "GET")).await.expect("GET");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("ok\n"), "{ok}");
        assert!(ok.contains("text/plain"), "{ok}");
        let head = raw(address, &get("/healthz", "HEAD")).await.expect("HEAD");
        assert!(
            head.starts_with("HTTP/1.1 200") && !head.ends_with("ok\n"),
            "{head}"
        );
        let missing = raw(address, &get("/nope", "GET")).await.expect("GET");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = raw(address, &get("/healthz", "POST")).await.expect("POST");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        task.abort();
    }
}
