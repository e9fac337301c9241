//! The `http` import: outgoing requests, checked against the manifest.
//!
//! Defaults: only hosts listed in `allowed_hosts` (exact names, or `*.example.com`
//! for subdomains); every address a name resolves to must be public — loopback,
//! private, link-local (cloud metadata included), shared, unspecified and
//! multicast addresses are refused unless `allow_private_network = true`; the
//! check runs inside the resolver, on every connection, so a name cannot be
//! re-pointed after the check; redirects are not followed (the connector sees
//! the 3xx and may send a new, checked request); bodies are capped at
//! `http_max_response_mib` and requests at `http_timeout_secs`.

use super::bindings::weir::connector::http::{Host, HttpError, Request, Response};
use super::HostState;
use crate::manifest::System;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// One HTTP client per policy (private networks allowed or not), shared by all systems.
#[derive(Default)]
pub(super) struct Clients {
    clients: Mutex<HashMap<bool, reqwest::Client>>,
}

impl Clients {
    pub(super) fn for_system(&self, system: &System) -> SystemClient {
        let allow_private = system.allow_private_network;
        let client = self
            .clients
            .lock()
            .expect("http clients lock")
            .entry(allow_private)
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(Arc::new(CheckedResolver { allow_private }))
                    .build()
                    .expect("http client with default TLS settings")
            })
            .clone();
        SystemClient { client }
    }
}

pub(super) struct SystemClient {
    client: reqwest::Client,
}

/// Resolves names and refuses non-public addresses.
struct CheckedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allow_private && !is_public(a.ip())) {
                return Err(format!("'{host}' resolves to non-public address {} (set allow_private_network = true to allow)", bad.ip()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether an address is on the public internet.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || s[..6] == [0; 6] // IPv4-compatible ::a.b.c.d (deprecated), :: and ::1 included
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 local use, 64:ff9b:1::/48
                || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard only, 100::/64
                || (s[0] == 0x2001 && s[1] == 0) // Teredo tunnels, 2001::/32
                || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking, 2001:2::/48
                || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010) // ORCHID, 2001:10::/28
                || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0020) // ORCHIDv2, 2001:20::/28
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0] == 0x3fff // documentation, 3fff::/20
                || s[0] == 0x5f00) // segment routing, 5f00::/16
        }
    }
}

