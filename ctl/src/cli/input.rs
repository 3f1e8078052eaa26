//! Turning command-line arguments into bytes: keys, literal or `@file`/`-`
//! values, and request files.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;

use super::failure::UsageError;

/// The raw bytes of a key (or other byte-string argument), exactly as given
/// on the command line, so non-UTF-8 keys survive on Unix.
pub fn arg_bytes(arg: OsString) -> Vec<u8> {
    arg.into_encoded_bytes()
}

/// Resolves a VALUE argument: `@PATH` is the content of a file, `-` is all
/// of stdin, anything else is the literal bytes.
pub fn read_value(arg: OsString) -> Result<Vec<u8>, UsageError> {
    let bytes = arg.into_encoded_bytes();
    if bytes == b"-" {
        return read_stdin();
    }
    if let Some(path) = bytes.strip_prefix(b"@") {
        let Some(path) = os_str(path) else {
            return Err(UsageError::new(
                "the value file name is not valid UTF-8".to_string(),
            ));
        };
        return read_path(Path::new(path));
    }
    Ok(bytes)
}

/// Reads a FILE argument: `-` is stdin, anything else a path.
pub fn read_file(path: &Path) -> Result<Vec<u8>, UsageError> {
    if path.as_os_str() == "-" {
        read_stdin()
    } else {
        read_path(path)
    }
}

/// Bytes taken from an `OsString` back as an `OsStr`.
#[cfg(unix)]
fn os_str(bytes: &[u8]) -> Option<&OsStr> {
    Some(std::os::unix::ffi::OsStrExt::from_bytes(bytes))
}

/// Bytes taken from an `OsString` back as an `OsStr` (UTF-8 only off Unix).
#[cfg(not(unix))]
fn os_str(bytes: &[u8]) -> Option<&OsStr> {
    std::str::from_utf8(bytes).ok().map(OsStr::new)
}

fn read_path(path: &Path) -> Result<Vec<u8>, UsageError> {
    std::fs::read(path).map_err(|e| UsageError::new(format!("cannot read {}: {e}", path.display())))
}

fn read_stdin() -> Result<Vec<u8>, UsageError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError::new(format!("cannot read stdin: {e}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_values_are_taken_verbatim() {
        assert_eq!(
            read_value(OsString::from("hello world")).ok(),
            Some(b"hello world".to_vec())
        );
        assert_eq!(read_value(OsString::from("")).ok(), Some(Vec::new()));
    }

    #[test]
    fn at_prefix_reads_the_named_file() {
        let path = std::env::temp_dir().join(format!("cairnctl-input-test-{}", std::process::id()));
        assert!(std::fs::write(&path, b"\x00binary\xff").is_ok());
        let mut arg = OsString::from("@");
        arg.push(&path);
        let value = read_value(arg);
        let _ = std::fs::remove_file(&path);
        assert_eq!(value.ok(), Some(b"\x00binary\xff".to_vec()));
    }

    #[test]
    fn missing_value_file_is_a_usage_error_naming_the_file() {
        let err = read_value(OsString::from("@/nonexistent/cairn-value"));
        assert!(err.is_err_and(|e| e.to_string().contains("/nonexistent/cairn-value")));
    }
}
