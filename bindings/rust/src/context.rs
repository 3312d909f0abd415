//! Contexts (running engines), their options and statistics, the event iterator, prefixes.
use std::path::Path;
use std::ptr::{self, NonNull};
use std::time::Duration;

use crate::error::{check, path_cstring, Result};
use crate::event::{Event, EventType};
use crate::model::Model;
use crate::request::{Request, RequestId};
use crate::sys;

/// Key of a context option (`mmx_context_option`); a newtype for the same reason as
/// [`crate::ModelOption`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextOption(pub i32);

impl ContextOption {
    pub const MAX_SEQUENCES: ContextOption = ContextOption(1);
    pub const STEP_TOKEN_BUDGET: ContextOption = ContextOption(2);
    pub const KV_MEMORY_BYTES: ContextOption = ContextOption(3);
    pub const PREFILL_CHUNK: ContextOption = ContextOption(4);
    pub const MAX_CONTEXT: ContextOption = ContextOption(5);
    pub const MAX_QUEUED: ContextOption = ContextOption(6);
}

/// Options for [`Context::new`]. `Send`, not `Sync` (C option objects are not thread-safe).
pub struct ContextOptions {
    ptr: NonNull<sys::mmx_context_options>,
}

// SAFETY: may move between threads; used by one owner at a time.
unsafe impl Send for ContextOptions {}

impl ContextOptions {
    pub fn new() -> Result<ContextOptions> {
        let mut p = ptr::null_mut();
        // SAFETY: p outlives the call.
        check(unsafe { sys::mmx_context_options_create(&mut p) })?;
        Ok(ContextOptions { ptr: NonNull::new(p).expect("mmx_context_options_create returned NULL") })
    }

    pub fn set_int(&mut self, key: ContextOption, value: i64) -> Result<&mut Self> {
        // SAFETY: self.ptr is live and exclusively borrowed.
        check(unsafe { sys::mmx_context_options_set_int(self.ptr.as_ptr(), key.0, value) })?;
        Ok(self)
    }

    pub(crate) fn raw(&self) -> *mut sys::mmx_context_options {
        self.ptr.as_ptr()
    }
}

impl Drop for ContextOptions {
    fn drop(&mut self) {
        // SAFETY: we own the object.
        unsafe { sys::mmx_context_options_free(self.ptr.as_ptr()) }
    }
}

/// A snapshot of a context's counters ([`Context::stats`]).
#[derive(Clone, Debug, Default)]
pub struct ContextStats {
    pub running_sequences: u32,
    pub queued_requests: u32,
    pub submitted_requests: u64,
    pub finished_requests: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub steps: u64,
    pub state_bytes_in_use: u64,
    pub state_bytes_limit: u64,
    pub busy_seconds: f64,
}

/// A running engine serving one model. `Send + Sync`: submit, cancel, next_event and stats
/// may be called from any thread at once. Dropping it cancels what still runs.
pub struct Context {
    ptr: NonNull<sys::mmx_context>,
}

// SAFETY: the header makes every context call except free thread-safe; free happens in Drop,
// which has exclusive access.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

fn timeout_ms(timeout: Option<Duration>) -> i32 {
    timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32)
}

impl Context {
    /// Creates an engine for `model` (which it keeps alive); `options` None = defaults.
    pub fn new(model: &Model, options: Option<&ContextOptions>) -> Result<Context> {
        let opts = options.map_or(ptr::null(), |o| o.raw() as *const _);
        let mut c = ptr::null_mut();
        // SAFETY: model and opts are live; c outlives the call.
        check(unsafe { sys::mmx_context_create(model.raw(), opts, &mut c) })?;
        Ok(Context { ptr: NonNull::new(c).expect("mmx_context_create returned NULL") })
    }

    fn raw(&self) -> *mut sys::mmx_context {
        self.ptr.as_ptr()
    }

    /// Submits a request (the library copies it; the builder may be reused at once).
    pub fn submit(&self, request: &Request) -> Result<RequestId> {
        let mut id = 0;
        // SAFETY: request is live; id outlives the call.
        check(unsafe { sys::mmx_context_submit(self.raw(), request.raw(), &mut id) })?;
        Ok(RequestId(id))
    }

    /// Submits all of `requests` or none of them.
    pub fn submit_batch(&self, requests: &[&Request]) -> Result<Vec<RequestId>> {
        let raw: Vec<*const sys::mmx_request> = requests.iter().map(|r| r.raw() as *const _).collect();
        let mut ids = vec![0u64; requests.len()];
        // SAFETY: raw and ids hold requests.len() elements each.
        check(unsafe {
            sys::mmx_context_submit_batch(self.raw(), raw.as_ptr(), raw.len(), ids.as_mut_ptr())
        })?;
        Ok(ids.into_iter().map(RequestId).collect())
    }

    /// Cancels a request; its final event (reason Cancelled unless it finished first) follows.
    pub fn cancel(&self, id: RequestId) -> Result<()> {
        // SAFETY: plain values.
        check(unsafe { sys::mmx_context_cancel(self.raw(), id.0) })
    }

