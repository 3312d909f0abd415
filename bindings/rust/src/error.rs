//! Errors: every failed call becomes an `Error` carrying the C status code and message.
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_char;
use std::path::Path;

use crate::sys;

/// Status codes of the C ABI (`mmx_code`). `Other` keeps codes added by a newer library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidArgument,
    Unsupported,
    NotFound,
    Io,
    Format,
    Capacity,
    OutOfMemory,
    Cancelled,
    Timeout,
    Device,
    State,
    Internal,
    BufferTooSmall,
    Other(i32),
}

impl Code {
    pub(crate) fn from_raw(code: sys::mmx_code) -> Code {
        match code {
            1 => Code::InvalidArgument,
            2 => Code::Unsupported,
            3 => Code::NotFound,
            4 => Code::Io,
            5 => Code::Format,
            6 => Code::Capacity,
            7 => Code::OutOfMemory,
            8 => Code::Cancelled,
            9 => Code::Timeout,
            10 => Code::Device,
            11 => Code::State,
            12 => Code::Internal,
            13 => Code::BufferTooSmall,
            other => Code::Other(other),
        }
    }

    /// The numeric `mmx_code`.
    pub fn raw(self) -> i32 {
        match self {
            Code::InvalidArgument => 1,
            Code::Unsupported => 2,
            Code::NotFound => 3,
            Code::Io => 4,
            Code::Format => 5,
            Code::Capacity => 6,
            Code::OutOfMemory => 7,
            Code::Cancelled => 8,
            Code::Timeout => 9,
            Code::Device => 10,
            Code::State => 11,
            Code::Internal => 12,
            Code::BufferTooSmall => 13,
            Code::Other(c) => c,
        }
    }
}

impl fmt::Display for Code {
    /// The library's own short name of the code ("not found", ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: mmx_code_name returns static storage for any value.
        let name = unsafe { CStr::from_ptr(sys::mmx_code_name(self.raw())) };
        f.write_str(&name.to_string_lossy())
    }
}

/// A failed call: the status code and the library's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    /// Reads a status without taking ownership (`mmx_event_error` lends one).
    ///
    /// # Safety
    /// `status` must be NULL or a live status.
    pub(crate) unsafe fn from_borrowed(status: *const sys::mmx_status) -> Error {
        Error {
            code: Code::from_raw(sys::mmx_status_code(status)),
            message: CStr::from_ptr(sys::mmx_status_message(status)).to_string_lossy().into_owned(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Takes ownership of a returned status: NULL is success, anything else becomes an Error.
pub(crate) fn check(status: *mut sys::mmx_status) -> Result<()> {
    if status.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL status returned by the library is ours to read and free, once.
    unsafe {
        let err = Error::from_borrowed(status);
        sys::mmx_status_free(status);
        Err(err)
    }
}

/// A NUL-terminated copy of `s`; an interior NUL cannot cross the C ABI.
pub(crate) fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(Code::InvalidArgument, format!("{:?} contains a NUL byte", s)))
}

/// Text of a fixed-size, NUL-terminated char array of an output struct.
pub(crate) fn array_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A path as the C ABI takes it: UTF-8, NUL-terminated.
pub(crate) fn path_cstring(path: &Path) -> Result<CString> {
    let s = path
        .to_str()
        .ok_or_else(|| Error::new(Code::InvalidArgument, format!("{} is not UTF-8", path.display())))?;
    c_string(s)
}
