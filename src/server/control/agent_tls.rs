//! TLS for `wss://` agent URLs: rustls with ring (already in the tree), the
//! Mozilla roots of `webpki-roots`, and any extra roots from `--agent-ca`
//! (PEM: a private CA, or a self-signed agent's own certificate).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The client configuration every `wss://` agent connection uses.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca {
        let certs = read_pem(path)?;
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("{}: no usable CA certificate ({ignored} could not be read)", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file.
fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|e| format!("{}: not PEM certificates: {e:?}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no `BEGIN CERTIFICATE` block", path.display()));
    }
    Ok(certs)
}

/// The default: the Mozilla roots only.
pub fn default_config() -> Arc<ClientConfig> {
    client_config(None).expect("the built-in roots and ring's defaults make a TLS configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_come_from_pem_and_bad_files_say_why() {
        let dir = std::env::temp_dir().join(format!("voxline-agent-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["agent.test".into()]).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert!(client_config(Some(&good)).is_ok());
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        assert!(client_config(Some(&empty)).unwrap_err().contains("BEGIN CERTIFICATE"));
        assert!(client_config(Some(&dir.join("missing.pem"))).unwrap_err().contains("missing.pem"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(default_config().alpn_protocols.is_empty());
    }
}
