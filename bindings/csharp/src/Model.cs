// Models: options, loading (with an optional progress callback), info and text.
using System;
using System.Runtime.ExceptionServices;

namespace Minimax
{
    /// <summary>Keys of the model options (mmx_model_option). Any int may be cast to it: keys
    /// the loaded library does not know throw with StatusCode.Unsupported.</summary>
    public enum ModelOption { Backend = 1, Devices = 2, WeightDtype = 3, Threads = 4, MemoryLimit = 5 }

    /// <summary>Options for Model.Load. Not thread-safe (neither is the C object).</summary>
    public sealed class ModelOptions : IDisposable
    {
        internal readonly ModelOptionsHandle Handle;

        public ModelOptions() { MinimaxException.Check(Native.mmx_model_options_create(out Handle)); }

        public ModelOptions Set(ModelOption key, long value)
        {
            MinimaxException.Check(Native.mmx_model_options_set_int(Handle, (int)key, value));
            return this;
        }

        public ModelOptions Set(ModelOption key, string value)
        {
            MinimaxException.Check(Native.mmx_model_options_set_string(Handle, (int)key, Utf8.Z(value)));
            return this;
        }

        public void Dispose() { Handle.Dispose(); }
    }

    public enum LayerKind { Lightning = 0, Softmax = 1 }

    [Flags]
    public enum TokenizeFlags : uint { Default = 0, AddBos = 1, ParseSpecial = 2 }

    /// <summary>What Model.Info reports. BosToken and EosToken are -1 when the model has none.</summary>
    public sealed class ModelInfo
    {
        public int VocabSize, NumLayers, NumSoftmaxLayers, HiddenSize, NumHeads, NumKvHeads, HeadDim,
            NumExperts, ExpertsPerToken, BosToken, EosToken;
        public long ContextLimit;
        public ulong ParameterCount, WeightBytes;
        public string Backend, Fingerprint;
    }

    /// <summary>What a context would need (Model.EstimateMemory).</summary>
    public sealed class MemoryEstimate
    {
        public ulong WeightBytes, StateBytesPerSequence, KvBytesPerToken, WorkspaceBytes, TotalBytes;
    }

    /// <summary>A loaded model. Thread-safe; contexts keep the native model alive, so a Model
    /// may be disposed while its contexts run on.</summary>
    public sealed class Model : IDisposable
    {
        internal readonly ModelHandle Handle;

        Model(ModelHandle handle) { Handle = handle; }

        /// <summary>Loads a model directory. progress(fraction, stage), when given, runs on this
        /// thread as the load proceeds; returning false aborts it (StatusCode.Cancelled).</summary>
        public static Model Load(string path, ModelOptions options = null, Func<double, string, bool> progress = null)
        {
            ExceptionDispatchInfo thrown = null;
            Native.ProgressFn callback = null;
            if (progress != null)
            {
                callback = (fraction, stage, user) =>
                {
                    // An exception must not unwind through native frames: stop the load, rethrow after.
                    try { return progress(fraction, Utf8.FromZ(stage)) ? 0 : 1; }
                    catch (Exception e) { thrown = ExceptionDispatchInfo.Capture(e); return 1; }
                };
            }
            ModelHandle handle;
            IntPtr status = Native.mmx_model_load(Utf8.Z(path), options != null ? options.Handle : new ModelOptionsHandle(),
                                                  callback, IntPtr.Zero, out handle);
            GC.KeepAlive(callback); // native code calls it only during mmx_model_load
            if (thrown != null)
            {
                handle.Dispose();
                Native.mmx_status_free(status); // the callback's exception wins over "cancelled"
                thrown.Throw();
            }
            MinimaxException.Check(status);
            return new Model(handle);
        }

