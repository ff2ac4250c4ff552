//! Files emptcp reads on the user's word (policy files, custom stage
//! objects): regular files of at most MAX_BYTES, nothing else.
//!
//! The file is opened with O_NONBLOCK, so a FIFO without a writer cannot
//! block the open, and the type and size are taken from the opened fd (not
//! the path, which may be swapped in between). The read stops at
//! MAX_BYTES + 1 bytes whatever fstat said, so a file that grows meanwhile
//! (or lies about its size, as /proc files do) is refused, not read whole.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest file emptcp reads on the user's word.
pub const MAX_BYTES: u64 = 16 << 20;

/// Why a user's file was not read: the message after "PATH: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than 16 MiB")]
    TooLarge,
    #[error("cannot read: {0}")]
    Io(String),
}

/// Reads the regular file at `path`, at most MAX_BYTES.
pub fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_capped(path, MAX_BYTES)
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // open(2) of a unix socket
            Some(libc::ENXIO) => ReadError::NotRegular,
            _ => ReadError::Io(e.to_string()),
        })?;
    let meta = f.metadata().map_err(|e| ReadError::Io(e.to_string()))?;
    let ty = meta.file_type();
    if !ty.is_file() || ty.is_fifo() || ty.is_socket() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge);
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ReadError::Io(e.to_string()))?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory of one test, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let d =
                std::env::temp_dir().join(format!("emptcp-userfile-{}-{test}", std::process::id()));
            std::fs::create_dir_all(&d).expect("scratch dir");
            Scratch(d)
        }
        fn file(&self, name: &str) -> std::path::PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_regular_files_only() {
        let dir = Scratch::new("regular");
        let p = dir.file("ok.toml");
        std::fs::write(&p, b"x = 1\n").expect("write");
        assert_eq!(read(&p), Ok(b"x = 1\n".to_vec()));
        assert_eq!(read(Path::new("/dev/zero")), Err(ReadError::NotRegular));
        assert_eq!(read(Path::new("/")), Err(ReadError::NotRegular));
        let fifo = dir.file("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert_eq!(
            read(&fifo),
            Err(ReadError::NotRegular),
            "no writer: no wait"
        );
        let sock = dir.file("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert_eq!(read(&sock), Err(ReadError::NotRegular));
        assert!(matches!(
            read(Path::new("/nonexistent/p.toml")),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn refuses_files_past_the_cap() {
        let dir = Scratch::new("cap");
        let p = dir.file("big");
        std::fs::write(&p, vec![b'#'; 101]).expect("write");
        assert_eq!(read_capped(&p, 100), Err(ReadError::TooLarge));
        assert_eq!(read_capped(&p, 101).map(|b| b.len()), Ok(101));
        let sparse = dir.file("sparse");
        let f = std::fs::File::create(&sparse).expect("create");
        f.set_len(MAX_BYTES + 1).expect("truncate");
        assert_eq!(read(&sparse), Err(ReadError::TooLarge));
        assert_eq!(ReadError::TooLarge.to_string(), "larger than 16 MiB");
    }
}
