//! Which local executable stands in for a container image. There is no
//! container runtime here: an image is only a name that selects a program
//! already on this machine, which plays the image's entrypoint.

use std::path::{Path, PathBuf};

/// Maps container images to executables on this machine.
///
/// A rule names an image *repository* — the image reference without its tag
/// (`:tag`) or digest (`@sha256:…`). An image matches a rule when its
/// repository equals the rule's, or when the repository's last path segment
/// does, so a rule for `cairn` matches `cairn:1.2`, `ghcr.io/acme/cairn@sha256:…`
/// and `localhost:5000/cairn`. The first matching rule wins.
///
/// ```
/// use cairn_kubesim::kubelet::ImageMap;
/// let images = ImageMap::new()
///     .with_repository("cairn", "/usr/local/bin/cairn-node")
///     .with_repository("python", "python3");
/// assert_eq!(images.resolve("ghcr.io/acme/cairn:0.3").map(|p| p.to_str()), Some(Some("/usr/local/bin/cairn-node")));
/// assert_eq!(images.resolve("python:3").map(|p| p.to_str()), Some(Some("python3")));
/// assert!(images.resolve("nginx").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    rules: Vec<(String, PathBuf)>,
}

impl ImageMap {
    /// An empty map: no image can run until a rule is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule: images of `repository` run `executable` (an absolute
    /// path, or a name looked up in `PATH` when the process starts).
    #[must_use]
    pub fn with_repository(
        mut self,
        repository: impl Into<String>,
        executable: impl Into<PathBuf>,
    ) -> Self {
        self.rules.push((repository.into(), executable.into()));
        self
    }

    /// The executable for `image`, if a rule matches.
    pub fn resolve(&self, image: &str) -> Option<&Path> {
        let repo = repository(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        self.rules
            .iter()
            .find(|(rule, _)| rule == repo || rule == last)
            .map(|(_, exe)| exe.as_path())
    }
}

/// The repository part of an image reference: without digest and tag. A
/// `:` only starts a tag after the last `/` (before it, it is a registry port).
pub fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest_but_not_port() {
        assert_eq!(repository("cairn:1.0"), "cairn");
        assert_eq!(repository("cairn"), "cairn");
        assert_eq!(repository("reg:5000/x/cairn:1"), "reg:5000/x/cairn");
        assert_eq!(repository("reg:5000/x/cairn"), "reg:5000/x/cairn");
        assert_eq!(repository("cairn@sha256:abcd"), "cairn");
        assert_eq!(repository("x/cairn:1@sha256:abcd"), "x/cairn");
    }

    #[test]
    fn first_matching_rule_wins() {
        let m = ImageMap::new()
            .with_repository("acme/cairn", "/a")
            .with_repository("cairn", "/b");
        assert_eq!(m.resolve("acme/cairn:1"), Some(Path::new("/a")));
        assert_eq!(m.resolve("other/cairn:1"), Some(Path::new("/b")));
        assert_eq!(m.resolve("cairnx:1"), None);
    }
}
