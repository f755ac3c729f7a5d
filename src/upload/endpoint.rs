//! `aws.endpoint` must not reach the worker's own network. A request's endpoint is resolved
//! and every address it resolves to is checked: loopback, private, link-local (the cloud
//! metadata service, 169.254.169.254), shared, unspecified and other non-public addresses
//! are refused unless the operator allows the host or its network (`s3.allowed_endpoints`).
//! Checked when the job is submitted, again when a worker starts it, and at every connection
//! the job's S3 client makes ([`CheckedResolver`]): a name that resolved to a public address
//! at the check cannot resolve to an internal one later.

use std::net::IpAddr;
use std::sync::Arc;

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use ipnet::IpNet;

/// One entry of `s3.allowed_endpoints`: a host name, an address or a network (CIDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Host(String),
    Net(IpNet),
}

impl Allowed {
    pub fn parse(entry: &str) -> Allowed {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            return Allowed::Net(net);
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Allowed::Net(IpNet::from(ip));
        }
        Allowed::Host(entry.to_ascii_lowercase())
    }
}

/// Addresses that are not on the public internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            // The address reaches (or stands for) an IPv4 host: judge that host.
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                let [first, second, ..] = v6.segments();
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local
                    || (first & 0xffc0) == 0xfe80 // link-local
                    || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside sites)
                    || (first == 0x0064 && second == 0xff9b) // local-use NAT64 (64:ff9b:1::/48)
                    || (first == 0x2001 && second == 0x0000) // Teredo: the IPv4 host inside is hidden
                    || (first == 0x2001 && second == 0x0db8) // documentation
                    || (first == 0x0100 && v6.segments()[1..4] == [0, 0, 0]) // discard-only
            }
        },
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, which a NAT64 gateway forwards to that IPv4
/// host) and 6to4 (`2002:AABB:CCDD::/48`, the site behind a.b.c.d).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let tail = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4() {
        // `::1` and `::` are IPv6's own loopback and unspecified address, not IPv4 ones.
        return (!v6.is_loopback() && !v6.is_unspecified()).then_some(v4);
    }
    match s {
        [0x0064, 0xff9b, 0, 0, 0, 0, ..] => Some(tail),
        [0x2002, hi, lo, ..] => {
            Some(std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
        }
        _ => None,
    }
}

/// Refuses `endpoint` (an http(s) URL) when it resolves to an internal address the
/// operator did not allow. The message says what to fix.
pub async fn check_endpoint(endpoint: &str, allowed: &[Allowed]) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("aws.endpoint is not a URL: {e}"))?;
    // The endpoint is kept and shown as given: credentials must not ride in it.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("aws.endpoint must not hold a user name or password; send them as aws.accesskey and aws.secretkey".into());
    }
    let host = url
        .host_str()
        .ok_or("aws.endpoint has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if allowed.iter().any(|a| matches!(a, Allowed::Host(h) if *h == host)) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolve(&host, port)
            .await
            .map_err(|e| format!("aws.endpoint host {host} does not resolve: {e}"))?,
    };
    if addresses.is_empty() {
        return Err(format!("aws.endpoint host {host} does not resolve"));
    }
    match addresses.into_iter().find(|ip| refused(*ip, allowed)) {
        Some(ip) => Err(refusal(&host, ip)),
        None => Ok(()),
    }
}

/// How long a name may take to resolve: a request must not hang on a slow name server.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(found) => Ok(found?.map(|a| a.ip()).collect()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {RESOLVE_TIMEOUT:?}"),
        )),
    }
}

fn refused(ip: IpAddr, allowed: &[Allowed]) -> bool {
    is_internal(ip) && !allowed.iter().any(|a| matches!(a, Allowed::Net(n) if n.contains(&ip)))
}

fn refusal(host: &str, ip: IpAddr) -> String {
    format!(
        "aws.endpoint {host} resolves to {ip}, an internal address (loopback, private, link-local or reserved); \
         use a public endpoint, or ask the operator to allow it in s3.allowed_endpoints"
    )
}

/// The DNS resolver of a job's S3 client when the request names its own endpoint: the same
/// rule as [`check_endpoint`], applied to the addresses each connection will really use.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    allowed: Arc<Vec<Allowed>>,
}

