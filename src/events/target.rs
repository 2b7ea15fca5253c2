//! Where webhooks may go: never inside the network the engine runs in (loopback, private,
//! link-local, carrier-grade NAT, unique-local, multicast, reserved and documentation ranges,
//! and the IPv4-mapped or -translated IPv6 forms of those), unless the operator allows private
//! targets; and never to the engine itself, whatever the operator allows.
//!
//! A URL's host is resolved once per request, every address is checked, and the request is made
//! only to the addresses checked (see [`super::Webhooks::send`]), so a name cannot resolve to a
//! public address for the check and to an internal one for the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long resolving an endpoint's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a webhook may not be sent to an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{host} is {ip}, {kind}; webhooks are not sent to internal addresses")]
    Internal {
        host: String,
        ip: IpAddr,
        kind: &'static str,
    },
    #[error("{host} leads back to this engine")]
    Engine { host: String },
}

/// Which destinations are allowed.
#[derive(Debug, Clone, Copy)]
pub struct TargetPolicy {
    /// Loopback, private and the other internal ranges allowed (self-hosted set-ups).
    pub allow_private: bool,
    /// The engine's own listening address: always refused.
    pub engine: SocketAddr,
}

impl TargetPolicy {
    /// Checks one resolved address of `host`.
    pub fn check(&self, host: &str, addr: SocketAddr) -> Result<(), Refused> {
        if self.is_engine(addr) {
            return Err(Refused::Engine { host: host.into() });
        }
        if let Some(kind) = internal(addr.ip())
            && !(self.allow_private && kind.allowable)
        {
            return Err(Refused::Internal {
                host: host.into(),
                ip: addr.ip(),
                kind: kind.name,
            });
        }
        Ok(())
    }

    /// Checks every address; the first refusal wins.
    pub fn check_all(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), Refused> {
        addrs.iter().try_for_each(|a| self.check(host, *a))
    }

    /// Whether `addr` reaches this engine's listener: its port on its own address, on loopback,
    /// or (when it listens on every interface) on any address of this machine, which is one a
    /// socket can be bound to. IPv4-mapped IPv6 forms count as their IPv4 address.
    fn is_engine(&self, addr: SocketAddr) -> bool {
        if addr.port() != self.engine.port() {
            return false;
        }
        let ip = canonical(addr.ip());
        let engine = canonical(self.engine.ip());
        ip == engine
            || ip.is_loopback()
            || ip.is_unspecified()
            || (engine.is_unspecified()
                && std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
    }
}

/// What a destination URL resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub url: reqwest::Url,
    /// The host as written (a name, or an address literal).
    pub host: String,
    /// Whether the host is a name (then `addrs` is what it resolved to).
    pub is_name: bool,
    pub addrs: Vec<SocketAddr>,
}

/// Why a URL cannot be sent to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("could not resolve {0}")]
    Unresolved(String),
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// Parses `raw` as a webhook URL: http(s), a host, no credentials. Address literals in any form
/// the URL standard accepts (`http://2130706433/`, `http://0x7f.1/`) are normalised by the parser
/// to the address they mean.
pub fn parse(raw: &str) -> Result<reqwest::Url, TargetError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|_| TargetError::Invalid("must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Invalid("must be an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(TargetError::Invalid("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Invalid("must not contain credentials"));
    }
    Ok(url)
}

/// Parses and resolves `raw` (once), checking every address against `policy`.
pub async fn resolve(raw: &str, policy: &TargetPolicy) -> Result<Resolved, TargetError> {
    let url = parse(raw)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let (host, is_name, addrs) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (
            ip.to_string(),
            false,
            vec![SocketAddr::new(ip.into(), port)],
        ),
        Some(url::Host::Ipv6(ip)) => (
            format!("[{ip}]"),
            false,
            vec![SocketAddr::new(ip.into(), port)],
        ),
        Some(url::Host::Domain(name)) => {
            let name = name.to_owned();
            let lookup = tokio::net::lookup_host((name.clone(), port));
            let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => Vec::new(),
            };
            if addrs.is_empty() {
                return Err(TargetError::Unresolved(name));
            }
            (name, true, addrs)
        }
        None => return Err(TargetError::Invalid("must name a host")),
    };
    policy.check_all(&host, &addrs)?;
    Ok(Resolved {
        url,
        host,
        is_name,
        addrs,
    })
}

/// A kind of internal address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    /// Whether `allow_private_targets` lets webhooks reach it (unspecified, multicast and
    /// broadcast addresses are never a receiver).
    pub allowable: bool,
}

