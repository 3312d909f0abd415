// The scenario every binding runs against the real library: stream a completion, cancel a
// request midway, read errors from bad calls, round-trip text through the tokenizer; plus
// push delivery, threads and prefixes.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

namespace Minimax.Tests
{
    static class ScenarioTests
    {
        const string Prompt = "Once upon a time";

        // One CPU thread per model: CI machines have few cores.
        static Model Load()
        {
            using (var options = new ModelOptions().Set(ModelOption.Backend, "cpu").Set(ModelOption.Threads, 1))
                return Model.Load(Env.ModelDir, options);
        }

        // IgnoreEos makes the length deterministic: the request ends at maxTokens.
        static Request NewRequest(int maxTokens)
        {
            return new Request().Text(Prompt).MaxTokens(maxTokens).IgnoreEos(true);
        }

        [Test]
        public static void VersionAndModelInfo()
        {
            Check.Equal(Library.BindingAbiVersion, Library.AbiVersion, "ABI version");
            Check.True(Library.Version.Length > 0, "version string");
            using (Model model = Load())
            {
                ModelInfo info = model.Info;
                Check.Equal("cpu", info.Backend, "backend");
                Check.True(info.VocabSize > 0 && info.NumLayers > 0 && info.Fingerprint.Length > 0, "plausible info");
                int softmax = Enumerable.Range(0, info.NumLayers).Count(l => model.LayerKind(l) == LayerKind.Softmax);
                Check.Equal(info.NumSoftmaxLayers, softmax, "softmax layers");
                Check.Throws(StatusCode.InvalidArgument, () => model.LayerKind(info.NumLayers), "layer out of range");
                MemoryEstimate estimate = model.EstimateMemory();
                Check.True(estimate.WeightBytes > 0 && estimate.TotalBytes >= estimate.WeightBytes, "estimate");
            }
        }

        [Test]
        public static void StreamsACompletion()
        {
            using (Model model = Load())
            using (var context = new Context(model))
            using (Request request = NewRequest(8))
            {
                string text = string.Concat(context.Stream(request));
                Check.True(text.Length > 0, "streamed text is not empty");

                ulong id = context.Submit(request); // the same Request again: it was copied
                List<Event> events = context.Events(id).ToList();
                Event last = events.Last();
                Check.Equal(FinishReason.Length, last.FinishReason, "finish reason");
                Check.Equal(8, events.Count(e => e.Type == EventType.Token), "token events");
                Check.True(events.All(e => e.RequestId == id), "events carry the request id");
                Check.True(events.Where(e => e.Type == EventType.Token).All(e => e.Token >= 0 && e.Logprob <= 0), "tokens");
                Check.Equal((long)model.Tokenize(Prompt).Length, last.PromptTokenCount, "prompt token count");
                Check.Equal(8L, last.GeneratedTokenCount, "generated token count");
                Check.Equal(text, string.Concat(events.Select(e => e.Text)), "greedy text of both runs");
                Check.Throws(StatusCode.NotFound, () => context.NextEvent(id, 0), "after the final event");
                Check.Equal(2UL, context.Stats().FinishedRequests, "finished requests");
            }
        }

        [Test]
        public static void CancellationTokenCancelsMidway()
        {
            using (Model model = Load())
            using (var context = new Context(model))
            using (Request request = NewRequest(4000))
            using (var cts = new CancellationTokenSource())
            {
                ulong id = context.Submit(request);
                int tokens = 0;
                Event last = null;
                foreach (Event e in context.Events(id, cts.Token))
                {
                    if (e.Type == EventType.Token && ++tokens == 1) cts.Cancel();
                    last = e;
                }
                Check.Equal(FinishReason.Cancelled, last.FinishReason, "finish reason");
                Check.True(tokens >= 1 && tokens < 4000, tokens + " tokens before the cancellation");
                Check.Equal((long)tokens, last.GeneratedTokenCount, "generated token count");
                Check.Throws(StatusCode.NotFound, () => context.Cancel(id), "cancel after the end");
            }
        }

        [Test]
        public static void LeavingAStreamEarlyCancelsIt()
        {
            using (Model model = Load())
            using (var context = new Context(model))
            using (Request request = NewRequest(4000))
            {
                foreach (string piece in context.Stream(request)) break;
                ContextStats stats = context.Stats();
                Check.Equal(1UL, stats.FinishedRequests, "the abandoned request finished");
                Check.True(stats.GeneratedTokens < 4000, stats.GeneratedTokens + " tokens generated");
            }
        }

