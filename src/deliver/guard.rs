//! The private-address guard of hooks registered through the API (SSRF): their URL must
//! not reach loopback, private, link-local or otherwise non-public addresses, unless
//! `api.allow_private_targets`. Checked at registration (`check_url`) and again at every
//! attempt: the hook's client resolves names through `PublicOnly`, which hands the
//! connector only the addresses it checked (DNS may change between the two), and an IP
//! literal is checked before the request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why an address is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("a site-local address (deprecated, private)")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("a documentation address")
            } else if s[0] == 0x2001 && s[1] == 0 {
                // Teredo: a tunnel to wherever its obfuscated IPv4 client leads.
                Some("a Teredo tunnel address")
            } else if s[..6] == [0, 0, 0, 0, 0, 0] {
                // IPv4-compatible (::a.b.c.d, deprecated): never a public route.
                Some("an IPv4-compatible address (deprecated)")
            } else if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
                // IPv4-translated (::ffff:0:a.b.c.d): the IPv4 address decides.
                Some(non_public_v4(v4_of(s[6], s[7])).unwrap_or("an IPv4-translated address"))
            } else if s[0] == 0x2002 {
                // 6to4: the IPv4 address it embeds decides.
                non_public_v4(v4_of(s[1], s[2]))
            } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 {
                Some("a local-use NAT64 address")
            } else if s[0] == 0x0064 && s[1] == 0xff9b {
                // NAT64: the IPv4 address it carries decides.
                non_public_v4(v4_of(s[6], s[7]))
            } else {
                None
            }
        }
    }
}

/// The IPv4 address in two 16-bit segments.
fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("a \"this network\" address")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("a broadcast, multicast or reserved address")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_documentation() || (o[0] == 198 && (o[1] & 0xfe) == 18) {
        Some("a documentation or benchmarking address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol address")
    } else {
        None
    }
}

/// Resolves `host` (a name or an IP literal) to its addresses. Debug builds first read
/// `$DEPLOYHOOK_DEBUG_HOSTS_FILE` (`/etc/hosts` syntax), so tests can make a name
/// resolve where they want without touching the machine's resolver.
pub async fn lookup(host: &str) -> std::io::Result<Vec<IpAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    #[cfg(debug_assertions)]
    if let Some(ips) = debug_hosts(bare) {
        return Ok(ips);
    }
    let addrs = tokio::net::lookup_host((bare, 0)).await?;
    Ok(addrs.map(|a| a.ip()).collect())
}

#[cfg(debug_assertions)]
fn debug_hosts(name: &str) -> Option<Vec<IpAddr>> {
    let path = std::env::var_os("DEPLOYHOOK_DEBUG_HOSTS_FILE")?;
    let text = std::fs::read_to_string(path).ok()?;
    let ips: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip = words.next()?.parse::<IpAddr>().ok()?;
            words.any(|w| w.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect();
    (!ips.is_empty()).then_some(ips)
}

/// Checks that every address `url`'s host resolves to is public; `Err` says why not.
pub async fn check_url(url: &url::Url) -> Result<(), String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let ips = lookup(host)
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?;
    if ips.is_empty() {
        return Err(format!("{host} does not resolve to any address"));
    }
    check_ips(host, &ips)
}

fn check_ips(host: &str, ips: &[IpAddr]) -> Result<(), String> {
    for ip in ips {
        if let Some(why) = non_public(*ip) {
            return Err(if host.trim_matches(['[', ']']) == ip.to_string() {
                format!("{ip} is {why}")
            } else {
                format!("{host} resolves to {ip}, {why}")
            });
        }
    }
    Ok(())
}

/// A resolver for reqwest that returns only public addresses (and fails, saying why,
/// when a name has any other): the connector connects to exactly what was checked.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = lookup(&host).await?;
            check_ips(&host, &ips).map_err(|why| -> Box<dyn std::error::Error + Send + Sync> {
                format!("refused: {why} (api.allow_private_targets is false)").into()
            })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// For an IP-literal URL (no resolver is asked): why it is refused, if it is.
pub fn refuse_literal(url: &url::Url) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    non_public(ip).map(|why| format!("refused: {ip} is {why} (api.allow_private_targets is false)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_reserved_are_refused_public_ones_pass() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            // Every IPv6 form that embeds or reaches a private IPv4 address.
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001::7f00:1",
            "fec0::1",
            "64:ff9b:1::a00:1",
        ] {
            let ip: IpAddr = bad.parse().unwrap_or_else(|e| panic!("{bad}: {e}"));
            assert!(non_public(ip).is_some(), "{bad} passed");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::101:101",
            "2002:5db8:d822::1",
        ] {
            let ip: IpAddr = good.parse().unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(non_public(ip), None, "{good} refused");
        }
    }
}
