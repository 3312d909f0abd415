//! Events of a running request, borrowed straight from the library's event object.
use std::os::raw::c_float;
use std::ptr::{self, NonNull};

use crate::context::Prefix;
use crate::error::{check, Error, Result};
use crate::request::RequestId;
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Progress,
    Token,
    PromptLogprobs,
    Logits,
    Finished,
    /// A type added by a newer library.
    Other(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    StopString,
    StopToken,
    Length,
    Cancelled,
    Error,
    PrefixReady,
    Other(i32),
}

/// Logprobs of a run of prompt tokens (scoring); NaN for the very first prompt token.
#[derive(Clone, Copy, Debug)]
pub struct PromptLogprobs<'a> {
    pub first: i64,
    pub logprobs: &'a [f32],
    pub tokens: &'a [i32],
}

/// One event; freed on drop. Borrowed data (text, logits) lives as long as the Event.
pub struct Event {
    ptr: NonNull<sys::mmx_event>,
}

// SAFETY: the accessors are thread-safe reads of an immutable event; free happens in Drop.
unsafe impl Send for Event {}
unsafe impl Sync for Event {}

/// A slice over library memory that may be NULL when empty.
///
/// # Safety
/// `p` must point to `n` valid elements that outlive 'a, or n must be 0.
unsafe fn slice<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if n == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(p, n)
    }
}

impl Event {
    /// # Safety
    /// `e` must be a non-NULL event the caller owns.
    pub(crate) unsafe fn from_raw(e: *mut sys::mmx_event) -> Event {
        Event { ptr: NonNull::new(e).expect("the library returned a NULL event") }
    }

    fn raw(&self) -> *const sys::mmx_event {
        self.ptr.as_ptr()
    }

    pub fn kind(&self) -> EventType {
        // SAFETY (this and every accessor below): self.raw() is a live event we own.
        match unsafe { sys::mmx_event_get_type(self.raw()) } {
            1 => EventType::Progress,
            2 => EventType::Token,
            3 => EventType::PromptLogprobs,
            4 => EventType::Logits,
            5 => EventType::Finished,
            other => EventType::Other(other),
        }
    }

    pub fn request_id(&self) -> RequestId {
        RequestId(unsafe { sys::mmx_event_request_id(self.raw()) })
    }

    /// The generated token of a Token event.
    pub fn token(&self) -> Option<i32> {
        let t = unsafe { sys::mmx_event_token(self.raw()) };
        if t < 0 {
            None
        } else {
            Some(t)
        }
    }

    /// The text delta of a Token or Finished event (whole UTF-8 characters; "" otherwise).
    pub fn text(&self) -> &str {
        let mut len = 0usize;
        let p = unsafe { sys::mmx_event_text(self.raw(), &mut len) };
        // SAFETY: the text is len bytes valid until the event is freed.
        let bytes = unsafe { slice(p as *const u8, if p.is_null() { 0 } else { len }) };
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            // The header promises whole characters; never hand out a broken one regardless.
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// Logprob of the generated token under the unmodified model distribution.
    pub fn logprob(&self) -> f32 {
        unsafe { sys::mmx_event_logprob(self.raw()) }
    }

    /// The most likely tokens and their logprobs (MMX_REQ_TOP_LOGPROBS of them).
    pub fn top(&self) -> Result<Vec<(i32, f32)>> {
        let n = unsafe { sys::mmx_event_top_count(self.raw()) };
        (0..n)
            .map(|i| {
                let (mut t, mut lp): (i32, c_float) = (0, 0.0);
                check(unsafe { sys::mmx_event_top(self.raw(), i, &mut t, &mut lp) })?;
                Ok((t, lp))
            })
            .collect()
    }

    /// Progress event: (prompt tokens processed, prompt tokens in all).
    pub fn progress(&self) -> Result<(i64, i64)> {
        let (mut done, mut total) = (0, 0);
        check(unsafe { sys::mmx_event_progress(self.raw(), &mut done, &mut total) })?;
        Ok((done, total))
    }

    pub fn prompt_logprobs(&self) -> Result<PromptLogprobs<'_>> {
        let (mut first, mut n) = (0i64, 0usize);
        let (mut lp, mut tokens) = (ptr::null(), ptr::null());
        check(unsafe {
            sys::mmx_event_prompt_logprobs(self.raw(), &mut first, &mut n, &mut lp, &mut tokens)
        })?;
        // SAFETY: both arrays hold n elements, valid until the event is freed.
        Ok(PromptLogprobs { first, logprobs: unsafe { slice(lp, n) }, tokens: unsafe { slice(tokens, n) } })
    }

    /// Logits event: the prompt position and its logits row.
    pub fn logits(&self) -> Result<(i64, &[f32])> {
        let (mut pos, mut p, mut n) = (0i64, ptr::null(), 0usize);
        check(unsafe { sys::mmx_event_logits(self.raw(), &mut pos, &mut p, &mut n) })?;
        // SAFETY: n floats valid until the event is freed.
        Ok((pos, unsafe { slice(p, n) }))
    }

    /// Why the request ended (None unless this is the Finished event).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        match unsafe { sys::mmx_event_finish_reason(self.raw()) } {
            0 => None,
            1 => Some(FinishReason::Eos),
            2 => Some(FinishReason::StopString),
            3 => Some(FinishReason::StopToken),
            4 => Some(FinishReason::Length),
            5 => Some(FinishReason::Cancelled),
            6 => Some(FinishReason::Error),
            7 => Some(FinishReason::PrefixReady),
            other => Some(FinishReason::Other(other)),
        }
    }

    /// Finished event: (prompt tokens, generated tokens).
    pub fn counts(&self) -> Result<(i64, i64)> {
        let (mut prompt, mut generated) = (0, 0);
        check(unsafe { sys::mmx_event_counts(self.raw(), &mut prompt, &mut generated) })?;
        Ok((prompt, generated))
    }

    /// The error of a Finished event with reason Error.
    pub fn error(&self) -> Option<Error> {
        let status = unsafe { sys::mmx_event_error(self.raw()) };
        // SAFETY: a borrowed status, valid while the event lives.
        if status.is_null() {
            None
        } else {
            Some(unsafe { Error::from_borrowed(status) })
        }
    }

    /// The prefix a MAKE_PREFIX request produced (a new reference each call).
    pub fn prefix(&self) -> Result<Prefix> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mmx_event_prefix(self.raw(), &mut p) })?;
        // SAFETY: p is a new reference we own.
        Ok(unsafe { Prefix::from_raw(p) })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: we own the event.
        unsafe { sys::mmx_event_free(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("kind", &self.kind())
            .field("request_id", &self.request_id())
            .field("token", &self.token())
            .field("text", &self.text())
            .field("finish_reason", &self.finish_reason())
            .finish()
    }
}
