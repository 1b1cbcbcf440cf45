//! A Hugging Face hub on loopback, speaking the hub's download protocol as
//! `huggingface_hub` sees it: `HEAD`/`GET {repo}/resolve/{revision}/{file}`
//! answers with `X-Repo-Commit`; small files come directly with their git blob
//! SHA-1 as `ETag`; large ("LFS") files redirect to a CDN on another address
//! (127.0.0.2) with `X-Linked-Etag` (their SHA-256) and `X-Linked-Size`, and
//! the CDN honours `Range`. Requests are logged, and the hub can be told to
//! want a token, corrupt a file or cut a transfer short.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha1::Digest as _;

/// One request as the fake hub saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `hub` or `cdn`.
    pub host: &'static str,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
}

#[derive(Default)]
pub struct Behaviour {
    /// Resolve requests need `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The CDN flips one byte of this file.
    pub corrupt: Option<String>,
    /// The CDN sends only this many bytes of this file, once, then closes.
    pub cut: Option<(String, usize)>,
    /// The CDN answers `/cdn/...` with a redirect to `/signed/...`, as signed-URL CDNs do.
    pub cdn_hop: bool,
}

struct File {
    bytes: Vec<u8>,
    sha256: String,
    git_sha1: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl File {
    fn new(bytes: Vec<u8>) -> Self {
        let sha256 = hex(&sha2::Sha256::digest(&bytes));
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {}\0", bytes.len()).as_bytes());
        h.update(&bytes);
        File { bytes, sha256, git_sha1: hex(&h.finalize()) }
    }

    /// Stored in LFS on the real hub: weights and pickles.
    fn is_lfs(name: &str) -> bool {
        name.ends_with(".safetensors") || name.ends_with(".pt")
    }
}

struct Repo {
    commit: String,
    files: BTreeMap<String, File>,
}

pub struct FakeHub {
    pub endpoint: String,
    pub log: Arc<Mutex<Vec<Logged>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    repos: Arc<Mutex<BTreeMap<String, Repo>>>,
}

struct Shared {
    log: Arc<Mutex<Vec<Logged>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    repos: Arc<Mutex<BTreeMap<String, Repo>>>,
    cdn: SocketAddr,
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let hub = TcpListener::bind("127.0.0.1:0").expect("bind the fake hub");
        let cdn = TcpListener::bind("127.0.0.2:0").expect("bind the fake CDN on 127.0.0.2");
        let shared = Arc::new(Shared {
            log: Arc::default(),
            behaviour: Arc::default(),
            repos: Arc::default(),
            cdn: cdn.local_addr().unwrap(),
        });
        let endpoint = format!("http://{}", hub.local_addr().unwrap());
        for (listener, host) in [(hub, "hub"), (cdn, "cdn")] {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, host, &shared);
                    });
                }
            });
        }
        FakeHub { endpoint, log: shared.log.clone(), behaviour: shared.behaviour.clone(), repos: shared.repos.clone() }
    }

    /// Publishes the files of `dir` as repository `id` at commit `commit` (40 hex digits).
    pub fn publish(&self, id: &str, commit: &str, dir: &std::path::Path) {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.insert(name, File::new(std::fs::read(&path).unwrap()));
            }
        }
        self.repos.lock().unwrap().insert(id.to_string(), Repo { commit: commit.to_string(), files });
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

fn serve(mut conn: TcpStream, host: &'static str, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut authorization = None;
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(v.trim().to_string()),
                "range" => range = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    shared.log.lock().unwrap().push(Logged { host, method: method.clone(), path: path.clone(), authorization: authorization.clone(), range: range.clone() });
    let head_only = method == "HEAD";
    let not_found = |conn: &mut TcpStream| respond(conn, "404 Not Found", &[("X-Error-Code".into(), "EntryNotFound".into())], b"");

    if host == "hub" {
        // /{owner}/{name}/resolve/{revision}/{file}
        let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
        if segs.len() != 5 || segs[2] != "resolve" {
            return not_found(&mut conn);
        }
        let want = shared.behaviour.lock().unwrap().token.clone();
        if let Some(token) = want {
            if authorization.as_deref() != Some(&format!("Bearer {token}")) {
                return respond(&mut conn, "401 Unauthorized", &[], b"");
            }
        }
        let repos = shared.repos.lock().unwrap();
        let id = format!("{}/{}", segs[0], segs[1]);
        let Some(repo) = repos.get(&id) else { return not_found(&mut conn) };
        if segs[3] != "main" && segs[3] != repo.commit {
            return not_found(&mut conn);
        }
        let Some(file) = repo.files.get(segs[4]) else { return not_found(&mut conn) };
        let commit = ("X-Repo-Commit".to_string(), repo.commit.clone());
        if File::is_lfs(segs[4]) {
            let location = format!("http://{}/cdn/{}", shared.cdn, file.sha256);
            let headers = [
                commit,
                ("Location".into(), location),
                ("X-Linked-Etag".into(), format!("\"{}\"", file.sha256)),
                ("X-Linked-Size".into(), file.bytes.len().to_string()),
                ("Content-Length".into(), "0".into()),
            ];
            return respond(&mut conn, "302 Found", &headers, b"");
        }
        let headers = [commit, ("ETag".into(), format!("\"{}\"", file.git_sha1)), ("Content-Length".into(), file.bytes.len().to_string())];
        return respond(&mut conn, "200 OK", &headers, if head_only { b"" } else { &file.bytes });
    }

    // CDN: /cdn/{sha256} (or /signed/{sha256} after a hop)
    if shared.behaviour.lock().unwrap().cdn_hop {
        if let Some(sha) = path.strip_prefix("/cdn/") {
            return respond(&mut conn, "307 Temporary Redirect", &[("Location".into(), format!("/signed/{sha}")), ("Content-Length".into(), "0".into())], b"");
        }
    }
    let Some(sha) = path.strip_prefix("/cdn/").or_else(|| path.strip_prefix("/signed/")) else { return not_found(&mut conn) };
    let repos = shared.repos.lock().unwrap();
    let Some((name, file)) = repos.values().flat_map(|r| r.files.iter()).find(|(_, f)| f.sha256 == sha) else {
        return not_found(&mut conn);
    };
    let mut bytes = file.bytes.clone();
    let mut behaviour = shared.behaviour.lock().unwrap();
    if behaviour.corrupt.as_deref() == Some(name.as_str()) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
    }
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(bytes.len());
    let total = bytes.len();
    let body = &bytes[from..];
    let mut headers = vec![("Content-Length".to_string(), body.len().to_string())];
    let status = if range.is_some() {
        headers.push(("Content-Range".into(), format!("bytes {from}-{}/{total}", total.saturating_sub(1))));
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let cut = match &behaviour.cut {
        Some((f, n)) if f == name => Some(*n),
        _ => None,
    };
    if let Some(n) = cut {
        behaviour.cut = None;
        drop(behaviour);
        drop(repos);
        // Announce the whole body, send part of it, hang up.
        respond(&mut conn, status, &headers, &body[..n.min(body.len())])?;
        conn.flush()?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    drop(behaviour);
    drop(repos);
    respond(&mut conn, status, &headers, if head_only { b"" } else { body })?;
    // Let the client read to the end before the socket closes.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut sink = [0u8; 64];
    let _ = conn.read(&mut sink);
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &std::path::Path) -> String {
    hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}
