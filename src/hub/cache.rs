//! The cache on disk: one download of a blob at a time, the check of a
//! finished download against the hash the hub names it by, and the snapshot
//! links to the blobs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha1::Digest as _;

use super::{io_err, is_hex, HubError};

/// An exclusive lock on one blob's download, in `.locks/` as `huggingface_hub`
/// keeps them; released when dropped (or when the process dies).
pub(super) struct BlobLock(#[allow(dead_code)] File);

impl BlobLock {
    pub(super) fn take(cache: &Path, repo_dir: &Path, etag: &str) -> Result<Self, HubError> {
        let dir = cache.join(".locks").join(repo_dir.file_name().unwrap_or_default());
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(format!("{etag}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is shared.
            while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(HubError::Io { path, source: e });
                }
            }
        }
        Ok(Self(file))
    }
}

/// The hash the hub names a file by, computed over the downloaded file: SHA-256
/// for LFS files (64 hex digits), the git blob SHA-1 for the rest (40). `None`
/// when the ETag is neither.
pub(super) fn content_hash(path: &Path, etag: &str, size: u64) -> io::Result<Option<(&'static str, String)>> {
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    fn feed(path: &Path, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        let mut file = File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buf)? {
                0 => return Ok(()),
                n => f(&buf[..n]),
            }
        }
    }
    if is_hex(etag, 64) {
        let mut h = sha2::Sha256::new();
        feed(path, |b| h.update(b))?;
        Ok(Some(("SHA-256", hex(&h.finalize()))))
    } else if is_hex(etag, 40) {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        feed(path, |b| h.update(b))?;
        Ok(Some(("git SHA-1", hex(&h.finalize()))))
    } else {
        Ok(None)
    }
}

/// `snapshots/<commit>/<file>` pointing at the blob (a relative symlink, as
/// `huggingface_hub` makes it; a copy where links are not possible). Made
/// under a temporary name and renamed into place, so another process linking
/// the same file at the same time never sees it missing, and nothing is ever
/// written through an existing link (which would truncate the blob).
pub(super) fn link(blob: &Path, snapshot: &Path, file: &str) -> Result<(), HubError> {
    let at = snapshot.join(file);
    let parent = at.parent().unwrap_or(snapshot);
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = at.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    #[cfg(unix)]
    let made = {
        // snapshots/<commit>/a/b.bin -> ../../../blobs/<etag>
        let mut target = PathBuf::new();
        for _ in 0..Path::new(file).components().count() + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(&target, &tmp).is_ok()
    };
    #[cfg(not(unix))]
    let made = false;
    if !made {
        fs::copy(blob, &tmp).map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &at).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        HubError::Io { path: at.clone(), source }
    })
}