/// The IPv4 address an IPv6 address carries where it is a form of one: an
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:aabb:ccdd::`) address. Each reaches that IPv4 address on a network
/// that routes it, so it is as public as the IPv4 address is.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let last = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(last(hi, lo)),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(last(hi, lo)),
        // :: and ::1 are not forms of 0.0.0.0 and 0.0.0.1, but neither is public either.
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) > (0, 1) => Some(last(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(last(hi, lo)),
        [0x2002, hi, lo, ..] => Some(last(hi, lo)),
        _ => None,
    }
}

/// Whether `host` matches an `allowed_hosts` entry.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => host == a,
        }
    })
}

impl HostState {
    /// Checks a request against the manifest; the error says which rule refused it.
    fn check_request(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "http request to '{url}' denied: only http and https are allowed"
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(format!(
                "http request to '{url}' denied: the URL has no host"
            ));
        };
        if !host_allowed(&self.system.allowed_hosts, host) {
            return Err(format!(
                "http request to '{host}' denied: the host is not in allowed_hosts of system '{}'",
                self.system.name
            ));
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if !self.system.allow_private_network && !is_public(ip) {
                return Err(format!("http request to '{host}' denied: non-public address (set allow_private_network = true to allow)"));
            }
        }
        Ok(())
    }
}

impl Host for HostState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let url = match reqwest::Url::parse(&req.url) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Err(HttpError::Denied(format!(
                    "bad URL '{}': {e}",
                    req.url
                ))))
            }
        };
        if let Err(message) = self.check_request(&url) {
            return Ok(Err(HttpError::Denied(self.deny(message))));
        }
        let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
            return Ok(Err(HttpError::Denied(format!(
                "bad HTTP method '{}'",
                req.method
            ))));
        };
        let mut builder = self
            .http
            .client
            .request(method, url)
            .timeout(self.system.limits.http_timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if let Some(name) = &req.credential {
            match self.system.credentials.get(name) {
                Some(c) => builder = builder.header(&c.header, &c.value),
                None => {
                    let message = format!(
                        "credential '{name}' is not declared for system '{}'",
                        self.system.name
                    );
                    return Ok(Err(HttpError::Denied(self.deny(message))));
                }
            }
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let cap = self.system.limits.http_max_response_bytes;
        let fut = async {
            let mut resp = builder.send().await?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > cap {
                    return Ok(Err(HttpError::TooLarge));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok(Response {
                status,
                headers,
                body,
            }))
        };
        let outcome = tokio::time::timeout(self.system.limits.http_timeout, fut).await;
        // A request that never connected did not reach the system.
        if !matches!(&outcome, Ok(Err(e)) if e.is_connect()) {
            self.reached = true;
        }
        Ok(match outcome {
            Err(_) => Err(HttpError::Timeout),
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_timeout() => Err(HttpError::Timeout),
            Ok(Err(e)) => {
                // Name resolution refusals come back as connect errors; report them as denials.
                let text = error_chain(&e);
                if text.contains("non-public address") {
                    Err(HttpError::Denied(
                        self.deny(format!("http request denied: {text}")),
                    ))
                } else {
                    Err(HttpError::Transport(text))
                }
            }
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        // (address, public?)
        let table = [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("0.0.0.0", false),
            ("100.64.0.1", false),
            ("198.18.0.1", false),
            ("240.0.0.1", false),
            ("93.184.216.34", true),
            ("1.1.1.1", true),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("fec0::1", false),
            ("2001:db8::1", false),
            ("3fff::1", false),
            ("100::1", false),
            ("2001:2::1", false),
            ("2001:10::1", false),
            ("2001:20::1", false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false), // Teredo
            ("5f00::1", false),
            ("ff02::1", false),
            ("2606:4700::1111", true),
            ("2a00:1450:4001:82a::200e", true),
            // IPv4-mapped
            ("::ffff:127.0.0.1", false),
            ("::ffff:7f00:1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:1.1.1.1", true),
            // IPv4-translated
            ("::ffff:0:127.0.0.1", false),
            ("::ffff:0:192.168.0.1", false),
            ("::ffff:0:1.1.1.1", true),
            // IPv4-compatible
            ("::127.0.0.1", false),
            ("::7f00:1", false),
            ("::10.0.0.1", false),
            ("::a9fe:a9fe", false),
            ("::0.0.0.2", false),
            ("::1.1.1.1", true),
            // NAT64, well-known and local-use prefixes
            ("64:ff9b::127.0.0.1", false),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::192.168.1.1", false),
            ("64:ff9b::1.1.1.1", true),
            ("64:ff9b:1::1.1.1.1", false),
            // 6to4
            ("2002:7f00:1::", false),
            ("2002:a00:1::1", false),
            ("2002:c0a8:101::1", false),
            ("2002:a9fe:a9fe::", false),
            ("2002:101:101::1", true),
        ];
        for (ip, public) in table {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(addr), public, "{ip} public: expected {public}");
        }
    }

    #[test]
    fn allow_list_matching() {
        let allowed = vec!["api.example.com".to_string(), "*.shop.test".to_string()];
        assert!(host_allowed(&allowed, "api.example.com"));
        assert!(host_allowed(&allowed, "API.example.com."));
        assert!(host_allowed(&allowed, "eu.shop.test"));
        assert!(!host_allowed(&allowed, "shop.test"));
        assert!(!host_allowed(&allowed, "evilshop.test"));
        assert!(!host_allowed(&allowed, "example.com"));
        assert!(!host_allowed(&allowed, "api.example.com.evil.net"));
    }
}
