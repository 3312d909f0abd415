//! Raw declarations of include/minimax.h, one for one. Everything here is `unsafe` to call;
//! the rest of the crate is the safe layer over it. C enums are passed as `c_int`, which is
//! how the platform C ABI passes them.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_double, c_float, c_int, c_void};

pub const MMX_ABI_VERSION: u32 = 1;

macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    mmx_status,
    mmx_model,
    mmx_model_options,
    mmx_context,
    mmx_context_options,
    mmx_request,
    mmx_event,
    mmx_prefix
);

pub type mmx_code = c_int;
pub type mmx_log_level = c_int;
pub type mmx_model_option = c_int;
pub type mmx_layer_kind = c_int;
pub type mmx_context_option = c_int;
pub type mmx_request_option = c_int;
pub type mmx_event_type = c_int;
pub type mmx_finish_reason = c_int;
pub type mmx_request_id = u64;

pub type mmx_log_fn = Option<unsafe extern "C" fn(mmx_log_level, *const c_char, *mut c_void)>;
pub type mmx_progress_fn = Option<unsafe extern "C" fn(c_double, *const c_char, *mut c_void) -> i32>;
pub type mmx_event_fn = Option<unsafe extern "C" fn(*const mmx_event, *mut c_void)>;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct mmx_device_info {
    pub struct_size: u32,
    pub index: i32,
    pub compute_major: i32,
    pub compute_minor: i32,
    pub multiprocessors: i32,
    pub total_memory_bytes: u64,
    pub free_memory_bytes: u64,
    pub name: [c_char; 128],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct mmx_model_info {
    pub struct_size: u32,
    pub vocab_size: i32,
    pub num_layers: i32,
    pub num_softmax_layers: i32,
    pub hidden_size: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub num_experts: i32,
    pub experts_per_token: i32,
    pub bos_token: i32,
    pub eos_token: i32,
    pub context_limit: i64,
    pub parameter_count: u64,
    pub weight_bytes: u64,
    pub backend: [c_char; 16],
    pub fingerprint: [c_char; 68],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mmx_memory_estimate {
    pub struct_size: u32,
    pub weight_bytes: u64,
    pub state_bytes_per_sequence: u64,
    pub kv_bytes_per_token: u64,
    pub workspace_bytes: u64,
    pub total_bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mmx_context_stats {
    pub struct_size: u32,
    pub running_sequences: u32,
    pub queued_requests: u32,
    pub _reserved: u32,
    pub submitted_requests: u64,
    pub finished_requests: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub steps: u64,
    pub state_bytes_in_use: u64,
    pub state_bytes_limit: u64,
    pub busy_seconds: c_double,
}

extern "C" {
    pub fn mmx_abi_version() -> u32;
    pub fn mmx_version_string() -> *const c_char;

    pub fn mmx_status_code(status: *const mmx_status) -> mmx_code;
    pub fn mmx_status_message(status: *const mmx_status) -> *const c_char;
    pub fn mmx_status_free(status: *mut mmx_status);
    pub fn mmx_code_name(code: mmx_code) -> *const c_char;

    pub fn mmx_set_log_callback(
        fn_: mmx_log_fn,
        user_data: *mut c_void,
        min_level: mmx_log_level,
    ) -> *mut mmx_status;

    pub fn mmx_device_count(out_count: *mut i32) -> *mut mmx_status;
    pub fn mmx_device_info_get(index: i32, out_info: *mut mmx_device_info) -> *mut mmx_status;

    pub fn mmx_model_options_create(out: *mut *mut mmx_model_options) -> *mut mmx_status;
    pub fn mmx_model_options_free(options: *mut mmx_model_options);
    pub fn mmx_model_options_set_int(
        options: *mut mmx_model_options,
        key: mmx_model_option,
        value: i64,
    ) -> *mut mmx_status;
    pub fn mmx_model_options_set_string(
        options: *mut mmx_model_options,
        key: mmx_model_option,
        value: *const c_char,
    ) -> *mut mmx_status;
    pub fn mmx_model_load(
        path: *const c_char,
        options: *const mmx_model_options,
        progress: mmx_progress_fn,
        user_data: *mut c_void,
        out_model: *mut *mut mmx_model,
    ) -> *mut mmx_status;
    pub fn mmx_model_free(model: *mut mmx_model);
    pub fn mmx_model_get_info(model: *const mmx_model, out: *mut mmx_model_info) -> *mut mmx_status;
    pub fn mmx_model_layer_kind(
        model: *const mmx_model,
        layer: i32,
        out_kind: *mut mmx_layer_kind,
    ) -> *mut mmx_status;
    pub fn mmx_model_token_id(
        model: *const mmx_model,
        token_text: *const c_char,
        out_id: *mut i32,
    ) -> *mut mmx_status;

    pub fn mmx_tokenize(
        model: *const mmx_model,
        text: *const c_char,
        len: usize,
        flags: u32,
        tokens: *mut i32,
        capacity: usize,
        n_needed: *mut usize,
    ) -> *mut mmx_status;
    pub fn mmx_detokenize(
        model: *const mmx_model,
        tokens: *const i32,
        n_tokens: usize,
        buf: *mut c_char,
        capacity: usize,
        n_needed: *mut usize,
    ) -> *mut mmx_status;
    pub fn mmx_apply_chat_format(
        model: *const mmx_model,
        messages_json: *const c_char,
        add_generation_prompt: i32,
        buf: *mut c_char,
        capacity: usize,
        n_needed: *mut usize,
    ) -> *mut mmx_status;

    pub fn mmx_context_options_create(out: *mut *mut mmx_context_options) -> *mut mmx_status;
    pub fn mmx_context_options_free(options: *mut mmx_context_options);
    pub fn mmx_context_options_set_int(
        options: *mut mmx_context_options,
        key: mmx_context_option,
        value: i64,
    ) -> *mut mmx_status;
    pub fn mmx_model_estimate_memory(
        model: *const mmx_model,
        options: *const mmx_context_options,
        out: *mut mmx_memory_estimate,
    ) -> *mut mmx_status;
    pub fn mmx_context_create(
        model: *mut mmx_model,
        options: *const mmx_context_options,
        out_context: *mut *mut mmx_context,
    ) -> *mut mmx_status;
    pub fn mmx_context_free(context: *mut mmx_context);
    pub fn mmx_context_stats_get(context: *mut mmx_context, out: *mut mmx_context_stats) -> *mut mmx_status;

    pub fn mmx_request_create(out: *mut *mut mmx_request) -> *mut mmx_status;
    pub fn mmx_request_free(request: *mut mmx_request);
    pub fn mmx_request_set_int(
        request: *mut mmx_request,
        key: mmx_request_option,
        value: i64,
    ) -> *mut mmx_status;
    pub fn mmx_request_set_double(
        request: *mut mmx_request,
        key: mmx_request_option,
        value: c_double,
    ) -> *mut mmx_status;
    pub fn mmx_request_append_text(
        request: *mut mmx_request,
        text: *const c_char,
        len: usize,
    ) -> *mut mmx_status;
    pub fn mmx_request_append_tokens(
        request: *mut mmx_request,
        tokens: *const i32,
        n_tokens: usize,
    ) -> *mut mmx_status;
    pub fn mmx_request_set_prefix(request: *mut mmx_request, prefix: *mut mmx_prefix) -> *mut mmx_status;
    pub fn mmx_request_add_stop_string(request: *mut mmx_request, stop: *const c_char) -> *mut mmx_status;
    pub fn mmx_request_add_stop_token(request: *mut mmx_request, token: i32) -> *mut mmx_status;
    pub fn mmx_request_set_logit_bias(
        request: *mut mmx_request,
        token: i32,
        bias: c_float,
    ) -> *mut mmx_status;
    pub fn mmx_request_add_logits_position(request: *mut mmx_request, position: i64) -> *mut mmx_status;
    pub fn mmx_request_set_user_data(request: *mut mmx_request, user_data: *mut c_void) -> *mut mmx_status;
    pub fn mmx_request_set_callback(
        request: *mut mmx_request,
        fn_: mmx_event_fn,
        user_data: *mut c_void,
    ) -> *mut mmx_status;

    pub fn mmx_context_submit(
        context: *mut mmx_context,
        request: *const mmx_request,
        out_id: *mut mmx_request_id,
    ) -> *mut mmx_status;
    pub fn mmx_context_submit_batch(
        context: *mut mmx_context,
        requests: *const *const mmx_request,
        n_requests: usize,
        out_ids: *mut mmx_request_id,
    ) -> *mut mmx_status;
    pub fn mmx_context_cancel(context: *mut mmx_context, id: mmx_request_id) -> *mut mmx_status;
    pub fn mmx_context_next_event(
        context: *mut mmx_context,
        id: mmx_request_id,
        timeout_ms: i32,
        out_event: *mut *mut mmx_event,
    ) -> *mut mmx_status;
    pub fn mmx_event_free(event: *mut mmx_event);

    pub fn mmx_event_get_type(event: *const mmx_event) -> mmx_event_type;
    pub fn mmx_event_request_id(event: *const mmx_event) -> mmx_request_id;
    pub fn mmx_event_user_data(event: *const mmx_event) -> *mut c_void;
    pub fn mmx_event_token(event: *const mmx_event) -> i32;
    pub fn mmx_event_text(event: *const mmx_event, out_len: *mut usize) -> *const c_char;
    pub fn mmx_event_logprob(event: *const mmx_event) -> c_float;
    pub fn mmx_event_top_count(event: *const mmx_event) -> usize;
    pub fn mmx_event_top(
        event: *const mmx_event,
        i: usize,
        out_token: *mut i32,
        out_logprob: *mut c_float,
    ) -> *mut mmx_status;
    pub fn mmx_event_progress(
        event: *const mmx_event,
        out_done: *mut i64,
        out_total: *mut i64,
    ) -> *mut mmx_status;
    pub fn mmx_event_prompt_logprobs(
        event: *const mmx_event,
        out_first: *mut i64,
        out_count: *mut usize,
        out_logprobs: *mut *const c_float,
        out_tokens: *mut *const i32,
    ) -> *mut mmx_status;
    pub fn mmx_event_logits(
        event: *const mmx_event,
        out_position: *mut i64,
        out_logits: *mut *const c_float,
        out_count: *mut usize,
    ) -> *mut mmx_status;
    pub fn mmx_event_finish_reason(event: *const mmx_event) -> mmx_finish_reason;
    pub fn mmx_event_counts(
        event: *const mmx_event,
        out_prompt_tokens: *mut i64,
        out_generated_tokens: *mut i64,
    ) -> *mut mmx_status;
    pub fn mmx_event_error(event: *const mmx_event) -> *const mmx_status;
    pub fn mmx_event_prefix(event: *const mmx_event, out_prefix: *mut *mut mmx_prefix) -> *mut mmx_status;

    pub fn mmx_prefix_free(prefix: *mut mmx_prefix);
    pub fn mmx_prefix_token_count(prefix: *const mmx_prefix, out_tokens: *mut i64) -> *mut mmx_status;
    pub fn mmx_prefix_state_bytes(prefix: *const mmx_prefix, out_bytes: *mut u64) -> *mut mmx_status;
    pub fn mmx_prefix_save(prefix: *const mmx_prefix, path: *const c_char) -> *mut mmx_status;
    pub fn mmx_prefix_load(
        context: *mut mmx_context,
        path: *const c_char,
        out_prefix: *mut *mut mmx_prefix,
    ) -> *mut mmx_status;
}
