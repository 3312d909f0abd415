// Contexts (running engines): options, submission, cancellation, events, statistics.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace Minimax
{
    /// <summary>Keys of the context options (mmx_context_option).</summary>
    public enum ContextOption
    {
        MaxSequences = 1, StepTokenBudget = 2, KvMemoryBytes = 3, PrefillChunk = 4, MaxContext = 5, MaxQueued = 6
    }

    /// <summary>Options for a Context. Not thread-safe (neither is the C object).</summary>
    public sealed class ContextOptions : IDisposable
    {
        internal readonly ContextOptionsHandle Handle;

        public ContextOptions() { MinimaxException.Check(Native.mmx_context_options_create(out Handle)); }

        public ContextOptions Set(ContextOption key, long value)
        {
            MinimaxException.Check(Native.mmx_context_options_set_int(Handle, (int)key, value));
            return this;
        }

        public void Dispose() { Handle.Dispose(); }
    }

    /// <summary>A snapshot of a context's counters.</summary>
    public sealed class ContextStats
    {
        public uint RunningSequences, QueuedRequests;
        public ulong SubmittedRequests, FinishedRequests, PromptTokens, GeneratedTokens, Steps,
            StateBytesInUse, StateBytesLimit;
        public double BusySeconds;
    }

    /// <summary>A running engine serving one model. Every member is thread-safe except Dispose,
    /// which cancels what still runs.</summary>
    public sealed class Context : IDisposable
    {
        readonly ContextHandle handle;

        public Context(Model model, ContextOptions options = null)
        {
            MinimaxException.Check(Native.mmx_context_create(
                model.Handle, options != null ? options.Handle : new ContextOptionsHandle(), out handle));
        }

        /// <summary>Submits a request (the library copies it; the Request may be reused).</summary>
        public ulong Submit(Request request)
        {
            ulong id;
            MinimaxException.Check(Native.mmx_context_submit(handle, request.Handle, out id));
            return id;
        }

        /// <summary>Submits a request whose events go to onEvent instead of NextEvent. onEvent
        /// runs on the engine's scheduler thread, must return quickly, and must not dispose this
        /// context; an exception it throws is written to stderr (it cannot reach the caller).</summary>
        public ulong Submit(Request request, Action<Event> onEvent)
        {
            if (onEvent == null) throw new ArgumentNullException("onEvent");
            // The native side holds only a GCHandle to onEvent; the trampoline frees it with the
            // final event, after which the library never calls again.
            GCHandle target = GCHandle.Alloc(onEvent);
            try
            {
                MinimaxException.Check(Native.mmx_request_set_callback(request.Handle, Trampoline, GCHandle.ToIntPtr(target)));
                ulong id = Submit(request);
                target = default(GCHandle); // owned by the running request now
                return id;
            }
            finally
            {
                // The Request may be submitted again: it must not carry this handle along.
                Native.mmx_request_set_callback(request.Handle, null, IntPtr.Zero);
                if (target.IsAllocated) target.Free();
            }
        }

        // Static, so that the delegate native code calls is never collected.
        static readonly Native.EventFn Trampoline = OnNativeEvent;

        static void OnNativeEvent(IntPtr ev, IntPtr userData)
        {
            GCHandle target = GCHandle.FromIntPtr(userData);
            Event e = null;
            try
            {
                e = Event.FromNative(ev);
                ((Action<Event>)target.Target)(e);
            }
            catch (Exception ex)
            {
                Console.Error.WriteLine("minimax: event callback threw: " + ex);
            }
            finally
            {
                if (Native.mmx_event_get_type(ev) == (int)EventType.Finished) target.Free();
            }
        }

        /// <summary>Submits all of requests, or none of them.</summary>
        public ulong[] SubmitBatch(params Request[] requests)
        {
            var raw = new IntPtr[requests.Length];
            var ids = new ulong[requests.Length];
            int added = 0;
            try
            {
                // Pin each handle for the call: an array of raw pointers is not tracked otherwise.
                for (; added < requests.Length; added++)
                {
                    bool ok = false;
                    requests[added].Handle.DangerousAddRef(ref ok);
                    raw[added] = requests[added].Handle.DangerousGetHandle();
                }
                MinimaxException.Check(Native.mmx_context_submit_batch(handle, raw, (UIntPtr)raw.Length, ids));
            }
            finally
            {
                for (int i = 0; i < added; i++) requests[i].Handle.DangerousRelease();
            }
            return ids;
        }

        /// <summary>Cancels a request; its final event (reason Cancelled unless it finished
        /// first) follows. Unknown or finished ids throw with StatusCode.NotFound.</summary>
        public void Cancel(ulong id) { MinimaxException.Check(Native.mmx_context_cancel(handle, id)); }

        /// <summary>Waits up to timeoutMs (-1 forever, 0 poll) for the next event of id (0: of any
        /// request). Throws with Timeout when none came, NotFound once the final event was taken.</summary>
        public Event NextEvent(ulong id, int timeoutMs = -1)
        {
            EventHandle ev;
            MinimaxException.Check(Native.mmx_context_next_event(handle, id, timeoutMs, out ev));
            using (ev) return Event.FromNative(ev.DangerousGetHandle());
        }

        /// <summary>The events of request id, ending with its Finished event. When token is
        /// cancelled, the request is cancelled (and the enumeration ends soon after with a
        /// Finished event whose reason is Cancelled).</summary>
        public IEnumerable<Event> Events(ulong id, CancellationToken token = default(CancellationToken))
        {
            using (token.Register(() => CancelQuietly(id)))
            {
                while (true)
                {
                    Event e = NextEvent(id);
                    yield return e;
                    if (e.Type == EventType.Finished) yield break;
                }
            }
        }

        /// <summary>Submits request and yields its text as it is generated. Throws the request's
        /// error if it ends with one. Leaving the loop early cancels the request.</summary>
        public IEnumerable<string> Stream(Request request, CancellationToken token = default(CancellationToken))
        {
            ulong id = Submit(request);
            bool finished = false;
            try
            {
                foreach (Event e in Events(id, token))
                {
                    finished = e.Type == EventType.Finished;
                    if (e.Error != null) throw e.Error;
                    if (e.Text.Length > 0) yield return e.Text;
                }
            }
            finally
            {
                if (!finished)
                {
                    CancelQuietly(id);
                    try { foreach (Event e in Events(id)) { } } // drain up to the final event
                    catch (MinimaxException) { } // already gone: nothing left to drain
                }
            }
        }

        void CancelQuietly(ulong id)
        {
            try { Cancel(id); }
            catch (MinimaxException e) when (e.Code == StatusCode.NotFound) { } // finished meanwhile
        }

        public ContextStats Stats()
        {
            var s = new Native.mmx_context_stats();
            s.struct_size = (uint)Marshal.SizeOf(typeof(Native.mmx_context_stats));
            MinimaxException.Check(Native.mmx_context_stats_get(handle, ref s));
            return new ContextStats
            {
                RunningSequences = s.running_sequences, QueuedRequests = s.queued_requests,
                SubmittedRequests = s.submitted_requests, FinishedRequests = s.finished_requests,
                PromptTokens = s.prompt_tokens, GeneratedTokens = s.generated_tokens, Steps = s.steps,
                StateBytesInUse = s.state_bytes_in_use, StateBytesLimit = s.state_bytes_limit,
                BusySeconds = s.busy_seconds,
            };
        }

        /// <summary>Reads a prefix written by Prefix.Save for use in this context.</summary>
        public Prefix LoadPrefix(string path)
        {
            PrefixHandle p;
            MinimaxException.Check(Native.mmx_prefix_load(handle, Utf8.Z(path), out p));
            return new Prefix(p);
        }

        public void Dispose() { handle.Dispose(); }
    }
}
