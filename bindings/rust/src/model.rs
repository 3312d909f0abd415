//! Models: options, loading (with an optional progress closure), info and text.
use std::any::Any;
use std::ffi::CStr;
use std::os::raw::{c_char, c_double, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::context::ContextOptions;
use crate::error::{array_string, c_string, check, path_cstring, Code, Result};
use crate::sys;

/// Key of a model option (`mmx_model_option`). A newtype rather than an enum so that keys a
/// newer library knows can still be passed, and answered with [`Code::Unsupported`] by an
/// older one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelOption(pub i32);

impl ModelOption {
    pub const BACKEND: ModelOption = ModelOption(1);
    pub const DEVICES: ModelOption = ModelOption(2);
    pub const WEIGHT_DTYPE: ModelOption = ModelOption(3);
    pub const THREADS: ModelOption = ModelOption(4);
    pub const MEMORY_LIMIT: ModelOption = ModelOption(5);
}

/// Options for [`Model::load`]. `Send` but not `Sync`: the C option objects are not
/// thread-safe.
pub struct ModelOptions {
    ptr: NonNull<sys::mmx_model_options>,
}

// SAFETY: the object may move between threads; it is only used through &mut or & of one owner.
unsafe impl Send for ModelOptions {}

impl ModelOptions {
    pub fn new() -> Result<ModelOptions> {
        let mut p = ptr::null_mut();
        // SAFETY: p outlives the call; on success it owns a new object.
        check(unsafe { sys::mmx_model_options_create(&mut p) })?;
        Ok(ModelOptions { ptr: NonNull::new(p).expect("mmx_model_options_create returned NULL") })
    }

    pub fn set_int(&mut self, key: ModelOption, value: i64) -> Result<&mut Self> {
        // SAFETY: self.ptr is live and exclusively borrowed.
        check(unsafe { sys::mmx_model_options_set_int(self.ptr.as_ptr(), key.0, value) })?;
        Ok(self)
    }

    pub fn set_string(&mut self, key: ModelOption, value: &str) -> Result<&mut Self> {
        let value = c_string(value)?;
        // SAFETY: self.ptr is live; value outlives the call (the library copies it).
        check(unsafe { sys::mmx_model_options_set_string(self.ptr.as_ptr(), key.0, value.as_ptr()) })?;
        Ok(self)
    }

    /// "auto", "cpu" or "cuda".
    pub fn backend(&mut self, backend: &str) -> Result<&mut Self> {
        self.set_string(ModelOption::BACKEND, backend)
    }

    /// CPU threads; 0 = all cores.
    pub fn threads(&mut self, threads: i64) -> Result<&mut Self> {
        self.set_int(ModelOption::THREADS, threads)
    }
}

impl Drop for ModelOptions {
    fn drop(&mut self) {
        // SAFETY: we own the object.
        unsafe { sys::mmx_model_options_free(self.ptr.as_ptr()) }
    }
}

/// What [`Model::info`] reports.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub vocab_size: i32,
    pub num_layers: i32,
    pub num_softmax_layers: i32,
    pub hidden_size: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub num_experts: i32,
    pub experts_per_token: i32,
    /// None when the model has no BOS token.
    pub bos_token: Option<i32>,
    pub eos_token: Option<i32>,
    pub context_limit: i64,
    pub parameter_count: u64,
    pub weight_bytes: u64,
    pub backend: String,
    pub fingerprint: String,
}

/// What a context would need ([`Model::estimate_memory`]).
#[derive(Clone, Debug, Default)]
pub struct MemoryEstimate {
    pub weight_bytes: u64,
    pub state_bytes_per_sequence: u64,
    pub kv_bytes_per_token: u64,
    pub workspace_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Lightning,
    Softmax,
}

/// Flags of [`Model::tokenize`] (`mmx_tokenize_flags`), combined with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenizeFlags(pub u32);

impl TokenizeFlags {
    pub const DEFAULT: TokenizeFlags = TokenizeFlags(0);
    pub const ADD_BOS: TokenizeFlags = TokenizeFlags(1);
    pub const PARSE_SPECIAL: TokenizeFlags = TokenizeFlags(2);
}

impl std::ops::BitOr for TokenizeFlags {
    type Output = TokenizeFlags;
    fn bitor(self, rhs: TokenizeFlags) -> TokenizeFlags {
        TokenizeFlags(self.0 | rhs.0)
    }
}

