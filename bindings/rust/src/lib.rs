//! Safe Rust bindings for libminimax, the embeddable inference library for the MiniMax-01
//! model family. The C ABI (`include/minimax.h`) is the contract; this crate adds ownership
//! (every handle frees itself on Drop), `Result<T, Error>` for every fallible call, and an
//! iterator over a request's events.
//!
//! Threading follows the header: [`Model`] and [`Context`] are `Send + Sync` (the engine is
//! thread-safe; submit, cancel and next_event may be called from any thread), while option
//! objects and the [`Request`] builder are `Send` but not `Sync` (the C library says to use
//! one from one thread at a time).
//!
//! Events are pulled ([`Context::events`]); the push callback of the C ABI is not wrapped.
//!
//! ```no_run
//! use minimax::{Context, Model, Request};
//! let model = Model::load("models/demo", None)?;
//! let ctx = Context::new(&model, None)?;
//! let mut req = Request::new()?;
//! req.text("Once upon a time")?.max_tokens(16)?;
//! let id = ctx.submit(&req)?;
//! for event in ctx.events(id) {
//!     print!("{}", event?.text());
//! }
//! # Ok::<(), minimax::Error>(())
//! ```

mod context;
mod error;
mod event;
mod model;
mod request;
pub mod sys;

pub use context::{Context, ContextOption, ContextOptions, ContextStats, Events, Prefix};
pub use error::{Code, Error, Result};
pub use event::{Event, EventType, FinishReason, PromptLogprobs};
pub use model::{LayerKind, MemoryEstimate, Model, ModelInfo, ModelOption, ModelOptions, TokenizeFlags};
pub use request::{Request, RequestId, RequestOption};

use std::ffi::CStr;

/// The ABI version of the loaded library; equal to [`sys::MMX_ABI_VERSION`] when compatible.
pub fn abi_version() -> u32 {
    // SAFETY: no arguments, no preconditions.
    unsafe { sys::mmx_abi_version() }
}

/// "major.minor.patch" plus build details of the loaded library.
pub fn version() -> String {
    // SAFETY: returns static storage.
    unsafe { CStr::from_ptr(sys::mmx_version_string()) }.to_string_lossy().into_owned()
}

/// A CUDA device the library can use.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub index: i32,
    pub compute_major: i32,
    pub compute_minor: i32,
    pub multiprocessors: i32,
    pub total_memory_bytes: u64,
    pub free_memory_bytes: u64,
    pub name: String,
}

/// Number of CUDA devices (0 in a CPU-only build).
pub fn device_count() -> Result<i32> {
    let mut n = 0;
    // SAFETY: n outlives the call.
    error::check(unsafe { sys::mmx_device_count(&mut n) })?;
    Ok(n)
}

/// Properties of CUDA device `index`.
pub fn device_info(index: i32) -> Result<DeviceInfo> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut d: sys::mmx_device_info = unsafe { std::mem::zeroed() };
    d.struct_size = std::mem::size_of::<sys::mmx_device_info>() as u32;
    // SAFETY: d is a correctly sized output struct.
    error::check(unsafe { sys::mmx_device_info_get(index, &mut d) })?;
    Ok(DeviceInfo {
        index: d.index,
        compute_major: d.compute_major,
        compute_minor: d.compute_minor,
        multiprocessors: d.multiprocessors,
        total_memory_bytes: d.total_memory_bytes,
        free_memory_bytes: d.free_memory_bytes,
        name: error::array_string(&d.name),
    })
}

/// The README's example, compiled as a doc test so that it stays correct.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
