// The C ABI of include/minimax.h as P/Invoke declarations, the output structs it fills, and
// one SafeHandle per owned handle type. Strings go in as NUL-terminated UTF-8 byte arrays and
// come out as IntPtr, decoded by Utf8; size_t is UIntPtr; C enums are int.
using System;
using System.Runtime.InteropServices;

namespace Minimax
{
    internal static class Native
    {
        // "minimax" resolves to libminimax.so; Minimax.dll.config maps it to the SONAME
        // (libminimax.so.1) for installs without the development symlink.
        const string Lib = "minimax";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int ProgressFn(double fraction, IntPtr stage, IntPtr userData);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void EventFn(IntPtr ev, IntPtr userData);

        [StructLayout(LayoutKind.Sequential)]
        internal struct mmx_device_info
        {
            public uint struct_size;
            public int index, compute_major, compute_minor, multiprocessors;
            public ulong total_memory_bytes, free_memory_bytes;
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 128)] public byte[] name;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct mmx_model_info
        {
            public uint struct_size;
            public int vocab_size, num_layers, num_softmax_layers, hidden_size, num_heads,
                num_kv_heads, head_dim, num_experts, experts_per_token, bos_token, eos_token;
            public long context_limit;
            public ulong parameter_count, weight_bytes;
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 16)] public byte[] backend;
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 68)] public byte[] fingerprint;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct mmx_memory_estimate
        {
            public uint struct_size;
            public ulong weight_bytes, state_bytes_per_sequence, kv_bytes_per_token,
                workspace_bytes, total_bytes;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct mmx_context_stats
        {
            public uint struct_size, running_sequences, queued_requests, _reserved;
            public ulong submitted_requests, finished_requests, prompt_tokens, generated_tokens,
                steps, state_bytes_in_use, state_bytes_limit;
            public double busy_seconds;
        }

        [DllImport(Lib)] internal static extern uint mmx_abi_version();
        [DllImport(Lib)] internal static extern IntPtr mmx_version_string();

        [DllImport(Lib)] internal static extern int mmx_status_code(IntPtr status);
        [DllImport(Lib)] internal static extern IntPtr mmx_status_message(IntPtr status);
        [DllImport(Lib)] internal static extern void mmx_status_free(IntPtr status);
        [DllImport(Lib)] internal static extern IntPtr mmx_code_name(int code);

        [DllImport(Lib)] internal static extern IntPtr mmx_device_count(out int count);
        [DllImport(Lib)] internal static extern IntPtr mmx_device_info_get(int index, ref mmx_device_info info);

        [DllImport(Lib)] internal static extern IntPtr mmx_model_options_create(out ModelOptionsHandle options);
        [DllImport(Lib)] internal static extern void mmx_model_options_free(IntPtr options);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_options_set_int(ModelOptionsHandle options, int key, long value);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_options_set_string(ModelOptionsHandle options, int key, byte[] value);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_load(byte[] path, ModelOptionsHandle options, ProgressFn progress, IntPtr userData, out ModelHandle model);
        [DllImport(Lib)] internal static extern void mmx_model_free(IntPtr model);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_get_info(ModelHandle model, ref mmx_model_info info);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_layer_kind(ModelHandle model, int layer, out int kind);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_token_id(ModelHandle model, byte[] tokenText, out int id);

        [DllImport(Lib)] internal static extern IntPtr mmx_tokenize(ModelHandle model, byte[] text, UIntPtr len, uint flags, int[] tokens, UIntPtr capacity, out UIntPtr needed);
        [DllImport(Lib)] internal static extern IntPtr mmx_detokenize(ModelHandle model, int[] tokens, UIntPtr nTokens, byte[] buf, UIntPtr capacity, out UIntPtr needed);
        [DllImport(Lib)] internal static extern IntPtr mmx_apply_chat_format(ModelHandle model, byte[] messagesJson, int addGenerationPrompt, byte[] buf, UIntPtr capacity, out UIntPtr needed);

        [DllImport(Lib)] internal static extern IntPtr mmx_context_options_create(out ContextOptionsHandle options);
        [DllImport(Lib)] internal static extern void mmx_context_options_free(IntPtr options);
        [DllImport(Lib)] internal static extern IntPtr mmx_context_options_set_int(ContextOptionsHandle options, int key, long value);
        [DllImport(Lib)] internal static extern IntPtr mmx_model_estimate_memory(ModelHandle model, ContextOptionsHandle options, ref mmx_memory_estimate estimate);
        [DllImport(Lib)] internal static extern IntPtr mmx_context_create(ModelHandle model, ContextOptionsHandle options, out ContextHandle context);
        [DllImport(Lib)] internal static extern void mmx_context_free(IntPtr context);
        [DllImport(Lib)] internal static extern IntPtr mmx_context_stats_get(ContextHandle context, ref mmx_context_stats stats);

        [DllImport(Lib)] internal static extern IntPtr mmx_request_create(out RequestHandle request);
        [DllImport(Lib)] internal static extern void mmx_request_free(IntPtr request);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_set_int(RequestHandle request, int key, long value);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_set_double(RequestHandle request, int key, double value);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_append_text(RequestHandle request, byte[] text, UIntPtr len);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_append_tokens(RequestHandle request, int[] tokens, UIntPtr nTokens);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_set_prefix(RequestHandle request, PrefixHandle prefix);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_add_stop_string(RequestHandle request, byte[] stop);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_add_stop_token(RequestHandle request, int token);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_set_logit_bias(RequestHandle request, int token, float bias);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_add_logits_position(RequestHandle request, long position);
        [DllImport(Lib)] internal static extern IntPtr mmx_request_set_callback(RequestHandle request, EventFn fn, IntPtr userData);

        [DllImport(Lib)] internal static extern IntPtr mmx_context_submit(ContextHandle context, RequestHandle request, out ulong id);
        [DllImport(Lib)] internal static extern IntPtr mmx_context_submit_batch(ContextHandle context, IntPtr[] requests, UIntPtr nRequests, ulong[] ids);
        [DllImport(Lib)] internal static extern IntPtr mmx_context_cancel(ContextHandle context, ulong id);
        [DllImport(Lib)] internal static extern IntPtr mmx_context_next_event(ContextHandle context, ulong id, int timeoutMs, out EventHandle ev);
        [DllImport(Lib)] internal static extern void mmx_event_free(IntPtr ev);

        // Event accessors take the raw pointer: callbacks only borrow their event.
        [DllImport(Lib)] internal static extern int mmx_event_get_type(IntPtr ev);
        [DllImport(Lib)] internal static extern ulong mmx_event_request_id(IntPtr ev);
        [DllImport(Lib)] internal static extern int mmx_event_token(IntPtr ev);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_text(IntPtr ev, out UIntPtr len);
        [DllImport(Lib)] internal static extern float mmx_event_logprob(IntPtr ev);
        [DllImport(Lib)] internal static extern UIntPtr mmx_event_top_count(IntPtr ev);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_top(IntPtr ev, UIntPtr i, out int token, out float logprob);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_progress(IntPtr ev, out long done, out long total);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_prompt_logprobs(IntPtr ev, out long first, out UIntPtr count, out IntPtr logprobs, out IntPtr tokens);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_logits(IntPtr ev, out long position, out IntPtr logits, out UIntPtr count);
        [DllImport(Lib)] internal static extern int mmx_event_finish_reason(IntPtr ev);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_counts(IntPtr ev, out long promptTokens, out long generatedTokens);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_error(IntPtr ev);
        [DllImport(Lib)] internal static extern IntPtr mmx_event_prefix(IntPtr ev, out PrefixHandle prefix);

        [DllImport(Lib)] internal static extern void mmx_prefix_free(IntPtr prefix);
        [DllImport(Lib)] internal static extern IntPtr mmx_prefix_token_count(PrefixHandle prefix, out long tokens);
        [DllImport(Lib)] internal static extern IntPtr mmx_prefix_state_bytes(PrefixHandle prefix, out ulong bytes);
        [DllImport(Lib)] internal static extern IntPtr mmx_prefix_save(PrefixHandle prefix, byte[] path);
        [DllImport(Lib)] internal static extern IntPtr mmx_prefix_load(ContextHandle context, byte[] path, out PrefixHandle prefix);
    }

    /// <summary>An owned library handle: freed exactly once, by Dispose or the finalizer, and
    /// never while a P/Invoke call that was passed it is still running.</summary>
    internal abstract class MmxHandle : SafeHandle
    {
        protected MmxHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
    }

    internal sealed class ModelHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_model_free(handle); return true; }
    }

    internal sealed class ModelOptionsHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_model_options_free(handle); return true; }
    }

    internal sealed class ContextHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_context_free(handle); return true; }
    }

    internal sealed class ContextOptionsHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_context_options_free(handle); return true; }
    }

    internal sealed class RequestHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_request_free(handle); return true; }
    }

    internal sealed class EventHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_event_free(handle); return true; }
    }

    internal sealed class PrefixHandle : MmxHandle
    {
        protected override bool ReleaseHandle() { Native.mmx_prefix_free(handle); return true; }
    }
}
