//! Parsing of user-supplied endpoint strings.

use crate::error::ClientError;

/// Turns `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (an
/// optional trailing `/` is tolerated) into the `http://HOST:PORT` URI that
/// tonic expects (whether TLS is spoken is the client's TLS setting; the
/// connector does the handshake).
///
/// `HOST` may be a name, an IPv4 address or a bracketed IPv6 address
/// (`[::1]:7000`). Anything with a path, user info or a missing/invalid port: a
/// typo should fail loudly instead of connecting somewhere unexpected.
pub(crate) fn normalize(endpoint: &str) -> Result<String, ClientError> {
    let invalid = |why: &str| ClientError::InvalidEndpoint(format!("{endpoint:?}: {why}"));
    let trimmed = endpoint.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    let authority = match trimmed.split_once("://") {
        None => trimmed,
        Some(("http" | "https", rest)) => rest,
        Some((scheme, _)) => return Err(invalid(&format!("unsupported scheme {scheme:?}"))),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '@', '?', '#']) || authority.chars().any(char::is_whitespace) {
        return Err(invalid("expected HOST:PORT"));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(invalid("missing port; expected HOST:PORT"));
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if !bracketed && (host.contains([':', '[', ']'])) {
        return Err(invalid("IPv6 addresses must be bracketed, e.g. [::1]:7000"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(invalid("port must be a number between 1 and 65535")),
    }
    Ok(format!("http://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_http_forms_are_accepted() {
        assert_eq!(
            normalize("127.0.0.1:7000").ok(),
            Some("http://127.0.0.1:7000".into())
        );
        assert_eq!(
            normalize("http://node-1:7000").ok(),
            Some("http://node-1:7000".into())
        );
        assert_eq!(
            normalize(" http://node-1:7000/ ").ok(),
            Some("http://node-1:7000".into())
        );
        assert_eq!(
            normalize("[::1]:7000").ok(),
            Some("http://[::1]:7000".into())
        );
    }

    #[test]
    fn malformed_endpoints_are_rejected() {
        for bad in [
            "",
            "node-1",
            "node-1:",
            ":7000",
            "node-1:0",
            "node-1:70000",
            "node-1:http",
            "::1:7000",
            "grpc://node-1:7000",
            "http://node-1:7000/kv",
            "user@node-1:7000",
        ] {
            assert!(
                matches!(normalize(bad), Err(ClientError::InvalidEndpoint(_))),
                "{bad:?} should be rejected"
            );
        }
    }
}
