//! TLS for PostgreSQL connections, with libpq's `sslmode` meanings:
//!
//! | `sslmode`                | what happens                                            |
//! |--------------------------|---------------------------------------------------------|
//! | absent, `disable`, `prefer`, `allow` | plain TCP (fastest on a trusted network)     |
//! | `require`                | TLS, certificate not verified (libpq's `require`)       |
//! | `verify-ca`, `verify-full` | TLS, chain and host name verified against the system's CA certificates plus `sslrootcert=FILE` (PEM); `verify-ca` is checked as strictly as `verify-full` |
//!
//! tokio-postgres itself knows only disable/prefer/require, so the URL is
//! rewritten (`verify-*` → `require`, `sslrootcert` removed) before it is
//! parsed, and the rustls configuration carries the verification.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a connection is secured.
pub enum Tls {
    Plain,
    /// Encrypted, the server's certificate not checked.
    Encrypt,
    /// Encrypted and verified, with extra trusted roots from `sslrootcert`.
    Verify {
        root_cert: Option<String>,
    },
}

/// Split the URL into what tokio-postgres accepts and the TLS mode.
pub fn parse(url: &str) -> (String, Tls) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Tls::Plain);
    };
    let mut mode = Tls::Plain;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("sslmode", "require") => {
                mode = Tls::Encrypt;
                kept.push("sslmode=require".to_string());
            }
            ("sslmode", "verify-ca" | "verify-full") => {
                mode = Tls::Verify { root_cert: None };
                kept.push("sslmode=require".to_string());
            }
            ("sslmode", _) => kept.push("sslmode=disable".to_string()),
            ("sslrootcert", path) => {
                root_cert = Some(
                    percent_encoding::percent_decode_str(path)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            }
            _ => kept.push(pair.to_string()),
        }
    }
    if let Tls::Verify { root_cert: r } = &mut mode {
        *r = root_cert;
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, mode)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for a mode (`None` for plain connections).
pub fn client_config(mode: &Tls) -> Result<Option<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    match mode {
        Tls::Plain => Ok(None),
        Tls::Encrypt => Ok(Some(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
                .with_no_client_auth(),
        )),
        Tls::Verify { root_cert } => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if let Some(path) = root_cert {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                for c in certs {
                    roots
                        .add(c.map_err(|e| format!("sslrootcert {path}: {e}"))?)
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(Some(
                builder.with_root_certificates(roots).with_no_client_auth(),
            ))
        }
    }
}

/// `sslmode=require`: encrypt, trust any certificate (as libpq does).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_are_rewritten() {
        let (u, m) = parse(
            "postgres://h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        );
        assert_eq!(u, "postgres://h/db?sslmode=require&application_name=x");
        assert!(matches!(m, Tls::Verify { root_cert: Some(p) } if p == "/tmp/ca.pem"));
        let (u, m) = parse("postgres://h/db?sslmode=prefer");
        assert_eq!(u, "postgres://h/db?sslmode=disable");
        assert!(matches!(m, Tls::Plain));
        assert!(matches!(
            parse("postgres://h/db?sslmode=require").1,
            Tls::Encrypt
        ));
        assert!(matches!(parse("postgres://h/db").1, Tls::Plain));
    }
}
