//! Model repositories from the Hugging Face hub, kept in the hub's own cache.
//!
//! [`Hub::snapshot`] makes a repository's files present locally and returns
//! the snapshot directory. It uses the cache layout of the Python
//! `huggingface_hub` library, so a model downloaded by either is found by the
//! other:
//!
//! ```text
//! $HF_HUB_CACHE/models--ResembleAI--chatterbox-turbo/
//!     blobs/<etag>                      the file contents, named by their hash
//!     snapshots/<commit>/<file>         -> ../../blobs/<etag>
//!     refs/main                         <commit>
//! ```
//!
//! Each file is resolved with a `HEAD` on `{endpoint}/{repo}/resolve/{revision}/{file}`
//! (the answer names the commit, the content hash and the size; large files
//! redirect to a CDN), then fetched into `blobs/<etag>.incomplete`, resuming a
//! partial download with a `Range` request. A finished download is checked
//! before it is kept: its size, and its hash where the hub names one
//! (SHA-256 for LFS files, the git blob SHA-1 for small ones). A corrupt
//! download is removed and reported, never used.
//!
//! Environment, as `huggingface_hub` reads it: `HF_ENDPOINT` (default
//! `https://huggingface.co`), `HF_HUB_CACHE` or `HF_HOME` (default
//! `~/.cache/huggingface`), `HF_TOKEN` (or the token file `huggingface-cli
//! login` writes) and `HF_HUB_OFFLINE=1` (use the cache only). `HTTPS_PROXY`
//! is honoured. When the hub cannot be reached, a complete cached snapshot of
//! the revision is used instead.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cache::{content_hash, link, BlobLock};
pub use progress::{human_bytes, Progress, StderrProgress};

mod cache;
mod progress;

/// Where files come from when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What can go wrong fetching a repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error("`{0}` is not a Hugging Face repository id (owner/name)")]
    BadRepo(String),
    #[error("`{0}` is not a usable revision (a branch, tag or commit)")]
    BadRevision(String),
    #[error(
        "cannot reach the Hugging Face hub at {url}: {reason}. Set HF_ENDPOINT for a mirror, \
         or download the repository elsewhere and pass its directory with --model-dir"
    )]
    Unreachable { url: String, reason: String },
    #[error("{repo} has no file {file} at revision {revision} (HTTP 404 from {url})")]
    NotFound { repo: String, revision: String, file: String, url: String },
    #[error(
        "the hub refused {url} (HTTP {status}): the repository is private or gated, or the token is wrong. \
         Accept its terms on huggingface.co and set HF_TOKEN (or run `huggingface-cli login`)"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("the hub answered {url} with HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the hub's answer for {url} is unusable: {reason}")]
    Protocol { url: String, reason: String },
    #[error(
        "{file} from {repo} arrived corrupt ({what}: expected {expected}, got {got}); \
         the download was removed, run the command again"
    )]
    Corrupt { repo: String, file: String, what: &'static str, expected: String, got: String },
    #[error(
        "the download of {file} from {repo} stopped at {got} of {expected} bytes ({reason}); \
         run the command again to resume it"
    )]
    Interrupted { repo: String, file: String, got: u64, expected: u64, reason: String },
    #[error(
        "{repo} at revision {revision} is not in the cache {cache} (missing: {missing}) \
         and HF_HUB_OFFLINE is set: unset it to download, or pass --model-dir"
    )]
    NotCached { repo: String, revision: String, cache: PathBuf, missing: String },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HubError + '_ {
    move |source| HubError::Io { path: path.to_path_buf(), source }
}

/// The files a caller needs from a repository.
#[derive(Debug, Clone, Copy)]
pub struct FileSet<'a> {
    /// Files that must exist.
    pub required: &'a [&'a str],
    /// Files used when the repository has them (a 404 is not an error).
    pub optional: &'a [&'a str],
}

