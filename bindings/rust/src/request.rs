//! The request builder: prompt pieces, sampling options and stop conditions.
use std::os::raw::c_char;
use std::ptr::{self, NonNull};

use crate::context::Prefix;
use crate::error::{c_string, check, Result};
use crate::sys;

/// Id of a submitted request; unique within its context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// Key of a request option (`mmx_request_option`); a newtype so that hosts can probe keys the
/// loaded library may not know ([`crate::Code::Unsupported`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestOption(pub i32);

impl RequestOption {
    // integer options
    pub const MAX_TOKENS: RequestOption = RequestOption(1);
    pub const SEED: RequestOption = RequestOption(2);
    pub const TOP_K: RequestOption = RequestOption(3);
    pub const TOP_LOGPROBS: RequestOption = RequestOption(4);
    pub const PROMPT_LOGPROBS: RequestOption = RequestOption(5);
    pub const MAKE_PREFIX: RequestOption = RequestOption(6);
    pub const IGNORE_EOS: RequestOption = RequestOption(7);
    pub const ADD_BOS: RequestOption = RequestOption(8);
    pub const PARSE_SPECIAL: RequestOption = RequestOption(9);
    // floating-point options
    pub const TEMPERATURE: RequestOption = RequestOption(20);
    pub const TOP_P: RequestOption = RequestOption(21);
    pub const MIN_P: RequestOption = RequestOption(22);
    pub const REPETITION_PENALTY: RequestOption = RequestOption(23);
    pub const FREQUENCY_PENALTY: RequestOption = RequestOption(24);
    pub const PRESENCE_PENALTY: RequestOption = RequestOption(25);
}

/// A request description. Each setter checks its value at once and returns `&mut Self`, so
/// calls chain with `?`. [`crate::Context::submit`] copies it, so one builder can be submitted
/// many times. `Send` but not `Sync`:
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<minimax::Request>();
/// ```
pub struct Request {
    ptr: NonNull<sys::mmx_request>,
}

// SAFETY: the object may move between threads; the library says to use it from one at a time,
// which &mut and the missing Sync enforce.
unsafe impl Send for Request {}

impl Request {
    pub fn new() -> Result<Request> {
        let mut p = ptr::null_mut();
        // SAFETY: p outlives the call.
        check(unsafe { sys::mmx_request_create(&mut p) })?;
        Ok(Request { ptr: NonNull::new(p).expect("mmx_request_create returned NULL") })
    }

    pub(crate) fn raw(&self) -> *mut sys::mmx_request {
        self.ptr.as_ptr()
    }

    pub fn set_int(&mut self, key: RequestOption, value: i64) -> Result<&mut Self> {
        // SAFETY: self.ptr is live and exclusively borrowed.
        check(unsafe { sys::mmx_request_set_int(self.raw(), key.0, value) })?;
        Ok(self)
    }

    pub fn set_double(&mut self, key: RequestOption, value: f64) -> Result<&mut Self> {
        // SAFETY: as set_int.
        check(unsafe { sys::mmx_request_set_double(self.raw(), key.0, value) })?;
        Ok(self)
    }

    /// Tokens to generate (default 256); 0 = prefill or score only.
    pub fn max_tokens(&mut self, n: i64) -> Result<&mut Self> {
        self.set_int(RequestOption::MAX_TOKENS, n)
    }

    pub fn seed(&mut self, seed: u64) -> Result<&mut Self> {
        self.set_int(RequestOption::SEED, seed as i64)
    }

    /// 0 = greedy (default).
    pub fn temperature(&mut self, t: f64) -> Result<&mut Self> {
        self.set_double(RequestOption::TEMPERATURE, t)
    }

    pub fn ignore_eos(&mut self, on: bool) -> Result<&mut Self> {
        self.set_int(RequestOption::IGNORE_EOS, i64::from(on))
    }

    /// Appends text to the prompt (may be called repeatedly, mixed with tokens).
    pub fn text(&mut self, text: &str) -> Result<&mut Self> {
        // SAFETY: text is len valid bytes (need not be NUL-terminated); the library copies it.
        check(unsafe {
            sys::mmx_request_append_text(self.raw(), text.as_ptr() as *const c_char, text.len())
        })?;
        Ok(self)
    }

    /// Appends token ids to the prompt.
    pub fn tokens(&mut self, tokens: &[i32]) -> Result<&mut Self> {
        // SAFETY: tokens is a valid slice; the library copies it.
        check(unsafe { sys::mmx_request_append_tokens(self.raw(), tokens.as_ptr(), tokens.len()) })?;
        Ok(self)
    }

    /// Starts from `prefix` (the request takes its own reference).
    pub fn prefix(&mut self, prefix: &Prefix) -> Result<&mut Self> {
        // SAFETY: prefix is live; the library adds a reference.
        check(unsafe { sys::mmx_request_set_prefix(self.raw(), prefix.raw()) })?;
        Ok(self)
    }

    pub fn stop_string(&mut self, stop: &str) -> Result<&mut Self> {
        let stop = c_string(stop)?;
        // SAFETY: stop outlives the call.
        check(unsafe { sys::mmx_request_add_stop_string(self.raw(), stop.as_ptr()) })?;
        Ok(self)
    }

    pub fn stop_token(&mut self, token: i32) -> Result<&mut Self> {
        // SAFETY: plain values.
        check(unsafe { sys::mmx_request_add_stop_token(self.raw(), token) })?;
        Ok(self)
    }

    /// Adds `bias` to the logit of `token` (f32::NEG_INFINITY bans it).
    pub fn logit_bias(&mut self, token: i32, bias: f32) -> Result<&mut Self> {
        // SAFETY: plain values.
        check(unsafe { sys::mmx_request_set_logit_bias(self.raw(), token, bias) })?;
        Ok(self)
    }

    /// Asks for the logits row at prompt `position` (-1 = last prompt token).
    pub fn logits_position(&mut self, position: i64) -> Result<&mut Self> {
        // SAFETY: plain values.
        check(unsafe { sys::mmx_request_add_logits_position(self.raw(), position) })?;
        Ok(self)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: we own the object (submitted copies are the library's own).
        unsafe { sys::mmx_request_free(self.ptr.as_ptr()) }
    }
}
