package minimax

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The scenario every binding runs against the real library: stream a completion, cancel a
// request midway, read errors from bad calls, round-trip text through the tokenizer.

const prompt = "Once upon a time"

// modelDir is MINIMAX_TEST_MODEL when set (ctest sets it), else the bundled demo model.
func modelDir(t *testing.T) string {
	if dir := os.Getenv("MINIMAX_TEST_MODEL"); dir != "" {
		return dir
	}
	dir, _ := filepath.Abs("../../models/demo")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal("no demo model; set MINIMAX_TEST_MODEL to a model directory")
	}
	return dir
}

func loadModel(t *testing.T) *Model {
	opts := new(ModelOptions).SetString(ModelBackend, "cpu").SetInt(ModelThreads, 1)
	m, err := LoadModel(modelDir(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func newContext(t *testing.T, m *Model) *Context {
	c, err := NewContext(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// request generates exactly maxTokens tokens: IgnoreEOS makes the length deterministic.
func request(maxTokens int) *Request {
	return NewRequest().Text(prompt).MaxTokens(maxTokens).IgnoreEOS(true)
}

// collect reads a stream to its end: the token count, the text, the last event.
func collect(t *testing.T, s *Stream) (tokens int64, text string, last Event) {
	for ev := range s.Events() {
		if ev.RequestID != s.ID() {
			t.Errorf("event of request %d in the stream of %d", ev.RequestID, s.ID())
		}
		if ev.Type == EventToken {
			tokens++
		}
		text += ev.Text
		last = ev
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return tokens, text, last
}

func TestVersionAndModelInfo(t *testing.T) {
	if LibraryABIVersion() != ABIVersion || Version() == "" {
		t.Fatalf("ABI %d, version %q", LibraryABIVersion(), Version())
	}
	m := loadModel(t)
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "cpu" || info.VocabSize <= 0 || info.NumLayers <= 0 || info.Fingerprint == "" {
		t.Fatalf("implausible info %+v", info)
	}
	softmax := 0
	for l := 0; l < info.NumLayers; l++ {
		if k, err := m.LayerKind(l); err != nil {
			t.Fatal(err)
		} else if k == LayerSoftmax {
			softmax++
		}
	}
	if softmax != info.NumSoftmaxLayers {
		t.Errorf("%d softmax layers, info says %d", softmax, info.NumSoftmaxLayers)
	}
	est, err := m.EstimateMemory(new(ContextOptions).SetInt(ContextMaxSequences, 2))
	if err != nil || est.WeightBytes == 0 || est.TotalBytes < est.WeightBytes {
		t.Fatalf("estimate %+v, %v", est, err)
	}
}

func TestStreamsACompletion(t *testing.T) {
	m := loadModel(t)
	c := newContext(t, m)
	s, err := c.Stream(context.Background(), request(8))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tokens, text, last := collect(t, s)
	if last.Type != EventFinished || last.FinishReason != FinishLength || tokens != 8 {
		t.Fatalf("%d tokens, finished %v (%v)", tokens, last.FinishReason, last.Err)
	}
	want, _ := m.Tokenize(prompt, 0)
	if last.PromptCount != int64(len(want)) || last.GeneratedCount != tokens {
		t.Errorf("counts %d/%d, want %d/%d", last.PromptCount, last.GeneratedCount, len(want), tokens)
	}
	if text == "" {
		t.Error("no text")
	}
	if _, err := c.NextEvent(s.ID(), 0); !errors.Is(err, CodeNotFound) {
		t.Errorf("after the final event: %v, want not found", err)
	}
}

func TestPullsEvents(t *testing.T) {
	c := newContext(t, loadModel(t))
	id, err := c.Submit(request(3))
	if err != nil {
		t.Fatal(err)
	}
	var tokens int
	for {
		ev, err := c.NextEvent(id, -1)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == EventToken {
			tokens++
			if ev.Token < 0 || ev.Logprob > 0 {
				t.Errorf("token %d logprob %v", ev.Token, ev.Logprob)
			}
		}
		if ev.Type == EventFinished {
			if ev.FinishReason != FinishLength || tokens != 3 {
				t.Fatalf("%d tokens, finished %v", tokens, ev.FinishReason)
			}
			break
		}
	}
	if st, err := c.Stats(); err != nil || st.SubmittedRequests != 1 || st.FinishedRequests != 1 {
		t.Errorf("stats %+v, %v", st, err)
	}
}

func TestContextCancellationCancelsTheRequest(t *testing.T) {
	c := newContext(t, loadModel(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const max = 4000
	s, err := c.Stream(ctx, request(max))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var tokens int64
	var last Event
	for ev := range s.Events() {
		if ev.Type == EventToken {
			if tokens++; tokens == 1 {
				cancel()
			}
		}
		last = ev
	}
	if last.FinishReason != FinishCancelled || tokens >= max || last.GeneratedCount != tokens {
		t.Fatalf("%d tokens (counted %d), finished %v", tokens, last.GeneratedCount, last.FinishReason)
	}
	if err := c.Cancel(s.ID()); !errors.Is(err, CodeNotFound) {
		t.Errorf("cancel after the end: %v, want not found", err)
	}
	if _, err := c.Stream(ctx, request(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("stream with a done context: %v", err)
	}
}

func TestClosingTheContextEndsOpenStreams(t *testing.T) {
	c, err := NewContext(loadModel(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Stream(context.Background(), request(4000))
	if err != nil {
		t.Fatal(err)
	}
	<-s.Events() // running; nobody reads on
	c.Close()    // must not hang, and must not free the engine under the stream
	for range s.Events() {
	}
}

func TestErrorsCarryCodesAndMessages(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-model")
	_, err := LoadModel(missing, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNotFound || !strings.Contains(e.Message, missing) {
		t.Fatalf("loading a missing directory: %v", err)
	}
	if !errors.Is(err, CodeNotFound) || !strings.HasPrefix(err.Error(), "minimax: not found: ") {
		t.Errorf("error %q does not match its code", err)
	}
	if _, err := LoadModel(modelDir(t), new(ModelOptions).SetInt(999, 1)); !errors.Is(err, CodeUnsupported) {
		t.Errorf("unknown model option: %v", err)
	}
	m := loadModel(t)
	if _, err := NewContext(m, new(ContextOptions).SetInt(999, 1)); !errors.Is(err, CodeUnsupported) {
		t.Errorf("unknown context option: %v", err)
	}
	c := newContext(t, m)
	for name, r := range map[string]*Request{
		"unknown int option":    request(1).SetInt(999, 1),
		"unknown double option": request(1).SetDouble(998, 1),
	} {
		if _, err := c.Submit(r); !errors.Is(err, CodeUnsupported) {
			t.Errorf("%s: %v, want unsupported", name, err)
		}
	}
	if _, err := c.Submit(NewRequest().MaxTokens(1)); !errors.Is(err, CodeInvalidArgument) {
		t.Errorf("empty prompt: %v, want invalid argument", err)
	}
	if _, err := c.Submit(request(-1)); !errors.Is(err, CodeInvalidArgument) {
		t.Errorf("negative max tokens: %v, want invalid argument", err)
	}
	if _, err := c.SubmitBatch([]*Request{request(1), NewRequest()}); !errors.Is(err, CodeInvalidArgument) {
		t.Errorf("batch with an empty prompt: %v", err)
	}
	if st, _ := c.Stats(); st.SubmittedRequests != 0 {
		t.Errorf("%d requests submitted by failed calls", st.SubmittedRequests)
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	m := loadModel(t)
	info, _ := m.Info()
	for _, text := range []string{"Hello world, tokens and more tokens: 12345!", strings.Repeat("abcdefghij", 300)} {
		tokens, err := m.Tokenize(text, 0)
		if err != nil || len(tokens) == 0 {
			t.Fatalf("tokenize: %v, %d tokens", err, len(tokens))
		}
		for _, tok := range tokens {
			if tok < 0 || int(tok) >= info.VocabSize {
				t.Fatalf("token %d outside the vocabulary", tok)
			}
		}
		back, err := m.Detokenize(tokens)
		if err != nil || back != text {
			t.Fatalf("round trip: %q, %v", back, err)
		}
	}
	if _, err := m.Detokenize([]int32{int32(info.VocabSize)}); !errors.Is(err, CodeInvalidArgument) {
		t.Errorf("token out of range: %v", err)
	}
}

func TestLoadProgress(t *testing.T) {
	calls := 0
	m, err := LoadModel(modelDir(t), new(ModelOptions).Progress(func(f float64, stage string) bool {
		if f < 0 || f > 1 {
			t.Errorf("fraction %v", f)
		}
		calls++
		return true
	}))
	if err != nil || calls == 0 {
		t.Fatalf("%v, %d progress calls", err, calls)
	}
	m.Close()
	abort := new(ModelOptions).Progress(func(float64, string) bool { return false })
	if _, err := LoadModel(modelDir(t), abort); !errors.Is(err, CodeCancelled) {
		t.Errorf("aborted load: %v, want cancelled", err)
	}
	defer func() {
		if p := recover(); p != "boom" {
			t.Errorf("the callback's panic came back as %v", p)
		}
	}()
	LoadModel(modelDir(t), new(ModelOptions).Progress(func(float64, string) bool { panic("boom") }))
}

func TestConcurrentStreams(t *testing.T) {
	c := newContext(t, loadModel(t))
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.Stream(context.Background(), request(4))
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			if tokens, _, last := collect(t, s); tokens != 4 || last.FinishReason != FinishLength {
				t.Errorf("%d tokens, finished %v", tokens, last.FinishReason)
			}
		}()
	}
	wg.Wait()
	if st, _ := c.Stats(); st.FinishedRequests != 4 {
		t.Errorf("%d requests finished", st.FinishedRequests)
	}
}

func TestPrefixes(t *testing.T) {
	m := loadModel(t)
	c := newContext(t, m)
	s, err := c.Stream(context.Background(), NewRequest().Text(prompt).SetInt(ReqMakePrefix, 1))
	if err != nil {
		t.Fatal(err)
	}
	_, _, last := collect(t, s)
	if last.FinishReason != FinishPrefixReady || last.Prefix == nil {
		t.Fatalf("finished %v, prefix %v", last.FinishReason, last.Prefix)
	}
	file := filepath.Join(t.TempDir(), "p.prefix")
	if err := last.Prefix.Save(file); err != nil {
		t.Fatal(err)
	}
	last.Prefix.Close()
	p, err := c.LoadPrefix(file)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	want, _ := m.Tokenize(prompt, 0)
	if n, err := p.TokenCount(); err != nil || n != int64(len(want)) {
		t.Fatalf("prefix holds %d tokens (%v), want %d", n, err, len(want))
	}
	if _, err := c.Submit(NewRequest().Prefix(last.Prefix).Text(" there")); !errors.Is(err, CodeInvalidArgument) {
		t.Errorf("submit with a closed prefix: %v", err)
	}
	s, err = c.Stream(context.Background(), NewRequest().Prefix(p).Text(" there").MaxTokens(2).IgnoreEOS(true))
	if err != nil {
		t.Fatal(err)
	}
	if tokens, _, last := collect(t, s); tokens != 2 || last.FinishReason != FinishLength {
		t.Fatalf("%d tokens, finished %v", tokens, last.FinishReason)
	}
}