const fn kind(name: &'static str) -> Option<Kind> {
    Some(Kind {
        name,
        allowable: true,
    })
}

const fn never(name: &'static str) -> Option<Kind> {
    Some(Kind {
        name,
        allowable: false,
    })
}

/// The address an IPv6 address stands for when it embeds an IPv4 one (mapped, compatible,
/// NAT64, 6to4); otherwise the address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated; not :: or ::1).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix) and ::ffff:0:a.b.c.d (SIIT translated).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // 2002:aabb:ccdd::/48 (6to4).
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// What kind of internal address `ip` is, or `None` for a public one.
pub fn internal(ip: IpAddr) -> Option<Kind> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<Kind> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() {
        never("the unspecified address")
    } else if ip.is_broadcast() {
        never("the broadcast address")
    } else if ip.is_multicast() {
        never("a multicast address")
    } else if a == 0 {
        kind("a \"this network\" address")
    } else if ip.is_loopback() {
        kind("a loopback address")
    } else if ip.is_private() {
        kind("a private address")
    } else if ip.is_link_local() {
        kind("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        kind("a carrier-grade NAT address")
    } else if a == 192 && b == 0 && c == 0 {
        kind("an IETF protocol assignment")
    } else if ip.is_documentation() {
        kind("a documentation address")
    } else if a == 198 && (18..20).contains(&b) {
        kind("a benchmarking address")
    } else if a >= 240 {
        kind("a reserved address")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<Kind> {
    let s = ip.segments();
    if ip.is_unspecified() {
        never("the unspecified address")
    } else if ip.is_multicast() {
        never("a multicast address")
    } else if ip.is_loopback() {
        kind("a loopback address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        kind("a unique-local address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        kind("a link-local address")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        kind("a site-local address")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        kind("a documentation address")
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        // 2001::/23: Teredo (which tunnels to an IPv4 address), benchmarking, ORCHID.
        kind("an IETF protocol assignment")
    } else if s[0] == 0x0064 && s[1] == 0xff9b {
        // 64:ff9b:1::/48, NAT64 for local use.
        kind("a translated address")
    } else if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 {
        kind("a discard-only address")
    } else if s[0] == 0 {
        // Anything else in ::/16 is reserved.
        kind("a reserved address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_and_their_ipv6_forms_are_recognised() {
        for internal_ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.5",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2001::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(internal(ip(internal_ip)).is_some(), "{internal_ip}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(internal(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_switch_allows_private_targets_but_never_the_engine_or_multicast() {
        let engine: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let strict = TargetPolicy {
            allow_private: false,
            engine,
        };
        let open = TargetPolicy {
            allow_private: true,
            engine,
        };
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        for addr in ["127.0.0.1:9000", "10.0.0.1:80", "[::ffff:127.0.0.1]:9000"] {
            assert!(strict.check("h", at(addr)).is_err(), "{addr}");
            assert_eq!(open.check("h", at(addr)), Ok(()), "{addr}");
        }
        for addr in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            "0.0.0.0:8080",
        ] {
            assert_eq!(
                open.check("h", at(addr)),
                Err(Refused::Engine { host: "h".into() }),
                "{addr}"
            );
        }
        assert!(open.check("h", at("224.0.0.1:80")).is_err());
        assert!(open.check("h", at("0.0.0.0:80")).is_err());
        assert_eq!(strict.check("h", at("93.184.216.34:443")), Ok(()));
        // One internal address among public ones refuses the whole answer (a name that
        // resolves to several addresses is checked whole, not by its first address).
        assert!(
            strict
                .check_all("h", &[at("93.184.216.34:443"), at("10.1.2.3:443")])
                .is_err()
        );
    }

    #[tokio::test]
    async fn address_literals_in_every_spelling_are_checked() {
        let strict = TargetPolicy {
            allow_private: false,
            engine: "127.0.0.1:8080".parse().unwrap(),
        };
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:9000/",
        ] {
            let error = resolve(url, &strict).await.unwrap_err();
            assert!(
                matches!(error, TargetError::Refused(Refused::Internal { .. })),
                "{url}: {error}"
            );
        }
        let public = resolve("http://93.184.216.34:8443/x", &strict)
            .await
            .unwrap();
        assert_eq!(public.addrs, vec!["93.184.216.34:8443".parse().unwrap()]);
        assert!(!public.is_name);
    }
}