    /// Waits for the next event of `id` (None waits forever). Fails with [`Code::Timeout`]
    /// when the wait runs out, [`Code::NotFound`] once the final event has been taken.
    pub fn next_event(&self, id: RequestId, timeout: Option<Duration>) -> Result<Event> {
        self.next_event_raw(id.0, timeout)
    }

    /// The next event of any pull-delivered request of this context.
    pub fn next_event_any(&self, timeout: Option<Duration>) -> Result<Event> {
        self.next_event_raw(0, timeout)
    }

    fn next_event_raw(&self, id: u64, timeout: Option<Duration>) -> Result<Event> {
        let mut e = ptr::null_mut();
        // SAFETY: e outlives the call; on success we own the event.
        check(unsafe { sys::mmx_context_next_event(self.raw(), id, timeout_ms(timeout), &mut e) })?;
        // SAFETY: e is a live event we own.
        Ok(unsafe { Event::from_raw(e) })
    }

    /// The events of request `id`, ending with (and including) its Finished event.
    pub fn events(&self, id: RequestId) -> Events<'_> {
        Events { context: self, id, done: false }
    }

    pub fn stats(&self) -> Result<ContextStats> {
        let mut s = sys::mmx_context_stats {
            struct_size: std::mem::size_of::<sys::mmx_context_stats>() as u32,
            ..Default::default()
        };
        // SAFETY: s is a correctly sized output struct.
        check(unsafe { sys::mmx_context_stats_get(self.raw(), &mut s) })?;
        Ok(ContextStats {
            running_sequences: s.running_sequences,
            queued_requests: s.queued_requests,
            submitted_requests: s.submitted_requests,
            finished_requests: s.finished_requests,
            prompt_tokens: s.prompt_tokens,
            generated_tokens: s.generated_tokens,
            steps: s.steps,
            state_bytes_in_use: s.state_bytes_in_use,
            state_bytes_limit: s.state_bytes_limit,
            busy_seconds: s.busy_seconds,
        })
    }

    /// Reads a prefix written by [`Prefix::save`] for use in this context.
    pub fn load_prefix<P: AsRef<Path>>(&self, path: P) -> Result<Prefix> {
        let path = path_cstring(path.as_ref())?;
        let mut p = ptr::null_mut();
        // SAFETY: path and p outlive the call.
        check(unsafe { sys::mmx_prefix_load(self.raw(), path.as_ptr(), &mut p) })?;
        // SAFETY: p is a new reference we own.
        Ok(unsafe { Prefix::from_raw(p) })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own the context; no callbacks are wrapped, so this never runs on its
        // scheduler thread.
        unsafe { sys::mmx_context_free(self.ptr.as_ptr()) }
    }
}

/// Iterator over one request's events ([`Context::events`]); blocks for each. Yields the
/// Finished event last, or one error (after which it ends).
pub struct Events<'a> {
    context: &'a Context,
    id: RequestId,
    done: bool,
}

impl Iterator for Events<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        let event = self.context.next_event(self.id, None);
        self.done = match &event {
            Ok(e) => e.kind() == EventType::Finished,
            Err(_) => true,
        };
        Some(event)
    }
}

/// A processed prompt prefix ("ingest once, ask many"): reference-counted in the library, so
/// it may be shared with requests on any thread and dropped while they still use it.
pub struct Prefix {
    ptr: NonNull<sys::mmx_prefix>,
}

// SAFETY: the library counts prefix references atomically and never mutates a prefix's state.
unsafe impl Send for Prefix {}
unsafe impl Sync for Prefix {}

impl Prefix {
    /// # Safety
    /// `p` must be a non-NULL prefix reference the caller owns.
    pub(crate) unsafe fn from_raw(p: *mut sys::mmx_prefix) -> Prefix {
        Prefix { ptr: NonNull::new(p).expect("the library returned a NULL prefix") }
    }

    pub(crate) fn raw(&self) -> *mut sys::mmx_prefix {
        self.ptr.as_ptr()
    }

    pub fn token_count(&self) -> Result<i64> {
        let mut n = 0;
        // SAFETY: n outlives the call.
        check(unsafe { sys::mmx_prefix_token_count(self.raw(), &mut n) })?;
        Ok(n)
    }

    pub fn state_bytes(&self) -> Result<u64> {
        let mut n = 0;
        // SAFETY: n outlives the call.
        check(unsafe { sys::mmx_prefix_state_bytes(self.raw(), &mut n) })?;
        Ok(n)
    }

    /// Writes the prefix (tokens, states, model fingerprint) to a file.
    pub fn save<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let path = path_cstring(path.as_ref())?;
        // SAFETY: path outlives the call.
        check(unsafe { sys::mmx_prefix_save(self.raw(), path.as_ptr()) })
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { sys::mmx_prefix_free(self.ptr.as_ptr()) }
    }
}
