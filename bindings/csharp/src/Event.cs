// Events (copied out of the library's event, so they stay valid) and prefixes.
using System;
using System.Runtime.InteropServices;

namespace Minimax
{
    public enum EventType { Progress = 1, Token = 2, PromptLogprobs = 3, Logits = 4, Finished = 5 }

    public enum FinishReason
    {
        None = 0, Eos = 1, StopString = 2, StopToken = 3, Length = 4, Cancelled = 5, Error = 6, PrefixReady = 7
    }

    public struct TokenLogprob
    {
        public int Token;
        public float Logprob;
    }

    /// <summary>One event of a request. Members that do not apply to its Type are zero/empty.</summary>
    public sealed class Event
    {
        public EventType Type { get; private set; }
        public ulong RequestId { get; private set; }
        /// <summary>Token: the generated token (-1 otherwise).</summary>
        public int Token { get; private set; }
        /// <summary>Token, Finished: the text delta, whole UTF-8 characters.</summary>
        public string Text { get; private set; }
        public float Logprob { get; private set; }
        public TokenLogprob[] Top { get; private set; }
        /// <summary>Progress: prompt tokens processed so far, and in all.</summary>
        public long Done { get; private set; }
        public long Total { get; private set; }
        /// <summary>PromptLogprobs: first position covered, logprobs (NaN for the first prompt token), tokens.</summary>
        public long PromptFirst { get; private set; }
        public float[] PromptLogprobs { get; private set; }
        public int[] PromptTokens { get; private set; }
        public long LogitsPosition { get; private set; }
        public float[] Logits { get; private set; }
        public FinishReason FinishReason { get; private set; }
        /// <summary>Finished: prompt and generated token counts.</summary>
        public long PromptTokenCount { get; private set; }
        public long GeneratedTokenCount { get; private set; }
        /// <summary>Finished with FinishReason.Error: what went wrong.</summary>
        public MinimaxException Error { get; private set; }
        /// <summary>Finished with FinishReason.PrefixReady: the prefix (dispose it).</summary>
        public Prefix Prefix { get; private set; }

        internal static Event FromNative(IntPtr ev)
        {
            UIntPtr len;
            IntPtr text = Native.mmx_event_text(ev, out len);
            var e = new Event
            {
                Type = (EventType)Native.mmx_event_get_type(ev),
                RequestId = Native.mmx_event_request_id(ev),
                Token = Native.mmx_event_token(ev),
                Text = Utf8.From(text, (int)len),
                FinishReason = (FinishReason)Native.mmx_event_finish_reason(ev),
                Top = new TokenLogprob[0],
            };
            UIntPtr n;
            switch (e.Type)
            {
                case EventType.Token:
                    e.Logprob = Native.mmx_event_logprob(ev);
                    e.Top = new TokenLogprob[(int)Native.mmx_event_top_count(ev)];
                    for (int i = 0; i < e.Top.Length; i++)
                        MinimaxException.Check(Native.mmx_event_top(ev, (UIntPtr)i, out e.Top[i].Token, out e.Top[i].Logprob));
                    break;
                case EventType.Progress:
                    long done, total;
                    MinimaxException.Check(Native.mmx_event_progress(ev, out done, out total));
                    e.Done = done;
                    e.Total = total;
                    break;
                case EventType.PromptLogprobs:
                    long first;
                    IntPtr logprobs, tokens;
                    MinimaxException.Check(Native.mmx_event_prompt_logprobs(ev, out first, out n, out logprobs, out tokens));
                    e.PromptFirst = first;
                    e.PromptLogprobs = new float[(int)n];
                    e.PromptTokens = new int[(int)n];
                    if ((int)n > 0)
                    {
                        Marshal.Copy(logprobs, e.PromptLogprobs, 0, (int)n);
                        Marshal.Copy(tokens, e.PromptTokens, 0, (int)n);
                    }
                    break;
                case EventType.Logits:
                    long position;
                    IntPtr logits;
                    MinimaxException.Check(Native.mmx_event_logits(ev, out position, out logits, out n));
                    e.LogitsPosition = position;
                    e.Logits = new float[(int)n];
                    if ((int)n > 0) Marshal.Copy(logits, e.Logits, 0, (int)n);
                    break;
                case EventType.Finished:
                    long prompt, generated;
                    MinimaxException.Check(Native.mmx_event_counts(ev, out prompt, out generated));
                    e.PromptTokenCount = prompt;
                    e.GeneratedTokenCount = generated;
                    IntPtr error = Native.mmx_event_error(ev); // borrowed: not freed here
                    if (error != IntPtr.Zero) e.Error = MinimaxException.FromStatus(error);
                    if (e.FinishReason == FinishReason.PrefixReady)
                    {
                        PrefixHandle p;
                        MinimaxException.Check(Native.mmx_event_prefix(ev, out p));
                        e.Prefix = new Prefix(p);
                    }
                    break;
            }
            return e;
        }
    }

    /// <summary>A processed prompt prefix ("ingest once, ask many"). Reference-counted by the
    /// library: requests using it hold their own reference, so it may be disposed while they run.</summary>
    public sealed class Prefix : IDisposable
    {
        internal readonly PrefixHandle Handle;

        internal Prefix(PrefixHandle handle) { Handle = handle; }

        public long TokenCount
        {
            get { long n; MinimaxException.Check(Native.mmx_prefix_token_count(Handle, out n)); return n; }
        }

        public ulong StateBytes
        {
            get { ulong n; MinimaxException.Check(Native.mmx_prefix_state_bytes(Handle, out n)); return n; }
        }

        /// <summary>Writes the prefix (tokens, states, model fingerprint) to a file.</summary>
        public void Save(string path) { MinimaxException.Check(Native.mmx_prefix_save(Handle, Utf8.Z(path))); }

        public void Dispose() { Handle.Dispose(); }
    }
}