        public ModelInfo Info
        {
            get
            {
                var i = new Native.mmx_model_info { backend = new byte[16], fingerprint = new byte[68] };
                i.struct_size = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(Native.mmx_model_info));
                MinimaxException.Check(Native.mmx_model_get_info(Handle, ref i));
                return new ModelInfo
                {
                    VocabSize = i.vocab_size, NumLayers = i.num_layers, NumSoftmaxLayers = i.num_softmax_layers,
                    HiddenSize = i.hidden_size, NumHeads = i.num_heads, NumKvHeads = i.num_kv_heads,
                    HeadDim = i.head_dim, NumExperts = i.num_experts, ExpertsPerToken = i.experts_per_token,
                    BosToken = i.bos_token, EosToken = i.eos_token, ContextLimit = i.context_limit,
                    ParameterCount = i.parameter_count, WeightBytes = i.weight_bytes,
                    Backend = Utf8.FromArray(i.backend), Fingerprint = Utf8.FromArray(i.fingerprint),
                };
            }
        }

        public LayerKind LayerKind(int layer)
        {
            int kind;
            MinimaxException.Check(Native.mmx_model_layer_kind(Handle, layer, out kind));
            return (LayerKind)kind;
        }

        /// <summary>Id of a token given its exact text, e.g. "&lt;end_of_sentence&gt;".</summary>
        public int TokenId(string tokenText)
        {
            int id;
            MinimaxException.Check(Native.mmx_model_token_id(Handle, Utf8.Z(tokenText), out id));
            return id;
        }

        public int[] Tokenize(string text, TokenizeFlags flags = TokenizeFlags.Default)
        {
            byte[] utf8 = System.Text.Encoding.UTF8.GetBytes(text);
            return Fill<int>(utf8.Length + 4, (int[] buf, out UIntPtr needed) =>
                Native.mmx_tokenize(Handle, utf8, (UIntPtr)utf8.Length, (uint)flags, buf, (UIntPtr)buf.Length, out needed));
        }

        public string Detokenize(int[] tokens)
        {
            byte[] text = Fill<byte>(tokens.Length * 8 + 1, (byte[] buf, out UIntPtr needed) =>
                Native.mmx_detokenize(Handle, tokens, (UIntPtr)tokens.Length, buf, (UIntPtr)buf.Length, out needed));
            return TextOf(text);
        }

        /// <summary>Renders messagesJson ([{"role": ..., "content": ...}, ...]) in the model's chat format.</summary>
        public string ApplyChatFormat(string messagesJson, bool addGenerationPrompt)
        {
            byte[] json = Utf8.Z(messagesJson);
            byte[] text = Fill<byte>(json.Length * 2 + 256, (byte[] buf, out UIntPtr needed) =>
                Native.mmx_apply_chat_format(Handle, json, addGenerationPrompt ? 1 : 0, buf, (UIntPtr)buf.Length, out needed));
            return TextOf(text);
        }

        /// <summary>What a context with these options (null = defaults) would need.</summary>
        public MemoryEstimate EstimateMemory(ContextOptions options = null)
        {
            var e = new Native.mmx_memory_estimate();
            e.struct_size = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(Native.mmx_memory_estimate));
            MinimaxException.Check(Native.mmx_model_estimate_memory(
                Handle, options != null ? options.Handle : new ContextOptionsHandle(), ref e));
            return new MemoryEstimate
            {
                WeightBytes = e.weight_bytes, StateBytesPerSequence = e.state_bytes_per_sequence,
                KvBytesPerToken = e.kv_bytes_per_token, WorkspaceBytes = e.workspace_bytes, TotalBytes = e.total_bytes,
            };
        }

        public void Dispose() { Handle.Dispose(); }

        delegate IntPtr FillCall<T>(T[] buf, out UIntPtr needed);

        /// <summary>The header's caller-buffer protocol: try guess elements; on BufferTooSmall
        /// the library has stored the size it needs, so retry once with that.</summary>
        static T[] Fill<T>(int guess, FillCall<T> call)
        {
            var buf = new T[guess];
            UIntPtr needed;
            IntPtr status = call(buf, out needed);
            if (Native.mmx_status_code(status) == (int)StatusCode.BufferTooSmall)
            {
                Native.mmx_status_free(status);
                buf = new T[(int)needed];
                status = call(buf, out needed);
            }
            MinimaxException.Check(status);
            Array.Resize(ref buf, (int)needed);
            return buf;
        }

        /// <summary>Text of a buffer whose size counts the terminating NUL.</summary>
        static string TextOf(byte[] buf)
        {
            return System.Text.Encoding.UTF8.GetString(buf, 0, Math.Max(0, buf.Length - 1));
        }
    }
}
