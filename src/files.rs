//! Reading the small files the sidecar is pointed at (credentials, subject tokens, client
//! secrets), within a size cap and only if they are regular files.
//!
//! A path set by mistake or by someone else must not take the process down: `/dev/zero` read
//! whole exhausts memory, a FIFO blocks the opening thread until a writer appears, and a 1 GiB
//! file costs 1 GiB on every refresh. So the file is opened non-blocking (a FIFO opens at once
//! instead of waiting for a writer), checked with `fstat` on the open descriptor (no race with
//! a rename), and read up to one byte past the cap.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

/// Cap on a credentials file (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file): real ones
/// are 2–4 KiB (a service-account key with its PEM), so 64 KiB leaves room without letting a
/// wrong path cost memory.
pub const MAX_CREDENTIALS_FILE_BYTES: u64 = 64 * 1024;

/// Cap on a subject token file (`credential_source.file`): an OIDC JWT or SAML assertion is a
/// few KiB.
pub const MAX_SUBJECT_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Cap on a client secret file.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads the regular file at `path`, of at most `limit` bytes, following symbolic links.
///
/// `what` names the kind of file in the error for a file that is too large ("a credentials
/// file"). Errors say what was found and read as the end of "cannot read PATH: ...":
/// `it is a FIFO (named pipe), not a regular file`, `it is larger than 65536 bytes, the limit
/// for a credentials file`, `a symbolic link loop (ELOOP)`, or the operating system's reason.
pub fn read_capped(path: &Path, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let file = open_nonblocking(path).map_err(describe_open_error)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is {}, not a regular file",
                file_kind(&metadata.file_type())
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {limit} bytes, the limit for {what}"),
        ));
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // O_NONBLOCK matters only for the open of a FIFO or device (reads from regular files never
    // block), and those are refused right after.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Names ELOOP, whose standard text ("too many levels of symbolic links") hides the cause.
fn describe_open_error(err: io::Error) -> io::Error {
    if is_symlink_loop(&err) {
        return io::Error::new(err.kind(), "a symbolic link loop (ELOOP)");
    }
    err
}

/// Whether `err` is ELOOP: a chain of symbolic links that never ends in a file.
pub fn is_symlink_loop(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        err.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

/// "a directory", "a FIFO (named pipe)", ... for an error message.
pub fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: io::Result<Vec<u8>>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn files_up_to_the_limit_are_read_and_larger_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_capped(&path, 10, "x").unwrap(), b"0123456789");
        assert_eq!(
            message(read_capped(&path, 9, "a test file")),
            "it is larger than 9 bytes, the limit for a test file"
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_fifos_directories_and_loops_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        for (path, expected) in [
            (
                fifo.as_path(),
                "it is a FIFO (named pipe), not a regular file",
            ),
            (
                Path::new("/dev/zero"),
                "it is a character device, not a regular file",
            ),
            (
                Path::new("/dev/null"),
                "it is a character device, not a regular file",
            ),
            (dir.path(), "it is a directory, not a regular file"),
            (a.as_path(), "a symbolic link loop (ELOOP)"),
        ] {
            assert_eq!(message(read_capped(path, 1024, "x")), expected, "{path:?}");
        }
    }
}