impl CheckedResolver {
    pub fn new(allowed: Vec<Allowed>) -> Self {
        Self { allowed: Arc::new(allowed) }
    }
}

impl ResolveDns for CheckedResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let allowed = self.allowed.clone();
        let host = name.trim_end_matches('.').to_ascii_lowercase();
        DnsFuture::new(async move {
            let addresses = resolve(&host, 0).await.map_err(ResolveDnsError::new)?;
            if allowed.iter().any(|a| matches!(a, Allowed::Host(h) if *h == host)) {
                return Ok(addresses);
            }
            match addresses.iter().find(|ip| refused(**ip, &allowed)) {
                Some(ip) => Err(ResolveDnsError::new(refusal(&host, *ip))),
                None => Ok(addresses),
            }
        })
    }
}

/// The same rule for the `object_store` clients (Azure, GCS) of a request's own endpoint:
/// every connection resolves through it. (IP literals are not resolved, and were judged by
/// [`check_endpoint`] already.)
#[derive(Debug, Clone)]
pub struct GuardedResolve {
    allowed: Arc<Vec<Allowed>>,
}

impl GuardedResolve {
    pub fn new(allowed: Vec<Allowed>) -> Self {
        Self { allowed: Arc::new(allowed) }
    }
}

impl reqwest::dns::Resolve for GuardedResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let addresses = resolve(&host, 0).await?;
            let host_allowed = allowed.iter().any(|a| matches!(a, Allowed::Host(h) if *h == host));
            if let (false, Some(ip)) = (host_allowed, addresses.iter().find(|ip| refused(**ip, &allowed))) {
                return Err(refusal(&host, *ip).into());
            }
            let found: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| std::net::SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object_store clients' resolver refuses a name that answers an internal address,
    /// unless the operator allowed it.
    #[tokio::test]
    async fn the_object_store_resolver_applies_the_guard() {
        use reqwest::dns::Resolve as _;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolve::new(vec![]).resolve(name("localhost")).await.err().unwrap();
        assert!(refused.to_string().contains("internal address"), "{refused}");
        let allowed = GuardedResolve::new(vec![Allowed::parse("127.0.0.0/8"), Allowed::parse("::1/128")]);
        assert!(allowed.resolve(name("localhost")).await.is_ok());
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            // IPv4 hosts inside IPv6: compatible, NAT64, 6to4; Teredo, site-local.
            "::10.0.0.5",
            "64:ff9b::a00:5",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::1",
            "2002:a00:5::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "2001:db8::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in
            ["52.95.110.1", "8.8.8.8", "2600:1f18::1", "172.32.0.1", "64:ff9b::808:808", "2002:808:808::1"]
        {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn internal_endpoints_need_the_operators_leave() {
        let err = check_endpoint("http://169.254.169.254/latest", &[]).await.unwrap_err();
        assert!(err.contains("169.254.169.254") && err.contains("s3.allowed_endpoints"), "{err}");
        assert!(
            check_endpoint("http://localhost:4566", &[]).await.is_err(),
            "names are checked on the resolved address"
        );
        assert!(check_endpoint("http://[::1]:4566", &[]).await.is_err());
        let allowed =
            [Allowed::parse("127.0.0.0/8"), Allowed::parse("::1"), Allowed::parse("minio.internal")];
        assert!(check_endpoint("http://127.0.0.1:4566", &allowed).await.is_ok());
        assert!(check_endpoint("http://localhost:4566", &allowed).await.is_ok());
        assert!(check_endpoint("https://minio.internal:9000", &allowed).await.is_ok());
        assert!(check_endpoint("http://10.0.0.5:9000", &allowed).await.is_err());
        assert!(check_endpoint("https://52.95.110.1", &[]).await.is_ok());
    }

    #[tokio::test]
    async fn every_connection_resolves_through_the_same_rule() {
        let refusing = CheckedResolver::new(vec![]);
        let err = refusing.resolve_dns("localhost").await.unwrap_err();
        assert!(format!("{err:?}").contains("internal address"), "{err:?}");
        let allowing = CheckedResolver::new(vec![Allowed::parse("127.0.0.0/8"), Allowed::parse("::1")]);
        let ips = allowing.resolve_dns("localhost").await.unwrap();
        assert!(ips.iter().all(|ip| ip.is_loopback()) && !ips.is_empty());
    }
}
