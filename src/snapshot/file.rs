//! Safe reads of the files in a site. Everything in a site is hostile: a file may be a
//! FIFO that never answers, a symlink to `/dev/zero` or to a secret, or gigabytes long.
//! `read_capped` opens without blocking (`O_NONBLOCK`) and without following a final
//! symlink (`O_NOFOLLOW`: no layout keeps these files behind one), checks that what it
//! opened is a regular file, and reads at most `cap` bytes. Anything else is a
//! [`FileProblem`] whose text names the reason, never the content.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::model::Timestamp;

/// The cap for status, marker, lock and `REVISION` files, and for one read of a log.
pub const SMALL_FILE_CAP: u64 = 1024 * 1024;

/// Why a file of a site could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// There is no such file.
    Missing,
    /// A symlink where a regular file was expected (not followed).
    Symlink,
    /// A FIFO, a socket, a device or a directory.
    NotRegular(&'static str),
    /// Larger than the cap.
    TooLarge { cap: u64 },
    /// Any other I/O error (permissions, …), as the OS describes it.
    Io(String),
}

impl FileProblem {
    /// An error of the read itself (permissions, too many open files, I/O), as opposed
    /// to what the file is: such a read fails as a whole (`ReadError`), never a warning.
    pub fn into_read_error(self, path: &Path) -> Result<FileProblem, super::ReadError> {
        match self {
            FileProblem::Io(reason) => Err(super::ReadError {
                path: path.to_path_buf(),
                reason,
            }),
            other => Ok(other),
        }
    }

    /// A warning about `path`: the file and why, never its content; logged once.
    pub fn warning(&self, path: &Path) -> super::Warning {
        super::Warning {
            key: format!("file:{}:{self}", path.display()),
            message: format!("cannot read {}: {self}", path.display()),
        }
    }
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing => f.write_str("does not exist"),
            FileProblem::Symlink => f.write_str("is a symlink, which is not followed"),
            FileProblem::NotRegular(kind) => write!(f, "not a regular file ({kind})"),
            FileProblem::TooLarge { cap } => write!(f, "larger than {}", human_size(*cap)),
            FileProblem::Io(e) => f.write_str(e),
        }
    }
}

fn human_size(n: u64) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// What `read_capped` read: the bytes and the file's modification time.
#[derive(Clone, Debug)]
pub struct FileRead {
    pub bytes: Vec<u8>,
    pub modified: Timestamp,
}

/// Opens `path` for reading without blocking and without following a final symlink,
/// and checks it is a regular file.
pub fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), FileProblem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => FileProblem::Missing,
            Some(libc::ELOOP) => FileProblem::Symlink,
            Some(libc::ENXIO) => FileProblem::NotRegular("a socket"),
            _ => FileProblem::Io(e.to_string()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| FileProblem::Io(e.to_string()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(FileProblem::NotRegular(kind));
    }
    Ok((file, meta))
}

/// Reads a whole regular file of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<FileRead, FileProblem> {
    let (file, meta) = open_regular(path)?;
    if meta.len() > cap {
        return Err(FileProblem::TooLarge { cap });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 16));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FileProblem::Io(e.to_string()))?;
    // The file may have grown between the stat and the read.
    if bytes.len() as u64 > cap {
        return Err(FileProblem::TooLarge { cap });
    }
    Ok(FileRead {
        bytes,
        modified: meta
            .modified()
            .map(Timestamp::from_system)
            .unwrap_or_default(),
    })
}

/// The modification time of `path` itself (not of what a symlink points at), for a file
/// that was refused; zero if even that cannot be read.
pub fn modified_no_follow(path: &Path) -> Timestamp {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .map(Timestamp::from_system)
        .unwrap_or_default()
}

/// Reads a small file (status, marker, lock, `REVISION`): capped at 1 MiB.
pub fn read_small(path: &Path) -> Result<FileRead, FileProblem> {
    read_capped(path, SMALL_FILE_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ok"), "abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_small(&p("ok")).map(|r| r.bytes), Ok(b"abc".to_vec()));
        assert_eq!(read_small(&p("nope")).err(), Some(FileProblem::Missing));

        std::os::unix::fs::symlink("/dev/zero", p("zero")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_small(&p("zero")).err(), Some(FileProblem::Symlink));

        let fifo = std::ffi::CString::new(p("fifo").as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(
            read_small(&p("fifo")).err(),
            Some(FileProblem::NotRegular("a FIFO"))
        );
        assert_eq!(
            read_small(dir.path()).err(),
            Some(FileProblem::NotRegular("a directory"))
        );

        std::fs::write(p("big"), vec![b'x'; 2000]).unwrap_or_else(|e| panic!("{e}"));
        let e = read_capped(&p("big"), 1024).err();
        assert_eq!(e, Some(FileProblem::TooLarge { cap: 1024 }));
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("larger than 1 KiB")
        );
    }
}
