//! The HTTP client of the command-line clients (`forwarder jobs`, `forwarder export`).

use std::path::Path;

use anyhow::Context as _;

/// A client builder that also trusts the certificates of `ca` (a PEM bundle), for a server
/// whose certificate no public authority signed.
pub fn client_trusting(ca: Option<&Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut http = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read --ca {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).ok().filter(|c| !c.is_empty()).with_context(
            || format!("--ca {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", ca.display()),
        )?;
        for cert in certs {
            http = http.add_root_certificate(cert);
        }
    }
    Ok(http)
}
