//! The hooks' Lambda binary run as AWS runs it: a stand-in for API Gateway (HTTP in, payload
//! 2.0 events out) and for the Lambda Runtime API that the binary's `lambda_runtime` polls.
//!
//! Neither AWS service runs here, so this is the one stand-in of the git-fault tests. It keeps
//! the contract the binary depends on (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):
//! `GET /2018-06-01/runtime/invocation/next` blocks until an event is queued and answers it with
//! the `Lambda-Runtime-Aws-Request-Id` and `-Deadline-Ms` headers; the binary posts the result to
//! `.../invocation/{id}/response` (or `/error`), and an instance handles one event at a time, so
//! several instances are several processes, each with its own `/tmp` (here: its own cache).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What an invocation answered: the HTTP status and body API Gateway returns.
type Reply = (u16, String);

#[derive(Default)]
struct Queue {
    /// Events not yet handed to an instance: request id, event JSON, who waits for the reply.
    waiting: VecDeque<(String, String, Sender<Reply>)>,
    /// Events handed out, by request id.
    running: HashMap<String, Sender<Reply>>,
    /// Invocations and init errors the instances reported.
    errors: Vec<String>,
    next_id: u64,
}

/// The front door (`addr`, plain HTTP as API Gateway would take it) and the Lambda instances
/// behind it; the instances are killed on drop.
pub struct LambdaFront {
    /// `127.0.0.1:PORT`: send requests here as to the API's URL.
    pub addr: String,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    instances: Vec<Child>,
    logs: Vec<std::path::PathBuf>,
}

impl LambdaFront {
    /// Starts `instances` processes of the Lambda binary `bin` on `repo`, each with its own
    /// cache under `dir` and its log in `dir/lambda-N.log`; `env` is the function's
    /// configuration (its environment variables on AWS).
    pub fn start(
        bin: &Path,
        repo: &str,
        dir: &Path,
        instances: usize,
        env: &[(&str, &str)],
    ) -> LambdaFront {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let runtime = TcpListener::bind("127.0.0.1:0").unwrap();
        let runtime_addr = runtime.local_addr().unwrap().to_string();
        {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for conn in runtime.incoming().flatten() {
                    let queue = queue.clone();
                    std::thread::spawn(move || runtime_conn(conn, &queue));
                }
            });
        }
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap().to_string();
        {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for conn in front.incoming().flatten() {
                    let queue = queue.clone();
                    std::thread::spawn(move || front_conn(conn, &queue));
                }
            });
        }
        let mut children = Vec::new();
        let mut logs = Vec::new();
        for i in 0..instances {
            let cache = dir.join(format!("lambda-{i}-tmp"));
            let log = dir.join(format!("lambda-{i}.log"));
            let mut cmd = Command::new(bin);
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir)
                .env("AWS_LAMBDA_RUNTIME_API", &runtime_addr)
                .env("AWS_LAMBDA_FUNCTION_NAME", "gitvps-hooks")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("GITVPS_REPO", repo)
                .env("GITVPS_HOOKS_CACHE", &cache)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::options().append(true).open(&log).unwrap());
            for (k, v) in env {
                cmd.env(k, v);
            }
            children.push(cmd.spawn().unwrap());
            logs.push(log);
        }
        LambdaFront {
            addr,
            queue,
            instances: children,
            logs,
        }
    }

    /// What the instances reported as errors (invocation and init errors), and their logs.
    pub fn errors(&self) -> Vec<String> {
        self.queue.0.lock().unwrap().errors.clone()
    }

    /// Every instance's log.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for LambdaFront {
    fn drop(&mut self) {
        for c in &mut self.instances {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request as read off a connection.
struct HttpRequest {
    method: String,
    path: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request; `None` at the end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t).ok()?;
                    if t.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        r.read_exact(&mut body).ok()?;
    }
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

fn respond(s: &mut TcpStream, code: u16, extra: &str, body: &str, close: bool) {
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    let _ = s.flush();
}

/// The Runtime API side: the instances' keep-alive connections.
fn runtime_conn(conn: TcpStream, queue: &(Mutex<Queue>, Condvar)) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(HttpRequest {
        method, path, body, ..
    }) = read_request(&mut r)
    {
        let body = String::from_utf8_lossy(&body).into_owned();
        let rest = path.strip_prefix("/2018-06-01/runtime/").unwrap_or("");
        match (
            method.as_str(),
            rest.split('/').collect::<Vec<_>>().as_slice(),
        ) {
            ("GET", ["invocation", "next"]) => {
                let (lock, cv) = queue;
                let mut q = lock.lock().unwrap();
                let (id, event, reply) = loop {
                    if let Some(e) = q.waiting.pop_front() {
                        break e;
                    }
                    q = cv.wait(q).unwrap();
                };
                q.running.insert(id.clone(), reply);
                drop(q);
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    + 60_000;
                respond(
                    &mut w,
                    200,
                    &format!(
                        "Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-west-1:123456789012:function:gitvps-hooks\r\n"
                    ),
                    &event,
                    false,
                );
            }
            ("POST", ["invocation", id, outcome @ ("response" | "error")]) => {
                let reply = queue.0.lock().unwrap().running.remove(*id);
                let answer = if *outcome == "response" {
                    api_gateway_reply(&body)
                } else {
                    queue.0.lock().unwrap().errors.push(format!("{id}: {body}"));
                    (502, r#"{"message":"Internal Server Error"}"#.to_owned())
                };
                if let Some(tx) = reply {
                    let _ = tx.send(answer);
                }
                respond(&mut w, 202, "", r#"{"status":"OK"}"#, false);
            }
            ("POST", ["init", "error"]) => {
                queue.0.lock().unwrap().errors.push(format!("init: {body}"));
                respond(&mut w, 202, "", r#"{"status":"OK"}"#, false);
            }
            _ => respond(&mut w, 404, "", r#"{"errorType":"NotFound"}"#, false),
        }
    }
}

/// What API Gateway makes of a payload-2.0 response: its status and body.
fn api_gateway_reply(body: &str) -> Reply {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_ne!(
        v["isBase64Encoded"], true,
        "the hooks answer JSON, never a binary body: {body}"
    );
    let code = v["statusCode"].as_u64().and_then(|c| u16::try_from(c).ok());
    match code {
        Some(code) => (code, v["body"].as_str().unwrap_or("").to_owned()),
        None => (502, format!("malformed Lambda response: {body}")),
    }
}

/// The API Gateway side: one request per connection (the tests' client closes).
fn front_conn(conn: TcpStream, queue: &(Mutex<Queue>, Condvar)) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let Some(HttpRequest {
        method,
        path,
        headers,
        body,
    }) = read_request(&mut r)
    else {
        return;
    };
    let (raw_path, query) = path.split_once('?').unwrap_or((&path, ""));
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local",
            "domainName": "local.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "local",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "front", "routeKey": "$default", "stage": "$default",
            "time": "01/May/2026:12:00:00 +0000", "timeEpoch": 1777636800000u64
        },
        "body": String::from_utf8_lossy(&body),
        "isBase64Encoded": false
    })
    .to_string();
    let (tx, rx) = channel();
    {
        let (lock, cv) = queue;
        let mut q = lock.lock().unwrap();
        q.next_id += 1;
        let id = format!("req-{:06}", q.next_id);
        q.waiting.push_back((id, event, tx));
        cv.notify_one();
    }
    let (code, body) = rx.recv_timeout(Duration::from_secs(120)).unwrap_or((
        504,
        r#"{"message":"Endpoint request timed out"}"#.to_owned(),
    ));
    respond(&mut w, code, "", &body, true);
}