        [Test]
        public static void ErrorsCarryCodesAndMessages()
        {
            string missing = Path.Combine(Path.GetTempPath(), "minimax-csharp-test-no-such-model");
            MinimaxException e = Check.Throws(StatusCode.NotFound, () => Model.Load(missing), "missing model");
            Check.True(e.Message.Contains(missing), "the message names the path: " + e.Message);
            Check.True(e.Message.StartsWith("not found: "), "the message starts with the code name: " + e.Message);

            // Unknown keys answer Unsupported, so that hosts can probe features.
            using (var request = new Request())
            {
                Check.Throws(StatusCode.Unsupported, () => request.Set((RequestOption)999, 1L), "unknown int key");
                Check.Throws(StatusCode.Unsupported, () => request.Set((RequestOption)998, 1.0), "unknown double key");
                Check.Throws(StatusCode.InvalidArgument, () => request.MaxTokens(-1), "negative max tokens");
                using (var options = new ModelOptions())
                    Check.Throws(StatusCode.Unsupported, () => options.Set((ModelOption)999, 1), "unknown model key");
                using (var options = new ContextOptions())
                    Check.Throws(StatusCode.Unsupported, () => options.Set((ContextOption)999, 1), "unknown context key");
                using (Model model = Load())
                using (var context = new Context(model))
                {
                    Check.Throws(StatusCode.InvalidArgument, () => context.Submit(request), "empty prompt");
                    using (Request good = NewRequest(1))
                        Check.Throws(StatusCode.InvalidArgument, () => context.SubmitBatch(good, request), "batch with an empty prompt");
                    Check.Equal(0UL, context.Stats().SubmittedRequests, "requests submitted by failed calls");
                    Check.Throws(StatusCode.NotFound, () => context.NextEvent(12345, 0), "unknown request id");
                }
            }
        }

        [Test]
        public static void TokenizeRoundTrip()
        {
            using (Model model = Load())
            {
                int vocab = model.Info.VocabSize;
                foreach (string text in new[] { "Hello world, tokens and more tokens: 12345!", string.Concat(Enumerable.Repeat("abcdefghij", 300)) })
                {
                    int[] tokens = model.Tokenize(text);
                    Check.True(tokens.Length > 0 && tokens.All(t => t >= 0 && t < vocab), "tokens in the vocabulary");
                    Check.Equal(text, model.Detokenize(tokens), "round trip");
                }
                Check.Throws(StatusCode.InvalidArgument, () => model.Detokenize(new[] { vocab }), "token out of range");
            }
        }

        [Test]
        public static void LoadProgress()
        {
            int calls = 0;
            using (Model.Load(Env.ModelDir, null, (fraction, stage) => { Check.True(fraction >= 0 && fraction <= 1, "fraction"); calls++; return true; })) { }
            Check.True(calls > 0, "progress was reported");
            Check.Throws(StatusCode.Cancelled, () => Model.Load(Env.ModelDir, null, (f, s) => false), "aborted load");
            try
            {
                Model.Load(Env.ModelDir, null, (f, s) => { throw new InvalidOperationException("boom"); });
                throw new Exception("the callback's exception was lost");
            }
            catch (InvalidOperationException e) { Check.Equal("boom", e.Message, "rethrown exception"); }
        }

        [Test]
        public static void PushDeliveryKeepsTheCallbackAlive()
        {
            using (Model model = Load())
            using (var context = new Context(model))
            using (Request request = NewRequest(6))
            using (var finished = new ManualResetEventSlim())
            {
                int tokens = 0;
                Event last = null;
                context.Submit(request, e =>
                {
                    if (e.Type == EventType.Token) tokens++;
                    if (e.Type == EventType.Finished) { last = e; finished.Set(); }
                });
                GC.Collect(); // only the GCHandle keeps the closure alive now
                GC.WaitForPendingFinalizers();
                Check.True(finished.Wait(TimeSpan.FromSeconds(60)), "the final event arrived");
                Check.Equal(6, tokens, "token events");
                Check.Equal(FinishReason.Length, last.FinishReason, "finish reason");
                // The Request no longer carries the callback: a plain submit pulls its events.
                Check.Equal(FinishReason.Length, context.Events(context.Submit(request)).Last().FinishReason, "pulled after push");
            }
        }

        [Test]
        public static void ServesSeveralThreads()
        {
            using (Model model = Load())
            using (var context = new Context(model))
            {
                var results = new string[4];
                var threads = Enumerable.Range(0, 4).Select(i => new Thread(() =>
                {
                    using (Request request = NewRequest(4))
                    {
                        List<Event> events = context.Events(context.Submit(request)).ToList();
                        results[i] = events.Count(e => e.Type == EventType.Token) + " " + events.Last().FinishReason;
                    }
                })).ToList();
                threads.ForEach(t => t.Start());
                threads.ForEach(t => t.Join());
                Check.True(results.All(r => r == "4 Length"), string.Join(", ", results));
                Check.Equal(4UL, context.Stats().FinishedRequests, "finished requests");
            }
        }

        [Test]
        public static void Prefixes()
        {
            using (Model model = Load())
            using (var context = new Context(model))
            using (Request make = new Request().Text(Prompt).Set(RequestOption.MakePrefix, 1L))
            {
                Event last = context.Events(context.Submit(make)).Last();
                Check.Equal(FinishReason.PrefixReady, last.FinishReason, "finish reason");
                string file = Path.GetTempFileName();
                using (Prefix made = last.Prefix)
                {
                    Check.Equal((long)model.Tokenize(Prompt).Length, made.TokenCount, "prefix tokens");
                    Check.True(made.StateBytes > 0, "prefix state bytes");
                    made.Save(file);
                }
                using (Prefix loaded = context.LoadPrefix(file))
                using (Request ask = new Request().Prefix(loaded).Text(" there").MaxTokens(2).IgnoreEos(true))
                {
                    File.Delete(file);
                    Event end = context.Events(context.Submit(ask)).Last();
                    Check.Equal(FinishReason.Length, end.FinishReason, "finish reason");
                    Check.Equal(2L, end.GeneratedTokenCount, "generated tokens");
                }
            }
        }
    }
}
