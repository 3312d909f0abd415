// The request builder: prompt pieces, sampling options, stop conditions.
using System;

namespace Minimax
{
    /// <summary>Keys of the request options (mmx_request_option); integer keys go through
    /// Set(key, long), floating-point ones through Set(key, double).</summary>
    public enum RequestOption
    {
        MaxTokens = 1, Seed = 2, TopK = 3, TopLogprobs = 4, PromptLogprobs = 5, MakePrefix = 6,
        IgnoreEos = 7, AddBos = 8, ParseSpecial = 9,
        Temperature = 20, TopP = 21, MinP = 22, RepetitionPenalty = 23, FrequencyPenalty = 24,
        PresencePenalty = 25
    }

    /// <summary>A request description. Setters check their value at once (throwing
    /// MinimaxException) and return this, so they chain. Submitting copies it, so one Request
    /// can be submitted many times. Not thread-safe (neither is the C object).</summary>
    public sealed class Request : IDisposable
    {
        internal readonly RequestHandle Handle;

        public Request() { MinimaxException.Check(Native.mmx_request_create(out Handle)); }

        public Request Set(RequestOption key, long value)
        {
            MinimaxException.Check(Native.mmx_request_set_int(Handle, (int)key, value));
            return this;
        }

        public Request Set(RequestOption key, double value)
        {
            MinimaxException.Check(Native.mmx_request_set_double(Handle, (int)key, value));
            return this;
        }

        public Request MaxTokens(int n) { return Set(RequestOption.MaxTokens, (long)n); }
        public Request Seed(long seed) { return Set(RequestOption.Seed, seed); }
        public Request Temperature(double t) { return Set(RequestOption.Temperature, t); }
        public Request IgnoreEos(bool on) { return Set(RequestOption.IgnoreEos, on ? 1L : 0L); }

        /// <summary>Appends text to the prompt (text and tokens may be mixed).</summary>
        public Request Text(string text)
        {
            byte[] utf8 = System.Text.Encoding.UTF8.GetBytes(text);
            MinimaxException.Check(Native.mmx_request_append_text(Handle, utf8, (UIntPtr)utf8.Length));
            return this;
        }

        public Request Tokens(params int[] tokens)
        {
            MinimaxException.Check(Native.mmx_request_append_tokens(Handle, tokens, (UIntPtr)tokens.Length));
            return this;
        }

        /// <summary>Starts from a prefix; the request holds its own reference.</summary>
        public Request Prefix(Prefix prefix)
        {
            MinimaxException.Check(Native.mmx_request_set_prefix(Handle, prefix.Handle));
            return this;
        }

        public Request StopString(string stop)
        {
            MinimaxException.Check(Native.mmx_request_add_stop_string(Handle, Utf8.Z(stop)));
            return this;
        }

        public Request StopToken(int token)
        {
            MinimaxException.Check(Native.mmx_request_add_stop_token(Handle, token));
            return this;
        }

        /// <summary>Adds bias to token's logit before sampling (float.NegativeInfinity bans it).</summary>
        public Request LogitBias(int token, float bias)
        {
            MinimaxException.Check(Native.mmx_request_set_logit_bias(Handle, token, bias));
            return this;
        }

        /// <summary>Asks for the logits row at a prompt position (-1 = the last prompt token).</summary>
        public Request LogitsPosition(long position)
        {
            MinimaxException.Check(Native.mmx_request_add_logits_position(Handle, position));
            return this;
        }

        public void Dispose() { Handle.Dispose(); }
    }
}