/// A loaded model. Shared freely between threads and contexts (`Send + Sync`); a context keeps
/// the C model alive by itself, so a Model may be dropped while its contexts run on.
pub struct Model {
    ptr: NonNull<sys::mmx_model>,
}

// SAFETY: the header allows a model to be shared by any number of threads and contexts.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

struct Progress<'a> {
    callback: &'a mut dyn FnMut(f64, &str) -> bool,
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn progress_trampoline(fraction: c_double, stage: *const c_char, user: *mut c_void) -> i32 {
    // SAFETY: user is the &mut Progress that load_with_progress lent for the duration of the
    // load, which runs this callback on its own thread.
    let progress = &mut *(user as *mut Progress);
    let stage = if stage.is_null() { "".into() } else { CStr::from_ptr(stage).to_string_lossy() };
    // A panic must not unwind into C: stop the load and re-raise it once the load returned.
    match panic::catch_unwind(AssertUnwindSafe(|| (progress.callback)(fraction, &stage))) {
        Ok(go_on) => i32::from(!go_on),
        Err(payload) => {
            progress.panic = Some(payload);
            1
        }
    }
}

impl Model {
    /// Loads a model directory (config.json, safetensors weights, tokenizer files).
    pub fn load<P: AsRef<Path>>(path: P, options: Option<&ModelOptions>) -> Result<Model> {
        Self::load_impl(path.as_ref(), options, None)
    }

    /// As [`Model::load`], calling `progress(fraction, stage)` as the load proceeds on this
    /// thread; returning false aborts the load with [`Code::Cancelled`].
    pub fn load_with_progress<P, F>(path: P, options: Option<&ModelOptions>, mut progress: F) -> Result<Model>
    where
        P: AsRef<Path>,
        F: FnMut(f64, &str) -> bool,
    {
        let mut state = Progress { callback: &mut progress, panic: None };
        let result = Self::load_impl(path.as_ref(), options, Some(&mut state));
        if let Some(payload) = state.panic {
            panic::resume_unwind(payload);
        }
        result
    }

    fn load_impl(
        path: &Path,
        options: Option<&ModelOptions>,
        progress: Option<&mut Progress>,
    ) -> Result<Model> {
        let path = path_cstring(path)?;
        let opts = options.map_or(ptr::null(), |o| o.ptr.as_ptr() as *const _);
        let (cb, user): (sys::mmx_progress_fn, *mut c_void) = match progress {
            Some(p) => (Some(progress_trampoline), p as *mut Progress as *mut c_void),
            None => (None, ptr::null_mut()),
        };
        let mut m = ptr::null_mut();
        // SAFETY: every pointer outlives the call; `user` is only used during it.
        check(unsafe { sys::mmx_model_load(path.as_ptr(), opts, cb, user, &mut m) })?;
        Ok(Model { ptr: NonNull::new(m).expect("mmx_model_load returned NULL") })
    }

    pub(crate) fn raw(&self) -> *mut sys::mmx_model {
        self.ptr.as_ptr()
    }