/// A client for the hub and its local cache.
pub struct Hub {
    endpoint: String,
    cache: PathBuf,
    token: Option<String>,
    offline: bool,
    agent: ureq::Agent,
}

/// What the hub says about one file.
struct Remote {
    commit: String,
    etag: String,
    size: u64,
    /// Where the bytes are (the CDN for large files).
    download: String,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn is_truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_repo(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn valid_revision(rev: &str) -> bool {
    !rev.is_empty()
        && rev.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && rev.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// The scheme and authority of a URL (`https://huggingface.co`).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Where a `Location` from `url` points: a path stays on `url`'s origin.
fn redirected(url: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{}{location}", origin(url))
    } else {
        location.to_string()
    }
}

fn header(resp: &ureq::Response, name: &str) -> Option<String> {
    resp.header(name).map(|v| v.trim().trim_start_matches("W/").trim_matches('"').to_string()).filter(|v| !v.is_empty())
}

impl Hub {
    /// A client configured from the environment (see the module docs).
    pub fn from_env() -> Self {
        let home = env_nonempty("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = env_nonempty("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env_nonempty("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            cache.join("huggingface")
        });
        let cache = env_nonempty("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|| home.join("hub"));
        let token = env_nonempty("HF_TOKEN").or_else(|| {
            let t = fs::read_to_string(home.join("token")).ok()?;
            Some(t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = env_nonempty("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v));
        let endpoint = env_nonempty("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(&endpoint, cache, token, offline)
    }

    pub fn new(endpoint: &str, cache: PathBuf, token: Option<String>, offline: bool) -> Self {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .try_proxy_from_env(true)
            .user_agent(concat!("voxline/", env!("CARGO_PKG_VERSION")))
            .build();
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), cache, token, offline, agent }
    }

    /// The cache directory (`.../huggingface/hub`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// Makes `files` of `repo` at `revision` present in the cache and returns
    /// the snapshot directory that holds them (optional files only where the
    /// repository has them).
    pub fn snapshot(
        &self,
        repo: &str,
        revision: &str,
        files: FileSet<'_>,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, HubError> {
        if !valid_repo(repo) {
            return Err(HubError::BadRepo(repo.to_string()));
        }
        if !valid_revision(revision) {
            return Err(HubError::BadRevision(revision.to_string()));
        }
        if self.offline {
            return self.cached_snapshot(repo, revision, files);
        }
        match self.fetch_snapshot(repo, revision, files, progress) {
            Err(HubError::Unreachable { url, reason }) => match self.cached_snapshot(repo, revision, files) {
                Ok(dir) => {
                    eprintln!("hub: cannot reach {url} ({reason}); using the cached copy at {}", dir.display());
                    Ok(dir)
                }
                Err(_) => Err(HubError::Unreachable { url, reason }),
            },
            other => other,
        }
    }

    /// A complete snapshot already in the cache.
    fn cached_snapshot(&self, repo: &str, revision: &str, files: FileSet<'_>) -> Result<PathBuf, HubError> {
        let repo_dir = self.repo_dir(repo);
        let commit = if is_hex(revision, 40) {
            Some(revision.to_string())
        } else {
            fs::read_to_string(repo_dir.join("refs").join(revision)).ok().map(|c| c.trim().to_string())
        };
        let not_cached = |missing: String| HubError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
            cache: self.cache.clone(),
            missing,
        };
        let Some(commit) = commit.filter(|c| is_hex(c, 40)) else {
            return Err(not_cached(format!("refs/{revision}")));
        };
        let dir = repo_dir.join("snapshots").join(&commit);
        let missing: Vec<&str> = files.required.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
        if !missing.is_empty() {
            return Err(not_cached(missing.join(", ")));
        }
        Ok(dir)
    }

    fn fetch_snapshot(
        &self,
        repo: &str,
        revision: &str,
        files: FileSet<'_>,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, HubError> {
        let repo_dir = self.repo_dir(repo);
        // The first answer fixes the commit; every other file is asked for at
        // that commit, so a push during the download cannot mix two versions.
        let mut commit: Option<String> = None;
        let wanted = files.required.iter().map(|f| (*f, true)).chain(files.optional.iter().map(|f| (*f, false)));
        for (file, required) in wanted {
            let rev = commit.as_deref().unwrap_or(revision);
            let remote = match self.resolve(repo, rev, file) {
                Ok(r) => r,
                Err(HubError::NotFound { .. }) if !required => continue,
                Err(e) => return Err(e),
            };
            let commit = commit.get_or_insert_with(|| remote.commit.clone());
            let blob = self.fetch_blob(repo, &repo_dir, file, &remote, progress)?;
            link(&blob, &repo_dir.join("snapshots").join(commit.as_str()), file)?;
        }
        let Some(commit) = commit else {
            // Only optional files were asked for and none exists.
            return Ok(repo_dir.join("snapshots").join(revision));
        };
        if revision != commit {
            let r = repo_dir.join("refs").join(revision);
            if let Some(parent) = r.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::write(&r, &commit).map_err(io_err(&r))?;
        }
        Ok(repo_dir.join("snapshots").join(commit))
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let mut req = self.agent.request(method, url);
        if let Some(token) = &self.token {
            // The token goes to the hub only, never to the CDN a file redirects to.
            if origin(url) == origin(&self.endpoint) {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
        }
        req
    }

    fn call(&self, req: ureq::Request, url: &str) -> Result<ureq::Response, HubError> {
        match req.call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status @ (401 | 403), _)) => Err(HubError::Unauthorized { url: url.to_string(), status }),
            Err(ureq::Error::Status(status, _)) => Err(HubError::Status { url: url.to_string(), status }),
            Err(ureq::Error::Transport(t)) => {
                let reason = match t.message() {
                    Some(m) => format!("{}: {m}", t.kind()),
                    None => t.kind().to_string(),
                };
                Err(HubError::Unreachable { url: url.to_string(), reason })
            }
        }
    }

    /// `HEAD` on the file's resolve URL: commit, hash, size and where to download.
    fn resolve(&self, repo: &str, revision: &str, file: &str) -> Result<Remote, HubError> {
        let rev = revision.replace('/', "%2F");
        let first = format!("{}/{repo}/resolve/{rev}/{file}", self.endpoint);
        let mut url = first.clone();
        for _ in 0..5 {
            let req = self.request("HEAD", &url).set("Accept-Encoding", "identity");
            let resp = match self.call(req, &url) {
                Err(HubError::Status { status: 404, url }) => {
                    return Err(HubError::NotFound {
                        repo: repo.to_string(),
                        revision: revision.to_string(),
                        file: file.to_string(),
                        url,
                    })
                }
                other => other?,
            };
            let protocol = |reason: &str| HubError::Protocol { url: url.clone(), reason: reason.to_string() };
            let redirect = (300..400).contains(&resp.status());
            let location = header(&resp, "location");
            if redirect {
                // A relative redirect is the hub itself (a renamed repository): follow it.
                if let Some(loc) = location.as_deref().filter(|l| l.starts_with('/')) {
                    url = redirected(&url, loc);
                    continue;
                }
            }
            let commit = header(&resp, "x-repo-commit").ok_or_else(|| protocol("no X-Repo-Commit header"))?;
            if !is_hex(&commit, 40) {
                return Err(protocol("X-Repo-Commit is not a commit hash"));
            }
            let etag = header(&resp, "x-linked-etag")
                .or_else(|| header(&resp, "etag"))
                .ok_or_else(|| protocol("no ETag header"))?;
            if etag.len() > 128 || !etag.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                return Err(protocol("the ETag is not a plain hash"));
            }
            let size = header(&resp, "x-linked-size")
                .or_else(|| header(&resp, "content-length"))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| protocol("no file size (X-Linked-Size or Content-Length)"))?;
            let download = match (redirect, location) {
                (true, Some(loc)) => loc,
                (true, None) => return Err(protocol("a redirect without a Location")),
                (false, _) => url.clone(),
            };
            return Ok(Remote { commit, etag, size, download });
        }
        Err(HubError::Protocol { url: first, reason: "too many redirects".into() })
    }

    /// The file's blob in the cache, downloaded and checked if it is not there.
    fn fetch_blob(
        &self,
        repo: &str,
        repo_dir: &Path,
        file: &str,
        remote: &Remote,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, HubError> {
        let blobs = repo_dir.join("blobs");
        let blob = blobs.join(&remote.etag);
        let present = |blob: &Path| fs::metadata(blob).is_ok_and(|m| m.is_file() && m.len() == remote.size);
        if present(&blob) {
            progress.ready(file, remote.size, false);
            return Ok(blob);
        }
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        // One download of a blob at a time (two servers starting together):
        // the second waits here, then finds the blob.
        let _lock = BlobLock::take(&self.cache, repo_dir, &remote.etag)?;
        if present(&blob) {
            progress.ready(file, remote.size, false);
            return Ok(blob);
        }
        let part = blobs.join(format!("{}.incomplete", remote.etag));
        let mut have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if have > remote.size {
            have = 0;
        }
        let mut out = OpenOptions::new().create(true).write(true).truncate(false).open(&part).map_err(io_err(&part))?;

        let interrupted = |got: u64, reason: String| HubError::Interrupted {
            repo: repo.to_string(),
            file: file.to_string(),
            got,
            expected: remote.size,
            reason,
        };
        if have < remote.size {
            // The CDN may redirect again (a signed URL); follow a few hops.
            let mut url = remote.download.clone();
            let mut hops = 0;
            let resp = loop {
                let mut req = self.request("GET", &url);
                if have > 0 {
                    req = req.set("Range", &format!("bytes={have}-"));
                }
                let resp = self.call(req, &url)?;
                match header(&resp, "location").filter(|_| (300..400).contains(&resp.status())) {
                    Some(loc) if hops < 5 => {
                        url = redirected(&url, &loc);
                        hops += 1;
                    }
                    _ => break resp,
                }
            };
            if resp.status() != 206 {
                have = 0; // the server sent the whole file
            }
            if resp.status() >= 300 {
                return Err(HubError::Status { url, status: resp.status() });
            }
            out.set_len(have).map_err(io_err(&part))?;
            out.seek(SeekFrom::Start(have)).map_err(io_err(&part))?;
            progress.start(file, remote.size, have);
            let mut reader = resp.into_reader().take(remote.size - have + 1);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        out.flush().map_err(io_err(&part))?;
                        return Err(interrupted(have, e.to_string()));
                    }
                };
                out.write_all(&buf[..n]).map_err(io_err(&part))?;
                have += n as u64;
                progress.advance(file, have.min(remote.size), remote.size);
            }
            out.flush().map_err(io_err(&part))?;
        }
        drop(out);

        let corrupt = |what: &'static str, expected: String, got: String| {
            let _ = fs::remove_file(&part);
            HubError::Corrupt { repo: repo.to_string(), file: file.to_string(), what, expected, got }
        };
        if have < remote.size {
            return Err(interrupted(have, "the connection closed early".into()));
        }
        if have > remote.size {
            return Err(corrupt("size", remote.size.to_string(), format!("more than {}", remote.size)));
        }
        if let Some((what, got)) = content_hash(&part, &remote.etag, remote.size).map_err(io_err(&part))? {
            if got != remote.etag.to_ascii_lowercase() {
                return Err(corrupt(what, remote.etag.clone(), got));
            }
        }
        fs::rename(&part, &blob).map_err(io_err(&blob))?;
        progress.ready(file, remote.size, true);
        Ok(blob)
    }
}
#[cfg(test)]
mod tests;