    pub fn info(&self) -> Result<ModelInfo> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut i: sys::mmx_model_info = unsafe { std::mem::zeroed() };
        i.struct_size = std::mem::size_of::<sys::mmx_model_info>() as u32;
        // SAFETY: i is a correctly sized output struct.
        check(unsafe { sys::mmx_model_get_info(self.raw(), &mut i) })?;
        let token = |t: i32| if t < 0 { None } else { Some(t) };
        Ok(ModelInfo {
            vocab_size: i.vocab_size,
            num_layers: i.num_layers,
            num_softmax_layers: i.num_softmax_layers,
            hidden_size: i.hidden_size,
            num_heads: i.num_heads,
            num_kv_heads: i.num_kv_heads,
            head_dim: i.head_dim,
            num_experts: i.num_experts,
            experts_per_token: i.experts_per_token,
            bos_token: token(i.bos_token),
            eos_token: token(i.eos_token),
            context_limit: i.context_limit,
            parameter_count: i.parameter_count,
            weight_bytes: i.weight_bytes,
            backend: array_string(&i.backend),
            fingerprint: array_string(&i.fingerprint),
        })
    }

    pub fn layer_kind(&self, layer: i32) -> Result<LayerKind> {
        let mut kind = 0;
        // SAFETY: kind outlives the call.
        check(unsafe { sys::mmx_model_layer_kind(self.raw(), layer, &mut kind) })?;
        Ok(if kind == 1 { LayerKind::Softmax } else { LayerKind::Lightning })
    }

    /// Id of a token given its exact text, e.g. "<end_of_sentence>".
    pub fn token_id(&self, token_text: &str) -> Result<i32> {
        let text = c_string(token_text)?;
        let mut id = 0;
        // SAFETY: text and id outlive the call.
        check(unsafe { sys::mmx_model_token_id(self.raw(), text.as_ptr(), &mut id) })?;
        Ok(id)
    }

    pub fn tokenize(&self, text: &str, flags: TokenizeFlags) -> Result<Vec<i32>> {
        // A guess that fits most texts (tokens rarely outnumber bytes), then the exact size.
        fill(text.len() + 4, |buf: &mut Vec<i32>, needed| unsafe {
            // SAFETY: buf has buf.capacity() writable elements; text is len valid bytes.
            sys::mmx_tokenize(
                self.raw(),
                text.as_ptr() as *const c_char,
                text.len(),
                flags.0,
                buf.as_mut_ptr(),
                buf.capacity(),
                needed,
            )
        })
    }

    pub fn detokenize(&self, tokens: &[i32]) -> Result<String> {
        let bytes = fill(tokens.len() * 8 + 1, |buf: &mut Vec<u8>, needed| unsafe {
            // SAFETY: buf has buf.capacity() writable bytes; tokens is a valid slice.
            sys::mmx_detokenize(
                self.raw(),
                tokens.as_ptr(),
                tokens.len(),
                buf.as_mut_ptr() as *mut c_char,
                buf.capacity(),
                needed,
            )
        })?;
        Ok(text_of(bytes))
    }

    /// Renders `messages_json` ([{"role": ..., "content": ...}, ...]) in the model's chat format.
    pub fn apply_chat_format(&self, messages_json: &str, add_generation_prompt: bool) -> Result<String> {
        let json = c_string(messages_json)?;
        let bytes = fill(messages_json.len() * 2 + 256, |buf: &mut Vec<u8>, needed| unsafe {
            // SAFETY: buf has buf.capacity() writable bytes; json outlives the call.
            sys::mmx_apply_chat_format(
                self.raw(),
                json.as_ptr(),
                i32::from(add_generation_prompt),
                buf.as_mut_ptr() as *mut c_char,
                buf.capacity(),
                needed,
            )
        })?;
        Ok(text_of(bytes))
    }

    /// What a context with `options` (None = defaults) would need.
    pub fn estimate_memory(&self, options: Option<&ContextOptions>) -> Result<MemoryEstimate> {
        let mut e = sys::mmx_memory_estimate {
            struct_size: std::mem::size_of::<sys::mmx_memory_estimate>() as u32,
            ..Default::default()
        };
        let opts = options.map_or(ptr::null(), |o| o.raw() as *const _);
        // SAFETY: e is a correctly sized output struct; opts is NULL or live.
        check(unsafe { sys::mmx_model_estimate_memory(self.raw(), opts, &mut e) })?;
        Ok(MemoryEstimate {
            weight_bytes: e.weight_bytes,
            state_bytes_per_sequence: e.state_bytes_per_sequence,
            kv_bytes_per_token: e.kv_bytes_per_token,
            workspace_bytes: e.workspace_bytes,
            total_bytes: e.total_bytes,
        })
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: we own this reference; contexts hold their own.
        unsafe { sys::mmx_model_free(self.ptr.as_ptr()) }
    }
}

/// The caller-buffer protocol of the header: try with `guess` elements; when the library
/// answers BUFFER_TOO_SMALL it has stored the size it needs, so retry once with that.
fn fill<T>(
    guess: usize,
    mut call: impl FnMut(&mut Vec<T>, *mut usize) -> *mut sys::mmx_status,
) -> Result<Vec<T>> {
    let mut buf = Vec::with_capacity(guess);
    let mut needed = 0usize;
    let mut status = call(&mut buf, &mut needed);
    // SAFETY: status is NULL or a live status we own.
    if unsafe { sys::mmx_status_code(status) } == Code::BufferTooSmall.raw() {
        let _ = check(status); // frees it
        buf = Vec::with_capacity(needed);
        status = call(&mut buf, &mut needed);
    }
    check(status)?;
    // SAFETY: on success the library wrote `needed` elements (needed <= capacity).
    assert!(needed <= buf.capacity(), "library reported more output than the buffer holds");
    unsafe { buf.set_len(needed) };
    Ok(buf)
}

/// Text of a NUL-terminated byte buffer filled by the library (always UTF-8).
fn text_of(mut bytes: Vec<u8>) -> String {
    bytes.pop(); // the NUL counted in `needed`
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
